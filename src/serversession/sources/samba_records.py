"""Decode the session and open-file records that smbd keeps in its volatile TDBs.

smbd stores one NDR-encoded ``smbXsrv_session_globalB`` per session in
``smbXsrv_session_global.tdb`` and one ``smbXsrv_open_globalB`` per open handle in
``smbXsrv_open_global.tdb`` (Samba's ``source3/librpc/idl/smbXsrv.idl``). Samba's Python
bindings do not export these two types, so the envelope is decoded here by hand; the
nested ``auth_session_info`` (whose layout changes between releases) is handed to Samba's
own bindings, which always match the installed smbd.

Hand-written because no library decodes it: impacket's NDR engine would need the same
per-release layouts written out, and ``ndrdump`` costs a process per record.
The layouts below follow the IDL of each release; only 4.17 was run here (see docs/samba.md).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

NTTIME_EPOCH_OFFSET = 11644473600  # seconds between 1601-01-01 and 1970-01-01
NTTIME_INFINITY = 0x7FFFFFFFFFFFFFFF


class RecordFormatError(ValueError):
    """A record does not match any known layout."""


@dataclass(frozen=True)
class Layout:
    """Which optional fields a Samba release puts in its records (from its smbXsrv.idl)."""

    name: str
    session_client_guid: bool  # GUID client_guid in session_global0 (4.20+)
    channel_transport_type: bool  # uint8 transport_type in channel_global0 (4.23+)
    open_db_rec: bool  # [ignore] db_rec pointer in open_global0 (up to 4.18)
    open_session_id: bool  # session_global_id + tcon_global_id in open_global0 (4.23+)


LAYOUTS = (
    Layout("4.17-4.18", False, False, True, False),
    Layout("4.19", False, False, False, False),
    Layout("4.20-4.22", True, False, False, False),
    Layout("4.23+", True, True, False, True),
)


def layout_for_version(version: str) -> Layout | None:
    """The record layout of a Samba version string such as ``4.17.12-Debian``."""
    try:
        major, minor = (int(p) for p in version.split("-")[0].split(".")[:2])
    except ValueError:
        return None
    if (major, minor) < (4, 17) or major != 4:
        return None
    if minor <= 18:
        return LAYOUTS[0]
    if minor == 19:
        return LAYOUTS[1]
    if minor <= 22:
        return LAYOUTS[2]
    return LAYOUTS[3]


def nttime_to_unix(value: int) -> float | None:
    """NTTIME (100 ns since 1601) to Unix seconds; None for 0 and 'infinity'."""
    if value == 0 or value >= NTTIME_INFINITY:
        return None
    return value / 1e7 - NTTIME_EPOCH_OFFSET


_U8, _U16, _U32, _U64 = (struct.Struct(f) for f in ("<B", "<H", "<I", "<Q"))
# Fixed runs of fields read in one call (the layouts are naturally aligned, so "<" matches NDR):
# envelope, then session_global0 from db_rec up to connection_dialect
_SESSION_HEAD = struct.Struct("<IIIIIIQQQQIIH")
# channel_global0 from server_id (pid, task_id, vnn, unique_id) up to creation_time
_CHANNEL_HEAD = struct.Struct("<QIIQQQ")


class _Reader:
    """Little-endian NDR32 reader with alignment relative to the start of the blob."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def align(self, n: int) -> None:
        self.pos = (self.pos + n - 1) & ~(n - 1)

    def _take(self, fmt: struct.Struct) -> Any:
        end = self.pos + fmt.size
        if end > len(self.data):
            raise RecordFormatError("record is truncated")
        value = fmt.unpack_from(self.data, self.pos)[0]
        self.pos = end
        return value

    def u8(self) -> int:
        return self._take(_U8)

    def u16(self) -> int:
        self.pos = (self.pos + 1) & ~1
        return self._take(_U16)

    def u32(self) -> int:
        self.pos = (self.pos + 3) & ~3
        return self._take(_U32)

    def u64(self) -> int:
        self.pos = (self.pos + 7) & ~7
        return self._take(_U64)

    def fields(self, fmt: struct.Struct) -> tuple[Any, ...]:
        """Several fields at once, from an 8-byte aligned position."""
        self.pos = (self.pos + 7) & ~7
        end = self.pos + fmt.size
        if end > len(self.data):
            raise RecordFormatError("record is truncated")
        values = fmt.unpack_from(self.data, self.pos)
        self.pos = end
        return values

    def skip(self, n: int) -> None:
        if self.pos + n > len(self.data):
            raise RecordFormatError("record is truncated")
        self.pos += n

    def blob(self) -> None:
        """Skip a DATA_BLOB (uint32 length, bytes)."""
        self.skip(self.u32())

    def guid(self) -> None:
        self.align(4)
        self.skip(16)

    def string(self) -> str:
        """A [charset(UTF8),string] char[]: max, offset, actual count, bytes incl. NUL."""
        maximum, offset, actual = self.u32(), self.u32(), self.u32()
        if offset != 0 or actual > maximum or actual > 4096:
            raise RecordFormatError("malformed string")
        raw = self.data[self.pos : self.pos + actual]
        self.skip(actual)
        try:
            return raw.rstrip(b"\0").decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecordFormatError("string is not UTF-8") from exc

    def server_id(self) -> tuple[int, int]:
        """server_id: (pid, unique_id); task_id and vnn are read and dropped."""
        pid = self.u64()
        self.u32()
        self.u32()
        unique_id = self.u64()
        return pid, unique_id

    def sid(self) -> str:
        """A dom_sid as its S-1-... string."""
        revision, count = self.u8(), self.u8()
        if count > 15:
            raise RecordFormatError("malformed SID")
        authority = int.from_bytes(self.data[self.pos : self.pos + 6], "big")
        self.skip(6)
        subs = [self.u32() for _ in range(count)]
        return "-".join(["S", str(revision), str(authority), *map(str, subs)])

    def envelope(self) -> None:
        """The ``*_globalB`` header: version, seqnum, union switch, info pointer."""
        version, _seqnum, switch, body = self.u32(), self.u32(), self.u32(), self.u32()
        _check_envelope(version, switch, body)


