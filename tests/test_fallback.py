"""The smbstatus fallback and the kernel cross-checks, against the sandbox's real smbd and real clients.

``read_smbstatus`` runs the real ``smbstatus --json``; only the time-out and malformed-output
cases run a stand-in executable (a real smbstatus neither hangs nor prints garbage on demand),
each named as one below.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator

import pytest
from smbprotocol import open as smbopen
from smbprotocol.tree import TreeConnect

from conftest import REPO, wait_for
from serversession.errors import SourceDataError, SourceTimeout, SourceUnavailable
from serversession.sandbox import Sandbox
from serversession.sources import smbd_connections as sc
from serversession.sources import tcp_idle
from serversession.sources.base import SESS_GUEST, SessionRecord
from serversession.sources.samba import SambaSource, _import_bindings
from serversession.sources.samba_smbstatus import (
    LOST,
    document_opens,
    document_sessions,
    find_smbstatus,
    lost,
    parse_json,
    read_smbstatus,
    run_smbstatus,
)

pytestmark = pytest.mark.samba

SAMBA_DIRS = ("lock", "state", "cache", "private", "pid", "log", "ncalrpc")  # the sandbox's own, never a share's
SYSTEM_PYTHON = "/usr/bin/python3"


def samba_release() -> tuple[int, int]:
    _import_bindings()
    from samba import version

    major, minor = version.split(".")[:2]
    return int(major), int(minor)


@pytest.fixture(autouse=True)
def _needs_json_smbstatus() -> None:
    if samba_release() < (4, 17):
        pytest.skip("smbstatus --json exists from Samba 4.17")


def tdb_records(sandbox: Sandbox) -> dict[str, SessionRecord]:
    return {r.session_id: r for r in SambaSource(sandbox.conf_path).sessions()}


def status_records(sandbox: Sandbox) -> dict[str, SessionRecord]:
    return {r.session_id: r for r in read_smbstatus(sandbox.conf_path, 30, sandbox.environment())}


def smbstatus_json(sandbox: Sandbox) -> dict[str, object]:
    argv = [find_smbstatus(), "--json", f"--configfile={sandbox.conf_path}"]
    return parse_json(run_smbstatus(argv, 30, sandbox.environment()))


def scan(sandbox: Sandbox) -> dict[int, sc.SmbdProcess] | None:
    lp = _import_bindings()[1].LoadParm()
    lp.load(sandbox.conf_path)
    assert sc.share_paths(lp) == [sandbox.share_path]
    assert sorted(sc.own_directories(lp)) == sorted(os.path.join(sandbox.directory, d) for d in SAMBA_DIRS)
    return sc.smbd_processes(sandbox.pid() or 0, sc.share_paths(lp), sc.own_directories(lp))


def client_endpoint(client: object) -> tcp_idle.Endpoint:
    host, port = client.connection.transport._sock.getsockname()[:2]  # type: ignore[attr-defined]
    return tcp_idle.normalize_ip(host), port


def open_pipe(client: object, name: str = "srvsvc") -> smbopen.Open:
    """A named pipe on IPC$, held open (a handle of the session that holds no file descriptor in smbd)."""
    tree = TreeConnect(client.session, "\\\\127.0.0.1\\IPC$")  # type: ignore[attr-defined]
    tree.connect()
    pipe = smbopen.Open(tree, name)
    pipe.create(
        smbopen.ImpersonationLevel.Impersonation,
        smbopen.FilePipePrinterAccessMask.GENERIC_READ | smbopen.FilePipePrinterAccessMask.GENERIC_WRITE,
        0,
        smbopen.ShareAccess.FILE_SHARE_READ | smbopen.ShareAccess.FILE_SHARE_WRITE,
        smbopen.CreateDisposition.FILE_OPEN,
        0,
    )
    return pipe


# --- smbstatus --json against the TDB reader ---------------------------------------------------


def test_smbstatus_gives_what_the_tdb_reader_gives(sandbox, connect, anonymous):
    alice = connect("alice")
    alice.open_files(["fb-a1.txt", "fb-a2.txt"])
    connect("alice").open_files(["fb-a3.txt"])  # a second session of alice, on its own connection
    connect("bob").open_files([])
    connect("visitor", "any", guest=True)
    anonymous()
    tdb = wait_for(lambda: (found := tdb_records(sandbox)) and len(found) == 5 and found, timeout=15)
    status = status_records(sandbox)
    assert sorted(status) == sorted(tdb)  # the same sessions, by id
    guest = _import_bindings()[1].LoadParm()
    guest.load(sandbox.conf_path)
    for session_id, mine in tdb.items():
        theirs = status[session_id]
        assert theirs.computer_name == mine.computer_name == "127.0.0.1"
        assert theirs.client_type == mine.client_type == "SMB3_11"
        assert theirs.transport == mine.transport == f"tcp:127.0.0.1:{sandbox.port}"
        assert theirs.client_address == mine.client_address
        assert theirs.user_flags == mine.user_flags
        assert theirs.opens == mine.opens  # files only here: no named pipe is open
        assert theirs.status == mine.status == "OK"
        assert theirs.detail == mine.detail
        assert theirs.last_request is not None and mine.last_request is not None
        assert abs(theirs.last_request - mine.last_request) < 2  # both the kernel's, read a moment apart
        if mine.user_name == "":  # the one difference: smbstatus shows an anonymous logon as the guest account
            assert theirs.user_name == guest.get("guest account") and theirs.user_flags == SESS_GUEST
        else:
            assert theirs.user_name == mine.user_name
        if samba_release() >= (4, 20):
            assert theirs.established == pytest.approx(mine.established, abs=1e-5)
        else:  # no creation time in smbstatus before 4.20
            assert theirs.established is None and mine.established is not None
            assert "ActiveTime" in lost("4.17.12") and "ActiveTime" not in LOST
    assert sorted((r.user_name, r.opens) for r in status.values() if r.user_name == "alice") == [
        ("alice", 1),
        ("alice", 2),
    ]


def test_smbstatus_does_not_count_named_pipes(sandbox, connect):
    bob = connect("bob")
    bob.open_files(["fb-b1.txt"])
    open_pipe(bob)
    (mine,) = wait_for(lambda: [r for r in tdb_records(sandbox).values() if r.user_name == "bob" and r.opens == 2])
    theirs = status_records(sandbox)[mine.session_id]
    assert theirs.opens == 1  # the file; the pipe is in smbXsrv_open_global.tdb only
    assert "named pipes" in LOST


def test_smbstatus_is_run_without_a_shell_on_an_smb_conf_named_like_an_option(sandbox, connect, tmp_path):
    connect("carol").open_files([])
    odd = tmp_path / "-s;x $(true).conf"
    shutil.copy(sandbox.conf_path, odd)
    listed = wait_for(lambda: sorted(status_records(sandbox)))
    assert sorted(r.session_id for r in read_smbstatus(str(odd), 30, sandbox.environment())) == listed
    with pytest.raises(SourceUnavailable, match=r"smb\.conf not found"):
        read_smbstatus(str(tmp_path / "missing.conf"), 30, sandbox.environment())


# --- stand-ins: a hanging smbstatus, and garbage --------------------------------------------------


def stand_in(tmp_path, body: str) -> str:
    """A stand-in executable for smbstatus (Python), for what a real smbstatus does not do on demand."""
    path = tmp_path / "smbstatus-stand-in"
    path.write_text(f"#!{sys.executable}\nimport os, sys, time\n{textwrap.dedent(body)}")
    path.chmod(0o755)
    return str(path)


def test_a_hanging_smbstatus_is_killed_at_the_time_limit(tmp_path):
    pid_file = tmp_path / "pid"
    hanging = stand_in(tmp_path, f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)\n")
    started = time.monotonic()
    with pytest.raises(SourceTimeout, match=r"smbstatus did not answer within 1\.5 s"):
        run_smbstatus([hanging, "--json"], 1.5)
    assert 1.5 <= time.monotonic() - started < 5
    pid = int(pid_file.read_text())
    assert not os.path.exists(f"/proc/{pid}")  # killed and reaped


def test_endless_output_is_refused_at_256_mb(tmp_path):
    endless = stand_in(tmp_path, "chunk = b'{' * (1 << 20)\nwhile True:\n    sys.stdout.buffer.write(chunk)\n")
    with pytest.raises(SourceDataError, match="more than 256 MB"):
        run_smbstatus([endless], 60)


@pytest.mark.parametrize(
    "body",
    [
        # 4.15-4.16 (samba_cmdline): popt refuses the option, prints the usage last, exit 1
        "print('\\nInvalid option --json: unknown option\\n', file=sys.stderr)\n"
        "print('Usage: [-?pvLSNbPRBnfV] [-?|--help] [--usage] [-p|--processes]', file=sys.stderr)\nsys.exit(1)\n",
        # a release whose popt loop ignores an unknown option: the plain report, exit 0
        "print('\\nSamba version 4.13.17\\nPID     Username     Group        Machine')\n",
    ],
    ids=["refused", "ignored"],
)
def test_an_smbstatus_without_json_says_so(sandbox, tmp_path, body):
    """smbstatus has --json from Samba 4.17 (and only when built with JSON support)."""
    older = stand_in(tmp_path, body)
    with pytest.raises(SourceUnavailable, match=r"^smbstatus has no --json option \(Samba before 4\.17") as caught:
        read_smbstatus(sandbox.conf_path, 10, sandbox.environment(), binary=older)
    assert not isinstance(caught.value, SourceDataError)


def test_a_failing_smbstatus_says_why(tmp_path):
    failing = stand_in(tmp_path, "print('{}')\nprint('smbstatus only works as root!', file=sys.stderr)\nsys.exit(1)\n")
    with pytest.raises(SourceUnavailable, match=r"smbstatus failed \(exit 1\): smbstatus only works as root!"):
        run_smbstatus([failing], 10)


@pytest.mark.parametrize(
    ("output", "problem"),
    [
        (b"", "no JSON object"),
        (b"Segmentation fault\n", "no JSON object: Segmentation fault"),
        (b'{"sessions": {', "malformed JSON"),
        (b'{"sessions": {}} trailing', "text after its JSON object"),
        (b"[1, 2]\n", "no JSON object"),
        (b'{"version": "4.99.0"}', "sessions is missing"),
        (b'{"sessions": []}', "sessions is missing or not an object"),
        (b'{"sessions": {"1": "x"}}', "session 1 is not an object"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"a":' * 100000 + b"1" + b"}" * 100000, "malformed JSON"),  # nested too deep
    ],
)
def test_garbage_is_a_source_data_error(output, problem):
    with pytest.raises(SourceDataError, match=re.escape(problem)) as caught:
        document_sessions(parse_json(output))
    assert "\n" not in str(caught.value)


GOOD_SESSION = {
    "session_id": "3577045296",
    "server_id": {"pid": "16921", "unique_id": "652014524486428574"},
    "uid": 10001,
    "username": "alice",
    "remote_machine": "127.0.0.1",
    "hostname": "ipv4:127.0.0.1:41154",
    "session_dialect": "SMB3_11",
}


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("uid", "10001", "uid is not a uid"),
        ("uid", True, "uid is not a uid"),
        ("username", None, "username is missing"),
        ("username", "x" * 5000, "username is missing or not a string"),
        ("remote_machine", 7, "remote_machine is missing"),
        ("server_id", {"pid": 16921}, "server_id.pid is not a number"),
        ("server_id", {"pid": "-1"}, "server_id.pid is not a number"),
        ("hostname", "127.0.0.1:41154", "is not an ipv4:/ipv6: address"),
        ("hostname", "ipv4:127.0.0.1:99999", "is not an address"),
        ("hostname", "ipv4:not-an-ip:1", "is not an address"),
        ("session_dialect", "SMB3 11; rm", "not a dialect name"),
        ("creation_time", "yesterday", "creation_time 'yesterday' is not a time"),
        ("creation_time", "0000-01-01T00:00:00", "is not a time"),
        ("creation_time", "2025-02-30T12:00:00.000000+01:00", "is not a time"),
        ("creation_time", "1969-12-31T23:59:59Z", "is not a time"),
        ("creation_time", "2025-01-31T12:00:00+25:00", "has no UTC offset"),
        ("creation_time", "-1 seconds since the Epoch", "is not a time"),
        ("channels", {"1": {"local_address": "ipv4:127.0.0.1:445"}}, "remote_address is missing"),
        ("channels", {}, "channels is not a non-empty object"),
    ],
)
def test_a_hostile_field_is_a_source_data_error(field, value, problem):
    session = {**GOOD_SESSION, field: value}
    output = json.dumps({"sessions": {"3577045296": session}}).encode()
    with pytest.raises(SourceDataError, match=re.escape(problem)):
        document_sessions(parse_json(output))


def _zone(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Run in time zone ``name`` (smbstatus runs with this process's zone)."""
    monkeypatch.setenv("TZ", name)
    time.tzset()


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    yield lambda name: _zone(monkeypatch, name)
    monkeypatch.undo()
    time.tzset()


