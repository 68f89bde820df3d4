"""Decode the session and open-file records that smbd keeps in its volatile TDBs.

smbd stores one NDR-encoded ``smbXsrv_session_globalB`` per session in
``smbXsrv_session_global.tdb`` and one ``smbXsrv_open_globalB`` per open handle in
``smbXsrv_open_global.tdb`` (Samba's ``source3/librpc/idl/smbXsrv.idl``). Samba's Python
bindings do not export these types, so the envelope is decoded here by hand; the nested
``auth_session_info`` (whose layout changes between releases) is handed to Samba's own
bindings, which always match the installed smbd.

Hand-written because no library decodes it: impacket's NDR engine would need the same
per-release layouts written out, and ``ndrdump`` costs a process per record.

Every field of a record is read, in NDR32's rules: a field is aligned to its own size
relative to the start of the record, except ``NTTIME``, ``udlong`` and structures made only
of them (``file_id``), which are aligned to 4 (only ``hyper`` is aligned to 8). A record must
be consumed to its last byte and every field must be within its bounds; anything else is a
:class:`RecordFormatError`, never a guess.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

NTTIME_EPOCH_OFFSET = 11644473600  # seconds between 1601-01-01 and 1970-01-01
NTTIME_INFINITY = 0x7FFFFFFFFFFFFFFF
MAX_STRING = 4096  # longest address or machine name accepted (smbd's are far shorter)
MAX_BLOB = 1 << 16  # longest key or cookie blob accepted
SIGNING_FLAG_BITS = 0x07  # smbXsrv_signing_flags
ENCRYPTION_FLAG_BITS = 0x0F  # smbXsrv_encryption_flags
TRANSPORTS = {0: "unknown", 1: "nbt", 2: "tcp", 3: "quic"}  # SMB_TRANSPORT_TYPE_* (4.23+)
PID_MAX = 1 << 22  # Linux's PID_MAX_LIMIT
DISCONNECTED_PID = (1 << 64) - 1  # server_id_set_disconnected()
DBWRAP_TDB_HEADER = struct.Struct("<IIII")  # version, flags, reserved[2]: per-record persistency (4.25+)


class RecordFormatError(ValueError):
    """A record does not match the layout it was decoded with."""


@dataclass(frozen=True)
class Layout:
    """What a range of Samba releases puts in its records (from the smbXsrv.idl of each)."""

    name: str
    first: tuple[int, int]  # first release (major, minor) with this layout
    envelope_version: int  # 0; 1 from 4.25 (smbXsrv_session_global / _open_global, [ref] union arm)
    session_algos: bool  # signing_algo, encryption_cipher, application_key pointer (4.15+)
    session_client_guid: bool  # GUID client_guid in the session record (4.20+)
    channel_transport_type: bool  # uint8 transport_type in each channel (4.23+)
    open_db_rec: bool  # [ignore] db_rec pointer in the open record (up to 4.18)
    open_session_id: bool  # session_global_id, tcon_global_id, create_action in the open record (4.23+)
    open_file_id: bool  # file_id, name_hash, app_instance_vhigh/vlow, persistent (4.25+)
    verified: bool = False  # decoded against a real smbd of this range in the version matrix


LAYOUTS = (
    Layout("4.13-4.14", (4, 13), 0, False, False, False, True, False, False),
    Layout("4.15-4.18", (4, 15), 0, True, False, False, True, False, False, verified=True),  # 4.17 (bookworm)
    Layout("4.19", (4, 19), 0, True, False, False, False, False, False),
    Layout("4.20-4.22", (4, 20), 0, True, True, False, False, False, False, verified=True),  # 4.22 (trixie)
    Layout("4.23-4.24", (4, 23), 0, True, True, True, False, True, False),
    Layout("4.25", (4, 25), 1, True, True, True, False, True, True, verified=True),  # 4.25 (sid)
)
NEWEST_LAYOUT = LAYOUTS[-1]
#: The newest release whose records were decoded against a real smbd (scripts/matrix): the
#: first of the newest verified layout. A newer one is read only if every record passes the checks.
NEWEST_VERIFIED = [layout for layout in LAYOUTS if layout.verified][-1].first


def parse_version(version: str) -> tuple[int, int] | None:
    """(major, minor) of a Samba version string such as ``4.17.12-Debian``."""
    try:
        major, minor = (int(p) for p in version.split("-")[0].split(".")[:2])
    except ValueError:
        return None
    return major, minor


def layout_for_version(version: str) -> Layout | None:
    """The record layout of a Samba version string; None if older than the oldest known.

    A release newer than every known one (a 4.30 or a 5.0) gets the newest layout, which the
    source trusts only while every record passes the strict checks.
    """
    release = parse_version(version)
    if release is None or release < LAYOUTS[0].first:
        return None
    return [layout for layout in LAYOUTS if layout.first <= release][-1]


def is_verified(version: str) -> bool:
    """Whether the records of ``version`` were decoded against a real smbd of its layout's range
    (scripts/matrix), and it is no newer than the newest release run there."""
    release, layout = parse_version(version), layout_for_version(version)
    return release is not None and layout is not None and layout.verified and release <= NEWEST_VERIFIED


def nttime_to_unix(value: int) -> float | None:
    """NTTIME (100 ns since 1601) to Unix seconds; None for 0 and 'infinity'."""
    if value == 0 or value >= NTTIME_INFINITY:
        return None
    return value / 1e7 - NTTIME_EPOCH_OFFSET


_U8, _U16, _U32, _U64 = (struct.Struct(f) for f in ("<B", "<H", "<I", "<Q"))
_SERVER_ID = struct.Struct("<QIIQ")  # server_id: pid, task_id, vnn, unique_id (8-aligned)
_SID_HEAD = struct.Struct("<BB6s")  # dom_sid: revision, num_auths, id_auth (big-endian)
_U32_3 = struct.Struct("<III")
# Fixed runs read in one call, each starting 8-aligned, every member at its natural alignment
# (an NTTIME there is where NDR's 4-alignment would put it too):
_ENVELOPE = struct.Struct("<IIII")  # version, seqnum, union switch, union arm
# envelope, then the session body up to connection_dialect: db_rec, session_global_id,
# session_wire_id, creation/expiration/auth time, auth_session_info_seqnum and pointer, dialect
_SESSION_HEAD = struct.Struct("<IIIIIIQQQQIIH")
# channel: server_id (pid, task_id, vnn, unique_id), channel_id, creation_time
_CHANNEL_HEAD = struct.Struct("<QIIQQQ")


class _Reader:
    """Little-endian NDR32 reader; alignment is relative to the start of the record."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def align(self, n: int) -> None:
        self.pos = (self.pos + n - 1) & ~(n - 1)

    # Reads past the end raise struct.error, which the decoders turn into RecordFormatError.
    def _take(self, fmt: struct.Struct, align: int) -> Any:
        start = (self.pos + align - 1) & ~(align - 1)
        self.pos = start + fmt.size
        return fmt.unpack_from(self.data, start)

    def u8(self) -> int:
        pos = self.pos
        self.pos = pos + 1
        return _U8.unpack_from(self.data, pos)[0]

    def u16(self) -> int:
        pos = (self.pos + 1) & ~1
        self.pos = pos + 2
        return _U16.unpack_from(self.data, pos)[0]

    def u32(self) -> int:
        pos = (self.pos + 3) & ~3
        self.pos = pos + 4
        return _U32.unpack_from(self.data, pos)[0]

    def hyper(self) -> int:
        return self._take(_U64, 8)[0]

    def nttime(self) -> int:
        """An NTTIME (udlong): 8 bytes aligned to 4."""
        return self._take(_U64, 4)[0]

    def boolean8(self) -> bool:
        value = self.u8()
        if value > 1:
            raise RecordFormatError(f"boolean out of range ({value})")
        return bool(value)

    def null_pointer(self) -> None:
        """An ``[ignore]`` pointer: always pushed as NULL."""
        if self.u32() != 0:
            raise RecordFormatError("an ignored pointer is not NULL")

    def skip(self, n: int) -> None:
        if self.pos + n > len(self.data):
            raise RecordFormatError("record is truncated")
        self.pos += n

    def blob(self) -> None:
        """Skip a DATA_BLOB (uint32 length, bytes)."""
        length = self.u32()
        if length > MAX_BLOB:
            raise RecordFormatError(f"implausible blob length {length}")
        self.skip(length)

    def guid(self) -> bytes:
        self.align(4)
        start = self.pos
        self.skip(16)
        return self.data[start : self.pos]

    def file_id(self) -> None:
        """A file_id: three udlongs (devid, inode, extid), aligned to 4."""
        self.align(4)
        self.skip(24)

    def string(self) -> str:
        """A [charset(UTF8),string] char[]: max, offset, actual count, bytes incl. NUL."""
        maximum, offset, actual = self._take(_U32_3, 4)
        if offset != 0 or actual > maximum or actual > MAX_STRING:
            raise RecordFormatError("malformed string")
        start = self.pos
        self.skip(actual)
        raw = self.data[start : self.pos]
        if actual and raw[-1] != 0:
            raise RecordFormatError("string is not NUL-terminated")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecordFormatError("string is not UTF-8") from exc

    def server_id(self) -> tuple[int, int]:
        """server_id: (pid, unique_id); task_id and vnn are read and dropped."""
        pid, _task_id, _vnn, unique_id = self._take(_SERVER_ID, 8)
        return pid, unique_id

    def sid(self) -> str:
        """A dom_sid as its S-1-... string."""
        revision, count, authority = self._take(_SID_HEAD, 4)
        if revision != 1 or count > 15:
            raise RecordFormatError("malformed SID")
        subs = [self.u32() for _ in range(count)]
        return "-".join(["S", "1", str(int.from_bytes(authority, "big")), *map(str, subs)])

    def envelope(self, layout: Layout) -> None:
        """The ``*_globalB`` header: version, seqnum, union switch, union arm (pointer)."""
        version, _seqnum, switch, arm = self.fixed(_ENVELOPE)
        _check_envelope(version, switch, arm, layout)

    def fixed(self, fmt: struct.Struct) -> tuple[Any, ...]:
        """A run of fields that starts 8-aligned and whose members are naturally aligned."""
        return self._take(fmt, 8)

    def end(self) -> None:
        if self.pos != len(self.data):
            raise RecordFormatError(f"{len(self.data) - self.pos} bytes left after the record")


