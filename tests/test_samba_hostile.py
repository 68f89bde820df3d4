"""Hostile review of the Samba source: values that come out silently wrong, and false alarms.

Each test names what it shows in its docstring; they are expected to fail until the source is
fixed (none is marked xfail). Every sandbox here is this module's own: some tests damage its
databases, kill its smbd children or reuse their pids.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import spnego
from smbprotocol import open as smbopen
from smbprotocol.connection import Capabilities, Connection
from smbprotocol.exceptions import MoreProcessingRequired
from smbprotocol.header import NtStatus
from smbprotocol.session import Session, SMB2SessionSetupRequest
from smbprotocol.tree import TreeConnect

from conftest import run_cli, wait_for
from serversession.demo import Client
from serversession.errors import SourceDataError
from serversession.sandbox import Sandbox, free_port
from serversession.sources import samba_records as records
from serversession.sources import samba_smbstatus, samba_tdb, tcp_idle
from serversession.sources import smbd_connections as sc
from serversession.sources.samba import REPLAY_CACHE_KEY_SIZE, SambaSource, _import_bindings

pytestmark = pytest.mark.samba

TDB_MUTEX_LOCKING = 0x1000


def _installed_layout() -> records.Layout:
    _import_bindings()
    from samba import version

    layout = records.layout_for_version(version)
    assert layout is not None
    return layout


LAYOUT = _installed_layout()


# --- sandboxes and helpers -------------------------------------------------------------------------


def _start(options: dict[str, str] | None = None) -> Sandbox:
    directory = tempfile.mkdtemp(prefix="serversession-hostile-")
    box = Sandbox(directory, free_port(), options=dict(options or {}))
    box.start(users=("alice", "bob", "carol"))
    return box


def _stop(box: Sandbox) -> None:
    box.stop()
    shutil.rmtree(box.directory, ignore_errors=True)


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    sandbox = _start()
    yield sandbox
    _stop(sandbox)


@pytest.fixture
def fresh_box() -> Iterator[Sandbox]:
    """A sandbox for one test only (its databases are damaged or its smbd children killed)."""
    sandbox = _start()
    yield sandbox
    _stop(sandbox)


@pytest.fixture
def clients(box: Sandbox) -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        client.close()


def _listed(box: Sandbox) -> tuple[list[dict[str, object]], str, int]:
    result = run_cli("list", "--smb-conf", box.conf_path, "--format", "json")
    rows = json.loads(result.stdout) if result.returncode == 0 else []
    return rows, result.stderr, result.returncode


def _client_endpoint(client: Client) -> tcp_idle.Endpoint:
    host, port = client.connection.transport._sock.getsockname()[:2]
    return tcp_idle.normalize_ip(host), port


def _smbd_of(box: Sandbox, client: Client) -> int:
    """The smbd child that serves ``client``'s connection."""
    found = sc.smbd_client_connections(box.pid() or 0)
    assert found is not None
    (connection,) = [c for c in found if c.remote == _client_endpoint(client)]
    return connection.pid


def _open_tdb(box: Sandbox, name: str):
    tdb = _import_bindings()[0]
    return tdb, tdb.Tdb(
        os.path.join(box.directory, "lock", name), 0, TDB_MUTEX_LOCKING | tdb.INCOMPATIBLE_HASH, os.O_RDWR
    )


def _warnings_with(source: SambaSource, phrase: str) -> list[str]:
    return [w for w in source.warnings if phrase in w]


# --- 1. the cross-check's false alarms in normal use ------------------------------------------------


def test_a_connection_the_main_smbd_has_just_accepted_is_not_a_lost_session() -> None:
    """The main smbd accepts each connection and forks the child that serves it; between accept and
    fork (and until the parent closes its copy) the socket belongs to the main smbd, whose age is that
    of the daemon. The cross-check takes that for a connection older than MIN_AGE without a session
    and warns "smbXsrv_session_global.tdb damaged?". Seen live in 28 of 171 `list` runs while 10
    clients connected and disconnected in a loop (every warning named the main smbd's pid)."""
    main = 1000
    local, remote = ("127.0.0.1", 445), ("127.0.0.1", 50000)
    processes = {main: sc.SmbdProcess(main, 1, 3600.0, frozenset({77}), frozenset())}
    sockets = {(local, remote): (0, 77, tcp_idle.TCP_ESTABLISHED)}
    connections = sc.smbd_client_connections(main, {445}, processes, sockets)
    assert sc.check_sessions(connections, []) is None, connections