def test_json_after_smbstatus_notes_and_times_of_later_releases(zone):
    """4.17 prints notes before its JSON; 4.20+ prints times, channels and (4.23+) the transport."""
    zone("Europe/Paris")
    session = {
        **GOOD_SESSION,
        "session_dialect": "Unknown (0x0312)",
        "creation_time": "2025-01-31T00:30:00.250000+01:00",
        "expiration_time": "30828-09-14T02:48:05.477580+00:00",  # NTTIME's infinity: never expires
        "channels": {"7": {"local_address": "ipv6:::1:445", "remote_address": "ipv6:::1:50000", "transport": "quic"}},
    }
    output = (
        b"/var/lib/samba/lock/locking.tdb not initialised\nThis is normal if an SMB client has never connected.\n\n"
        + json.dumps({"sessions": {"3577045296": session}}).encode()
    )
    (parsed,) = document_sessions(parse_json(output))
    assert parsed.created == 1738279800.25  # 2025-01-30T23:30:00.25Z
    assert parsed.expires is None
    assert parsed.dialect == "0x0312"
    assert parsed.channels == [(("::1", 445), ("::1", 50000))]
    assert parsed.transport == "quic"
    assert document_opens(parse_json(output)) is None  # no open_files: counts unknown, not 0
    # Samba computes the UTC offset from hours alone: across midnight it is a day off (+23:00 means -01:00)
    zone("Atlantic/Azores")  # -01:00 in January
    session["creation_time"] = "2025-01-30T22:30:00.000000+23:00"
    (parsed,) = document_sessions(parse_json(json.dumps({"sessions": {"1": session}}).encode()))
    assert parsed.created == 1738279800.0