def _check_envelope(version: int, switch: int, arm: int, layout: Layout) -> None:
    if version != layout.envelope_version:
        raise RecordFormatError(f"record version {version}, expected {layout.envelope_version}")
    if switch != version:
        raise RecordFormatError("union switch does not match the version")
    if arm == 0:
        raise RecordFormatError("record has no body")


@dataclass(frozen=True, slots=True)
class ChannelRecord:
    """One channel (TCP connection) that carries a session."""

    server_pid: int
    server_unique_id: int
    creation_time: float | None
    local_address: str
    remote_address: str
    remote_name: str
    transport: str  # "tcp", or from 4.23 what smbd recorded ("nbt", "quic", ...)


@dataclass(frozen=True, slots=True)
class SessionGlobalRecord:
    """The fields of one ``smbXsrv_session_global`` that serversession uses."""

    session_global_id: int
    session_wire_id: int
    creation_time: float | None
    expiration_time: float | None
    auth_time: float | None
    connection_dialect: int
    signing_flags: int
    encryption_flags: int
    channels: tuple[ChannelRecord, ...]
    auth_offset: int  # where the auth_session_info referent starts; -1 if absent


@dataclass(frozen=True, slots=True)
class OpenGlobalRecord:
    """The fields of one ``smbXsrv_open_global`` that serversession uses."""

    server_pid: int
    server_unique_id: int
    session_global_id: int | None  # known from Samba 4.23 on
    open_global_id: int
    owner_sid: str
    open_time: float | None
    disconnect_time: float | None  # set while a durable handle waits for its client to come back
    durable: bool
    persistent: bool  # known from Samba 4.25 on
    open_volatile_id: int = 0  # the volatile half of the SMB2 FileId: smbd's fnum (brlock.tdb's ``fnum``)
    tcon_global_id: int | None = None  # the tree connect it was opened through; known from Samba 4.23 on
    open_nttime: int = 0  # open_time as smbd stored it (NTTIME, exact: the join with locking.tdb)

    @property
    def disconnected(self) -> bool:
        """A durable handle whose client is gone: it belongs to no session now."""
        return self.disconnect_time is not None


