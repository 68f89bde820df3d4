"""Real clients as they behave against a real smbd, each checked against smbstatus and the client itself.

Durable handles (v2, with a batch oplock as Windows asks for every open, and with leases), a client
that vanishes and reclaims its durable handles, SMB1 (NT1) from smbclient, a NetBIOS session
request, encryption and signing, guests, IPv6, several sessions on one connection, and one
session over two connections (multichannel).

The reference is ``smbstatus --json`` (Samba 4.17 and later) of the same Samba, run with the
sandbox's environment (nss_wrapper); the JSON keys read here are the same from 4.17 to 4.25
(``channels`` of a session appear in 4.20 and are compared where present).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import smbprotocol.connection
import spnego
from smbprotocol import create_contexts as cc
from smbprotocol import open as smbopen
from smbprotocol.connection import Capabilities, Connection, Dialects
from smbprotocol.exceptions import MoreProcessingRequired
from smbprotocol.header import NtStatus
from smbprotocol.session import Session, SMB2SessionSetupRequest, SMB2SessionSetupResponse
from smbprotocol.transport import Tcp
from smbprotocol.tree import TreeConnect

import serversession
from conftest import run_cli, wait_for
from serversession.sandbox import Sandbox, free_port
from serversession.sources import open_source, read_sessions, read_snapshot, samba_records, samba_tdb
from serversession.sources.base import OPENS
from serversession.sources.samba import _import_bindings

pytestmark = pytest.mark.samba

# Share-level parameters in [global] are every share's defaults, so the Sandbox's [share] needs
# no options of its own. A key repeated later in [global] overrides the earlier one (Samba's
# parser keeps the last), which is how ``interfaces`` is widened to ::1.
OPTIONS = {
    "interfaces": "127.0.0.1 ::1",
    # SMB1 clients; smbclient's NTLMSSP logon needs no "ntlm auth" or "lanman auth" (smbclient itself
    # needs --option=client min protocol=NT1, see the test)
    "server min protocol": "NT1",
    # what durable handles need (TrueNAS-style shares): smbd grants none with POSIX or kernel locking
    "posix locking": "no",
    "kernel oplocks": "no",
    "durable handles": "yes",
    "smb2 leases": "yes",
    "server multi channel support": "yes",  # the default on Linux since 4.15; stated for the multichannel test
}
SMBSTATUS_TIMEOUT = 30
CLIENT_TIMEOUT = 10  # seconds for each SMB connection and for smbclient to log on
RWH = (
    cc.LeaseState.SMB2_LEASE_READ_CACHING
    | cc.LeaseState.SMB2_LEASE_WRITE_CACHING
    | cc.LeaseState.SMB2_LEASE_HANDLE_CACHING
)
DISCONNECTED_PID = str(2**64 - 1)  # server_id of a durable handle without a client (server_id_set_disconnected)


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    """A sandbox of this module's own: durable handles, SMB1, and 127.0.0.1 plus ::1."""
    if shutil.which("smbstatus") is None:
        pytest.fail("smbstatus is not installed; run the README's test command, which installs Samba")
    directory = tempfile.mkdtemp(prefix="serversession-clients-")
    sandbox = Sandbox(directory, free_port(), options=dict(OPTIONS))
    sandbox.start(users=("alice", "bob", "carol"))
    yield sandbox
    sandbox.stop()
    shutil.rmtree(directory, ignore_errors=True)


