"""The class family's parts of one Samba snapshot (shares, tree connects, open handles, the session's
wire id and dialect) against a real smbd, real clients (smbprotocol, smbclient) and Samba's own
answers: ``smbstatus -S --json`` (tree connects), ``smbstatus -L -B --json`` (share modes and
byte-range locks; ``-S -L -B`` together prints only the tree connects) and Samba's srvsvc
(``rpcclient netshareenumall 502``) for the shares.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from smbprotocol.connection import Connection
from smbprotocol.open import (
    CreateDisposition,
    CreateOptions,
    FileAttributes,
    ImpersonationLevel,
    LockFlags,
    Open,
    ShareAccess,
    SMB2LockElement,
)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

from conftest import wait_for
from serversession.sandbox import Sandbox, free_port
from serversession.sources import open_source, read_snapshot
from serversession.sources import samba_records as records
from serversession.sources.base import CONNECTIONS, OPENS, SHARES
from serversession.sources.samba import _import_bindings

pytestmark = pytest.mark.samba

ADMIN_PASSWORD = "Adm1n-Family-pw"
# [share2] and [hidden$] serve one directory: before 4.23 an open names no tree connect, and one of
# these two is told from the other only by a byte-range lock (which names it) or not at all.
EXTRA_SHARES = """
[share2]
  path = {d}/share2
  read only = no
  comment = the second share
  max connections = 7
[hidden$]
  path = {d}/share2
  read only = no
[pq]
  path = {d}/spool
  printable = yes
  administrative share = yes
[off]
  path = {d}/share2
  available = no