@dataclass(frozen=True, slots=True)
class TconGlobalRecord:
    """The fields of one ``smbXsrv_tcon_global`` (a tree connect) that serversession uses."""

    tcon_global_id: int
    tcon_wire_id: int
    server_pid: int
    server_unique_id: int
    creation_time: float | None
    share_name: str  # "" while the tree connect is being made
    encryption_flags: int
    session_global_id: int
    signing_flags: int


def strip_watchers(value: bytes) -> bytes:
    """Remove dbwrap_watch's header (uint32 count, 32 bytes per watcher)."""
    if len(value) < 4:
        raise RecordFormatError("watched record is truncated")
    count = struct.unpack_from("<I", value)[0]
    start = 4 + 32 * count
    if start > len(value):
        raise RecordFormatError("watched record is truncated")
    return value[start:]


def strip_persistency_header(value: bytes) -> bytes:
    """Remove dbwrap's per-record persistency header (``persistent handles = yes``, 4.25+)."""
    if len(value) < DBWRAP_TDB_HEADER.size:
        raise RecordFormatError("record is shorter than its persistency header")
    version, flags, reserved0, reserved1 = DBWRAP_TDB_HEADER.unpack_from(value)
    if version != 1 or flags & ~1 or reserved0 or reserved1:
        raise RecordFormatError("malformed persistency header")
    return value[DBWRAP_TDB_HEADER.size :]


