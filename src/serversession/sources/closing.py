"""Ending sessions and closing open files (DESIGN.md 2c): the interface both sources implement.

A closer is chosen like a reader (:func:`open_closer` takes :func:`~serversession.sources.open_source`'s
options) and holds the source that reads what there is to close. It closes what it is given,
one :class:`Outcome` per target, each with a Win32 error code (0: closed) and the reason in
words; it knows nothing of selectors, tables or confirmation (serversession/close/).

- samba (sources/samba_close.py): smbd's own messages, one session or one handle at a time,
  by SMB session id (MSFT_SmbSession.SessionId) and file id (MSFT_SmbOpenFile.FileId). Root only.
- srvsvc (sources/srvsvc_close.py): MS-SRVS ``NetrSessionDel`` by client computer and user (the
  protocol has no session ids) and ``NetrFileClose`` by file id; the server checks the rights.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ..errors import InvalidInput
from .base import Source
from .remote import SMB_PORT

# Win32 error codes an Outcome carries (what MSFT_Smb*.ForceClose() returns)
ERROR_SUCCESS = 0
ERROR_FILE_NOT_FOUND = 2
ERROR_ACCESS_DENIED = 5
ERROR_GEN_FAILURE = 31
ERROR_NOT_SUPPORTED = 50
ERROR_NOT_FOUND = 1168
ERROR_TIMEOUT = 1460


@dataclass(frozen=True, slots=True)
class SessionTarget:
    """A session to end, as the read showed it."""

    session_id: int | None  # the SMB session id (MSFT_SmbSession.SessionId); None over srvsvc
    computer: str  # ComputerName / ClientComputerName
    user: str  # UserName / ClientUserName ("" for an anonymous session)
    #: when it was established (Unix seconds, as read): a later session given the same id is not it
    established: float | None = None

    @property
    def label(self) -> str:
        who = f"{self.user or '(anonymous)'}@{self.computer}"
        return who if self.session_id is None else f"session {self.session_id} ({who})"


@dataclass(frozen=True, slots=True)
class FileTarget:
    """An open handle to close, as the read showed it."""

    file_id: int  # MSFT_SmbOpenFile.FileId
    path: str | None = None

    @property
    def label(self) -> str:
        return f"file {self.file_id}" + (f" ({self.path})" if self.path else "")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one target: closed (code 0) or why not."""

    target: str  # the target's label
    code: int  # Win32 error code, ERROR_SUCCESS when it was closed
    reason: str = ""  # why it was not closed (code != 0)
    #: sessions that ended with it without being asked for (a connection that had to end), as labels
    also: tuple[str, ...] = ()

    @property
    def closed(self) -> bool:
        return self.code == ERROR_SUCCESS


class Closer(Protocol):
    """What both sources offer for closing."""

    description: str
    source: Source  # reads what there is to close
    #: True: sessions are ended one by one by session id; False: by (computer, user), all that match
    by_session_id: bool

    def check(self) -> None:
        """Raise AccessDenied when this process may not close anything (before anything is read)."""
        ...

    def close_sessions(
        self, targets: Sequence[SessionTarget], timeout: float, others: Sequence[SessionTarget] = ()
    ) -> list[Outcome]:
        """End each session of ``targets``; ``others``: the rest of what was read (to name what else ended)."""
        ...

    def close_files(self, targets: Sequence[FileTarget], timeout: float) -> list[Outcome]:
        """Close each open handle of ``targets``."""
        ...


def open_closer(
    name: str = "auto",
    *,
    smb_conf: str | None = None,
    hosts: Sequence[str] = (),
    hosts_file: str | None = None,
    smb_port: int = SMB_PORT,
    user: str | None = None,
    password: str | None = None,
    password_file: str | None = None,
) -> Closer:
    """The closer of the source ``name`` would read (the options of ``sources.open_source``).

    Closing acts on one server: srvsvc takes exactly one host.
    """
    from . import SOURCE_NAMES

    if name not in SOURCE_NAMES:
        raise InvalidInput(f"unknown source {name!r}; choose one of {', '.join(SOURCE_NAMES)}")
    remote = bool(hosts or hosts_file)
    if name == "srvsvc" or (name == "auto" and remote):
        from .remote import credentials, endpoints
        from .srvsvc import SrvsvcSource, check_impacket
        from .srvsvc_close import SrvsvcCloser

        targets = endpoints(tuple(hosts), hosts_file, smb_port)
        if len(targets) != 1:
            raise InvalidInput(
                f"closing acts on one server at a time; {len(targets)} hosts were given" if targets else
                "the srvsvc source needs a host to ask"
            )  # fmt: skip
        account = credentials(user, password, password_file)
        check_impacket()
        return SrvsvcCloser(SrvsvcSource(targets[0], account))
    if remote or user or password_file:
        raise InvalidInput(f"hosts and credentials are for the srvsvc source; the {name} source reads this machine")
    from .samba_close import SambaCloser

    return SambaCloser(smb_conf or os.environ.get("SERVERSESSION_SMB_CONF") or None)
