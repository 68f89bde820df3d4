"""One close: read the source, pick what the selection names, ask, close, report (DESIGN.md 2c).

Nothing is closed that the selection does not name, nothing before ``confirm`` (if given) said
yes, and nothing with ``what_if``. The report holds what matched (the instances a table shows)
and one Outcome per close, each with a Win32 error code, and its own :attr:`CloseReport.code`,
which is what ``MSFT_SmbSession.ForceClose()`` and ``MSFT_SmbOpenFile.ForceClose()`` return.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from ..errors import InvalidInput, SourceUnavailable
from ..model import SERVER_SESSION, CIMObject
from ..sources import read_snapshot
from ..sources.base import OPENS
from ..sources.closing import ERROR_NOT_FOUND, ERROR_SUCCESS, Closer, FileTarget, Outcome, SessionTarget
from .select import Selection, file_matches, session_matches

ERROR_CANCELLED = 1223  # the user said no
SMB_SESSION, SMB_OPEN_FILE = "MSFT_SmbSession", "MSFT_SmbOpenFile"
Kind = Literal["session", "file"]
#: asked with what matched before anything is closed; False: close nothing
Confirm = Callable[[Sequence[CIMObject]], bool]


@dataclass(frozen=True)
class CloseReport:
    """What a close matched and what became of each."""

    kind: Kind
    classname: str  # the class of ``matched``: MSFT_SmbSession, Win32_ServerSession (srvsvc), MSFT_SmbOpenFile
    matched: tuple[CIMObject, ...]
    outcomes: tuple[Outcome, ...] = ()  # one per close (srvsvc: per computer and user); none with what_if
    what_if: bool = False
    declined: bool = False  # confirm said no

    @property
    def closed(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.closed)

    @property
    def failed(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if not o.closed)

    @property
    def code(self) -> int:
        """0 when everything that matched was closed (or would be, with what_if); ERROR_NOT_FOUND
        (1168) when nothing matched; ERROR_CANCELLED (1223) when declined; else the first failure's."""
        if not self.matched:
            return ERROR_NOT_FOUND
        if self.what_if:
            return ERROR_SUCCESS
        if self.declined:
            return ERROR_CANCELLED
        return self.failed[0].code if self.failed else ERROR_SUCCESS


def close_sessions(
    closer: Closer, selection: Selection, timeout: float, what_if: bool = False, confirm: Confirm | None = None
) -> CloseReport:
    """End the sessions ``selection`` names on ``closer``'s server."""
    if selection.ids and not closer.by_session_id:
        raise InvalidInput("MS-SRVS (srvsvc) has no session ids: name the sessions by computer and user")
    if not what_if:
        closer.check()
    from ..model.providers import build

    snapshot = read_snapshot(closer.source, timeout)
    classname = SMB_SESSION if closer.by_session_id else SERVER_SESSION
    every = build((classname,), snapshot)
    matched = tuple(i for i in every if session_matches(i, selection))
    if not matched or what_if:
        return CloseReport("session", classname, matched, what_if=what_if)
    if confirm is not None and not confirm(matched):
        return CloseReport("session", classname, matched, declined=True)
    established = {r.wire_id: r.established for r in snapshot.sessions if r.wire_id is not None}

    def target(i: CIMObject) -> SessionTarget:
        if classname == SMB_SESSION:
            sid = i.SessionId  # type: ignore[attr-defined]
            return SessionTarget(sid, i.ClientComputerName, i.ClientUserName, established.get(sid))  # type: ignore[attr-defined]
        return SessionTarget(None, i.ComputerName, i.UserName)  # type: ignore[attr-defined]

    chosen = {id(i) for i in matched}
    others = [target(i) for i in every if id(i) not in chosen]
    outcomes = closer.close_sessions([target(i) for i in matched], timeout, others)
    return CloseReport("session", classname, matched, tuple(outcomes))


def close_files(
    closer: Closer, selection: Selection, timeout: float, what_if: bool = False, confirm: Confirm | None = None
) -> CloseReport:
    """Close the open handles ``selection`` names on ``closer``'s server."""
    if not closer.by_session_id and (selection.session_id is not None or selection.computer is not None):
        raise InvalidInput(
            "MS-SRVS (srvsvc) does not say which session or computer has a file open: "
            "name the files by id, path or user"
        )
    if not what_if:
        closer.check()
    from ..model.providers import build

    snapshot = read_snapshot(closer.source, timeout, frozenset({OPENS}))
    if snapshot.opens is None:
        raise SourceUnavailable(f"{closer.description}: the open files could not be read (see the warning above)")
    case_sensitive = closer.by_session_id  # the local Samba's Unix paths; srvsvc: Windows' (see select.py)
    every = build((SMB_OPEN_FILE,), snapshot)
    matched = tuple(i for i in every if file_matches(i, selection, case_sensitive))
    if not matched or what_if:
        return CloseReport("file", SMB_OPEN_FILE, matched, what_if=what_if)
    if confirm is not None and not confirm(matched):
        return CloseReport("file", SMB_OPEN_FILE, matched, declined=True)
    targets = [FileTarget(i.FileId, i.Path) for i in matched]  # type: ignore[attr-defined]
    return CloseReport("file", SMB_OPEN_FILE, matched, tuple(closer.close_files(targets, timeout)))