class Clients:
    """The SMB clients of one test: smbprotocol connections and smbclient processes, all ended at teardown."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.box = sandbox
        self.connections: list[Connection] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    def connect(
        self, host: str = "127.0.0.1", guid: uuid.UUID | None = None, signing: bool = True, multichannel: bool = False
    ) -> Connection:
        """A TCP connection with SMB 3.1.1 negotiated."""
        connection = Connection(guid or uuid.uuid4(), host, self.box.port, require_signing=signing)
        if multichannel:  # smbd offers multichannel only to a client that asks for it
            connection.client_capabilities |= Capabilities.SMB2_GLOBAL_CAP_MULTI_CHANNEL
        self.connections.append(connection)
        connection.connect(Dialects.SMB_3_1_1, timeout=CLIENT_TIMEOUT)
        return connection

    def login(self, connection: Connection, user: str, password: str | None = None, encrypt: bool = False) -> Session:
        session = Session(
            connection, user, self.box.users.get(user, "") if password is None else password, require_encryption=encrypt
        )
        session.connect()
        return session

    def share(self, session: Session, secure_negotiate: bool = True) -> TreeConnect:
        tree = TreeConnect(session, f"\\\\{session.connection.server_name}\\share")
        # a guest has no signing key to check the negotiation with (smbprotocol refuses to try)
        tree.connect(require_secure_negotiate=secure_negotiate)
        return tree

    def smbclient(self, *args: str) -> subprocess.Popen[bytes]:
        """smbclient on the sandbox, kept logged on (it waits for commands on its stdin)."""
        binary = shutil.which("smbclient")
        if binary is None:
            pytest.fail("smbclient is not installed; run the README's test command")
        proc = subprocess.Popen(  # it writes a few lines at most: the pipe does not fill
            [binary, "-p", str(self.box.port), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(proc)
        return proc

    def wait_session(self, proc: subprocess.Popen[bytes], user: str) -> Any:
        """The listed session of ``user`` once smbclient has logged on; fails with smbclient's words if it quit."""

        def logged_on() -> Any:
            if proc.poll() is not None:
                output = proc.communicate(timeout=CLIENT_TIMEOUT)[0].decode(errors="replace")
                pytest.fail(f"smbclient exited {proc.returncode}: {output}")
            return [s for s in listed(self.box) if s.UserName == user]

        return wait_for(logged_on, timeout=15)[0]

    def close(self) -> None:
        for proc in self.processes:
            proc.kill()
            proc.communicate(timeout=CLIENT_TIMEOUT)
        for connection in self.connections:
            with contextlib.suppress(Exception):
                connection.disconnect(close=True, timeout=CLIENT_TIMEOUT)


@pytest.fixture
def clients(box: Sandbox) -> Iterator[Clients]:
    made = Clients(box)
    yield made
    made.close()
    wait_for(lambda: not listed(box), timeout=15)  # the next test starts with no session


def listed(box: Sandbox) -> list[Any]:
    return serversession.sessions(smb_conf=box.conf_path)


def one(box: Sandbox, user: str) -> Any:
    found = [s for s in listed(box) if s.UserName == user]
    assert len(found) == 1, found
    return found[0]


