"""Ending sessions and closing open files of a server over MS-SRVS (``NetrSessionDel``, ``NetrFileClose``).

``NetrSessionDel(client, user)`` ends every session of that client computer and user, either
of them empty meaning all (Windows' ``NetSessionDel``); MS-SRVS has no session ids, so a
session is named by (computer, user). ``NetrFileClose(id)`` closes one handle by the id
``NetrFileEnum`` gave it. What the server does, as read from its sources and tried against it:

- **Windows**: both need Administrators or Server Operators. Unknown client: NERR_ClientNameNotFound
  (2312), unknown user NERR_UserNotFound (2221), unknown file NERR_FileIdNotFound (2314).
- **Samba** (srv_srvsvc_nt.c, 4.13-4.25): ``NetrSessionDel`` needs root or membership of Domain
  Admins (RID 512 of the server's domain; BUILTIN\\Administrators, which listing sessions needs,
  is not enough), answers ERROR_ACCESS_DENIED as well when no session matched, and ends each
  matching session by ending its whole smbd process (``MSG_SHUTDOWN``): every other session on
  that connection ends too. ``NetrFileClose`` needs root or SeDiskOperatorPrivilege (which
  BUILTIN\\Administrators hold unless it was revoked) and answers ERROR_FILE_NOT_FOUND for an
  unknown id.

After the deletions the sessions are listed again (until the asked-for ones are gone, at most
SETTLE seconds): those listed before and gone now that were not asked for are the outcome's
``also``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from ..errors import HostUnreachable, SourceTimeout, SourceUnavailable
from .closing import (
    ERROR_ACCESS_DENIED,
    ERROR_FILE_NOT_FOUND,
    ERROR_GEN_FAILURE,
    ERROR_SUCCESS,
    FileTarget,
    Outcome,
    SessionTarget,
)
from .srvsvc import PartReader, SrvsvcSource, _impacket, _reason, _rpc_error, _smb_error

NERR_USER_NOT_FOUND = 2221
NERR_CLIENT_NAME_NOT_FOUND = 2312
NERR_FILE_ID_NOT_FOUND = 2314
SETTLE = 5.0  # seconds the sessions asked for get to leave the list after NetrSessionDel
POLL = 0.2

WINDOWS_RIGHTS = "Administrators or Server Operators"
SAMBA_SESSION_RIGHTS = (
    "root or a member of Domain Admins (RID 512) there (BUILTIN\\Administrators is not enough); "
    "Samba also answers access denied when no session matches"
)
SAMBA_FILE_RIGHTS = "root or SeDiskOperatorPrivilege there (BUILTIN\\Administrators hold it unless it was revoked)"


class SrvsvcCloser:
    """Closes sessions and open files of one server over MS-SRVS (sources/closing.py)."""

    by_session_id = False

    def __init__(self, source: SrvsvcSource) -> None:
        self.source = source
        self.description = source.description

    def check(self) -> None:
        """Nothing to check here: the server decides who may close."""

    @contextlib.contextmanager
    def _binding(self, timeout: float) -> Iterator[tuple[Any, Any, bool | None]]:
        """(dce, srvs, whether the server is Samba), impacket's errors turned into this package's."""
        nmb, smbconnection, (rpcrt, srvs), _ = _impacket()
        label = self.source.endpoint.label
        try:
            with self.source.pipe(timeout) as dce:
                samba = PartReader(self.source, dce, rpcrt, srvs, time.monotonic() + timeout).is_samba()
                yield dce, srvs, samba
        except (nmb.NetBIOSTimeout, TimeoutError):
            raise SourceTimeout(f"{label}: did not answer within {timeout:g} s") from None
        except smbconnection.SessionError as exc:
            raise _smb_error(label, self.source.credentials, exc.getErrorCode()) from None
        except rpcrt.DCERPCException as exc:
            raise SourceUnavailable(f"{label}: srvsvc is not available: {exc}") from None
        except (nmb.NetBIOSError, OSError) as exc:
            raise HostUnreachable(
                f"{label}: cannot connect to port {self.source.endpoint.port}: {_reason(exc)}"
            ) from None

    def _call(self, request: Any, what: str, samba: bool | None, rights: str) -> tuple[int, str]:
        """(Win32 code, reason) of one NetrSessionDel or NetrFileClose."""
        _, _, (rpcrt, _), _ = _impacket()
        try:
            request()
        except rpcrt.DCERPCException as exc:
            code = exc.get_error_code()
            account = self.source.credentials.account
            if code == ERROR_ACCESS_DENIED:
                needed = {True: f"{rights} (Samba)", False: f"{WINDOWS_RIGHTS} (Windows)"}.get(
                    samba, f"{WINDOWS_RIGHTS} on Windows, {rights} on Samba"
                )
                return code, f"access denied to {account}: {what} needs {needed}"
            reasons = {
                NERR_CLIENT_NAME_NOT_FOUND: "the server has no session from that computer",
                NERR_USER_NOT_FOUND: "the server has no session of that user",
                NERR_FILE_ID_NOT_FOUND: "the server has no open file with that id (closed already?)",
                ERROR_FILE_NOT_FOUND: "the server has no open file with that id (closed already?)",
            }
            return (code or ERROR_GEN_FAILURE), reasons.get(code) or f"{what} failed: {_rpc_error(exc)}"
        return ERROR_SUCCESS, ""

    def close_sessions(
        self, targets: Sequence[SessionTarget], timeout: float, others: Sequence[SessionTarget] = ()
    ) -> list[Outcome]:
        started = time.monotonic()
        pairs = list(dict.fromkeys((t.computer, t.user) for t in targets))
        codes: dict[tuple[str, str], tuple[int, str]] = {}
        with self._binding(timeout) as (dce, srvs, samba):
            for computer, user in pairs:
                codes[(computer, user)] = self._call(
                    lambda c=computer, u=user: srvs.hNetrSessionDel(dce, f"\\\\{c}\x00", f"{u}\x00"),
                    "ending sessions (NetrSessionDel)",
                    samba,
                    SAMBA_SESSION_RIGHTS,
                )
        ended = [pair for pair, (code, _) in codes.items() if code == ERROR_SUCCESS]
        listed_before = {(t.computer.casefold(), t.user.casefold()): t.label for t in (*others, *targets)}
        now_listed = self._settle({(c.casefold(), u.casefold()) for c, u in ended}, started + min(timeout, SETTLE))
        asked = {(c.casefold(), u.casefold()) for c, u in pairs}
        gone = tuple(
            label for key, label in listed_before.items() if key not in asked and now_listed is not None
            and key not in now_listed
        )  # fmt: skip
        out = []
        for computer, user in pairs:  # what else ended is told once, with the first that ended
            code, reason = codes[(computer, user)]
            ok = code == ERROR_SUCCESS
            out.append(Outcome(SessionTarget(None, computer, user).label, code, reason, also=gone if ok else ()))
            gone = () if ok else gone
        return out

    def _settle(self, ended: set[tuple[str, str]], deadline: float) -> set[tuple[str, str]] | None:
        """The (computer, user) pairs listed once the ``ended`` ones are gone or at ``deadline``;
        None when the list cannot be read (what else ended is then unknown). The first read's
        warnings (the info level that answered) are not said again."""
        logger, quiet = logging.getLogger("serversession.sources.srvsvc"), _OtherThreads()
        logger.addFilter(quiet)
        try:
            while True:
                try:
                    listed = {
                        (r.computer_name.casefold(), r.user_name.casefold())
                        for r in self.source.sessions(max(deadline - time.monotonic(), 1.0))
                    }
                except SourceUnavailable:
                    return None
                if not ended & listed or time.monotonic() >= deadline:
                    return listed
                time.sleep(POLL)
        finally:
            logger.removeFilter(quiet)

    def close_files(self, targets: Sequence[FileTarget], timeout: float) -> list[Outcome]:
        out = []
        with self._binding(timeout) as (dce, srvs, samba):
            for target in targets:
                code, reason = self._call(
                    lambda t=target: srvs.hNetrFileClose(dce, t.file_id),
                    "closing files (NetrFileClose)",
                    samba,
                    SAMBA_FILE_RIGHTS,
                )
                out.append(Outcome(target.label, code, reason))
        return out


class _OtherThreads(logging.Filter):
    """Lets through the records of every thread but the one that made it."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.thread