def test_a_stand_in_printing_garbage_through_the_whole_read(sandbox, tmp_path):
    garbage = stand_in(tmp_path, 'print(\'{"sessions": {"1": {"uid": []}}}\')\n')
    with pytest.raises(SourceDataError, match="smbstatus --json: session 1: server_id is missing"):
        read_smbstatus(sandbox.conf_path, 10, sandbox.environment(), binary=garbage)


# --- the kernel's view: connections and open files of smbd's processes ----------------------------


def test_sock_diag_gives_each_socket_its_inode():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            with accepted:
                mine = client.getsockname()[1]
                sockets = tcp_idle.tcp_sockets({mine})
                (key,) = sockets
                assert key == (("127.0.0.1", mine), ("127.0.0.1", port))
                assert sockets[key][1] == os.fstat(client.fileno()).st_ino
                assert sockets[key][2] == tcp_idle.TCP_ESTABLISHED
                idle = tcp_idle.idle_milliseconds({mine})  # the same sockets, without inodes
                assert list(idle) == [key] and 0 <= idle[key] - (sockets[key][0] or 0) < 1000
                listening = tcp_idle.tcp_sockets({port}, states=tcp_idle.LISTENING, info=False)
                assert [info[1] for info in listening.values()] == [os.fstat(server.fileno()).st_ino]


