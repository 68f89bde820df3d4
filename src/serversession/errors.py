"""Errors that front ends turn into one clear line and an exit code (DESIGN.md section 4)."""

from __future__ import annotations


class ServerSessionError(Exception):
    """Base class: the operation failed (exit code 1)."""

    exit_code = 1


class InvalidInput(ServerSessionError):
    """The user's input is malformed (exit code 2)."""

    exit_code = 2


class SourceUnavailable(ServerSessionError):
    """A source cannot be read: not installed, not running, no permission, bad config."""


class SourceTimeout(SourceUnavailable):
    """A source did not answer in time."""


class SourceDataError(SourceUnavailable):
    """A source answered with data that cannot be understood."""


class NotFound(ServerSessionError):
    """The requested object does not exist."""


class AccessDenied(SourceUnavailable):
    """The source refused the caller: not allowed to read sessions."""


class AuthenticationFailed(SourceUnavailable):
    """The server did not accept the user name and password."""


class HostUnreachable(SourceUnavailable):
    """No connection could be made to a remote host."""