def test_connection_churn_gives_no_damage_warning(box: Sandbox) -> None:
    """Clients connecting, logging on and leaving in a loop (a busy file server) while the source is
    read: a healthy database must give no "damaged?" warning."""
    stop = threading.Event()
    errors: list[str] = []

    def churn() -> None:
        while not stop.is_set():
            try:
                client = Client(box.port, "alice", box.users["alice"])
                client.close()
            except Exception as exc:
                errors.append(repr(exc))

    workers = [threading.Thread(target=churn) for _ in range(4)]
    for worker in workers:
        worker.start()
    warnings: list[str] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            source = SambaSource(box.conf_path)
            source.sessions()
            warnings += _warnings_with(source, "damaged?")
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert not warnings, (warnings[:3], errors[:3])


def test_a_client_that_logged_off_but_keeps_its_connection_is_named_as_such(box: Sandbox) -> None:
    """SMB2 LOGOFF ends a session, not the TCP connection; clients keep the connection for reuse
    (smbd closes it only after about a minute without a tree connect). Such a connection has no
    session, rightly. From outside it looks like a connection whose session record was lost, so
    the warning names the harmless cause first (decision in the lead's review: no signal tells the
    two apart; the database's own structure is checked separately)."""
    connection = Connection(uuid.uuid4(), "127.0.0.1", box.port, require_signing=True)
    connection.connect(timeout=10)
    try:
        session = Session(connection, "bob", box.users["bob"])
        session.connect()
        tree = TreeConnect(session, "\\\\127.0.0.1\\share")
        tree.connect()
        tree.disconnect()
        session.disconnect()  # LOGOFF; the connection stays
        time.sleep(sc.MIN_AGE + 1)
        source = SambaSource(box.conf_path)
        source.sessions()
        warnings = _warnings_with(source, "no session")
        assert len(warnings) == 1 and warnings[0].startswith("1 of 1 connection to smbd has no session: logged off")
    finally:
        with contextlib.suppress(Exception):
            connection.disconnect(close=True)


def test_a_session_still_authenticating_is_not_a_lost_session(box: Sandbox) -> None:
    """A client in the middle of its logon (NTLM challenge answered, the user still typing a password
    in a credential prompt) has a session record in the database, "in authentication". The source
    skips such records before the cross-check, so after 5 s their connection "has no session in
    its session database (damaged?)" although the record is right there."""
    connection = Connection(uuid.uuid4(), "127.0.0.1", box.port, require_signing=True)
    connection.connect(timeout=10)
    try:
        auth = spnego.client("alice", box.users["alice"], service="cifs", hostname="127.0.0.1")
        request = SMB2SessionSetupRequest()
        request["security_mode"] = connection.client_security_mode
        request["capabilities"] = Capabilities.SMB2_GLOBAL_CAP_DFS
        request["buffer"] = auth.step(connection.gss_negotiate_token)
        sent = connection.send(request, credit_request=64)
        try:
            header = connection.receive(sent)
        except MoreProcessingRequired as more:
            header = more.header
        assert header["status"].get_value() == NtStatus.STATUS_MORE_PROCESSING_REQUIRED
        time.sleep(sc.MIN_AGE + 1)  # the password prompt
        source = SambaSource(box.conf_path)
        source.sessions()
        assert not _warnings_with(source, "damaged?"), source.warnings
    finally:
        with contextlib.suppress(Exception):
            connection.disconnect(close=True)