def test_each_client_connection_is_found_with_its_smbd_child(sandbox, connect):
    clients = [connect(user) for user in ("alice", "bob", "carol")]
    wait_for(lambda: len(tdb_records(sandbox)) >= 3)
    served_by = {s.channels[0][1]: s.pid for s in document_sessions(smbstatus_json(sandbox))}  # client -> smbd pid
    connections = sc.smbd_client_connections(sandbox.pid() or 0)
    assert connections is not None
    by_client = {c.remote: c for c in connections}
    main = sandbox.pid()
    for client in clients:
        connection = by_client[client_endpoint(client)]
        assert connection.local == ("127.0.0.1", sandbox.port)
        assert connection.pid == served_by[connection.remote] != main  # the child that serves the session
        with open(f"/proc/{connection.pid}/stat", "rb") as stat:
            assert int(stat.read().rsplit(b")", 1)[1].split()[1]) == main
        assert 0 <= connection.age < 60
    assert sc.smbd_client_connections(sandbox.pid() or 0, {sandbox.port}) is not None


def test_check_sessions_warns_about_connections_without_a_session(sandbox, connect):
    mine = {client_endpoint(connect(user)) for user in ("alice", "bob")}

    def my_connections() -> list[sc.Connection]:
        found = sc.smbd_client_connections(sandbox.pid() or 0)
        assert found is not None
        return [c for c in found if c.remote in mine]

    records = wait_for(lambda: (found := tdb_records(sandbox)) and len(found) >= 2 and list(found.values()))
    connections = my_connections()
    assert len(connections) == 2
    assert sc.check_sessions(connections, []) is None  # younger than 5 s: they may still be logging on
    time.sleep(1.1)
    connections = my_connections()
    warning = sc.check_sessions(connections, [], min_age=1.0)
    assert warning is not None
    assert warning.startswith("2 of 2 connections to smbd have no session:")
    assert sc.check_sessions(connections, client_endpoints(records), min_age=1.0) is None
    status = document_sessions(smbstatus_json(sandbox))
    assert sc.check_sessions(connections, [channel for s in status for channel in s.channels], min_age=1.0) is None
    assert sc.check_sessions(connections, [], min_age=1.0, authenticating=client_endpoints(records)) is None