def _channel(r: _Reader, layout: Layout) -> ChannelRecord:
    pid, _task_id, _vnn, unique_id, _channel_id, created = r.fixed(_CHANNEL_HEAD)
    local, remote, name = r.string(), r.string(), r.string()
    r.blob()  # signing_key_blob
    _signing_key, _seqnum, _connection = r._take(_U32_3, 4)  # signing_key, auth seqnum, connection
    if _signing_key or _connection:
        raise RecordFormatError("an ignored pointer is not NULL")
    if layout.session_algos:
        r.u16()  # signing_algo
    r.u16()  # encryption_cipher
    transport = "tcp"
    if layout.channel_transport_type:
        kind = r.u8()
        if kind not in TRANSPORTS:
            raise RecordFormatError(f"unknown transport type {kind}")
        transport = TRANSPORTS[kind]
    parse_address(local)
    parse_address(remote)
    if not 0 < pid <= PID_MAX:
        raise RecordFormatError(f"channel of an impossible process id {pid}")
    return ChannelRecord(pid, unique_id, nttime_to_unix(created), local, remote, name, transport)


@functools.lru_cache(maxsize=4096)  # sessions share their server's address and often a connection
def parse_address(address: str) -> tuple[str, int]:
    """``ipv4:1.2.3.4:445`` or ``ipv6:fe80::1:445`` (smbd's form) to (normalized ip, port)."""
    family, _, rest = address.partition(":")
    host, _, port = rest.rpartition(":")
    if family not in ("ipv4", "ipv6") or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise RecordFormatError(f"malformed address {address[:80]!r}")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise RecordFormatError(f"malformed address {address[:80]!r}") from None
    if ip.version != (4 if family == "ipv4" else 6):
        raise RecordFormatError(f"malformed address {address[:80]!r}")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip), int(port)


def _truncation_is_a_format_error(decode: Callable[[bytes, Layout], T]) -> Callable[[bytes, Layout], T]:
    @functools.wraps(decode)
    def checked(blob: bytes, layout: Layout) -> T:
        try:
            return decode(blob, layout)
        except struct.error:
            raise RecordFormatError("record is truncated") from None

    return checked