def smbstatus(box: Sandbox, *args: str) -> dict[str, Any]:
    """``smbstatus --json`` of the sandbox (``-f`` also shows what belongs to no live smbd: durable handles)."""
    result = subprocess.run(
        ["smbstatus", "--json", "-s", box.conf_path, *args],
        capture_output=True,
        text=True,
        timeout=SMBSTATUS_TIMEOUT,
        check=False,
        env=box.environment(),
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def status_session(status: dict[str, Any], user: str) -> dict[str, Any]:
    found = [s for s in status.get("sessions", {}).values() if s["username"] == user]
    assert len(found) == 1, status.get("sessions")
    return found[0]


def status_opens(status: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """(key "PID/share_file_id", the open, file name) of every open handle smbstatus lists."""
    return [
        (key, entry, share_file["filename"])
        for share_file in status.get("open_files", {}).values()
        for key, entry in share_file["opens"].items()
    ]


def status_opens_of(status: dict[str, Any], session: dict[str, Any]) -> list[str]:
    """File names opened by ``session``: same smbd process, same uid (smbstatus has no session id for opens)."""
    pid = session["server_id"]["pid"]
    return sorted(
        name
        for _, entry, name in status_opens(status)
        if entry["server_id"]["pid"] == pid and entry["uid"] == session["uid"]
    )


def is_disconnected(key: str, entry: dict[str, Any]) -> bool:
    """smbstatus -f shows a durable handle without a client as pid "disconnected" (UINT64_MAX in JSON)."""
    return key.startswith("disconnected/") or entry["server_id"]["pid"] == DISCONNECTED_PID


def durable_v2(create_guid: uuid.UUID, timeout_ms: int = 60_000) -> cc.SMB2CreateDurableHandleRequestV2:
    request = cc.SMB2CreateDurableHandleRequestV2()
    request["timeout"] = timeout_ms
    request["create_guid"] = create_guid
    return request


def lease_v2(key: bytes) -> cc.SMB2CreateRequestLeaseV2:
    request = cc.SMB2CreateRequestLeaseV2()
    request["lease_key"] = key
    request["lease_state"] = RWH
    request["parent_lease_key"] = bytes(16)
    request["epoch"] = bytes(2)
    return request


def reconnect_v2(handle: smbopen.Open, create_guid: uuid.UUID) -> cc.SMB2CreateDurableHandleReconnectV2:
    request = cc.SMB2CreateDurableHandleReconnectV2()
    request["file_id"] = handle.file_id
    request["create_guid"] = create_guid
    return request


def create(
    tree: TreeConnect, name: str, contexts: list[Any] | None = None, oplock: int = 0, disposition: int | None = None
) -> tuple[smbopen.Open, list[Any]]:
    """Open ``name`` read-write as a Windows client does (create contexts, oplock); the response's contexts."""
    handle = smbopen.Open(tree, name)
    answer = handle.create(
        smbopen.ImpersonationLevel.Impersonation,
        smbopen.FilePipePrinterAccessMask.GENERIC_READ | smbopen.FilePipePrinterAccessMask.GENERIC_WRITE,
        smbopen.FileAttributes.FILE_ATTRIBUTE_NORMAL,
        smbopen.ShareAccess.FILE_SHARE_READ | smbopen.ShareAccess.FILE_SHARE_WRITE,
        smbopen.CreateDisposition.FILE_OVERWRITE_IF if disposition is None else disposition,
        smbopen.CreateOptions.FILE_NON_DIRECTORY_FILE,
        create_contexts=contexts,
        oplock_level=oplock,
    )
    return handle, answer or []


def answered(contexts: list[Any], kind: type) -> Any:
    found = [c for c in contexts if isinstance(c, kind)]
    assert len(found) == 1, f"no {kind.__name__} in the create response: {contexts}"
    return found[0]


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}.txt"


def client_port(connection: Connection) -> int:
    return connection.transport._sock.getsockname()[1]


# --- durable handles -----------------------------------------------------------------------------


def test_durable_handles_with_batch_oplock_are_counted(box, clients):
    """The bug report: durable v2 opens with a batch oplock (Windows' every open) were counted 0."""
    connection = clients.connect()
    session = clients.login(connection, "alice")
    tree = clients.share(session)
    names = [unique("batch") for _ in range(3)]
    for name in names:
        handle, answer = create(
            tree, name, [durable_v2(uuid.uuid4())], smbopen.RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH
        )
        assert handle.oplock_level == smbopen.RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH
        assert answered(answer, cc.SMB2CreateDurableHandleResponseV2)["timeout"].get_value() > 0  # granted durable

    status = smbstatus(box)
    theirs = status_session(status, "alice")
    assert status_opens_of(status, theirs) == sorted(names)
    assert {e["oplock"].get("text") for _, e, n in status_opens(status) if n in names} == {"BATCH"}
    s = one(box, "alice")
    assert s.ResourcesOpened == len(names) == 3
    assert s.ClientType == theirs["session_dialect"] == "SMB3_11"

    result = run_cli("list", "--format", "json", "--smb-conf", box.conf_path)
    assert result.returncode == 0, result.stderr
    assert [(i["UserName"], i["ResourcesOpened"]) for i in json.loads(result.stdout)] == [("alice", 3)]


def test_durable_handles_with_leases_are_counted(box, clients):
    connection = clients.connect()
    session = clients.login(connection, "bob")
    tree = clients.share(session)
    names = [unique("lease") for _ in range(2)]
    for name in names:
        handle, answer = create(
            tree,
            name,
            [durable_v2(uuid.uuid4()), lease_v2(os.urandom(16))],
            smbopen.RequestedOplockLevel.SMB2_OPLOCK_LEVEL_LEASE,
        )
        assert handle.oplock_level == smbopen.RequestedOplockLevel.SMB2_OPLOCK_LEVEL_LEASE
        assert answered(answer, cc.SMB2CreateDurableHandleResponseV2)["timeout"].get_value() > 0
        assert answered(answer, cc.SMB2CreateResponseLeaseV2)["lease_state"].get_value() == RWH

    status = smbstatus(box)
    theirs = status_session(status, "bob")
    assert status_opens_of(status, theirs) == sorted(names)
    assert {e["lease"].get("text") for _, e, n in status_opens(status) if n in names} == {"RWH"}
    assert one(box, "bob").ResourcesOpened == len(names) == 2


def test_vanished_client_leaves_disconnected_durable_handles_then_reclaims_them(box, clients):
    """A client gone without logoff: its session ends, its durable handles wait for it in smbd.

    Windows shows no session for such a client either (Get-SmbSession, Win32_ServerSession); its
    durable handles linger, in Get-SmbOpenFile only, until the client reconnects or they time out.
    So the vanished session is not listed and its handles count for no session; after a durable
    reconnect (same create GUID, SMB2_CREATE_DURABLE_HANDLE_RECONNECT_V2) they count again.
    """
    client_guid = uuid.uuid4()
    connection = clients.connect(guid=client_guid)
    tree = clients.share(clients.login(connection, "carol"))
    held = []
    for _ in range(2):
        create_guid = uuid.uuid4()
        handle, answer = create(
            tree,
            unique("vanish"),
            [durable_v2(create_guid, 30_000)],
            smbopen.RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH,
        )
        answered(answer, cc.SMB2CreateDurableHandleResponseV2)
        held.append((handle, create_guid))
    names = sorted(h.file_name for h, _ in held)
    bystander = clients.share(clients.login(clients.connect(), "bob"))
    plain, _ = create(bystander, unique("bystander"))
    assert one(box, "carol").ResourcesOpened == 2
    # the open records say which handles are durable; MSFT_SmbOpenFile names their session
    snapshot = read_snapshot(open_source("samba", smb_conf=box.conf_path), 30, frozenset({OPENS}))
    durable = {o.path.rsplit("/", 1)[-1]: o.durable for o in snapshot.opens if o.path}
    assert {durable[n] for n in names} == {True} and durable[plain.file_name] is False, durable
    carol_id = [s.wire_id for s in snapshot.sessions if s.user_name == "carol"]
    files = {f.Path.rsplit("/", 1)[-1]: f for f in serversession.instances("MSFT_SmbOpenFile", smb_conf=box.conf_path)}
    assert len(carol_id) == 1 and [files[n].SessionId for n in names] == carol_id * 2
    assert {files[n].ContinuouslyAvailable for n in names} == {False}  # durable, not persistent

    # The client vanishes: its TCP connection is reset, no close, no logoff.
    sock = connection.transport._sock
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # l_onoff 1, l_linger 0
    connection.transport.close()
    wait_for(lambda: "carol" not in {s.UserName for s in listed(box)})

    fast = smbstatus(box, "-f")  # -f: without it smbstatus hides entries of processes that are gone
    disconnected = sorted(n for k, e, n in status_opens(fast) if n in names and is_disconnected(k, e))
    assert disconnected == names, status_opens(fast)
    status = smbstatus(box)
    assert "carol" not in {s["username"] for s in status.get("sessions", {}).values()}
    live = [n for _, _, n in status_opens(status)]
    assert not set(live) & set(names)
    sessions = listed(box)
    assert [(s.UserName, s.ResourcesOpened) for s in sessions] == [("bob", 1)]
    assert sum(s.ResourcesOpened for s in sessions) == len(live)
    # Get-SmbOpenFile still shows the waiting handles, with no session; Get-SmbSession not carol
    files = {f.Path.rsplit("/", 1)[-1]: f for f in serversession.instances("MSFT_SmbOpenFile", smb_conf=box.conf_path)}
    assert [(files[n].SessionId, files[n].ClientUserName) for n in names] == [(None, None)] * 2
    assert files[plain.file_name].ClientUserName == "bob" and files[plain.file_name].SessionId is not None
    smb_sessions = serversession.instances("MSFT_SmbSession", smb_conf=box.conf_path)
    assert [s.ClientUserName for s in smb_sessions] == ["bob"]

    # The client comes back (same client GUID, as Windows does) and reclaims both handles.
    tree = clients.share(clients.login(clients.connect(guid=client_guid), "carol"))
    for handle, create_guid in held:
        reclaimed, _ = create(
            tree,
            handle.file_name,
            [reconnect_v2(handle, create_guid)],
            smbopen.RequestedOplockLevel.SMB2_OPLOCK_LEVEL_BATCH,
            smbopen.CreateDisposition.FILE_OPEN,
        )
        assert reclaimed.file_id[:8] == handle.file_id[:8]  # the same open: its persistent id is kept
    status = smbstatus(box)
    assert status_opens_of(status, status_session(status, "carol")) == names
    assert not [k for k, e, n in status_opens(smbstatus(box, "-f")) if is_disconnected(k, e) and n in names]
    assert one(box, "carol").ResourcesOpened == 2
    assert one(box, "bob").ResourcesOpened == 1


# --- SMB1, NetBIOS names -------------------------------------------------------------------------


def test_smb1_nt1_session_from_smbclient(box, clients):
    """smbclient speaking SMB1: ClientType NT1; ComputerName is what smbd recorded, as smbstatus shows it.

    smbclient sends its NetBIOS name (-n) only in a NetBIOS session request, which it makes on
    port 139 alone; on any other port smbd knows the client by its address (see the next test).
    smbclient refuses -m NT1 unless its own "client min protocol" (SMB2_02 by default) allows it.
    """
    password = box.users["alice"]
    proc = clients.smbclient(
        "-m", "NT1", "--option=client min protocol=NT1", "-n", "SMBONE", "-U", f"alice%{password}", "//127.0.0.1/share"
    )
    s = clients.wait_session(proc, "alice")
    status = smbstatus(box)
    theirs = status_session(status, "alice")
    assert s.ClientType == theirs["session_dialect"] == "NT1"
    assert s.ComputerName == theirs["remote_machine"]
    assert s.ComputerName == "127.0.0.1"  # -n SMBONE is not sent on this port
    assert s.IdleTime is not None and s.IdleTime <= s.ActiveTime
    assert s.ResourcesOpened == len(status_opens_of(status, theirs))
    assert s.SessionType == 2


class NetbiosTcp(Tcp):
    """smbprotocol's transport, preceded by a NetBIOS session request as clients on port 139 send it."""

    calling_name = "NBCLIENT"

    def connect(self) -> None:
        super().connect()
        body = netbios_name("*SMBSERVER", 0x20) + netbios_name(self.calling_name, 0x00)
        self._sock.sendall(bytes([0x81, 0]) + len(body).to_bytes(2, "big") + body)  # SESSION REQUEST
        self._sock.settimeout(CLIENT_TIMEOUT)
        answer = self._sock.recv(4)
        self._sock.settimeout(None)
        assert answer[:1] == b"\x82", f"smbd refused the NetBIOS session request: {answer!r}"  # POSITIVE RESPONSE


def netbios_name(name: str, suffix: int) -> bytes:
    """RFC 1001 first-level encoding: 16 bytes (15 padded, the suffix), each nibble as a letter A-P."""
    raw = name.upper().ljust(15)[:15].encode("ascii") + bytes([suffix])
    return bytes([32]) + bytes(b for c in raw for b in (0x41 + (c >> 4), 0x41 + (c & 0x0F))) + b"\x00"


def test_netbios_session_request_names_the_computer(box, clients, monkeypatch):
    """A client that sends a NetBIOS session request (port 139 clients do) is known by its NetBIOS name."""
    monkeypatch.setattr(smbprotocol.connection, "Tcp", NetbiosTcp)
    tree = clients.share(clients.login(clients.connect(), "bob"))
    create(tree, unique("netbios"))
    s = one(box, "bob")
    status = smbstatus(box)
    theirs = status_session(status, "bob")
    assert s.ComputerName == theirs["remote_machine"]
    assert s.ComputerName.upper() == NetbiosTcp.calling_name  # smbd keeps it in lower case
    assert s.Caption == f"bob@{s.ComputerName}"
    assert s.ResourcesOpened == len(status_opens_of(status, theirs)) == 1


# --- encryption, signing, guests -------------------------------------------------------------------


def crypto_degree(flags: int, kind: str) -> str:
    """smbstatus' degree of a session's encryption or signing from its flags (smbXsrv_is_encrypted & co.)."""
    if kind == "encryption":  # REQUIRED 1, DESIRED 2, PROCESSED_ENCRYPTED 4, PROCESSED_UNENCRYPTED 8
        if not flags & 8 and flags & (4 | 2 | 1):
            return "full"
        return "partial" if flags & 4 and flags & 8 else "none"
    # signing: PROCESSED_SIGNED 2, PROCESSED_UNSIGNED 4
    if not flags & 4 and flags & 2:
        return "full"
    return "partial" if flags & 2 and flags & 4 else "none"


def raw_sessions(box: Sandbox) -> list[samba_records.SessionGlobalRecord]:
    """smbd's session records as the Samba source's own decoder reads them (flags, channels)."""
    tdb = _import_bindings()[0]
    from samba import version

    layout = samba_records.layout_for_version(version)
    assert layout is not None
    path = os.path.join(box.directory, "lock", "smbXsrv_session_global.tdb")
    (blobs,) = samba_tdb.read_databases(tdb, [path], 10, "the sandbox")
    blobs = [samba_records.strip_watchers(value) for value in blobs]
    return [samba_records.decode_session(blob, layout) for blob in blobs if blob]


def test_encrypted_and_signed_sessions(box, clients):
    """SMB 3.1.1 with encryption required by the client, and signed only: both listed, as smbstatus sees them."""
    encrypted = clients.share(clients.login(clients.connect(), "bob", encrypt=True))
    assert encrypted.session.encrypt_data
    create(encrypted, unique("sealed"))
    create(encrypted, unique("sealed"))
    signed = clients.share(clients.login(clients.connect(), "alice"))
    assert signed.session.signing_required and not signed.session.encrypt_data
    create(signed, unique("signed"))

    status = smbstatus(box)
    flags = {str(r.session_global_id): (r.signing_flags, r.encryption_flags) for r in raw_sessions(box)}
    for user, opens in (("bob", 2), ("alice", 1)):
        s, theirs = one(box, user), status_session(status, user)
        assert (s.ClientType, s.SessionType, s.ResourcesOpened) == ("SMB3_11", 2, opens)
        assert len(status_opens_of(status, theirs)) == opens
        signing, encryption = flags[theirs["session_id"]]
        assert crypto_degree(encryption, "encryption") == theirs["encryption"]["degree"], (user, encryption)
        assert crypto_degree(signing, "signing") == theirs["signing"]["degree"], (user, signing)
    assert status_session(status, "bob")["encryption"]["degree"] != "none"
    assert status_session(status, "alice")["encryption"]["degree"] == "none"
    assert status_session(status, "alice")["signing"]["degree"] == "full"


def test_guest_and_user_session_types(box, clients):
    """Guest logons (smbprotocol over SMB3, smbclient) are SessionType 0; an authenticated user is 2."""
    guest = clients.share(clients.login(clients.connect(signing=False), "visitor", "whatever"), secure_negotiate=False)
    create(guest, unique("guest"))
    proc = clients.smbclient("-U", "wanderer%anything", "//127.0.0.1/share")  # unknown user: "map to guest = bad user"
    clients.share(clients.login(clients.connect(), "carol"))
    clients.wait_session(proc, "nobody")
    wait_for(lambda: len([r for r in raw_records(box) if r.user_name == "nobody"]) == 2, timeout=15)

    status = smbstatus(box)
    assert sorted(s["username"] for s in status["sessions"].values()) == ["carol", "nobody", "nobody"]
    guest_opens = sum(len(status_opens_of(status, s)) for s in status["sessions"].values() if s["username"] == "nobody")
    # both guest sessions come from 127.0.0.1 as Samba's guest account: one instance, opens summed
    guests = [s for s in listed(box) if s.SessionType == 0]
    assert [(s.UserName, s.ResourcesOpened) for s in guests] == [("nobody", guest_opens)]
    assert guest_opens == 1
    assert one(box, "carol").SessionType == 2


def raw_records(box: Sandbox) -> list[Any]:
    """The Samba source's records before sessions of the same user and computer are merged."""
    return read_sessions(open_source("samba", smb_conf=box.conf_path))


# --- IPv6, several sessions on one connection ---------------------------------------------------


def test_ipv6_client(box, clients):
    connection = clients.connect(host="::1")
    create(clients.share(clients.login(connection, "carol")), unique("six"))
    s = one(box, "carol")
    status = smbstatus(box)
    theirs = status_session(status, "carol")
    assert s.ComputerName == theirs["remote_machine"] == "::1"
    assert s.TransportName == f"tcp:[::1]:{box.port}"
    assert s.Caption == "carol@::1"
    assert s.IdleTime is not None and s.IdleTime <= 1  # the kernel's tcp_info of an IPv6 connection
    assert theirs["hostname"] == f"ipv6:::1:{client_port(connection)}"
    (raw,) = [r for r in raw_records(box) if r.user_name == "carol"]
    assert raw.client_address == f"[::1]:{client_port(connection)}"
    assert s.ResourcesOpened == len(status_opens_of(status, theirs)) == 1


def test_two_sessions_on_one_connection(box, clients):
    """Two users logged on over one TCP connection: two sessions, one client port, their own opens."""
    connection = clients.connect()
    alice = clients.share(clients.login(connection, "alice"))
    bob = clients.share(clients.login(connection, "bob", encrypt=True))
    create(alice, unique("mine"))
    for _ in range(2):
        create(bob, unique("yours"))
    status = smbstatus(box)
    port = client_port(connection)
    for user, opens in (("alice", 1), ("bob", 2)):
        s, theirs = one(box, user), status_session(status, user)
        assert s.ResourcesOpened == len(status_opens_of(status, theirs)) == opens, user
        assert theirs["hostname"] == f"ipv4:127.0.0.1:{port}"
        assert s.TransportName == f"tcp:127.0.0.1:{box.port}"
    raw = {r.user_name: r for r in raw_records(box)}
    assert raw["alice"].client_address == raw["bob"].client_address == f"127.0.0.1:{port}"
    assert raw["alice"].session_id != raw["bob"].session_id


# --- multichannel -------------------------------------------------------------------------------


def bind_channel(connection: Connection, session: Session, password: str) -> None:
    """Bind ``session`` to ``connection`` as a second channel (multichannel), as Windows does.

    smbprotocol has no API for it, so the SESSION_SETUP with SMB2_SESSION_FLAG_BINDING is sent
    here: a new NTLM authentication of the same user for the session's id, each request signed
    with the session's signing key ([MS-SMB2] 3.2.4.2.3.1, 3.3.5.5.2).
    """
    signer = SimpleNamespace(signing_required=True, signing_key=session.signing_key, encrypt_data=False)
    connection.session_table[session.session_id] = signer  # what connection.send signs with
    try:
        auth = spnego.client(
            session.username,
            password,
            service="cifs",
            hostname=connection.server_name,
            options=spnego.NegotiateOptions.session_key,
        )
        token = connection.gss_negotiate_token
        status = None
        while not auth.complete:
            out = auth.step(token)
            if not out:
                break
            request = SMB2SessionSetupRequest()
            request["flags"] = 0x01  # SMB2_SESSION_FLAG_BINDING
            request["security_mode"] = connection.client_security_mode
            request["capabilities"] = Capabilities.SMB2_GLOBAL_CAP_DFS
            request["buffer"] = out
            sent = connection.send(request, sid=session.session_id, credit_request=64)
            try:
                header = connection.receive(sent)
            except MoreProcessingRequired as more:
                header = more.header
            connection.preauth_integrity_session_hash_value.pop(sent.message["message_id"].get_value(), None)
            status = header["status"].get_value()
            answer = SMB2SessionSetupResponse()
            answer.unpack(header["data"].get_value())
            token = answer["buffer"].get_value()
        assert status == NtStatus.STATUS_SUCCESS, f"binding answered {status:#x}"
    finally:
        del connection.session_table[session.session_id]  # only echoes (no session) go over it from here


def test_multichannel_session_is_one_session_with_both_channels(box, clients):
    """One session over two TCP connections (same client GUID, session binding): listed once,
    its opens counted once, and idle only as long as its most recently used channel."""
    guid = uuid.uuid4()
    first = clients.connect(guid=guid, multichannel=True)
    second = clients.connect(guid=guid, multichannel=True)
    assert first.supports_multi_channel and second.supports_multi_channel, "smbd did not offer multichannel"
    session = clients.login(first, "alice")
    tree = clients.share(session)
    names = sorted(unique("channel") for _ in range(2))
    for name in names:
        create(tree, name)
    bind_channel(second, session, box.users["alice"])

    (record,) = [r for r in raw_sessions(box) if r.session_wire_id == session.session_id]
    ports = {client_port(first), client_port(second)}
    assert {int(ch.remote_address.rpartition(":")[2]) for ch in record.channels} == ports
    assert len({ch.server_pid for ch in record.channels}) == 1  # smbd passed the second connection on
    status = smbstatus(box)
    theirs = status_session(status, "alice")
    channels = theirs.get("channels")  # smbstatus --json lists a session's channels from Samba 4.20 on
    if channels is not None:
        assert sorted(c["remote_address"] for c in channels.values()) == sorted(
            ch.remote_address for ch in record.channels
        )
    assert status_opens_of(status, theirs) == names
    s = one(box, "alice")
    assert s.ResourcesOpened == 2
    assert s.ComputerName == theirs["remote_machine"] == "127.0.0.1"

    deadline = time.monotonic() + 3  # the first channel idle for 3 s, the second in use
    while time.monotonic() < deadline:
        second.echo(sid=0, timeout=CLIENT_TIMEOUT)
        time.sleep(0.25)
    s = one(box, "alice")
    assert s.IdleTime <= 1, s.IdleTime
    assert s.ActiveTime >= 3