def client_endpoints(records: list[SessionRecord]) -> list[tcp_idle.Endpoint]:
    """The client endpoints of sessions as a source returned them (``client_address``, ``ip:port``)."""
    out = []
    for record in records:
        host, _, port = (record.client_address or "").rpartition(":")
        out.append((tcp_idle.normalize_ip(host), int(port)))
    return out


def test_check_sessions_takes_pairs_endpoints_and_logons_in_progress():
    connection = sc.Connection(("127.0.0.1", 445), ("127.0.0.1", 50000), 4321, 60.0, 100)
    warning = sc.check_sessions([connection], [(("127.0.0.1", 445), ("127.0.0.1", 50001))])
    assert warning == (
        "1 of 1 connection to smbd has no session: logged off (clients keep connections for reuse), never logged "
        "on, or lost from the session database (damaged?): 127.0.0.1:50000 (smbd pid 4321)"
    )
    assert sc.check_sessions([connection], [(("127.0.0.1", 445), ("127.0.0.1", 50000))]) is None
    assert sc.check_sessions([connection], [(None, ("127.0.0.1", 50000))]) is None  # smbstatus before 4.20
    assert sc.check_sessions([connection], [("127.0.0.1", 50000)]) is None
    assert sc.check_sessions([connection], [], authenticating=[(("127.0.0.1", 445), ("127.0.0.1", 50000))]) is None
    assert sc.check_sessions([connection], [], min_age=61.0) is None
    assert sc.check_sessions(None, []) is None