@_truncation_is_a_format_error
def decode_session(blob: bytes, layout: Layout) -> SessionGlobalRecord:
    """Decode an ``smbXsrv_session_globalB`` blob (watch header already removed).

    Everything up to the ``auth_session_info`` referent is read here; the caller decodes
    that with Samba's bindings from ``auth_offset`` to the end of the blob.
    """
    r = _Reader(blob)
    (version, _seqnum, switch, arm, db_rec, session_global_id, session_wire_id, creation, expiration, auth_time,
     _auth_seqnum, auth_pointer, dialect) = r.fixed(_SESSION_HEAD)  # fmt: skip
    _check_envelope(version, switch, arm, layout)
    if db_rec:
        raise RecordFormatError("an ignored pointer is not NULL")
    has_auth = auth_pointer != 0
    if layout.session_client_guid:
        r.guid()
    signing_flags = r.u8()
    if layout.session_algos:
        r.u16()  # signing_algo
    encryption_flags = r.u8()
    if layout.session_algos:
        r.u16()  # encryption_cipher
    if signing_flags & ~SIGNING_FLAG_BITS or encryption_flags & ~ENCRYPTION_FLAG_BITS:
        raise RecordFormatError("unknown signing or encryption flags")
    for key in range(4):  # signing, encryption, decryption, application key
        r.blob()
        if layout.session_algos or key < 3:
            r.null_pointer()  # [ignore] smb2_signing_key
    num_channels = r.u32()
    if not 1 <= num_channels <= 1024:
        raise RecordFormatError(f"implausible channel count {num_channels}")
    channels = tuple(_channel(r, layout) for _ in range(num_channels))
    if has_auth:
        r.align(4)
        auth_offset = r.pos
        if auth_offset >= len(blob):
            raise RecordFormatError("session has no room for its authentication")
    else:
        r.end()
        auth_offset = -1
    return SessionGlobalRecord(
        session_global_id=session_global_id,
        session_wire_id=session_wire_id,
        creation_time=nttime_to_unix(creation),
        expiration_time=nttime_to_unix(expiration),
        auth_time=nttime_to_unix(auth_time),
        connection_dialect=dialect,
        signing_flags=signing_flags,
        encryption_flags=encryption_flags,
        channels=channels,
        auth_offset=auth_offset,
    )


@_truncation_is_a_format_error
def decode_open(blob: bytes, layout: Layout) -> OpenGlobalRecord:
    """Decode an ``smbXsrv_open_globalB`` blob (persistency header already removed)."""
    r = _Reader(blob)
    r.envelope(layout)
    if layout.open_db_rec:
        r.null_pointer()
    pid, unique_id = r.server_id()
    session_global_id = None
    tcon_global_id = None
    if layout.open_session_id:
        session_global_id = r.hyper()
        tcon_global_id = r.u32()
    open_global_id = r.u32()
    r.hyper()  # open_persistent_id
    open_volatile_id = r.hyper()
    if layout.open_file_id:
        r.file_id()
        r.u32()  # name_hash
    owner = r.sid()
    open_time = r.nttime()
    r.guid()  # create_guid
    r.guid()  # client_guid
    r.guid()  # app_instance_id
    if layout.open_file_id:
        r.hyper()  # app_instance_vhigh
        r.hyper()  # app_instance_vlow
    if layout.open_session_id:
        r.u32()  # create_action
    disconnect_time = r.nttime()
    r.u32()  # durable_timeout_msec
    durable = r.boolean8()
    persistent = r.boolean8() if layout.open_file_id else False
    r.blob()  # backend_cookie
    r.u16()  # channel_sequence
    r.hyper()  # channel_generation
    r.skip(64)  # lock_sequence_array
    r.end()
    # A live open names its smbd process; a disconnected one smbd's "disconnected" server id.
    # Anything else is a record read with another release's layout.
    if not (0 < pid <= PID_MAX or (disconnect_time and pid == DISCONNECTED_PID)):
        raise RecordFormatError(f"open of an impossible process id {pid}")
    return OpenGlobalRecord(
        server_pid=pid,
        server_unique_id=unique_id,
        session_global_id=session_global_id,
        open_global_id=open_global_id,
        owner_sid=owner,
        open_time=nttime_to_unix(open_time),
        disconnect_time=nttime_to_unix(disconnect_time),
        durable=durable,
        persistent=persistent,
        open_volatile_id=open_volatile_id,
        tcon_global_id=tcon_global_id,
        open_nttime=open_time,
    )


