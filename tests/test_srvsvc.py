"""The srvsvc source (MS-SRVS NetrSessionEnum over impacket) against real smbd sandboxes.

Two sandboxes on 127.0.0.1 stand in for two hosts; both have the same administrator "admin"
(member of a group mapped to BUILTIN\\Administrators, which Samba requires) and users alice,
bob and carol. Samba answers NetrSessionEnum at levels 0 and 1 only, and to administrators
only: the source's fall-back from level 502 is exercised against it for real.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator

import pytest
from impacket.dcerpc.v5 import rpcrt as impacket_rpcrt
from impacket.dcerpc.v5 import srvs as impacket_srvs
from smbprotocol import open as smb_open
from smbprotocol.connection import Connection
from smbprotocol.exceptions import NoMoreFiles
from smbprotocol.file_info import FileInformationClass
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

import serversession
from conftest import REPO, run_cli, wait_for
from serversession.demo import Client
from serversession.errors import AccessDenied
from serversession.sandbox import Sandbox, free_port
from serversession.sources import open_source, read_sessions, read_snapshot
from serversession.sources.base import CONNECTIONS, OPENS, SHARES
from serversession.sources.multi import MultiSource
from serversession.sources.srvsvc import PartReader

ADMIN_PASSWORD = "Adm1n-Sandbox-pw"


def start_box(**options: str) -> Sandbox:
    directory = tempfile.mkdtemp(prefix="serversession-srvsvc-")
    box = Sandbox(directory, free_port(), users={"admin": ADMIN_PASSWORD}, options=dict(options))
    box.start(users=("alice", "bob", "carol"))
    return box


def remove_box(box: Sandbox) -> None:
    box.stop()
    shutil.rmtree(box.directory, ignore_errors=True)


@pytest.fixture(scope="module")
def boxes() -> Iterator[list[Sandbox]]:
    """Two sandbox Sambas: two hosts."""
    started = [start_box(), start_box()]
    yield started
    for box in started:
        remove_box(box)


@pytest.fixture(scope="module")
def password_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("srvsvc") / "admin.pw"
    path.write_text(ADMIN_PASSWORD + "\n")
    return str(path)


@pytest.fixture
def clients(boxes) -> Iterator[list[Client]]:
    """SMB sessions opened by a test, closed (and gone from smbd) when it ends."""
    opened: list[Client] = []
    yield opened
    for client in opened:
        client.close()
    for box in boxes:
        wait_for(lambda box=box: not local_keys(box, exclude=()), timeout=15)


def host(box: Sandbox) -> str:
    return f"127.0.0.1:{box.port}"


def label(box: Sandbox) -> str:
    return f"127.0.0.1@{box.port}"


def local_keys(box: Sandbox, exclude: tuple[str, ...] = ("admin",)) -> set[tuple[str, str]]:
    """(ComputerName, UserName) of the box's sessions, read locally by the Samba source."""
    found = serversession.sessions(smb_conf=box.conf_path)
    return {(s.ComputerName, s.UserName) for s in found if s.UserName not in exclude}


def remote(*boxes: Sandbox, failures: list | None = None, **options) -> list:
    return serversession.sessions(
        hosts=[host(b) for b in boxes], user="admin", password=ADMIN_PASSWORD, failures=failures, **options
    )


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env={"SERVERSESSION_PASSWORD": "", **(env or {})}, timeout=timeout)


def admin(password_file: str, *boxes: Sandbox) -> list[str]:
    hosts = [arg for box in boxes for arg in ("--host", host(box))]
    return ["--source", "srvsvc", *hosts, "--user", "admin", "--password-file", password_file]


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in result.stderr
    return [line for line in result.stderr.splitlines() if line.startswith("serversession: error:")]


# --- what is read, at the level Samba answers --------------------------------------------------


def test_values_from_level_1(boxes, clients, caplog) -> None:
    box = boxes[0]
    before = time.time()
    alice = Client(box.port, "alice", box.users["alice"])
    clients.append(alice)
    alice.open_files(["one.txt", "two.txt"])
    after = time.time()
    time.sleep(1.2)
    failures: list = []
    with caplog.at_level(logging.WARNING, logger="serversession"):
        found = {s.UserName: s for s in remote(box, failures=failures)}
    now = time.time()
    assert failures == []
    s = found["alice"]
    assert s.server == label(box)
    assert s.path == f'\\\\{label(box)}\\root\\cimv2:Win32_ServerSession.ComputerName="127.0.0.1",UserName="alice"'
    assert s.ComputerName == "127.0.0.1"
    assert s.ResourcesOpened == 2
    assert s.SessionType == 2
    assert int(now - after) - 1 <= s.ActiveTime <= int(now - before) + 1
    assert s.IdleTime == 0  # what Samba's srvsvc answers, whatever the truth
    assert s.ClientType is None and s.TransportName is None  # level 1 has neither: not invented
    assert "NetrSessionEnum level 1" in s.Description
    assert "admin" in found  # the query's own session is a session too
    assert "level 502 not supported; level 1 answered: ClientType, TransportName unknown" in caplog.text
    local = {x.UserName: x for x in serversession.sessions(smb_conf=box.conf_path)}["alice"]
    assert abs(local.ActiveTime - s.ActiveTime) <= 1
    assert local.ResourcesOpened == s.ResourcesOpened