def _check_envelope(version: int, switch: int, body: int) -> None:
    if version not in (0, 1):
        raise RecordFormatError(f"unknown record version {version}")
    if switch != version:
        raise RecordFormatError("union switch does not match the version")
    if body == 0:
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


@dataclass(frozen=True, slots=True)
class SessionGlobalRecord:
    """The fields of one ``smbXsrv_session_global0`` that serversession uses."""

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
    """The fields of one ``smbXsrv_open_global0`` that serversession uses."""

    server_pid: int
    server_unique_id: int
    session_global_id: int | None  # known from Samba 4.23 on
    owner_sid: str
    disconnected: bool


def strip_watchers(value: bytes) -> bytes:
    """Remove dbwrap_watch's header (uint32 count, 32 bytes per watcher)."""
    if len(value) < 4:
        raise RecordFormatError("watched record is truncated")
    count = struct.unpack_from("<I", value)[0]
    start = 4 + 32 * count
    if start > len(value):
        raise RecordFormatError("watched record is truncated")
    return value[start:]


def decode_session(blob: bytes, layout: Layout) -> SessionGlobalRecord:
    """Decode an ``smbXsrv_session_globalB`` blob (watch header already removed)."""
    r = _Reader(blob)
    (version, _seqnum, switch, body, _db_rec, session_global_id, session_wire_id, creation, expiration, auth_time,
     _auth_seqnum, auth_pointer, dialect) = r.fields(_SESSION_HEAD)  # fmt: skip
    _check_envelope(version, switch, body)
    has_auth = auth_pointer != 0
    if layout.session_client_guid:
        r.guid()
    signing_flags = r.u8()
    r.u16()  # signing_algo
    encryption_flags = r.u8()
    r.u16()  # encryption_cipher
    for _ in range(4):  # signing, encryption, decryption, application key blobs
        r.blob()
        r.u32()  # [ignore] key pointer
    num_channels = r.u32()
    if not 1 <= num_channels <= 1024:
        raise RecordFormatError(f"implausible channel count {num_channels}")
    channels = []
    for _ in range(num_channels):
        pid, _task_id, _vnn, unique_id, _channel_id, channel_created = r.fields(_CHANNEL_HEAD)
        local, remote, name = r.string(), r.string(), r.string()
        r.blob()  # signing_key_blob
        r.u32()  # [ignore] signing_key
        r.u32()  # auth_session_info_seqnum
        r.u32()  # [ignore] connection
        r.u16()  # signing_algo
        r.u16()  # encryption_cipher
        if layout.channel_transport_type:
            r.u8()
        if not remote.startswith(("ipv4:", "ipv6:")):
            raise RecordFormatError("channel address is not an ipv4:/ipv6: address")
        channels.append(ChannelRecord(pid, unique_id, nttime_to_unix(channel_created), local, remote, name))
    if has_auth:
        r.align(4)
        auth_offset = r.pos
        if auth_offset >= len(blob):
            raise RecordFormatError("session has no room for its authentication")
    else:
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
        channels=tuple(channels),
        auth_offset=auth_offset,
    )


def decode_open(blob: bytes, layout: Layout) -> OpenGlobalRecord:
    """Decode an ``smbXsrv_open_globalB`` blob."""
    r = _Reader(blob)
    r.envelope()
    r.align(8)
    if layout.open_db_rec:
        r.u32()
    pid, unique_id = r.server_id()
    session_global_id = None
    if layout.open_session_id:
        session_global_id = r.u64()
        r.u32()  # tcon_global_id
    r.u32()  # open_global_id
    r.u64()  # open_persistent_id
    r.u64()  # open_volatile_id
    owner = r.sid()
    r.u64()  # open_time
    for _ in range(3):  # create_guid, client_guid, app_instance_id
        r.guid()
    if layout.open_session_id:
        r.u32()  # create_action
    disconnect_time = r.u64()
    return OpenGlobalRecord(pid, unique_id, session_global_id, owner, disconnect_time != 0)