@_truncation_is_a_format_error
def decode_tcon(blob: bytes, layout: Layout) -> TconGlobalRecord:
    """Decode an ``smbXsrv_tcon_globalB`` blob (a tree connect; no watch or persistency header).

    The body is the same from 4.13 to 4.25; 4.25 changes only the envelope (docs/notes).
    """
    r = _Reader(blob)
    r.envelope(layout)
    r.null_pointer()  # db_rec
    tcon_global_id = r.u32()
    tcon_wire_id = r.u32()
    pid, unique_id = r.server_id()
    creation = r.nttime()
    share_name = r.string()
    encryption_flags = r.u8()
    session_global_id = r.u32()
    signing_flags = r.u8()
    r.end()
    if signing_flags & ~SIGNING_FLAG_BITS or encryption_flags & ~ENCRYPTION_FLAG_BITS:
        raise RecordFormatError("unknown signing or encryption flags")
    if not 0 < pid <= PID_MAX:
        raise RecordFormatError(f"tree connect of an impossible process id {pid}")
    return TconGlobalRecord(
        tcon_global_id=tcon_global_id,
        tcon_wire_id=tcon_wire_id,
        server_pid=pid,
        server_unique_id=unique_id,
        creation_time=nttime_to_unix(creation),
        share_name=share_name,
        encryption_flags=encryption_flags,
        session_global_id=session_global_id,
        signing_flags=signing_flags,
    )


# --- locking.tdb (share modes) and brlock.tdb (byte-range locks): docs/notes/samba-class-family.md


@dataclass(frozen=True)
class LockingLayout:
    """What a range of Samba releases puts in ``locking.tdb`` and ``brlock.tdb`` (open_files.idl,
    g_lock.c, brlock.c of each release). These change at other releases than the smbXsrv records."""

    name: str
    first: tuple[int, int]
    glock_lock_epoch: bool  # g_lock header holds unique_lock_epoch (4.17+)
    write_times: bool  # share_mode_data: old_write_time, changed_write_time (up to 4.22)
    token_lease_key: bool  # delete_token: parent_lease_key (4.22+)
    version_1: bool  # share_mode_dataB wrapper, num_persistent, create_guid, token open_persistent_id;
    # brlock records start with a big-endian version word and hold 80-byte locks (4.25+)
    private_options: bool  # share_mode_entry.private_options (up to 4.22)
    timeval_twice: bool  # the entry's timeval is pushed again in the buffers pass (up to 4.24)
    share_file_id_is_open_id: bool  # share_mode_entry.share_file_id == open_global_id (4.24+)
    verified: bool = False  # decoded against a real smbd of this range in the version matrix


LOCKING_LAYOUTS = (
    LockingLayout("4.13-4.16", (4, 13), False, True, False, False, True, True, False),
    LockingLayout("4.17-4.21", (4, 17), True, True, False, False, True, True, False, verified=True),  # 4.17
    LockingLayout("4.22", (4, 22), True, True, True, False, True, True, False, verified=True),  # trixie
    LockingLayout("4.23", (4, 23), True, False, True, False, False, True, False),
    LockingLayout("4.24", (4, 24), True, False, True, False, False, True, True),
    LockingLayout("4.25", (4, 25), True, False, True, True, False, False, True, verified=True),  # sid
)
GLOCK_SERVER_ID = struct.Struct("<QIIQ")  # g_lock holders: raw server_id (pid, task_id, vnn, unique_id)
MAX_GLOCK_SHARED = 1 << 16  # shared holders of one record's lock accepted
MAX_SHARE_ENTRIES = 1 << 16  # opens of one file accepted
MAX_DELETE_TOKENS = 1024
_BRLOCK = struct.Struct(
    "<QI4xQIIQQQQII"
)  # lock_struct: smblctx, tid, pid, task, vnn, unique, start, size, fnum, type, flavour
BRLOCK_VERSION_1 = 1  # 4.25+: big-endian version word before the locks
MAX_TIMEVAL_SECONDS = 1 << 40