def test_guest_session_is_guest_type(boxes, clients) -> None:
    box = boxes[0]
    clients.append(Client(box.port, "nosuchuser", "whatever", guest=True))  # "map to guest = bad user"
    guest = wait_for(lambda: [s for s in remote(box) if s.UserName == "nobody"])[0]
    assert guest.SessionType == 0


def test_same_sessions_as_the_samba_source(boxes, clients) -> None:
    box = boxes[0]
    for user in ("alice", "bob", "carol", "bob"):
        clients.append(Client(box.port, user, box.users[user]))
    ours = {(s.ComputerName, s.UserName) for s in remote(box) if s.UserName != "admin"}
    assert ours == local_keys(box) == {("127.0.0.1", u) for u in ("alice", "bob", "carol")}
    records = read_sessions(open_source("srvsvc", hosts=[host(box)], user="admin", password=ADMIN_PASSWORD))
    assert sum(1 for r in records if r.user_name == "bob") == 2  # two sessions, one instance


def test_many_sessions(boxes) -> None:
    """300 sessions (each with a tree connect, as real clients have) come back complete."""
    box = boxes[1]
    connections = []
    try:
        for _ in range(3):
            connection = Connection(uuid.uuid4(), "127.0.0.1", box.port, require_signing=True)
            connection.connect(timeout=30)
            connections.append(connection)
            for _ in range(100):
                session = Session(connection, "carol", box.users["carol"], require_encryption=False)
                session.connect()
                TreeConnect(session, "\\\\127.0.0.1\\IPC$").connect()
        records = read_sessions(open_source("srvsvc", hosts=[host(box)], user="admin", password=ADMIN_PASSWORD))
        assert sum(1 for r in records if r.user_name == "carol") == 300
        (carol,) = [s for s in remote(box) if s.UserName == "carol"]
        assert carol.Description.startswith("300 sessions of user carol")
    finally:
        for connection in connections:
            connection.disconnect(close=True)
    wait_for(lambda: not local_keys(box), timeout=30)


# --- the command: formats name the server -------------------------------------------------------


def test_list_formats_name_the_server(boxes, clients, password_file) -> None:
    box = boxes[0]
    clients.append(Client(box.port, "alice", box.users["alice"]))
    result = cli("list", "--format", "json", *admin(password_file, box))
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {r["__SERVER"] for r in rows} == {label(box)}
    assert next(iter(rows[0])) == "__SERVER"
    assert {r["UserName"] for r in rows} == {"alice", "admin"}
    assert "level 1 answered" in result.stderr and error_lines(result) == []

    table = cli("list", *admin(password_file, box))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["Server", "Computer", "User"]
    assert next(line for line in lines if " alice " in line).split()[:2] == [label(box), "127.0.0.1"]

    rows_csv = list(csv.DictReader(io.StringIO(cli("list", "--format", "csv", *admin(password_file, box)).stdout)))
    assert {r["__SERVER"] for r in rows_csv} == {label(box)}

    local = cli("list", "--format", "json", "--smb-conf", box.conf_path)
    assert local.returncode == 0, local.stderr
    (row,) = json.loads(local.stdout)
    assert "__SERVER" not in row and "Server" not in cli("list", "--smb-conf", box.conf_path).stdout


@pytest.mark.parametrize("fmt", ["mof", "xml"])
def test_list_mof_and_xml(boxes, password_file, fmt) -> None:
    result = cli("list", "--format", fmt, *admin(password_file, boxes[0]))
    assert result.returncode == 0, result.stderr
    assert 'UserName = "admin"' in result.stdout if fmt == "mof" else label(boxes[0]) in result.stdout


def test_query_and_get_over_srvsvc(boxes, clients, password_file) -> None:
    box = boxes[0]
    clients.append(Client(box.port, "bob", box.users["bob"]))
    wql = "SELECT UserName, ResourcesOpened FROM Win32_ServerSession WHERE UserName = 'bob'"
    result = cli("query", wql, "--format", "json", *admin(password_file, box))
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert row["UserName"] == "bob" and row["__SERVER"] == label(box)
    path = f'\\\\{label(box)}\\root\\cimv2:Win32_ServerSession.ComputerName="127.0.0.1",UserName="bob"'
    got = cli("get", path, "--format", "json", *admin(password_file, box))
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["__PATH"] == path


# --- several hosts -------------------------------------------------------------------------------


def test_several_hosts(boxes, clients, password_file) -> None:
    first, second = boxes
    clients.append(Client(first.port, "alice", first.users["alice"]))
    clients.append(Client(second.port, "bob", second.users["bob"]))
    result = cli("list", "--format", "json", *admin(password_file, first, second))
    assert result.returncode == 0, result.stderr
    by_server: dict[str, set[str]] = {}
    for row in json.loads(result.stdout):
        by_server.setdefault(row["__SERVER"], set()).add(row["UserName"])
    assert by_server == {label(first): {"alice", "admin"}, label(second): {"bob", "admin"}}
    table = cli("list", *admin(password_file, first, second)).stdout
    assert {line.split()[0] for line in table.splitlines()[2:-1]} == {label(first), label(second)}


