"""Sessions of any SMB server that answers MS-SRVS ``NetrSessionEnum`` (Windows, Samba).

One host per source: an SMB connection with NTLM authentication, the named pipe
``\\pipe\\srvsvc`` on ``IPC$``, DCE/RPC bind, then ``NetrSessionEnum`` at the richest info
level the server grants (502, else 1, else 10), following ERROR_MORE_DATA with the resume
handle. impacket does the protocol work; it is imported only when a host is read, so the
package works without it. See docs/srvsvc.md.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..errors import AccessDenied, AuthenticationFailed, HostUnreachable, SourceTimeout, SourceUnavailable
from .base import DEFAULT_TIMEOUT, SessionRecord
from .remote import Credentials, Endpoint

log = logging.getLogger(__name__)

ERROR_ACCESS_DENIED = 5
ERROR_INVALID_LEVEL = 124
ERROR_MORE_DATA = 234
PREFERRED_LENGTH = 0x10000  # bytes per answer; a server may send less, never more
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
    """The sessions of one SMB server, read over MS-SRVS with ``credentials``."""

    def __init__(self, endpoint: Endpoint, credentials: Credentials) -> None:
        self.endpoint = endpoint
        self.credentials = credentials
        self.description = f"srvsvc on {endpoint.label}"
        #: the info level that answered the last read (None before one succeeded)
        self.level: int | None = None

    def sessions(self, timeout: float = DEFAULT_TIMEOUT) -> list[SessionRecord]:
        """Every session of the server; errors name the host and say what to do."""
        nmb, smbconnection, (rpcrt, srvs), transport = _impacket()
        label = self.endpoint.label
        try:
            return self._read(smbconnection, rpcrt, srvs, transport, timeout)
        except (nmb.NetBIOSTimeout, TimeoutError):
            raise SourceTimeout(f"{label}: did not answer within {timeout:g} s") from None
        except smbconnection.SessionError as exc:
            raise _smb_error(label, self.credentials, exc.getErrorCode()) from None
        except rpcrt.DCERPCException as exc:
            raise SourceUnavailable(f"{label}: srvsvc is not available: {exc}") from None
        except (nmb.NetBIOSError, OSError) as exc:
            raise HostUnreachable(f"{label}: cannot connect to port {self.endpoint.port}: {_reason(exc)}") from None

    def _read(self, smbconnection: Any, rpcrt: Any, srvs: Any, transport: Any, timeout: float) -> list[SessionRecord]:
        host, port = self.endpoint.host, self.endpoint.port
        connection = smbconnection.SMBConnection(host, host, sess_port=port, timeout=timeout)
        try:
            creds = self.credentials
            connection.login(creds.user, creds.password, creds.domain)
            pipe = transport.SMBTransport(host, port, r"\srvsvc", smb_connection=connection)
            dce = pipe.get_dce_rpc()
            try:
                dce.connect()
            except smbconnection.SessionError as exc:
                raise _pipe_error(self.endpoint.label, exc.getErrorCode()) from None
            dce.bind(srvs.MSRPC_UUID_SRVS)
            level, entries = self._enumerate(dce, rpcrt, srvs)
            now = time.time()
            return [self._record(entry, level, index, now) for index, entry in enumerate(entries)]
        finally:
            try:
                connection.close()
            except Exception:  # the answer is read; a failing goodbye changes nothing
                log.debug("%s: closing the connection failed", self.endpoint.label, exc_info=True)

    def _enumerate(self, dce: Any, rpcrt: Any, srvs: Any) -> tuple[int, list[Any]]:
        """The sessions at the first level the server grants, and that level."""
        label, level, refused = self.endpoint.label, 502, []
        while True:
            try:
                entries = self._all_entries(dce, srvs, level)
            except rpcrt.DCERPCException as exc:
                code = exc.get_error_code()
                refused.append(f"level {level} {'refused' if code == ERROR_ACCESS_DENIED else 'not supported'}")
                if (level, code) in FALLBACK:
                    level = FALLBACK[(level, code)]
                    continue
                if code == ERROR_ACCESS_DENIED:
                    raise AccessDenied(
                        f"{label}: access denied to the session list ({', '.join(refused)}); "
                        f"{self.credentials.account} must be a member of Administrators or Server Operators there"
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

    @staticmethod
    def _all_entries(dce: Any, srvs: Any, level: int) -> list[Any]:
        """Every entry at ``level``, following ERROR_MORE_DATA with the resume handle."""
        entries: list[Any] = []
        resume = 0
        while True:
            try:
                answer = srvs.hNetrSessionEnum(dce, srvs.NULL, srvs.NULL, level, resume, PREFERRED_LENGTH)
                more = False
            except srvs.DCERPCSessionError as exc:
                if exc.get_error_code() != ERROR_MORE_DATA or not exc.get_packet():
                    raise
                answer, more = exc.get_packet(), True
            entries.extend(answer["InfoStruct"]["SessionInfo"][f"Level{level}"]["Buffer"] or [])
            resume = answer["ResumeHandle"]
            if not more or not resume:
                return entries

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
            opens=value("num_opens"),
            user_flags=value("user_flags"),
            client_type=_text(value("cltype_name")) or None,
            transport=_text(value("transport")) or None,
            server=self.endpoint.label,
            detail=f"read with NetrSessionEnum level {level}",
        )


def _text(value: Any) -> str:
    """An LPWSTR as impacket gives it ('x\\x00', or NULL) as plain text."""
    return value.rstrip("\x00") if isinstance(value, str) else ""


def _seconds(value: int) -> int:
    """A DWORD of seconds; Samba answers -1 (0xFFFFFFFF) for a session younger than a second."""
    return 0 if value >= 2**31 else value


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