def locking_layout_for_version(version: str) -> LockingLayout | None:
    """The locking.tdb/brlock.tdb layout of a Samba version string; None if older than the oldest known."""
    release = parse_version(version)
    if release is None or release < LOCKING_LAYOUTS[0].first:
        return None
    return [layout for layout in LOCKING_LAYOUTS if layout.first <= release][-1]


@dataclass(frozen=True, slots=True)
class ShareModeEntry:
    """One open of a file as ``locking.tdb`` holds it (a ``share_mode_entry``)."""

    server_pid: int
    server_unique_id: int
    access_mask: int
    open_nttime: int  # the entry's timeval as an exact NTTIME (= the open record's open_time up to 4.23)
    share_file_id: int  # = open_global_id from 4.24; a per-process counter before
    uid: int


@dataclass(frozen=True, slots=True)
class ShareModeRecord:
    """One file's share-mode record: where it is and who has it open."""

    servicepath: str  # the share's path as the tree connect resolved it
    base_name: str  # share-relative ("." for the share's root)
    stream_name: str | None  # ":name:$DATA", or None
    entries: tuple[ShareModeEntry, ...]


@dataclass(frozen=True, slots=True)
class ByteRangeLock:
    """One byte-range lock of ``brlock.tdb`` (a ``struct lock_struct``)."""

    server_pid: int
    server_unique_id: int
    fnum: int  # the open's volatile id
    smblctx: int  # SMB2: the open's persistent id; SMB1: the client's pid
    tid: int  # the tree connect it was taken through
    start: int
    size: int
    write: bool


def _plausible_pid(pid: int) -> bool:
    return 0 < pid <= PID_MAX or pid == DISCONNECTED_PID


def decode_share_modes(value: bytes, layout: LockingLayout) -> ShareModeRecord | None:
    """Decode a ``locking.tdb`` value: dbwrap_watch header, g_lock header, then the NDR
    ``share_mode_data`` and its fixed-size ``share_mode_entry`` blobs. None for a record that
    holds only a lock (no data). Every field is bounds-checked; RecordFormatError otherwise."""
    try:
        return _decode_share_modes(strip_watchers(value), layout)
    except struct.error:
        raise RecordFormatError("share-mode record is truncated") from None


def _decode_share_modes(data: bytes, layout: LockingLayout) -> ShareModeRecord | None:
    pos = GLOCK_SERVER_ID.size + (16 if layout.glock_lock_epoch else 8)  # exclusive holder, epochs
    num_shared = _U32.unpack_from(data, pos)[0]
    if num_shared > MAX_GLOCK_SHARED:
        raise RecordFormatError(f"implausible number of lock holders {num_shared}")
    pos += 4 + GLOCK_SERVER_ID.size * num_shared
    if pos > len(data):
        raise RecordFormatError("share-mode record is truncated")
    if pos == len(data):
        return None  # a lock without data (the file is being opened or closed)
    length = _U32.unpack_from(data, pos)[0]
    pos += 4
    if pos + length > len(data):
        raise RecordFormatError("share-mode data is truncated")
    servicepath, base_name, stream_name = _share_mode_data(data[pos : pos + length], layout)
    rest = data[pos + length :]
    size = _entry_size(layout)
    if len(rest) % size or len(rest) // size > MAX_SHARE_ENTRIES:
        raise RecordFormatError(f"share-mode entries of {len(rest)} bytes are not a whole number of {size}")
    entries = tuple(_share_mode_entry(rest[i : i + size], layout) for i in range(0, len(rest), size))
    return ShareModeRecord(servicepath, base_name, stream_name, entries)


