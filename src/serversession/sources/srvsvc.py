"""Sessions, shares, tree connects and open files of any SMB server that answers MS-SRVS (Windows, Samba).

One host per source: an SMB connection with NTLM authentication, the named pipe
``\\pipe\\srvsvc`` on ``IPC$``, DCE/RPC bind, then ``NetrSessionEnum`` at the richest info
level the server grants (502, else 1, else 10), following ERROR_MORE_DATA with the resume
handle. A snapshot (:meth:`SrvsvcSource.snapshot`) also asks, over the same binding and right
after the sessions, for the parts a class needs: ``NetrShareEnum`` (shares), ``NetrConnectionEnum``
per share (tree connects) and ``NetrFileEnum`` (open files). impacket does the protocol work; it
is imported only when a host is read, so the package works without it. See docs/srvsvc.md.

Everything the server sends is taken as hostile: every enumeration is bounded (entries, answers,
time), every value is checked before it becomes a record, and what a server is known to answer
with placeholders (Samba's ``NetrConnectionEnum``, its per-file lock counts, its two permission
bits) becomes None with a warning, never a value.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import (
    AccessDenied,
    AuthenticationFailed,
    HostUnreachable,
    SourceDataError,
    SourceTimeout,
    SourceUnavailable,
)
from .base import (
    CONNECTIONS,
    DEFAULT_TIMEOUT,
    OPENS,
    SHARES,
    ConnectionRecord,
    OpenRecord,
    SessionRecord,
    ShareRecord,
    Snapshot,
)
from .remote import Credentials, Endpoint

log = logging.getLogger(__name__)

ERROR_ACCESS_DENIED = 5
ERROR_INVALID_NAME = 123
ERROR_INVALID_LEVEL = 124
ERROR_MORE_DATA = 234
NERR_NET_NAME_NOT_FOUND = 2310
PREFERRED_LENGTH = 0x10000  # bytes per answer; a server may send less, never more
MAX_ENTRIES = 200_000  # entries one enumeration may bring, all its answers together
MAX_ANSWERS = 10_000  # answers (ERROR_MORE_DATA pages) one enumeration may take
MAX_SHARES = 10_000  # shares asked for their tree connects, one NetrConnectionEnum each
UNLIMITED = 0xFFFFFFFF  # SHARE_INFO_2.shi2_max_uses: no limit
SV_TYPE_SERVER_UNIX = 0x00000800  # SERVER_INFO_101.sv101_type: Samba always sets it, Windows never
STYPE_MASK = 0xFF
STYPE_IPC = 3
PERM_BITS = 0x7F  # MS-SRVS 2.2.4.7 PERM_FILE_READ ... ACCESS_PERM; above them only an access mask has bits
#: what Samba's NetrConnectionEnum answers for every tree connect (srv_srvsvc_nt.c, 4.17-4.25)
SAMBA_STUB_USER = "dummy_user"
SAMBA_STUB_NETNAME = "IPC$"
RIGHTS = "must be a member of Administrators or Server Operators there"
#: after a refusal at a level, the level to try next ((level, refused because) -> next level)
FALLBACK = {
    (502, ERROR_ACCESS_DENIED): 10,  # levels 502, 2 and 1 need Administrators or Server Operators
    (502, ERROR_INVALID_LEVEL): 1,  # Samba answers levels 0 and 1 only
    (1, ERROR_ACCESS_DENIED): 10,
    (1, ERROR_INVALID_LEVEL): 10,
}
#: the record fields each level fills; the others stay None
LEVEL_FIELDS = {
    502: ("num_opens", "user_flags", "cltype_name", "transport"),
    1: ("num_opens", "user_flags"),
    10: (),
}
NT_STATUS_NAMES = {
    0xC000006D: "wrong user name or password",
    0xC000006E: "account restriction",
    0xC000006F: "logon not allowed at this time",
    0xC0000070: "logon not allowed from this workstation",
    0xC0000071: "password expired",
    0xC0000072: "account disabled",
    0xC0000193: "account expired",
    0xC0000224: "password must be changed",
    0xC0000234: "account locked out",
    0xC0000022: "access denied",
}


class Incomplete(Exception):
    """An enumeration that did not end within its bounds (entries, answers, or the time left)."""

    def __init__(self, reason: str, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.timed_out = timed_out


def check_impacket() -> None:
    """Raise SourceUnavailable, saying what to install, if impacket is missing."""
    _impacket()


def _impacket() -> tuple[Any, Any, Any, Any]:
    try:
        from impacket import nmb, smbconnection
        from impacket.dcerpc.v5 import rpcrt, srvs, transport
    except ImportError:
        raise SourceUnavailable("the srvsvc source needs impacket: pip install 'serversession[remote]'") from None
    return nmb, smbconnection, (rpcrt, srvs), transport


class SrvsvcSource:
    """The sessions (and shares, tree connects, open files) of one SMB server, read over MS-SRVS
    with ``credentials``."""

    def __init__(self, endpoint: Endpoint, credentials: Credentials) -> None:
        self.endpoint = endpoint
        self.credentials = credentials
        self.description = f"srvsvc on {endpoint.label}"
        #: the info level that answered the last read (None before one succeeded)
        self.level: int | None = None
        #: SERVER_INFO_101.sv101_type of the last snapshot with parts (None: not asked, or not answered)
        self.server_type: int | None = None

    def sessions(self, timeout: float = DEFAULT_TIMEOUT) -> list[SessionRecord]:
        """Every session of the server; errors name the host and say what to do."""
        return list(self.snapshot(timeout).sessions)

    def snapshot(self, timeout: float = DEFAULT_TIMEOUT, parts: frozenset[str] = frozenset()) -> Snapshot:
        """The sessions and ``parts`` (SHARES, CONNECTIONS, OPENS), read back to back over one binding.

        The sessions' errors are the read's errors; a part the server refuses or cannot give is
        None in the snapshot, with a warning saying why (and which right the account lacks).
        """
        nmb, smbconnection, (rpcrt, srvs), _ = _impacket()
        label = self.endpoint.label
        deadline = time.monotonic() + timeout
        try:
            with self.pipe(timeout) as dce:
                return self._read(dce, rpcrt, srvs, parts, deadline, timeout)
        except (nmb.NetBIOSTimeout, TimeoutError):
            raise SourceTimeout(f"{label}: did not answer within {timeout:g} s") from None
        except smbconnection.SessionError as exc:
            raise _smb_error(label, self.credentials, exc.getErrorCode()) from None
        except rpcrt.DCERPCException as exc:
            raise SourceUnavailable(f"{label}: srvsvc is not available: {exc}") from None
        except (nmb.NetBIOSError, OSError) as exc:
            raise HostUnreachable(f"{label}: cannot connect to port {self.endpoint.port}: {_reason(exc)}") from None

    @contextlib.contextmanager
    def pipe(self, timeout: float = DEFAULT_TIMEOUT) -> Iterator[Any]:
        """A DCE/RPC binding to SRVSVC on the server (impacket's ``DCERPC_v5``), closed at the end.

        Errors are impacket's own; :meth:`snapshot` turns them into this package's.
        """
        _, smbconnection, (_, srvs), transport = _impacket()
        host, port = self.endpoint.host, self.endpoint.port
        connection = smbconnection.SMBConnection(host, host, sess_port=port, timeout=timeout)
        try:
            creds = self.credentials
            connection.login(creds.user, creds.password, creds.domain)
            dce = transport.SMBTransport(host, port, r"\srvsvc", smb_connection=connection).get_dce_rpc()
            try:
                dce.connect()
            except smbconnection.SessionError as exc:
                raise _pipe_error(self.endpoint.label, exc.getErrorCode()) from None
            dce.bind(srvs.MSRPC_UUID_SRVS)
            yield dce
        finally:
            try:
                connection.close()
            except Exception:  # the answer is read; a failing goodbye changes nothing
                log.debug("%s: closing the connection failed", self.endpoint.label, exc_info=True)

    def _read(
        self, dce: Any, rpcrt: Any, srvs: Any, parts: frozenset[str], deadline: float, timeout: float
    ) -> Snapshot:
        label = self.endpoint.label
        try:
            level, entries = self._enumerate(dce, rpcrt, srvs, deadline)
        except Incomplete as exc:
            if exc.timed_out:
                raise SourceTimeout(f"{label}: did not answer within {timeout:g} s") from None
            raise SourceDataError(f"{label}: NetrSessionEnum {exc}") from None
        now = time.time()
        sessions = tuple(self._record(entry, level, index, now) for index, entry in enumerate(entries))
        if not parts & {SHARES, CONNECTIONS, OPENS}:
            return Snapshot(sessions, time.time())
        reader = PartReader(self, dce, rpcrt, srvs, deadline)
        return reader.read(sessions, parts)

    def _enumerate(self, dce: Any, rpcrt: Any, srvs: Any, deadline: float | None = None) -> tuple[int, list[Any]]:
        """The sessions at the first level the server grants, and that level."""
        label, level, refused = self.endpoint.label, 502, []
        while True:
            try:
                entries = all_entries(
                    lambda resume, level=level: srvs.hNetrSessionEnum(
                        dce, srvs.NULL, srvs.NULL, level, resume, PREFERRED_LENGTH
                    ),
                    ("SessionInfo", f"Level{level}"),
                    srvs,
                    deadline,
                    f"{label}: NetrSessionEnum",
                )
            except rpcrt.DCERPCException as exc:
                code = exc.get_error_code()
                refused.append(f"level {level} {'refused' if code == ERROR_ACCESS_DENIED else 'not supported'}")
                if (level, code) in FALLBACK:
                    level = FALLBACK[(level, code)]
                    continue
                if code == ERROR_ACCESS_DENIED:
                    raise AccessDenied(
                        f"{label}: access denied to the session list ({', '.join(refused)}); "
                        f"{self.credentials.account} {RIGHTS}"
                    ) from None
                raise SourceUnavailable(f"{label}: NetrSessionEnum failed ({', '.join(refused)}): {exc}") from None
            self.level = level
            if refused:
                missing = (
                    "ClientType, TransportName"
                    if level == 1
                    else "ResourcesOpened, SessionType, ClientType, TransportName"
                )
                log.warning("%s: %s; level %d answered: %s unknown", label, ", ".join(refused), level, missing)
            return level, entries

    def _record(self, entry: Any, level: int, index: int, now: float) -> SessionRecord:
        fields = LEVEL_FIELDS[level]

        def value(name: str) -> Any:
            return entry[f"sesi{level}_{name}"] if name in fields or name in ("time", "idle_time") else None

        return SessionRecord(
            session_id=f"{self.endpoint.label}#{index}",
            computer_name=_text(entry[f"sesi{level}_cname"]).lstrip("\\"),
            user_name=_text(entry[f"sesi{level}_username"]),
            established=now - _seconds(value("time")),
            last_request=now - _seconds(value("idle_time")),
            opens=_dword(value("num_opens")),
            user_flags=_dword(value("user_flags")),
            client_type=_text(value("cltype_name")) or None,
            transport=_text(value("transport")) or None,
            server=self.endpoint.label,
            detail=f"read with NetrSessionEnum level {level}",
        )


class PartReader:
    """Reads the parts of one snapshot over one binding: shares, tree connects, open files.

    Each part is None when the server refuses it or cannot give it; :meth:`read` logs one
    warning per part that says why.
    """

    def __init__(self, source: SrvsvcSource, dce: Any, rpcrt: Any, srvs: Any, deadline: float | None) -> None:
        self.source, self.dce, self.rpcrt, self.srvs, self.deadline = source, dce, rpcrt, srvs, deadline
        self.label = source.endpoint.label
        self.samba: bool | None = None  # None: the server did not say what it is

    def read(self, sessions: tuple[SessionRecord, ...], parts: frozenset[str]) -> Snapshot:
        """A snapshot of ``sessions`` and ``parts``, read now."""
        self.samba = self.is_samba()
        shares = connections = opens = None
        if SHARES in parts or CONNECTIONS in parts:
            shares = self.part("the share list (NetrShareEnum)", "shares", self.shares)
        if CONNECTIONS in parts:
            if shares is None:
                log.warning(
                    "%s: without the share list, tree connects cannot be asked for: connections unknown", self.label
                )
            else:
                connections = self.part(
                    "the tree connects (NetrConnectionEnum)", "connections", lambda: self.connections(shares)
                )
        if OPENS in parts:
            opens = self.part("the open files (NetrFileEnum)", "open files", self.opens)
        return Snapshot(
            sessions,
            time.time(),
            connections=None if connections is None else tuple(connections),
            shares=None if shares is None or SHARES not in parts else tuple(shares),
            opens=None if opens is None else tuple(opens),
        )

    def part(self, what: str, unknown: str, read: Callable[[], Any]) -> Any:
        """``read()``, or None with a warning when the server refuses or cannot answer it."""
        try:
            return read()
        except self.rpcrt.DCERPCException as exc:
            code = exc.get_error_code()
            if code == ERROR_ACCESS_DENIED:
                log.warning(
                    "%s: access denied to %s: %s unknown; %s %s",
                    self.label,
                    what,
                    unknown,
                    self.source.credentials.account,
                    RIGHTS,
                )
            else:
                log.warning("%s: %s failed: %s; %s unknown", self.label, what, _rpc_error(exc), unknown)
        except Incomplete as exc:
            log.warning("%s: %s: %s; %s unknown", self.label, what, exc, unknown)
        return None

    def is_samba(self) -> bool | None:
        """Whether the server is Samba (SV_TYPE_SERVER_UNIX in NetrServerGetInfo level 101,
        which any authenticated user may ask); None when it does not answer."""
        try:
            self.check_time()
            answer = self.srvs.hNetrServerGetInfo(self.dce, 101)
            server_type = answer["InfoStruct"]["ServerInfo101"]["sv101_type"]
        except (self.rpcrt.DCERPCException, Incomplete, KeyError, TypeError, AttributeError) as exc:
            log.debug("%s: NetrServerGetInfo level 101: %s", self.label, exc)
            self.source.server_type = None
            return None
        if not isinstance(server_type, int):
            self.source.server_type = None
            return None
        self.source.server_type = server_type
        return bool(server_type & SV_TYPE_SERVER_UNIX)

    def check_time(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise Incomplete("no time left", timed_out=True)

    def entries(self, call: Callable[[int], Any], path: tuple[str, ...], what: str) -> list[Any]:
        return all_entries(call, path, self.srvs, self.deadline, f"{self.label}: {what}")

    # --- shares -------------------------------------------------------------------------------

    def shares(self) -> list[ShareRecord]:
        """NetrShareEnum level 2, else level 1 (no path, no limit) when level 2 is refused."""
        srvs, level = self.srvs, 2
        try:
            found = self.entries(
                lambda resume: srvs.hNetrShareEnum(self.dce, 2, resume, PREFERRED_LENGTH),
                ("ShareInfo", "Level2"),
                "NetrShareEnum",
            )
        except self.rpcrt.DCERPCException as exc:
            if exc.get_error_code() != ERROR_ACCESS_DENIED:
                raise
            level = 1
            found = self.entries(
                lambda resume: srvs.hNetrShareEnum(self.dce, 1, resume, PREFERRED_LENGTH),
                ("ShareInfo", "Level1"),
                "NetrShareEnum",
            )
            log.warning(
                "%s: NetrShareEnum level 2 refused, level 1 answered: share paths and limits unknown; %s %s",
                self.label,
                self.source.credentials.account,
                RIGHTS,
            )
        records: list[ShareRecord] = []
        seen: set[str] = set()
        nameless = repeated = odd_paths = 0
        for entry in found:
            name = _text(entry[f"shi{level}_netname"])
            if not name:
                nameless += 1
                continue
            if name.casefold() in seen:  # share names are case-insensitive: one key, one share
                repeated += 1
                continue
            seen.add(name.casefold())
            share_type = _dword(entry[f"shi{level}_type"])
            path = max_uses = None
            if level == 2:
                path, odd = self.share_path(_text_or_none(entry["shi2_path"]), share_type)
                odd_paths += odd
                uses = _dword(entry["shi2_max_uses"])
                max_uses = None if uses is None or uses == UNLIMITED else uses
            records.append(
                ShareRecord(
                    name=name,
                    path=path,
                    share_type=share_type,
                    remark=_text_or_none(entry[f"shi{level}_remark"]),
                    max_uses=max_uses,
                    server=self.label,
                    limit_known=level == 2,
                )
            )
        if nameless:
            log.warning("%s: NetrShareEnum gave %d shares without a name; they are left out", self.label, nameless)
        if repeated:
            log.warning(
                "%s: NetrShareEnum gave %d share names twice; the repetitions are left out", self.label, repeated
            )
        if odd_paths:
            log.warning(
                "%s: %d share paths are not in Samba's form C:\\...: their paths unknown", self.label, odd_paths
            )
        return records

    def share_path(self, text: str | None, share_type: int | None) -> tuple[str | None, int]:
        """The share's server-local path, and 1 if Samba sent one not in its form."""
        if share_type is not None and share_type & STYPE_MASK == STYPE_IPC:
            return None, 0  # IPC$ has no path (Samba sends its temporary directory)
        if not text:
            return None, 0
        if not self.samba:
            return text, 0
        unix = samba_path(text)
        return (unix, 0) if unix is not None else (None, 1)

    # --- tree connects ------------------------------------------------------------------------

    def connections(self, shares: list[ShareRecord]) -> list[ConnectionRecord] | None:
        """NetrConnectionEnum level 1 for each share; None for Samba's placeholders."""
        names = [share.name for share in shares]
        if len(names) > MAX_SHARES:
            raise Incomplete(f"more than {MAX_SHARES} shares to ask")
        if self.samba:  # the query's own tree connect to IPC$ shows at once whether the call is real
            names.sort(key=lambda name: name.upper() != "IPC$")
        records: list[ConnectionRecord] = []
        for name in names:
            try:
                found = self.entries(
                    lambda resume, name=name: self.srvs.hNetrConnectionEnum(
                        self.dce, name + "\x00", 1, resume, PREFERRED_LENGTH
                    ),
                    ("ConnectInfo", "Level1"),
                    "NetrConnectionEnum",
                )
            except self.rpcrt.DCERPCException as exc:
                if exc.get_error_code() in (ERROR_INVALID_NAME, NERR_NET_NAME_NOT_FOUND):
                    continue  # the share is gone since the share list: no tree connects to it
                raise
            now = time.time()
            for entry in found:
                user, netname = _text(entry["coni1_username"]), _text(entry["coni1_netname"])
                if user == SAMBA_STUB_USER and netname == SAMBA_STUB_NETNAME:
                    log.warning(
                        "%s: the server's NetrConnectionEnum answers placeholders (user %r, client %r, "
                        "the same time and id for every tree connect%s): connections unknown",
                        self.label,
                        SAMBA_STUB_USER,
                        SAMBA_STUB_NETNAME,
                        ", as Samba does" if self.samba else "",
                    )
                    return None
                seconds = _dword(entry["coni1_time"])
                records.append(
                    ConnectionRecord(
                        session_id=None,
                        share_name=name,
                        connection_id=_dword(entry["coni1_id"]),
                        established=None if seconds is None else now - _seconds(seconds),
                        server=self.label,
                        computer_name=netname.lstrip("\\"),
                        user_name=user,
                        opens=_dword(entry["coni1_num_opens"]),
                        users=_dword(entry["coni1_num_users"]),
                    )
                )
        return records

    # --- open files ---------------------------------------------------------------------------

    def opens(self) -> list[OpenRecord]:
        """NetrFileEnum level 3: every open of every user."""
        srvs = self.srvs
        found = self.entries(
            lambda resume: srvs.hNetrFileEnum(self.dce, srvs.NULL, srvs.NULL, 3, resume, PREFERRED_LENGTH),
            ("FileInfo", "Level3"),
            "NetrFileEnum",
        )
        ids = Counter(_dword(entry["fi3_id"]) for entry in found)
        records: list[OpenRecord] = []
        masks = odd_paths = 0
        for entry in found:
            file_id = _dword(entry["fi3_id"])
            if file_id is None or ids[file_id] > 1:
                continue
            permissions = _dword(entry["fi3_permissions"])
            # MS-SMB2 3.3.4.20: Windows answers the handle's GrantedAccess; a value with a bit above
            # MS-SRVS' PERM_* bits can be nothing else. Samba answers mask & 3: never the mask.
            mask = permissions if not self.samba and permissions is not None and permissions & ~PERM_BITS else None
            masks += mask is not None
            text = _text_or_none(entry["fi3_path_name"]) or None
            path = text
            if text is not None and self.samba:
                path = samba_path(text)
                odd_paths += path is None
            records.append(
                OpenRecord(
                    file_id=file_id,
                    session_id=None,
                    connection_id=None,
                    share_name=None,
                    path=path,
                    share_relative_path=None,
                    access_mask=mask,
                    locks=None if self.samba is not False else _dword(entry["fi3_num_locks"]),
                    durable=None,
                    continuously_available=None,
                    encrypted=None,
                    signed=None,
                    server=self.label,
                    user_name=_text_or_none(entry["fi3_username"]),
                    computer_name=None,
                )
            )
        collided = sum(count for key, count in ids.items() if count > 1 or key is None)
        if collided:
            log.warning(
                "%s: NetrFileEnum gave %d open files whose id another open file has too%s: they are left out",
                self.label,
                collided,
                " (Samba's id is the smbd process id and the file's number, 16 bits each)" if self.samba else "",
            )
        if records and masks < len(records):
            log.warning(
                "%s: NetrFileEnum gives %s: Permissions unknown%s",
                self.label,
                "only the read and write bits of the access mask (Samba)" if self.samba else "no access mask",
                "" if not masks else f" for {len(records) - masks} of {len(records)} open files",
            )
        if records and self.samba is not False:
            log.warning(
                "%s: %s: Locks unknown",
                self.label,
                "NetrFileEnum counts byte-range locks per file, not per handle (Samba)"
                if self.samba
                else "the server did not say whether it is Samba, whose NetrFileEnum counts byte-range locks "
                "per file, not per handle",
            )
        if odd_paths:
            log.warning(
                "%s: %d open file paths are not in Samba's form C:\\...: their paths unknown", self.label, odd_paths
            )
        return records


def all_entries(
    call: Callable[[int], Any],
    path: tuple[str, ...],
    srvs: Any,
    deadline: float | None = None,
    what: str = "the server",
) -> list[Any]:
    """Every entry of an enumeration, following ERROR_MORE_DATA with the resume handle.

    ``call(resume)`` makes one request; ``path`` leads from the answer's ``InfoStruct`` to the
    container with the ``Buffer``. Bounded: at most MAX_ANSWERS answers and MAX_ENTRIES entries,
    and none asked for after ``deadline`` (time.monotonic()); beyond a bound it raises
    :class:`Incomplete`. A server that says "more" but gives no new resume handle has given all
    it can: what came is kept, with a warning.
    """
    entries: list[Any] = []
    resume, seen = 0, {0}
    for _ in range(MAX_ANSWERS):
        if deadline is not None and time.monotonic() > deadline:
            raise Incomplete("no time left", timed_out=True)
        try:
            answer = call(resume)
            more = False
        except srvs.DCERPCSessionError as exc:
            if exc.get_error_code() != ERROR_MORE_DATA or not exc.get_packet():
                raise
            answer, more = exc.get_packet(), True
        node = answer["InfoStruct"]
        for step in path:
            node = node[step]
        entries.extend(node["Buffer"] or [])
        if len(entries) > MAX_ENTRIES:
            raise Incomplete(f"answered more than {MAX_ENTRIES} entries")
        if not more:
            return entries
        resume = answer["ResumeHandle"]
        if not isinstance(resume, int) or resume in seen:
            log.warning("%s: the server said more entries follow but gave no new resume handle; kept what came", what)
            return entries
        seen.add(resume)
    raise Incomplete(f"took more than {MAX_ANSWERS} answers")


def samba_path(text: str) -> str | None:
    """The Unix path Samba wrote as ``"C:" + path`` with every ``/`` made ``\\`` (srv_srvsvc_nt.c,
    init_srv_share_info_2 and enum_file_fn); None if ``text`` is not in that form.

    A Unix name holding a ``\\`` comes back with a ``/`` there: Samba's answer cannot tell them apart.
    """
    if not text.startswith("C:") or len(text) == 2:
        return None
    return text[2:].replace("\\", "/")


def _text(value: Any) -> str:
    """An LPWSTR as impacket gives it ('x\\x00', or NULL) as plain text."""
    return value.rstrip("\x00") if isinstance(value, str) else ""


def _text_or_none(value: Any) -> str | None:
    """An LPWSTR as text, None for a NULL pointer."""
    return value.rstrip("\x00") if isinstance(value, str) else None


def _dword(value: Any) -> int | None:
    """A DWORD as impacket gives it; None for anything else (a value never taken on trust)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 0xFFFFFFFF else None


def _seconds(value: int | None) -> int:
    """A DWORD of seconds; Samba answers -1 (0xFFFFFFFF) for a session younger than a second."""
    return 0 if value is None or value >= 2**31 else value


def _rpc_error(exc: Any) -> str:
    """An RPC error in words: impacket's own text names 5 and 8 wrongly (see docs/notes)."""
    code = exc.get_error_code()
    if code == 8:
        return "ERROR_NOT_ENOUGH_MEMORY (8)"
    return str(exc)


def _reason(exc: BaseException) -> str:
    """Why a connection failed, in words: impacket wraps the socket's error in its own."""
    for arg in (exc, *exc.args):
        if isinstance(arg, OSError) and isinstance(arg.strerror, str):
            return arg.strerror[:1].lower() + arg.strerror[1:]
    return str(exc) or type(exc).__name__


def _smb_error(label: str, credentials: Credentials, code: int) -> SourceUnavailable:
    """An error of the SMB log-on (or of the connection before the pipe)."""
    if code in NT_STATUS_NAMES:
        return AuthenticationFailed(f"{label}: log-on as {credentials.account} failed: {NT_STATUS_NAMES[code]}")
    return SourceUnavailable(f"{label}: SMB error {_status_name(code)}")


def _pipe_error(label: str, code: int) -> SourceUnavailable:
    """An error opening ``\\pipe\\srvsvc`` on ``IPC$``."""
    if code in (0xC0000034, 0xC00000CC, 0xC00000AD):  # OBJECT_NAME_NOT_FOUND, BAD_NETWORK_NAME, INVALID_PIPE_STATE
        return SourceUnavailable(
            f"{label}: srvsvc is not available: the server has no \\pipe\\srvsvc ({_status_name(code)})"
        )
    if code == 0xC0000022:
        return AccessDenied(f"{label}: access denied to IPC$ or \\pipe\\srvsvc")
    return SourceUnavailable(f"{label}: cannot open \\pipe\\srvsvc: {_status_name(code)}")


def _status_name(code: int) -> str:
    from impacket import nt_errors

    name = nt_errors.ERROR_MESSAGES.get(code, ("",))[0]
    return name or f"NTSTATUS 0x{code:08x}"