@pytest.fixture
def package_copy() -> Iterator[str]:
    """The package where user nobody can read it (the clone may live in root's home)."""
    directory = tempfile.mkdtemp(prefix="serversession-src-")
    os.chmod(directory, 0o755)
    shutil.copytree(os.path.join(REPO, "src", "serversession"), os.path.join(directory, "serversession"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_checks_are_skipped_for_a_user_who_cannot_read_smbds_descriptors(sandbox, connect, package_copy):
    if os.geteuid() != 0:
        pytest.skip("as another user than root the sandbox's smbd is this user's own and readable")
    connect("alice").open_files(["fb-nonroot.txt"])
    code = textwrap.dedent(f"""
        from serversession.sources import smbd_connections as sc
        processes = sc.smbd_processes({sandbox.pid()}, [{sandbox.share_path!r}])
        print(processes, sc.smbd_client_connections({sandbox.pid()}))
    """)
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", SYSTEM_PYTHON, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": package_copy},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "None"]
    assert scan(sandbox) is not None  # root reads them


def _pretend_release(monkeypatch: pytest.MonkeyPatch, version: str, sandbox: Sandbox) -> None:
    """Make the source believe Samba ``version`` is installed (what load_config reads).

    smbstatus, if the source falls back to it, gets the sandbox's users through nss_wrapper, as
    smbd does (a system Samba's users come from the system's NSS).
    """
    _import_bindings()
    import samba

    monkeypatch.setattr(samba, "version", version)
    for name, value in sandbox.environment().items():
        if name.startswith(("NSS_WRAPPER", "UID_WRAPPER")) or name == "LD_PRELOAD":
            monkeypatch.setenv(name, value)


def test_an_unverified_release_whose_records_do_not_match_falls_back_to_smbstatus(sandbox, connect, monkeypatch):
    """4.19 is a layout from the IDL never run in the matrix: its layout matches no release there
    (4.17 has db_rec in opens, 4.22 a client GUID in sessions, 4.25 envelope version 1), so the
    real records fail the strict checks and smbstatus answers, with a warning saying what is lost."""
    client = connect("alice")
    client.open_files(["fallback-a", "fallback-b"])
    real = {(r.user_name, r.computer_name, r.client_type): r for r in SambaSource(sandbox.conf_path).sessions()}
    _pretend_release(monkeypatch, "4.19.0", sandbox)
    source = SambaSource(sandbox.conf_path)
    fallen = source.sessions()
    assert any("4.19.0 was not verified" in w and "smbstatus --json" in w and LOST in w for w in source.warnings), (
        source.warnings
    )
    alice = [r for r in fallen if r.user_name == "alice"]
    assert len(alice) == 1 and alice[0].opens == 2
    key = ("alice", alice[0].computer_name, alice[0].client_type)
    assert key in real and real[key].opens == 2
    assert alice[0].last_request is not None  # IdleTime still from the kernel


def test_a_newer_release_is_read_directly_while_its_records_pass_the_checks(sandbox, connect, monkeypatch):
    """A release newer than every verified one gets the newest layout: read directly if every record
    passes the strict checks (the installed release has that layout), else through smbstatus."""
    connect("bob")
    from serversession.sources import samba_records as records

    _pretend_release(monkeypatch, "4.99.1", sandbox)
    source = SambaSource(sandbox.conf_path)
    found = source.sessions()
    assert any(r.user_name == "bob" for r in found)
    monkeypatch.undo()
    _import_bindings()
    from samba import version

    fell_back = any("4.99.1 was not verified" in w for w in source.warnings)
    assert fell_back == (records.layout_for_version(version) != records.NEWEST_LAYOUT), source.warnings


def test_the_source_warns_when_a_live_connection_has_no_session_record(sandbox, connect, monkeypatch):
    """The cross-check wired into the source: the session database loses a live session (here by
    dropping its record after the read, as a damaged chain would), and the kernel's view says so."""
    connect("carol")
    wait_for(lambda: time.sleep(sc.MIN_AGE) or True, timeout=sc.MIN_AGE + 5)  # older than a negotiation
    import serversession.sources.samba as samba_source

    original = samba_source.SambaSource._decode_sessions

    def losing_carol(self, *args, **kwargs):
        return [item for item in original(self, *args, **kwargs) if item[1].unix_info.unix_name != "carol"]

    monkeypatch.setattr(samba_source.SambaSource, "_decode_sessions", losing_carol)
    source = SambaSource(sandbox.conf_path)
    assert not [r for r in source.sessions() if r.user_name == "carol"]
    assert any("no session:" in w for w in source.warnings), source.warnings