def _share_mode_data(blob: bytes, layout: LockingLayout) -> tuple[str, str, str | None]:
    r = _Reader(blob)
    if layout.version_1:  # share_mode_dataB: version, epoch, flags, union switch, [ref] arm
        version = r.u32()
        r.hyper()
        r.u16()
        switch, arm = r.u32(), r.u32()
        if version != 1 or switch != version or arm == 0:
            raise RecordFormatError(f"share-mode data version {version}, expected 1")
    r.hyper()  # unique_content_epoch
    r.u16()  # flags
    pointers = [r.u32() for _ in range(3)]  # servicepath, base_name, stream_name
    if layout.version_1:
        r.u32()  # num_persistent
    tokens = r.u32()
    if tokens > MAX_DELETE_TOKENS or r.u32() != tokens:  # the count, then the array's conformance
        raise RecordFormatError(f"implausible delete-token count {tokens}")
    if tokens:
        for _ in range(tokens):  # inline parts; their security tokens follow the strings
            if layout.token_lease_key:
                r.align(8)
            r.u32()  # name_hash
            if layout.token_lease_key:
                r.hyper()
                r.hyper()  # parent_lease_key
            if layout.version_1:
                r.hyper()  # open_persistent_id
            r.u32()
            r.u32()  # delete_nt_token, delete_token pointers
    if layout.write_times:
        r.nttime()
        r.nttime()
    r.file_id()  # [ignore] id: pushed all the same
    servicepath, base_name, stream_name = (r.string() if pointer else None for pointer in pointers)
    if tokens == 0:
        r.end()
    if servicepath is None or base_name is None:
        raise RecordFormatError("share-mode data without a path")
    return servicepath, base_name, stream_name


def _entry_size(layout: LockingLayout) -> int:
    if layout.version_1:
        return 128
    return 132 if layout.private_options else 124


def _share_mode_entry(blob: bytes, layout: LockingLayout) -> ShareModeEntry:
    r = _Reader(blob)
    pid, unique_id = r.server_id()
    r.hyper()  # op_mid
    r.u16()  # op_type
    r.guid()  # client_guid
    if layout.version_1:
        r.guid()  # create_guid
    r.hyper()
    r.hyper()  # lease_key
    access_mask = r.u32()
    r.u32()  # share_access
    if layout.private_options:
        r.u32()
    seconds = r.hyper()
    microseconds = r.u32()
    share_file_id = r.nttime()  # udlong: 8 bytes aligned to 4
    uid = r.u32()
    r.u16()  # flags
    r.u32()  # name_hash
    if layout.timeval_twice and (r.hyper(), r.u32()) != (seconds, microseconds):
        raise RecordFormatError("share-mode entry's two times differ")
    r.end()
    if not _plausible_pid(pid):
        raise RecordFormatError(f"share-mode entry of an impossible process id {pid}")
    if microseconds >= 1_000_000 or seconds >= MAX_TIMEVAL_SECONDS:
        raise RecordFormatError("share-mode entry's time is out of range")
    nttime = (seconds + NTTIME_EPOCH_OFFSET) * 10_000_000 + microseconds * 10
    return ShareModeEntry(pid, unique_id, access_mask, nttime, share_file_id, uid)


def decode_brlocks(value: bytes, layout: LockingLayout) -> tuple[ByteRangeLock, ...]:
    """Decode a ``brlock.tdb`` value: raw ``struct lock_struct`` array (x86-64 layout, 72 bytes;
    4.25: a big-endian version word, then 80-byte locks with a ``persistent`` byte)."""
    size = _BRLOCK.size
    start = 0
    if layout.version_1:
        if len(value) < 4 or int.from_bytes(value[:4], "big") != BRLOCK_VERSION_1:
            raise RecordFormatError("byte-range lock record without its version 1 header")
        size, start = 80, 4
    if (len(value) - start) % size:
        raise RecordFormatError(f"byte-range locks of {len(value) - start} bytes are not a whole number of {size}")
    locks = []
    for offset in range(start, len(value), size):
        smblctx, tid, pid, _task, _vnn, unique_id, begin, length, fnum, kind, flavour = _BRLOCK.unpack_from(
            value, offset
        )
        if kind > 1 or flavour > 1 or not _plausible_pid(pid):
            raise RecordFormatError("byte-range lock of an unknown type or an impossible process")
        if layout.version_1 and (value[offset + 72] > 1 or any(value[offset + 73 : offset + 80])):
            raise RecordFormatError("byte-range lock's persistent flag is malformed")
        locks.append(ByteRangeLock(pid, unique_id, fnum, smblctx, tid, begin, length, kind == 1))
    return tuple(locks)
