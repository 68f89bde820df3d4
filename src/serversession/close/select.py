"""Which sessions and open files a close names: the selectors, checked, and how they match.

Selectors combine as PowerShell's ``Close-SmbSession`` parameters do: ids are alternatives
(any of them), and every other selector given must match too. Names are compared as Windows
compares account and computer names, without case; a computer may be given as ``\\\\NAME``.
A user given as ``DOMAIN\\user`` also matches a session whose user is just ``user``.
Paths are matched with :func:`fnmatch.fnmatchcase` against the whole server path (``*``
crosses ``/``): case-sensitive for the local Samba (Unix paths), without case over srvsvc
(Windows paths); see docs/close.md.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput

MAX_ID = (1 << 64) - 1  # SessionId and FileId are uint64
MAX_IDS = 1000  # ids in one command
MAX_TEXT = 1024  # characters of a computer name, user name or path pattern


def parse_id(value: Any, what: str) -> int:
    """A session or file id given as an int, decimal text or ``0x`` hex text; InvalidInput otherwise."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        hexadecimal = text[:2].lower() == "0x"
        digits = text[2:] if hexadecimal else text
        allowed = "0123456789abcdefABCDEF" if hexadecimal else "0123456789"
        if digits and len(digits) <= 40 and all(c in allowed for c in digits):
            number = int(digits, 16 if hexadecimal else 10)
    if number is None or not 0 <= number <= MAX_ID:
        raise InvalidInput(f"{what} {str(value)[:60]!r} is not a number (decimal or 0x hex) from 0 to 2**64-1")
    return number


def _text(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text, not {type(value).__name__}")
    if not value.strip() or len(value) > MAX_TEXT or "\0" in value:
        raise InvalidInput(f"{what} must be non-empty text of at most {MAX_TEXT} characters without NUL")
    return value


def _ids(values: Any, what: str) -> tuple[int, ...]:
    if values is None:
        return ()
    if isinstance(values, (int, str)) and not isinstance(values, bool):
        values = (values,)
    if not isinstance(values, Iterable):
        raise InvalidInput(f"{what} must be an id or a list of ids")
    found = tuple(dict.fromkeys(parse_id(v, what) for v in values))
    if len(found) > MAX_IDS:
        raise InvalidInput(f"more than {MAX_IDS} {what}s at once")
    return found


@dataclass(frozen=True, slots=True)
class Selection:
    """What a close names; at least one selector must be given."""

    ids: tuple[int, ...] = ()  # session ids (sessions) or file ids (files)
    computer: str | None = None
    user: str | None = None
    path: str | None = None  # files: a glob on MSFT_SmbOpenFile.Path
    session_id: int | None = None  # files: MSFT_SmbOpenFile.SessionId

    @classmethod
    def sessions(cls, session_ids: Any, computer: str | None, user: str | None) -> Selection:
        found = cls(_ids(session_ids, "session id"), _text(computer, "computer"), _text(user, "user"))
        if not (found.ids or found.computer or found.user):
            raise InvalidInput("name the sessions to close: give a session id, a computer or a user")
        return found

    @classmethod
    def files(
        cls, file_ids: Any, path: str | None, session_id: Any, computer: str | None, user: str | None
    ) -> Selection:
        found = cls(
            _ids(file_ids, "file id"),
            _text(computer, "computer"),
            _text(user, "user"),
            _text(path, "path"),
            None if session_id is None else parse_id(session_id, "session id"),
        )
        if not (found.ids or found.computer or found.user or found.path or found.session_id is not None):
            raise InvalidInput("name the files to close: give a file id, a path, a session id, a computer or a user")
        return found

    def describe(self, kind: str) -> str:
        """The selectors in words, for 'no session matches ...'."""
        parts = []
        if self.ids:
            parts.append(f"{kind} id " + ", ".join(str(i) for i in self.ids))
        if self.path is not None:
            parts.append(f"path {self.path!r}")
        if self.session_id is not None:
            parts.append(f"session id {self.session_id}")
        if self.computer is not None:
            parts.append(f"computer {self.computer!r}")
        if self.user is not None:
            parts.append(f"user {self.user!r}")
        return ", ".join(parts)


# lower(), not casefold(): casefold() makes "straße" equal "strasse" and "ﬁle" equal "file", which
# Windows' case-blind names are not; a selector must never close what the admin did not name.


def same_computer(given: str, value: str | None) -> bool:
    return value is not None and given.lstrip("\\").lower() == value.lower()


def same_user(given: str, value: str | None) -> bool:
    if value is None:
        return False
    wanted, have = given.lower(), value.lower()
    return wanted == have or ("\\" in wanted and "\\" not in have and wanted.rsplit("\\", 1)[1] == have)


def path_matches(pattern: str, path: str | None, case_sensitive: bool) -> bool:
    if path is None:
        return False
    if case_sensitive:
        return fnmatch.fnmatchcase(path, pattern)
    return fnmatch.fnmatchcase(path.lower(), pattern.lower())


def session_matches(instance: Any, selection: Selection) -> bool:
    """An MSFT_SmbSession (by id) or a Win32_ServerSession (srvsvc: no ids) the selection names."""
    if instance.classname == "MSFT_SmbSession":
        sid, computer, user = instance.SessionId, instance.ClientComputerName, instance.ClientUserName
    else:
        sid, computer, user = None, instance.ComputerName, instance.UserName
    return (
        (not selection.ids or sid in selection.ids)
        and (selection.computer is None or same_computer(selection.computer, computer))
        and (selection.user is None or same_user(selection.user, user))
    )


def file_matches(instance: Any, selection: Selection, case_sensitive: bool) -> bool:
    """An MSFT_SmbOpenFile the selection names."""
    return (
        (not selection.ids or instance.FileId in selection.ids)
        and (selection.path is None or path_matches(selection.path, instance.Path, case_sensitive))
        and (selection.session_id is None or instance.SessionId == selection.session_id)
        and (selection.computer is None or same_computer(selection.computer, instance.ClientComputerName))
        and (selection.user is None or same_user(selection.user, instance.ClientUserName))
    )