"""
READ_WRITE = 0x0012019F  # FILE_GENERIC_READ | FILE_GENERIC_WRITE as smbd stores them
READ_ONLY = 0x00120089  # FILE_GENERIC_READ
LIST_DIRECTORY = 0x00000081  # FILE_LIST_DIRECTORY | FILE_READ_ATTRIBUTES
TIMEOUT = 30


class FamilySandbox(Sandbox):
    """The package's sandbox with more shares (two on one path, a printer queue, an unavailable one)
    and SMB1 allowed."""

    def _write_files(self, users: tuple[str, ...], admins: tuple[str, ...]) -> None:
        super()._write_files(users, admins)
        for sub in ("share2", "spool"):
            os.makedirs(os.path.join(self.directory, sub), exist_ok=True)
            os.chmod(os.path.join(self.directory, sub), 0o1777)
        with open(self.conf_path, "a", encoding="utf-8") as conf:
            conf.write(EXTRA_SHARES.format(d=self.directory))


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    directory = tempfile.mkdtemp(prefix="serversession-family-")
    sandbox = FamilySandbox(
        directory, free_port(), users={"admin": ADMIN_PASSWORD}, options={"server min protocol": "NT1"}
    )
    sandbox.start(users=("alice", "bob", "carol"))
    yield sandbox
    sandbox.stop()
    shutil.rmtree(directory, ignore_errors=True)


def _layout() -> records.Layout:
    _import_bindings()
    from samba import version

    layout = records.layout_for_version(version)
    assert layout is not None
    return layout


LAYOUT = _layout()


class Clients:
    """SMB connections held open for one test, all closed when it ends."""

    def __init__(self, box: Sandbox) -> None:
        self.box = box
        self.connections: list[Connection] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    def login(self, user: str, password: str | None = None, encrypt: bool = False, guest: bool = False) -> Session:
        connection = Connection(uuid.uuid4(), "127.0.0.1", self.box.port, require_signing=not guest)
        connection.connect(timeout=10)
        self.connections.append(connection)
        password = self.box.users.get(user, "") if password is None else password
        session = Session(connection, user, password, require_encryption=encrypt, auth_protocol="ntlm")
        session.connect()
        return session

    def tree(self, session: Session, share: str) -> TreeConnect:
        tree = TreeConnect(session, f"\\\\127.0.0.1\\{share}")
        tree.connect(require_secure_negotiate=False)
        return tree

    def close(self) -> None:
        for connection in self.connections:
            with contextlib.suppress(Exception):  # the test's own failure matters, not the clean-up's
                connection.disconnect(close=True)
        for proc in self.processes:
            proc.kill()
            proc.wait()


@pytest.fixture
def clients(box: Sandbox) -> Iterator[Clients]:
    held = Clients(box)
    yield held
    held.close()
    source = open_source("samba", smb_conf=box.conf_path)
    wait_for(lambda: not read_snapshot(source, TIMEOUT).sessions, timeout=15)


def create(tree: TreeConnect, name: str, access: int, disposition: int = CreateDisposition.FILE_OVERWRITE_IF) -> Open:
    handle = Open(tree, name)
    handle.create(
        ImpersonationLevel.Impersonation,
        access,
        FileAttributes.FILE_ATTRIBUTE_NORMAL,
        ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE,
        disposition,
        CreateOptions.FILE_NON_DIRECTORY_FILE,
    )
    return handle


def open_directory(tree: TreeConnect) -> Open:
    handle = Open(tree, "")
    handle.create(
        ImpersonationLevel.Impersonation,
        LIST_DIRECTORY,
        FileAttributes.FILE_ATTRIBUTE_DIRECTORY,
        ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE,
        CreateDisposition.FILE_OPEN,
        CreateOptions.FILE_DIRECTORY_FILE,
    )
    return handle


def open_pipe(tree: TreeConnect, name: str) -> Open:
    handle = Open(tree, name)
    handle.create(
        ImpersonationLevel.Impersonation,
        READ_WRITE,
        0,
        ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE,
        CreateDisposition.FILE_OPEN,
        CreateOptions.FILE_NON_DIRECTORY_FILE,
    )
    return handle


def lock(handle: Open, offset: int, length: int, exclusive: bool = True) -> None:
    element = SMB2LockElement()
    element["offset"] = offset
    element["length"] = length
    kind = LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK if exclusive else LockFlags.SMB2_LOCKFLAG_SHARED_LOCK
    element["flags"] = kind | LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY
    handle.lock([element])


def persistent_id(handle: Open) -> int:
    """The persistent half of an SMB2 FileId as the client holds it."""
    return int.from_bytes(bytes(handle.file_id)[:8], "little")


def smbstatus(box: Sandbox, *options: str) -> dict[str, Any]:
    result = subprocess.run(
        ["smbstatus", *options, "--json", "-s", box.conf_path],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
        env=box.environment(),
    )
    return json.loads(result.stdout)


def status_path(service_path: str, filename: str) -> str:
    return service_path if filename == "." else f"{service_path.rstrip('/')}/{filename}"


def full(degree: dict[str, str]) -> bool:
    return degree["degree"] == "full"


# --- shares ----------------------------------------------------------------------------------------


def test_shares_agree_with_sambas_own_srvsvc(box: Sandbox) -> None:
    """Every share as Samba's srvsvc (NetShareEnumAll level 502, as an administrator) describes it:
    name, type (its get_share_type: [hidden$] is a disk, 0; the administrative printer queue and
    IPC$ have STYPE_SPECIAL), remark and path (srvsvc shows "C:" and backslashes); max_uses is
    smb.conf's "max connections" (level 502 always answers -1). [off] (available = no) is no share."""
    source = open_source("samba", smb_conf=box.conf_path)
    snapshot = read_snapshot(source, TIMEOUT, frozenset({SHARES}))
    assert snapshot.opens is None and snapshot.connections is None
    ours = {share.name: share for share in snapshot.shares}
    result = subprocess.run(
        ["rpcclient", "-U", f"admin%{ADMIN_PASSWORD}", "-p", str(box.port), "127.0.0.1", "-c", "netshareenumall 502"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    theirs: dict[str, dict[str, str]] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "netname":
            current = theirs.setdefault(value.strip(), {})
        elif key:  # the share's own fields come first; its security descriptor's ACEs have a "type" too
            current.setdefault(key, value.strip())
    assert set(ours) == set(theirs) == {"share", "share2", "hidden$", "pq", "IPC$"}
    for name, share in ours.items():
        assert share.share_type == int(theirs[name]["type"], 16), name
        assert share.remark == theirs[name]["remark"], name
        if name == "IPC$":
            assert share.path is None
        else:
            assert "C:" + share.path.replace("/", "\\") == theirs[name]["path"], name
    assert ours["share2"].max_uses == 7
    assert ours["share2"].remark == "the second share"
    assert ours["hidden$"].share_type == 0
    assert ours["pq"].share_type == 0x80000001
    assert ours["IPC$"].share_type == 0x80000003
    assert all(ours[name].max_uses is None for name in ("share", "hidden$", "pq", "IPC$"))


# --- open handles ----------------------------------------------------------------------------------


def test_opens_agree_with_smbstatus_and_with_what_the_clients_hold(box: Sandbox, clients: Clients) -> None:
    """alice on one connection with tree connects to share, share2, hidden$ (the same path) and IPC$:
    files in two shares, one with two byte-range locks and one with one, a directory, a pipe; bob
    opening alice's file and his own (locked); carol encrypted; a guest. Every open is compared with
    the client's FileId, TreeId, SessionId and the access it asked for, and with smbstatus."""
    alice = clients.login("alice")
    a_share, a_share2, a_hidden, a_ipc = (clients.tree(alice, s) for s in ("share", "share2", "hidden$", "IPC$"))
    fa1 = create(a_share, "family-a1.txt", READ_WRITE)
    fa1.write(b"x" * 4096, 0)
    lock(fa1, 0, 100)
    lock(fa1, 200, 50, exclusive=False)
    fa2 = create(a_share, "family-a2.txt", READ_ONLY)
    fa3 = create(a_share2, "family-a3.txt", READ_WRITE)
    fa3.write(b"y" * 100, 0)
    lock(fa3, 10, 20)
    fa4 = create(a_share2, "family-a4.txt", READ_ONLY)
    fa5 = create(a_hidden, "family-a5.txt", READ_WRITE)  # through hidden$, in share2's directory
    d1 = open_directory(a_share2)
    pipe = open_pipe(a_ipc, "srvsvc")
    bob = clients.login("bob")
    b_share = clients.tree(bob, "share")
    fb1 = create(b_share, "family-a1.txt", READ_ONLY, CreateDisposition.FILE_OPEN)
    fb2 = create(b_share, "family-b.txt", READ_WRITE)
    lock(fb2, 0, 1)
    carol = clients.login("carol", encrypt=True)
    c_share2 = clients.tree(carol, "share2")
    fc1 = create(c_share2, "family-c.txt", READ_WRITE)
    guest = clients.login("nosuchuser", "whatever", guest=True)
    g_share = clients.tree(guest, "share")
    fg = create(g_share, "family-g.txt", READ_WRITE)

    share_dir, share2_dir = box.share_path, os.path.join(box.directory, "share2")
    # file id -> (session, tree, share, path, share-relative path, access mask, locks)
    expected = {
        persistent_id(fa1): (alice, a_share, "share", f"{share_dir}/family-a1.txt", "family-a1.txt", READ_WRITE, 2),
        persistent_id(fa2): (alice, a_share, "share", f"{share_dir}/family-a2.txt", "family-a2.txt", READ_ONLY, 0),
        persistent_id(fa3): (alice, a_share2, "share2", f"{share2_dir}/family-a3.txt", "family-a3.txt", READ_WRITE, 1),
        persistent_id(fa4): (alice, a_share2, "share2", f"{share2_dir}/family-a4.txt", "family-a4.txt", READ_ONLY, 0),
        persistent_id(fa5): (alice, a_hidden, "hidden$", f"{share2_dir}/family-a5.txt", "family-a5.txt", READ_WRITE, 0),
        persistent_id(d1): (alice, a_share2, "share2", share2_dir, "", LIST_DIRECTORY, 0),
        persistent_id(pipe): (alice, a_ipc, "IPC$", None, None, None, 0),
        persistent_id(fb1): (bob, b_share, "share", f"{share_dir}/family-a1.txt", "family-a1.txt", READ_ONLY, 0),
        persistent_id(fb2): (bob, b_share, "share", f"{share_dir}/family-b.txt", "family-b.txt", READ_WRITE, 1),
        persistent_id(fc1): (carol, c_share2, "share2", f"{share2_dir}/family-c.txt", "family-c.txt", READ_WRITE, 0),
        persistent_id(fg): (guest, g_share, "share", f"{share_dir}/family-g.txt", "family-g.txt", READ_WRITE, 0),
    }
    # Before 4.23 an open does not name its tree connect: an unlocked one in share2's directory
    # could have come through share2 or hidden$ (alice has both), so neither is said.
    ambiguous = set() if LAYOUT.open_session_id else {persistent_id(h) for h in (fa4, fa5, d1)}

    source = open_source("samba", smb_conf=box.conf_path)
    every = frozenset({CONNECTIONS, SHARES, OPENS})

    def read() -> tuple[Any, ...] | None:
        before = (smbstatus(box, "-S"), smbstatus(box, "-L", "-B"))
        snapshot = read_snapshot(source, TIMEOUT, every)
        after = (smbstatus(box, "-S"), smbstatus(box, "-L", "-B"))
        same = [
            {key: value for key, value in one.items() if key != "timestamp"} for one in (*before, *after)
        ]  # smbstatus's answer, but for the time it was given
        settled = same[:2] == same[2:] and {o.file_id for o in snapshot.opens} == set(expected)
        return (snapshot, *after) if settled else None

    snapshot, tcons, files = wait_for(read, timeout=20)
    assert source.warnings == []
    sessions = {s.session_id: s for s in snapshot.sessions}
    connections = {c.connection_id: c for c in snapshot.connections}
    assert {s.wire_id for s in snapshot.sessions} == {c.session_id for c in (alice, bob, carol, guest)}
    assert all(s.session_id == f"{s.wire_id:#x}" and s.dialect == "3.1.1" for s in snapshot.sessions)
    # each session's encryption and signing, as smbstatus judges them (carol encrypted, the guest unsigned)
    status_sessions = {int(s["session_id"]): s for s in smbstatus(box)["sessions"].values()}
    for record in snapshot.sessions:
        theirs = status_sessions[record.wire_id]
        assert (record.encrypted, record.signed) == (full(theirs["encryption"]), full(theirs["signing"])), theirs
    by_wire = {s.wire_id: s for s in snapshot.sessions}
    # a session's own flags count its unencrypted session setup (smbstatus agrees): its tree connects
    # say what its files travel in (below, carol's are encrypted)
    assert by_wire[alice.session_id].encrypted is False and by_wire[alice.session_id].signed is True
    assert by_wire[guest.session_id].signed is False

    # the rule of DESIGN 2a: a session's opens are its ResourcesOpened, through its own tree connects
    per_session = Counter(o.session_id for o in snapshot.opens)
    assert {sid: s.opens for sid, s in sessions.items()} == {sid: per_session[sid] for sid in sessions}
    for handle in snapshot.opens:
        if handle.connection_id is not None:
            assert connections[handle.connection_id].session_id == handle.session_id

    for handle in snapshot.opens:
        session, tree, share, path, relative, access, locks = expected[handle.file_id]
        assert handle.session_id == f"{session.session_id:#x}", handle
        assert handle.path == path, handle
        assert handle.share_relative_path == relative, handle
        assert handle.access_mask == access, handle
        assert handle.locks == locks, handle
        assert handle.durable is False and handle.continuously_available is False, handle
        if handle.file_id in ambiguous:
            assert handle.connection_id is None and handle.share_name is None, handle
            flags = next(s for s in smbstatus(box)["sessions"].values() if int(s["session_id"]) == session.session_id)
        else:
            assert handle.connection_id == tree.tree_connect_id, handle
            assert handle.share_name == share, handle
            flags = tcons["tcons"][str(tree.tree_connect_id)]
        assert handle.encrypted is full(flags["encryption"]), (handle, flags)
        assert handle.signed is full(flags["signing"]), (handle, flags)
    assert [o.encrypted for o in snapshot.opens if o.file_id == persistent_id(fc1)] == [True]

    # smbstatus's share modes: the same files with the same access masks (pipes are not there)
    theirs = Counter(
        (status_path(f["service_path"], f["filename"]), int(entry["access_mask"]["hex"], 16))
        for f in files.get("open_files", {}).values()
        for entry in f["opens"].values()
    )
    assert theirs == Counter((o.path, o.access_mask) for o in snapshot.opens if o.share_name != "IPC$")
    # and its byte-range locks, file by file
    locked = Counter()
    for f in (files.get("byte_range_locks") or {}).values():
        locked[status_path(f["share_path"], f["file_name"])] += len(f["locks"])
    ours = Counter()
    for handle in snapshot.opens:
        if handle.locks:
            ours[handle.path] += handle.locks
    assert (
        locked
        == ours
        == {f"{share_dir}/family-a1.txt": 2, f"{share2_dir}/family-a3.txt": 1, f"{share_dir}/family-b.txt": 1}
    )

    # tree connects: smbstatus's, each of the session it names
    assert {int(k) for k in tcons["tcons"]} == set(connections)
    assert {(c.share_name, c.session_id) for c in snapshot.connections} == {
        (t["service"], f"{int(t['session_id']):#x}") for t in tcons["tcons"].values()
    }

    # closing a handle and a lock: the next snapshot follows
    fa1.close()  # and its locks with it
    pipe.close()

    def closed() -> Any:
        snap = read_snapshot(source, TIMEOUT, every)
        ids = {o.file_id for o in snap.opens}
        return snap if persistent_id(fa1) not in ids and persistent_id(pipe) not in ids else None

    after = wait_for(closed)
    alice_now = next(s for s in after.sessions if s.wire_id == alice.session_id)
    assert alice_now.opens == sum(1 for o in after.opens if o.session_id == alice_now.session_id) == 5
    assert [o.locks for o in after.opens if o.file_id == persistent_id(fb1)] == [0]


def test_parts_are_read_only_when_asked(box: Sandbox, clients: Clients) -> None:
    session = clients.login("bob")
    create(clients.tree(session, "share"), "family-parts.txt", READ_WRITE)
    source = open_source("samba", smb_conf=box.conf_path)
    plain = read_snapshot(source, TIMEOUT)
    assert plain.connections is None and plain.shares is None and plain.opens is None
    (bob,) = plain.sessions
    assert bob.wire_id == session.session_id and bob.dialect == "3.1.1" and bob.opens == 1
    opens = read_snapshot(source, TIMEOUT, frozenset({OPENS}))
    assert opens.connections is None and opens.shares is None
    ((handle,),) = [opens.opens]
    assert handle.share_name == "share" and handle.path == os.path.join(box.share_path, "family-parts.txt")


def test_smb1_session_has_dialect_1_5_and_its_uid(box: Sandbox, clients: Clients) -> None:
    """An SMB1 (NT1) session from smbclient: MSFT_SmbSession's dialect "1.5", its 16-bit UID as wire id."""
    smbclient = shutil.which("smbclient")
    assert smbclient, "smbclient is not installed"
    proc = subprocess.Popen(
        [
            smbclient,
            "-m",
            "NT1",
            "--option=client min protocol=NT1",
            "-p",
            str(box.port),
            "-U",
            f"alice%{box.users['alice']}",
            "//127.0.0.1/share",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    clients.processes.append(proc)
    source = open_source("samba", smb_conf=box.conf_path)
    snapshot = wait_for(lambda: (s := read_snapshot(source, TIMEOUT, frozenset({CONNECTIONS}))).sessions and s)
    (session,) = snapshot.sessions
    assert session.client_type == "NT1" and session.dialect == "1.5"
    assert 0 < session.wire_id < 0x10000 and session.session_id == f"{session.wire_id:#x}"
    status = smbstatus(box)
    (theirs,) = status["sessions"].values()
    assert theirs["session_dialect"] == "NT1"
    assert [c.share_name for c in snapshot.connections if c.session_id == session.session_id] == ["share"]