def test_hosts_file(boxes, clients, tmp_path, password_file) -> None:
    first, second = boxes
    clients.append(Client(second.port, "carol", second.users["carol"]))
    hosts = tmp_path / "hosts"
    hosts.write_text(f"# the sandboxes\n{host(first)}\n\n  {host(second)}   # the second\n{host(first)}\n")
    result = cli(
        "list", "--format", "json", "--hosts-file", str(hosts), "--user", "admin", "--password-file", password_file
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {r["__SERVER"] for r in rows} == {label(first), label(second)}
    assert ("carol", label(second)) in {(r["UserName"], r["__SERVER"]) for r in rows}
    missing = cli("list", "--hosts-file", str(tmp_path / "nope"), "--user", "admin", "--password-file", password_file)
    assert missing.returncode == 1 and error_lines(missing) == [
        f"serversession: error: hosts file {tmp_path / 'nope'} not found"
    ]


def test_one_host_down(boxes, clients, password_file) -> None:
    first = boxes[0]
    clients.append(Client(first.port, "alice", first.users["alice"]))
    stopped = start_box()
    remove_box(stopped)  # a host that was up and is now down
    result = cli("list", "--format", "json", *admin(password_file, stopped, first))
    assert result.returncode == 0, result.stderr
    assert error_lines(result) == [
        f"serversession: error: {label(stopped)}: cannot connect to port {stopped.port}: connection refused"
    ]
    assert {(r["__SERVER"], r["UserName"]) for r in json.loads(result.stdout)} >= {(label(first), "alice")}
    failures: list = []
    found = remote(stopped, first, failures=failures)
    assert [f.host for f in failures] == [label(stopped)] and "connection refused" in str(failures[0].error)
    assert {s.server for s in found} == {label(first)}


def test_every_host_down(password_file) -> None:
    ports = [free_port(), free_port()]
    args = [arg for port in ports for arg in ("--host", f"127.0.0.1:{port}")]
    result = cli("list", "--user", "admin", "--password-file", password_file, *args)
    assert result.returncode == 1 and result.stdout == ""
    assert error_lines(result) == [
        *(f"serversession: error: 127.0.0.1@{p}: cannot connect to port {p}: connection refused" for p in ports),
        "serversession: error: all 2 hosts failed",
    ]


def test_silent_host_times_out(boxes, password_file) -> None:
    """A host that accepts the connection and never answers: a time-out, and the others still answer."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        start = time.monotonic()
        alone = cli(
            "list", "--timeout", "1", "--host", f"127.0.0.1:{port}", "--user", "admin", "--password-file", password_file
        )
        took = time.monotonic() - start
        assert alone.returncode == 1 and took < 10
        assert error_lines(alone) == [f"serversession: error: 127.0.0.1@{port}: did not answer within 1 s"]
        both = cli("list", "--timeout", "2", "--host", f"127.0.0.1:{port}", *admin(password_file, boxes[0])[2:])
        assert both.returncode == 0, both.stderr
        assert error_lines(both) == [f"serversession: error: 127.0.0.1@{port}: did not answer within 2 s"]
        assert label(boxes[0]) in both.stdout


class StuckSource:
    """A stand-in host whose read hangs where no time-out reaches it (as a read blocked in C
    would): no real server can be made to do that on demand."""

    description = "a stuck host"

    def sessions(self, timeout: float = 10) -> list:
        time.sleep(3600)
        return []


def test_processes_and_threads_read_the_same(boxes, clients) -> None:
    first, second = boxes
    clients.append(Client(first.port, "alice", first.users["alice"]))
    clients.append(Client(second.port, "bob", second.users["bob"]))
    hosts = open_source("srvsvc", hosts=[host(first), host(second)], user="admin", password=ADMIN_PASSWORD)
    read = {}
    for processes in (1, 2):
        multi = MultiSource(hosts.sources, processes=processes)
        assert multi.processes == processes
        read[processes] = {(r.server, r.computer_name, r.user_name) for r in multi.sessions(30)}
    assert read[1] == read[2]
    assert {(label(first), "alice"), (label(second), "bob")} <= {(server, user) for server, _, user in read[2]}


@pytest.mark.parametrize("processes", [1, 2])
def test_a_stuck_host_is_given_up_and_the_others_kept(boxes, processes) -> None:
    first, second = boxes
    hosts = open_source("srvsvc", hosts=[host(first), host(second)], user="admin", password=ADMIN_PASSWORD).sources
    # with two processes, the stuck host shares its process with the second box
    multi = MultiSource(
        {"stuck": StuckSource(), label(first): hosts[label(first)], label(second): hosts[label(second)]},
        processes=processes,
    )
    start = time.monotonic()
    found = multi.sessions(timeout=2)
    assert time.monotonic() - start < multi.time_limit(2) + 1
    assert {r.server for r in found} == {label(first), label(second)}
    assert [(f.host, str(f.error)) for f in multi.failures] == [("stuck", "stuck: did not answer within 2 s")]


class DyingSource:
    """A stand-in host whose read kills the process reading it (as a crash in a C library would)."""

    description = "a host that kills its reader"

    def sessions(self, timeout: float = 10) -> list:
        os._exit(9)


def test_a_reader_process_that_dies_fails_its_hosts_only(boxes) -> None:
    first, second = boxes
    hosts = open_source("srvsvc", hosts=[host(first), host(second)], user="admin", password=ADMIN_PASSWORD).sources
    # two processes: "dying" and the second box share one, the first box has the other
    multi = MultiSource(
        {"dying": DyingSource(), label(first): hosts[label(first)], label(second): hosts[label(second)]}, processes=2
    )
    found = multi.sessions(timeout=10)
    assert {r.server for r in found} == {label(first)}
    assert {f.host: str(f.error) for f in multi.failures} == {
        name: f"{name}: the process reading it failed: it ended without an answer" for name in ("dying", label(second))
    }


# --- errors a user understands ------------------------------------------------------------------


def test_normal_user_is_refused_at_502_then_at_10(boxes, tmp_path) -> None:
    box = boxes[0]
    pw = tmp_path / "alice.pw"
    pw.write_text(box.users["alice"])
    result = cli("list", "--host", host(box), "--user", "alice", "--password-file", str(pw))
    assert result.returncode == 1
    assert error_lines(result) == [
        f"serversession: error: {label(box)}: access denied to the session list (level 502 refused, "
        "level 10 refused); alice must be a member of Administrators or Server Operators there"
    ]
    with pytest.raises(serversession.errors.AccessDenied):
        serversession.sessions(hosts=[host(box)], user="SANDBOX\\alice", password=box.users["alice"])


def test_wrong_password(boxes, tmp_path) -> None:
    pw = tmp_path / "wrong.pw"
    pw.write_text("not-the-password\n")
    result = cli("list", "--host", host(boxes[0]), "--user", "SANDBOX\\admin", "--password-file", str(pw))
    assert result.returncode == 1
    assert error_lines(result) == [
        f"serversession: error: {label(boxes[0])}: log-on as SANDBOX\\admin failed: wrong user name or password"
    ]


def test_unreachable_port(password_file) -> None:
    port = free_port()
    result = cli("list", "--host", f"127.0.0.1:{port}", "--user", "admin", "--password-file", password_file)
    assert result.returncode == 1
    assert error_lines(result) == [
        f"serversession: error: 127.0.0.1@{port}: cannot connect to port {port}: connection refused"
    ]


def test_password_file_and_environment(boxes, tmp_path, password_file) -> None:
    box_host = host(boxes[0])
    missing = cli("list", "--host", box_host, "--user", "admin", "--password-file", str(tmp_path / "none"))
    assert missing.returncode == 1
    assert error_lines(missing) == [f"serversession: error: password file {tmp_path / 'none'} not found"]
    unreadable = tmp_path / "dir.pw"
    unreadable.mkdir()
    assert (
        "is a directory"
        in cli("list", "--host", box_host, "--user", "admin", "--password-file", str(unreadable)).stderr
    )
    empty = tmp_path / "empty.pw"
    empty.write_text("\n")
    assert cli("list", "--host", box_host, "--user", "admin", "--password-file", str(empty)).returncode == 2
    from_env = cli("list", "--host", box_host, "--user", "admin", env={"SERVERSESSION_PASSWORD": ADMIN_PASSWORD})
    assert from_env.returncode == 0, from_env.stderr
    assert "admin" in from_env.stdout
    no_password = cli("list", "--host", box_host, "--user", "admin")
    assert no_password.returncode == 2 and "no password for admin" in no_password.stderr


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--source", "srvsvc"], "needs at least one host"),
        (["--source", "samba", "--host", "127.0.0.1"], "hosts and credentials are for the srvsvc source"),
        (["--host", "127.0.0.1:99999"], "is not a TCP port"),
        (["--host", "[::1"], "is not HOST, HOST:PORT or [IPV6]:PORT"),
        (["--host", "127.0.0.1", "--user", "SANDBOX\\"], "is not USER, DOMAIN\\USER"),
    ],
)
def test_invalid_input_exits_2(args, phrase) -> None:
    result = cli("list", *args, env={"SERVERSESSION_PASSWORD": "x"})
    assert result.returncode == 2, result.stderr
    assert phrase in result.stderr and len(result.stderr.splitlines()) == 1


def test_srvsvc_not_available() -> None:
    """A Samba that does not start its RPC services (samba-dcerpcd) has no \\pipe\\srvsvc."""
    box = start_box(**{"rpc start on demand helpers": "no"})
    try:
        failure = cli("list", "--host", host(box), "--user", "admin", env={"SERVERSESSION_PASSWORD": ADMIN_PASSWORD})
    finally:
        remove_box(box)
    assert failure.returncode == 1
    assert error_lines(failure) == [
        f"serversession: error: {label(box)}: srvsvc is not available: the server has no \\pipe\\srvsvc "
        "(STATUS_OBJECT_NAME_NOT_FOUND)"
    ]


def test_without_impacket_says_what_to_install() -> None:
    """Python without site-packages (-S) has no impacket: the source says which extra to install."""
    code = textwrap.dedent("""
        from serversession.errors import SourceUnavailable
        from serversession.sources import open_source, read_sessions
        try:
            import impacket
        except ImportError:
            pass
        else:
            raise SystemExit("impacket is importable without site-packages")
        try:
            read_sessions(open_source("srvsvc", hosts=["127.0.0.1:1"], user="admin", password="x"))
        except SourceUnavailable as exc:
            print(exc)
    """)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": os.path.join(REPO, "src")}
    result = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "the srvsvc source needs impacket: pip install 'serversession[remote]'"


# --- serve in front of several hosts ------------------------------------------------------------


def test_serve_in_front_of_several_hosts(boxes, clients, password_file) -> None:
    import pywbem

    from test_server import start_server, stop, wait_listening

    first, second = boxes
    clients.append(Client(second.port, "carol", second.users["carol"]))
    port = free_port()
    proc = start_server(
        [
            "--port",
            str(port),
            "--no-auth",
            "--host",
            host(first),
            "--host",
            host(second),
            "--user",
            "admin",
            "--password-file",
            password_file,
        ],
        {"SERVERSESSION_PASSWORD": ""},
    )
    try:
        wait_listening(port, proc)
        conn = pywbem.WBEMConnection(f"http://127.0.0.1:{port}", default_namespace="root/cimv2", timeout=30)
        found = conn.ExecQuery("WQL", "SELECT * FROM Win32_ServerSession")  # paths with their host
        assert {(i.path.host, i["UserName"]) for i in found} >= {
            (label(first), "admin"),
            (label(second), "admin"),
            (label(second), "carol"),
        }
    finally:
        stop(proc)


# --- the class family: shares, tree connects and open files in the same read ------------------

ALL_PARTS = frozenset({SHARES, CONNECTIONS, OPENS})
HOSTILE_SHARE = "ünï cödé; 'q' & <x>"
HOSTILE_REMARK = "\x1b[2J\x07 <b>&amp; ünï %U"  # Samba substitutes %U with the caller's name


@pytest.fixture(scope="module")
def family() -> Iterator[Sandbox]:
    """A sandbox with more shares than the default one: a limited one, a hidden ($) one on the
    same path as 'share', one nested in 'share', one not browseable, and one whose name, remark
    and path hold what a display or a parser must survive."""
    box = start_box()
    d = box.directory
    for sub in ("data", "dätä dir", "share/sub"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
        os.chmod(os.path.join(d, sub), 0o1777)
    with open(box.conf_path, "a", encoding="utf-8") as conf:  # rpcd reloads it at each NetrShareEnum
        conf.write(
            f"[data]\n  path = {d}/data\n  comment = the data\n  max connections = 5\n"
            f"[hidden$]\n  path = {d}/share\n"
            f"[nested]\n  path = {d}/share/sub\n"
            f"[nob]\n  path = {d}/data\n  browseable = no\n"
            f"[{HOSTILE_SHARE}]\n  path = {d}/dätä dir\n  comment = {HOSTILE_REMARK}\n"
        )
    yield box
    remove_box(box)


def snapshot_of(box: Sandbox, parts: frozenset[str] = ALL_PARTS, user: str = "admin", password: str = ADMIN_PASSWORD):
    return read_snapshot(open_source("srvsvc", hosts=[host(box)], user=user, password=password), 30, parts)


def rpcclient(box: Sandbox, command: str) -> str:
    """What Samba's own rpcclient answers, as the sandbox's admin."""
    result = subprocess.run(
        ["rpcclient", "-U", f"admin%{ADMIN_PASSWORD}", "-p", str(box.port), "127.0.0.1", "-c", command],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def smbstatus_opens(box: Sandbox) -> dict[int, tuple[str, int]]:
    """``smbstatus -L --json``: file id as Samba's srvsvc forms it (pid << 16 | share_file_id)
    -> (path, uid) of every open."""
    result = subprocess.run(
        ["smbstatus", "-L", "--json", "-s", box.conf_path],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=box.environment(),
    )
    assert result.returncode == 0, result.stderr
    found = {}
    for name, share_file in json.loads(result.stdout).get("open_files", {}).items():
        for entry in share_file["opens"].values():
            file_id = (int(entry["server_id"]["pid"]) << 16 | int(entry["share_file_id"])) & 0xFFFFFFFF
            found[file_id] = (name, entry["uid"])
    return found


def test_shares_as_smb_conf_and_rpcclient_say(family, caplog) -> None:
    d = family.directory
    with caplog.at_level(logging.WARNING, logger="serversession"):
        snap = snapshot_of(family, frozenset({SHARES}))
    assert snap.connections is None and snap.opens is None  # not asked for
    shares = {s.name: s for s in snap.shares}
    paths = {
        "share": f"{d}/share",
        "data": f"{d}/data",
        "hidden$": f"{d}/share",
        "nested": f"{d}/share/sub",
        HOSTILE_SHARE: f"{d}/dätä dir",
        "IPC$": None,  # Samba sends its temporary directory; IPC$ has no path
    }
    assert {name: s.path for name, s in shares.items()} == paths  # 'nob' (browseable = no): not listed
    assert {s.server for s in shares.values()} == {label(family)}
    assert {name: s.share_type for name, s in shares.items()} == {**dict.fromkeys(paths, 0), "IPC$": 0x80000003}
    assert {name: s.max_uses for name, s in shares.items()} == {**dict.fromkeys(paths), "data": 5}
    assert shares["data"].remark == "the data" and shares["share"].remark == ""
    assert shares[HOSTILE_SHARE].remark == HOSTILE_REMARK.replace("%U", "admin")  # control characters kept as sent
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        "level 502 not supported; level 1 answered: ClientType, TransportName unknown"
    ]  # nothing else unknown
    # rpcclient: the same shares, with the paths as Samba writes them ("C:" + path, "/" -> "\\")
    listed = {}
    for block in rpcclient(family, "netshareenumall 2").split("netname: ")[1:]:
        name, rest = block.split("\n", 1)
        fields = dict(line.lstrip("\t").split(":\t", 1) for line in rest.splitlines() if ":\t" in line)
        listed[name] = (fields["remark"], fields["path"])
    assert listed == {name: (s.remark, "C:" + (s.path or "/tmp").replace("/", "\\")) for name, s in shares.items()}


def test_open_files_as_smbstatus_and_rpcclient_say(family, caplog) -> None:
    opened = [Client(family.port, "alice", family.users["alice"]), Client(family.port, "bob", family.users["bob"])]
    try:
        opened[0].open_files(["one.txt", "two.txt", "one.txt"])  # one.txt twice: two handles
        opened[1].open_files(["bob.txt"])
        with caplog.at_level(logging.WARNING, logger="serversession"):
            snap = snapshot_of(family, frozenset({OPENS}))
        truth = smbstatus_opens(family)
        enumerated = rpcclient(family, "netfileenum 3").splitlines()
    finally:
        for client in opened:
            client.close()
    share = family.share_path
    names = {10001: "alice", 10002: "bob"}  # the sandbox's uids (sandbox.py: users from 10001)
    assert {(o.file_id, o.path, o.user_name) for o in snap.opens} == {
        (file_id, path, names[uid]) for file_id, (path, uid) in truth.items()
    }
    assert sorted(o.path for o in snap.opens) == sorted(
        [f"{share}/one.txt", f"{share}/two.txt", f"{share}/bob.txt", f"{share}/one.txt"]
    )  # two handles of one.txt, two records; the query's own srvsvc pipe is not listed by Samba
    assert sorted(enumerated) == sorted("C:" + o.path.replace("/", "\\") for o in snap.opens)
    for record in snap.opens:
        assert record.server == label(family) and record.computer_name is None
        assert record.access_mask is None and record.locks is None  # Samba: 2 bits of the mask, locks per file
        assert record.session_id is record.connection_id is record.share_name is record.share_relative_path is None
    assert len({o.file_id for o in snap.opens}) == 4
    assert "only the read and write bits of the access mask (Samba): Permissions unknown" in caplog.text
    assert "counts byte-range locks per file, not per handle (Samba): Locks unknown" in caplog.text


def test_samba_connection_placeholders_are_not_reported(family, caplog) -> None:
    alice = Client(family.port, "alice", family.users["alice"])
    try:
        alice.open_files(["conn.txt"])
        source = open_source("srvsvc", hosts=[host(family)], user="admin", password=ADMIN_PASSWORD)
        (one,) = source.sources.values()
        with one.pipe() as dce:  # what the server answers, asked directly: its placeholders
            raw = impacket_srvs.hNetrConnectionEnum(dce, "share\x00", 1)["InfoStruct"]["ConnectInfo"]["Level1"]
        with caplog.at_level(logging.WARNING, logger="serversession"):
            snap = read_snapshot(source, 30, ALL_PARTS)
    finally:
        alice.close()
    assert [(e["coni1_username"], e["coni1_netname"]) for e in raw["Buffer"]] == [("dummy_user\x00", "IPC$\x00")]
    assert snap.connections is None
    assert "dummy_user" not in repr(snap)
    assert caplog.text.count("NetrConnectionEnum answers placeholders") == 1
    assert "as Samba does): connections unknown" in caplog.text
    assert one.server_type is not None and one.server_type & 0x800  # SV_TYPE_SERVER_UNIX: Samba
    assert {s.name for s in snap.shares} >= {"share", "IPC$"}  # the rest of the snapshot is there
    assert [o.path for o in snap.opens] == [f"{family.share_path}/conn.txt"]
    assert {s.user_name for s in snap.sessions} == {"admin", "alice"}


def test_a_non_administrator(family, caplog) -> None:
    password = family.users["alice"]
    with pytest.raises(AccessDenied) as refused:
        snapshot_of(family, ALL_PARTS, user="alice", password=password)
    assert str(refused.value) == (
        f"{label(family)}: access denied to the session list (level 502 refused, level 10 refused); "
        "alice must be a member of Administrators or Server Operators there"
    )
    # Samba refuses sessions, tree connects and open files alike; each part on its own, over a
    # binding of alice's: what she may read comes back, the rest is None with the right she lacks.
    (source,) = open_source("srvsvc", hosts=[host(family)], user="alice", password=password).sources.values()
    with caplog.at_level(logging.WARNING, logger="serversession"), source.pipe() as dce:
        snap = PartReader(source, dce, impacket_rpcrt, impacket_srvs, None).read((), ALL_PARTS)
    assert snap.connections is None and snap.opens is None
    assert {s.name: s.path for s in snap.shares}["data"] == f"{family.directory}/data"  # Samba: level 2 for all
    for what, unknown in (
        ("the tree connects (NetrConnectionEnum)", "connections"),
        ("the open files (NetrFileEnum)", "open files"),
    ):
        assert (
            f"{label(family)}: access denied to {what}: {unknown} unknown; "
            "alice must be a member of Administrators or Server Operators there"
        ) in caplog.text


def open_directory(client: Client, name: str) -> object:
    handle = smb_open.Open(client.tree, name)
    handle.create(
        smb_open.ImpersonationLevel.Impersonation,
        smb_open.DirectoryAccessMask.FILE_LIST_DIRECTORY,
        smb_open.FileAttributes.FILE_ATTRIBUTE_DIRECTORY,
        smb_open.ShareAccess.FILE_SHARE_READ | smb_open.ShareAccess.FILE_SHARE_WRITE,
        smb_open.CreateDisposition.FILE_OPEN,
        smb_open.CreateOptions.FILE_DIRECTORY_FILE,
    )
    return handle


def held_file_ids(box: Sandbox) -> dict[str, tuple[int, int]]:
    """File name -> (smbd pid, share_file_id) of every open (smbstatus -L)."""
    result = subprocess.run(
        ["smbstatus", "-L", "--json", "-s", box.conf_path],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=box.environment(),
    )
    assert result.returncode == 0, result.stderr
    return {
        share_file["filename"]: (int(entry["server_id"]["pid"]), int(entry["share_file_id"]))
        for share_file in json.loads(result.stdout).get("open_files", {}).values()
        for entry in share_file["opens"].values()
    }


def test_list_the_class_family_over_srvsvc(family, password_file) -> None:
    """The command end to end: each class from the parts its provider asks the source for."""
    alice = Client(family.port, "alice", family.users["alice"])
    try:
        alice.open_files(["cli.txt"])
        shares = cli("list", "Win32_Share", "--format", "json", *admin(password_file, family))
        files = cli("list", "MSFT_SmbOpenFile", "--format", "json", *admin(password_file, family))
        connections = cli("list", "Win32_ServerConnection", "--format", "json", *admin(password_file, family))
    finally:
        alice.close()
    for result in (shares, files, connections):
        assert result.returncode == 0, result.stderr
        assert error_lines(result) == []
    by_name = {row["Name"]: row for row in json.loads(shares.stdout)}
    assert by_name["data"]["Path"] == f"{family.directory}/data" and by_name["data"]["MaximumAllowed"] == 5
    assert by_name[HOSTILE_SHARE]["Description"] == HOSTILE_REMARK.replace("%U", "admin")
    assert {row["__SERVER"] for row in by_name.values()} == {label(family)}
    (opened,) = json.loads(files.stdout)
    assert (opened["Path"], opened["ClientUserName"], opened["Permissions"], opened["Locks"]) == (
        f"{family.share_path}/cli.txt",
        "alice",
        None,
        None,
    )
    assert json.loads(connections.stdout) == [] and "dummy_user" not in connections.stdout
    assert "NetrConnectionEnum answers placeholders" in connections.stderr


def list_directory(client: Client, name: str) -> None:
    listing = open_directory(client, name)
    with contextlib.suppress(NoMoreFiles):
        while True:
            listing.query_directory("*", FileInformationClass.FILE_NAMES_INFORMATION, max_output=65536)
    listing.close()


def test_colliding_file_ids_are_left_out(family, caplog) -> None:
    """Samba's fi3_id is (smbd pid << 16 | share_file_id) in 32 bits: a share_file_id of 65536 or
    more runs into the pid's bits. smbd counts share_file_id up for every file object it makes:
    one per entry of a directory listing, one per open of a nested directory (measured, 4.17), four
    per new file; so listings and opens counted to the exact number give a real second open with
    the id of the first: its share_file_id is the first's plus the pid's lowest set bit x 65536."""
    top = os.path.join(family.directory, "share", "ids")
    sizes = {"big": 63_000, "mid": 4_000, "small": 250}  # listing one adds about 1.012 x its size
    for name, size in sizes.items():
        os.makedirs(os.path.join(top, name))
        for number in range(size):
            open(os.path.join(top, name, f"{number:05d}"), "w").close()
    os.makedirs(os.path.join(top, "a", "b"))
    alice = None
    try:
        for _ in range(20):  # a pid whose lowest set bit is small: few listings to reach the target
            alice = Client(family.port, "alice", family.users["alice"])
            alice.open_files(["first.txt"])
            pid, first = held_file_ids(family)["first.txt"]
            if pid & -pid <= 4:
                break
            alice.close()
        else:
            pytest.fail("no smbd process with a pid whose lowest set bit is at most 4 in 20 connections")
        target = first + (pid & -pid) * 65_536
        probes = 0
        while True:
            alice.open_files([f"probe{probes}.txt"])  # the next new file's id is 4 more than this one's
            now = held_file_ids(family)[f"probe{probes}.txt"][1]
            probes += 1
            if now == target:
                break
            assert now < target and probes < 80, (now, target)
            gap = target - now - 4
            big = next((name for name, size in sizes.items() if gap > size * 1.05 + 50), None)
            if big is not None:
                list_directory(alice, f"ids\\{big}")
                continue
            for _ in range(gap):
                open_directory(alice, "ids\\a\\b").close()
        with caplog.at_level(logging.WARNING, logger="serversession"):
            snap = snapshot_of(family, frozenset({OPENS}))
        enumerated = rpcclient(family, "netfileenum 3").splitlines()
    finally:
        if alice is not None:
            alice.close()
        shutil.rmtree(top, ignore_errors=True)
    assert len(enumerated) == probes + 1  # first.txt and every probe, as Samba lists them
    assert pid << 16 | first not in {o.file_id for o in snap.opens}
    kept = sorted(o.path.rsplit("/", 1)[1] for o in snap.opens)
    assert kept == sorted(f"probe{n}.txt" for n in range(probes - 1))  # first.txt and the last probe left out
    assert len({o.file_id for o in snap.opens}) == probes - 1
    assert "NetrFileEnum gave 2 open files whose id another open file has too" in caplog.text


@pytest.mark.parametrize("processes", [1, 2])
def test_several_hosts_in_one_snapshot(boxes, clients, processes) -> None:
    first, second = boxes
    clients.append(Client(first.port, "alice", first.users["alice"]))
    clients.append(Client(second.port, "bob", second.users["bob"]))
    clients[0].open_files(["a.txt"])
    clients[1].open_files(["b.txt"])
    down = free_port()
    hosts = open_source(
        "srvsvc", hosts=[host(first), f"127.0.0.1:{down}", host(second)], user="admin", password=ADMIN_PASSWORD
    )
    multi = MultiSource(hosts.sources, processes=processes)
    snap = multi.snapshot(30, ALL_PARTS)
    assert [f.host for f in multi.failures] == [f"127.0.0.1@{down}"]
    assert {(s.server, s.name) for s in snap.shares} == {
        (label(box), name) for box in boxes for name in ("share", "IPC$")
    }
    assert {(o.server, o.path, o.user_name) for o in snap.opens} == {
        (label(first), f"{first.share_path}/a.txt", "alice"),
        (label(second), f"{second.share_path}/b.txt", "bob"),
    }
    assert snap.connections is None  # both are Samba
    assert {(s.server, s.user_name) for s in snap.sessions} >= {(label(first), "alice"), (label(second), "bob")}
    only_shares = multi.snapshot(30, frozenset({SHARES}))
    assert only_shares.opens is None and only_shares.connections is None and len(only_shares.shares) == 4


# --- ERROR_MORE_DATA: a stand-in, since no server here sends it ---------------------------------


class PagingServer:
    """A stand-in for a Windows server's NetrSessionEnum that pages its answer with ERROR_MORE_DATA
    and resume handles. Samba returns every entry at once and Windows cannot run here, so the
    loop is exercised against this object in place of impacket's ``srvs`` module."""

    NULL = None
    DCERPCSessionError = impacket_srvs.DCERPCSessionError

    def __init__(self, entries: list[dict], page: int, lose_resume: bool = False) -> None:
        self.entries, self.page, self.lose_resume = entries, page, lose_resume
        self.resumes: list[int] = []

    def hNetrSessionEnum(self, dce, client, user, level, resume, preferred):  # impacket's name
        self.resumes.append(resume)
        chunk = self.entries[resume : resume + self.page]
        following = resume + len(chunk)
        answer = {
            "InfoStruct": {"SessionInfo": {f"Level{level}": {"Buffer": chunk}}},
            "ResumeHandle": 0 if self.lose_resume else following,
        }
        if following < len(self.entries):
            raise self.DCERPCSessionError(error_code=234, packet=answer)  # ERROR_MORE_DATA
        return answer


def test_error_more_data_is_followed_with_the_resume_handle(caplog) -> None:
    from serversession.sources.srvsvc import all_entries

    def enumerate_all(server: PagingServer) -> list:
        return all_entries(
            lambda resume: server.hNetrSessionEnum(None, None, None, 1, resume, 0), ("SessionInfo", "Level1"), server
        )

    entries = [{"sesi1_cname": f"\\\\10.0.0.{n}\x00"} for n in range(2500)]
    server = PagingServer(entries, page=1000)
    assert enumerate_all(server) == entries
    assert server.resumes == [0, 1000, 2000]
    # a server that says "more" without a resume handle: what came is kept, no endless loop
    stuck = PagingServer(entries, page=1000, lose_resume=True)
    with caplog.at_level(logging.WARNING, logger="serversession"):
        assert enumerate_all(stuck) == entries[:1000]
    assert stuck.resumes == [0]
    assert "gave no new resume handle" in caplog.text