def test_a_file_polled_open_and_closed_gives_no_warning(box: Sandbox) -> None:
    """A client that opens, reads and closes the same file over and over (a program polling a file,
    Explorer refreshing a folder). Scanned before and after the read, smbd holds the same descriptor
    number on the same path both times, while the database read in between lists no open: the
    check takes two different opens for one unlisted open and warns "smbXsrv_open_global.tdb
    damaged?" (5 of 30 `list` runs here, once naming the share's root directory, which smbd opens
    while it creates a file)."""
    connection = Connection(uuid.uuid4(), "127.0.0.1", box.port, require_signing=True)
    connection.connect(timeout=10)
    stop = threading.Event()
    try:
        session = Session(connection, "carol", box.users["carol"])
        session.connect()
        tree = TreeConnect(session, "\\\\127.0.0.1\\share")
        tree.connect()

        def poll() -> None:
            while not stop.is_set():
                handle = smbopen.Open(tree, "polled.txt")
                handle.create(
                    smbopen.ImpersonationLevel.Impersonation,
                    smbopen.FilePipePrinterAccessMask.GENERIC_READ,
                    smbopen.FileAttributes.FILE_ATTRIBUTE_NORMAL,
                    smbopen.ShareAccess.FILE_SHARE_READ | smbopen.ShareAccess.FILE_SHARE_WRITE,
                    smbopen.CreateDisposition.FILE_OPEN_IF,
                    smbopen.CreateOptions.FILE_NON_DIRECTORY_FILE,
                )
                handle.close()

        poller = threading.Thread(target=poll)
        poller.start()
        time.sleep(sc.MIN_AGE + 1)
        warnings: list[str] = []
        for _ in range(60):
            source = SambaSource(box.conf_path)
            source.sessions()
            warnings += _warnings_with(source, "does not list")
        stop.set()
        poller.join()
        assert not warnings, warnings[:3]
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            connection.disconnect(close=True)


# --- 2. silently wrong numbers -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def forced_box() -> Iterator[Sandbox]:
    """A share with ``force user`` (every file owned by one account: the usual shared folder)."""
    sandbox = _start({"force user": "bob"})
    yield sandbox
    _stop(sandbox)


def test_opens_on_a_force_user_share_are_counted(forced_box: Sandbox) -> None:
    """With ``force user``, smbd records each open with the forced user's SID as its owner. Before
    Samba 4.23 opens are matched to sessions by (smbd process, owner SID), so alice's three open
    files match no session: ResourcesOpened is 0, silently (smbstatus lists the three files; the
    cross-check sees records for that process and says nothing)."""
    client = Client(forced_box.port, "alice", forced_box.users["alice"])
    try:
        client.open_files(["forced-1.txt", "forced-2.txt", "forced-3.txt"])
        rows, stderr, code = _listed(forced_box)
        assert code == 0, stderr
        assert [(r["UserName"], r["ResourcesOpened"]) for r in rows] == [("alice", 3)], (rows, stderr)
    finally:
        client.close()


def test_a_dead_smbds_session_does_not_come_back_when_its_pid_is_reused(fresh_box: Sandbox) -> None:
    """An smbd child that dies uncleanly (kill -9, OOM killer, crash) leaves its session and open
    records behind; they are skipped because the pid is gone. When a new smbd child later gets the
    same pid, the dead session is listed again, with its dead opens, because only the process name
    is checked, not the record's server_id.unique_id (smbd's msg.lock/PID file holds the live one,
    which is what smbstatus's serverid_exists compares)."""
    if not os.access("/proc/sys/kernel/ns_last_pid", os.W_OK):
        pytest.skip("needs root to steer pid allocation (/proc/sys/kernel/ns_last_pid)")
    box = fresh_box
    bob = Client(box.port, "bob", box.users["bob"])
    bob.open_files(["ghost-1.txt", "ghost-2.txt"])
    dead = _smbd_of(box, bob)
    os.kill(dead, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{dead}"))
    bob.close()
    rows, stderr, _ = _listed(box)
    assert not [r for r in rows if r["UserName"] == "bob"], rows
    alice = None
    for _ in range(2000):
        with open("/proc/sys/kernel/ns_last_pid", "w") as handle:
            handle.write(str(dead - 1))
        alice = Client(box.port, "alice", box.users["alice"])
        if _smbd_of(box, alice) == dead:
            break
        alice.close()
        alice = None
    assert alice is not None, "the dead smbd's pid was not reused"
    try:
        rows, stderr, code = _listed(box)
        assert code == 0, stderr
        assert [(r["UserName"], r["ResourcesOpened"]) for r in rows] == [("alice", 0)], rows
    finally:
        alice.close()


@pytest.mark.parametrize(("mangled", "what"), [("x", "a port with a letter"), ("ip", "an address with a letter")])
def test_a_session_record_with_a_mangled_address_is_skipped_not_an_internal_error(
    fresh_box: Sandbox, mangled: str, what: str
) -> None:
    """A damaged session record whose client address is still a NUL-terminated "ipv4:..." string but
    not an address (same length, so the NDR is intact) passes the decoder's checks, and then the
    whole `list` dies: "internal error: ValueError: invalid literal for int()". Expected: that
    record skipped with a warning (or, for an unverified release, the smbstatus fallback), the
    other sessions listed."""
    box = fresh_box
    alice = Client(box.port, "alice", box.users["alice"])
    bob = Client(box.port, "bob", box.users["bob"])
    try:
        port = _client_endpoint(bob)[1]
        needle = f"127.0.0.1:{port}\0".encode()
        replacement = (f"127.0.0.1:{str(port)[:-1]}x\0" if mangled == "x" else f"127.0.0.x:{port}\0").encode()
        tdb, db = _open_tdb(box, "smbXsrv_session_global.tdb")
        try:
            (key,) = [k for k in db if needle in (db.get(k) or b"")]
            db.store(key, db.get(key).replace(needle, replacement), tdb.REPLACE)
        finally:
            db.close()
        rows, stderr, code = _listed(box)
        assert "internal error" not in stderr, f"{what}: {stderr}"
        assert code == 0, stderr
        assert "alice" in [r["UserName"] for r in rows], rows
    finally:
        alice.close()
        bob.close()


def test_a_session_record_with_an_impossible_port_is_not_listed(fresh_box: Sandbox) -> None:
    """The same damage giving port 99999: decoded "successfully" and listed with TransportName
    tcp:127.0.0.1:99999, a port that cannot exist."""
    box = fresh_box
    bob = Client(box.port, "bob", box.users["bob"])
    try:
        needle = f"127.0.0.1:{box.port}\0".encode()
        tdb, db = _open_tdb(box, "smbXsrv_session_global.tdb")
        try:
            (key,) = [k for k in db if needle in (db.get(k) or b"")]
            value = db.get(key)
            db.store(key, value.replace(needle, f"127.0.0.1:{'9' * len(str(box.port))}\0".encode()), tdb.REPLACE)
        finally:
            db.close()
        rows, _, _ = _listed(box)
        assert not [r for r in rows if str(r["TransportName"]).endswith(":" + "9" * len(str(box.port)))], rows
    finally:
        bob.close()


# --- 3. layout confusion -----------------------------------------------------------------------------


def _values(record: records.OpenGlobalRecord) -> tuple[object, ...]:
    return (record.server_pid, record.server_unique_id, record.owner_sid, record.open_time, record.disconnected)


def test_a_real_open_record_decodes_under_another_layout_only_to_the_same_values(box: Sandbox, clients) -> None:
    """smbd's own open records, decoded under every other layout: each must fail the checks or give
    the same values. On 4.17 a plain (not durable) open decodes cleanly under the 4.23-4.24 layout
    as server_pid 0, unique_id 0xffffffff00000000 and a session id made of the real unique id: had
    the release been taken for 4.23 (it is read from the Python bindings, not from the running
    smbd), its opens would be counted for no session, in strict mode too, with no fallback."""
    client = Client(box.port, "alice", box.users["alice"])
    clients.append(client)
    client.open_files(["layout-1.txt"])
    tdb = _import_bindings()[0]
    path = os.path.join(box.directory, "lock", "smbXsrv_open_global.tdb")
    blobs = [v for v in samba_tdb.read_values(tdb, path, REPLAY_CACHE_KEY_SIZE) if len(v) > 16]
    assert blobs
    wrong = []
    for blob in blobs:
        if LAYOUT.envelope_version >= 1 and blob[8:16] == bytes(8):
            blob = records.strip_persistency_header(blob)
        truth = _values(records.decode_open(blob, LAYOUT))
        for layout in records.LAYOUTS:
            if layout is LAYOUT:
                continue
            with contextlib.suppress(records.RecordFormatError):
                got = _values(records.decode_open(blob, layout))
                if got != truth:
                    wrong.append((layout.name, got, truth))
    assert not wrong, wrong


class _NDR:
    """A minimal NDR32 writer, for open records of a given layout (from each release's smbXsrv.idl)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def pad(self, n: int) -> None:
        self.data += bytes(-len(self.data) % n)

    def put(self, fmt: str, value: int, align: int) -> None:
        self.pad(align)
        self.data += struct.pack(fmt, value)

    def open_record(self, layout: records.Layout, pid: int = 4242, unique: int = 0x1122334455667788) -> bytes:
        v = layout.envelope_version
        for word in (v, 7, v, 0x20000):
            self.put("<I", word, 4)
        self.pad(8)
        if layout.open_db_rec:
            self.put("<I", 0, 4)
        for fmt, value, align in (("<Q", pid, 8), ("<I", 0, 4), ("<I", 0xFFFFFFFF, 4), ("<Q", unique, 8)):
            self.put(fmt, value, align)
        if layout.open_session_id:
            self.put("<Q", 0xAABBCCDD, 8)
            self.put("<I", 5, 4)
        self.put("<I", 0x12345678, 4)
        self.put("<Q", 0x12345678, 8)
        self.put("<Q", 0x99, 8)
        if layout.open_file_id:
            for value in (2049, 123456, 0):
                self.put("<Q", value, 4)
            self.put("<I", 0xDEAD, 4)
        self.pad(4)
        self.data += struct.pack("<BB", 1, 5) + (5).to_bytes(6, "big")
        for sub in (21, 1, 2, 3, 1000):
            self.put("<I", sub, 4)
        self.put("<Q", 133_000_000_000_000_000, 4)  # open_time
        self.pad(4)
        self.data += bytes(48)  # create_guid, client_guid, app_instance_id
        if layout.open_file_id:
            self.put("<Q", 0, 8)
            self.put("<Q", 0, 8)
        if layout.open_session_id:
            self.put("<I", 1, 4)  # create_action
        self.put("<Q", 0, 4)  # disconnect_time: connected
        self.put("<I", 0, 4)  # durable_timeout_msec
        self.data.append(0)  # durable
        if layout.open_file_id:
            self.data.append(0)  # persistent
        self.put("<I", 0, 4)  # backend_cookie: empty
        self.put("<H", 0, 2)  # channel_sequence
        self.put("<Q", 0, 8)  # channel_generation
        self.data += bytes(64)
        return bytes(self.data)


@pytest.mark.parametrize("writer", [layout.name for layout in records.LAYOUTS])
def test_an_open_record_of_one_release_never_decodes_to_other_values_under_another(writer: str) -> None:
    """Open records written by the IDL of each release: no other layout may decode them to different
    values. 4.13-4.18 records read as 4.23-4.24 come out as server_pid 0, disconnected."""
    layout = next(item for item in records.LAYOUTS if item.name == writer)
    blob = _NDR().open_record(layout)
    truth = _values(records.decode_open(blob, layout))
    assert truth[0] == 4242 and not truth[4]
    for other in records.LAYOUTS:
        if other is layout:
            continue
        with contextlib.suppress(records.RecordFormatError):
            assert _values(records.decode_open(blob, other)) == truth, other.name


# --- 4. the smbstatus fallback -----------------------------------------------------------------------


def _samba_timestamp(moment: int) -> str:
    """What smbstatus --json prints for a time: lib/util/time_basic.c timeval_str_buf(rfc5424, hires),
    whose offset is local minus UTC hours and minutes, the dates ignored."""
    local, utc = time.localtime(moment), time.gmtime(moment)
    offset = (local.tm_hour - utc.tm_hour) * 60 + (local.tm_min - utc.tm_min)
    sign = "+" if offset >= 0 else "-"
    return (
        f"{local.tm_year:04d}-{local.tm_mon:02d}-{local.tm_mday:02d}T{local.tm_hour:02d}:{local.tm_min:02d}:"
        f"{local.tm_sec:02d}.000000{sign}{abs(offset) // 60:02d}:{abs(offset) % 60:02d}"
    )


@pytest.fixture
def timezone(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    def use(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield use
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    "zone", ["Pacific/Honolulu", "Pacific/Auckland", "Pacific/Tongatapu", "Pacific/Kiritimati", "Pacific/Pago_Pago"]
)
def test_smbstatus_times_are_read_right_in_every_timezone(timezone, zone: str) -> None:
    """The fallback reads smbstatus's creation_time. Samba computes the offset from the hours alone,
    so around the date line it prints e.g. +14:00 in Honolulu (UTC-10) for half the day; the parser
    folds offsets into (-12 h, +14 h] and keeps +14:00, so the session is a day older than it is
    (Honolulu 10 hours a day, New Zealand in summer 13, Kiritimati 14): ActiveTime off by 86400 s."""
    timezone(zone)
    wrong = []
    for hour in range(24):
        moment = 1_795_590_000 + 3600 * hour
        text = _samba_timestamp(moment)
        parsed = samba_smbstatus._time(text, "creation_time")
        if parsed != moment:
            wrong.append((text, (parsed or 0) - moment))
    assert not wrong, wrong[:2]


def test_a_hostile_smbstatus_time_is_a_data_error_not_an_internal_error() -> None:
    """smbstatus output is untrusted and "every field is checked; a malformed answer is a
    SourceDataError", but a creation_time in year 0 escapes as ValueError ("year 0 is out of
    range"), which the command reports as an internal error."""
    session = {
        "session_id": "7",
        "server_id": {"pid": "100", "unique_id": "5"},
        "uid": 1000,
        "username": "alice",
        "remote_machine": "pc",
        "session_dialect": "SMB3_11",
        "creation_time": "0000-01-01T00:00:00",
    }
    with pytest.raises(SourceDataError):
        samba_smbstatus.document_sessions({"sessions": {"7": session}})


def _pretend_release(monkeypatch: pytest.MonkeyPatch, version: str, sandbox: Sandbox) -> None:
    """The source believes Samba ``version`` is installed; smbstatus gets the sandbox's NSS."""
    _import_bindings()
    import samba

    monkeypatch.setattr(samba, "version", version)
    for name, value in sandbox.environment().items():
        if name.startswith(("NSS_WRAPPER", "UID_WRAPPER")) or name == "LD_PRELOAD":
            monkeypatch.setenv(name, value)


def test_a_fallback_for_4_19_says_what_smbstatus_4_19_cannot_give(box: Sandbox, clients, monkeypatch) -> None:
    """The warning of a fallback names what is lost with LOST, the text for 4.20 and later, for
    every release; samba_smbstatus.lost(version), which adds ActiveTime, InstallDate and Degraded
    for smbstatus before 4.20 (no creation time), is called by nothing. 4.19, the one unverified
    release before 4.20 (Ubuntu 24.04), gets a warning that does not say ActiveTime is null."""
    bob = Client(box.port, "bob", box.users["bob"])
    clients.append(bob)
    bob.open_files(["fallback-419.txt"])  # a 4.17 open record fails the 4.19 layout (db_rec): fallback
    _pretend_release(monkeypatch, "4.19.3", box)
    source = SambaSource(box.conf_path)
    source.sessions()
    fallbacks = [w for w in source.warnings if "smbstatus --json" in w]
    assert fallbacks, source.warnings
    assert all(samba_smbstatus.lost("4.19.3") in w for w in fallbacks), fallbacks


def test_an_unknown_major_release_is_read_strictly_or_through_smbstatus(box: Sandbox, clients, monkeypatch) -> None:
    """ "Unknown future releases read only if records pass strict checks, else fall back to
    smbstatus --json": a Samba 5.0 is refused outright ("Samba 5.0.0 is not supported")."""
    clients.append(Client(box.port, "carol", box.users["carol"]))
    _pretend_release(monkeypatch, "5.0.0", box)
    source = SambaSource(box.conf_path)
    assert "carol" in [record.user_name for record in source.sessions()]


# --- 5. careless administrators ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_an_smb_conf_that_is_a_fifo_or_a_device_does_not_hang(tmp_path, kind: str) -> None:
    """``--smb-conf`` naming a FIFO blocks forever in Samba's parser, /dev/zero spins at 100 % CPU;
    --timeout does not cover it. files.py (added by this change for exactly this) is called by
    nothing."""
    path = str(tmp_path / "smb.conf") if kind == "fifo" else kind
    if kind == "fifo":
        os.mkfifo(path)
    try:
        result = run_cli("list", "--smb-conf", path, "--timeout", "3", timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"list --smb-conf {kind} --timeout 3 still running after 20 s")
    assert result.returncode in (1, 2), result
    assert "Traceback" not in result.stderr
