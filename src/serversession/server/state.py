"""Where ``serve`` keeps its indication subscriptions across restarts: one JSON file in a state
directory (``--state-dir``), written atomically, locked against a second server.

The file is replaced as a whole on each change (written to a temporary file in the same
directory, flushed to disk, renamed over the old one), so a crash leaves the old file or the new
one, never a mix. A file that cannot be understood is moved aside (``subscriptions.json.corrupt-
TIME``, kept for the administrator) with a warning, and the server starts with no subscriptions;
entries that cannot be used one by one are the store's business (kept, see :mod:`.interop`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from typing import Any

from ..errors import ServerSessionError, SourceUnavailable
from ..files import read_bytes

log = logging.getLogger("serversession.server")
STATE_FILE = "subscriptions.json"
LOCK_FILE = "serve.lock"
FORMAT = 1
MAX_STATE_BYTES = 16 << 20
SECTIONS = ("filters", "destinations", "subscriptions")


def default_state_dir() -> str:
    """systemd's ``$STATE_DIRECTORY``, else /var/lib/serversession for root, else
    ``$XDG_STATE_HOME/serversession`` (``~/.local/state/serversession``)."""
    given = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if given:
        return given
    if os.geteuid() == 0:
        return "/var/lib/serversession"
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "serversession")


class StateFile:
    """The state file of one server: :meth:`open` (create and lock the directory), :meth:`load`,
    :meth:`save`. ``path`` is None when nothing is kept (the directory is another server's)."""

    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory)
        self.path: str | None = None
        self._lock_fd: int | None = None

    def open(self, explicit: bool) -> None:
        """Create the directory (0700) and lock it. Another server holding it is an error when the
        directory was given (``explicit``), else a warning, and this server keeps nothing."""
        import fcntl

        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            fd = os.open(os.path.join(self.directory, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            problem = f"cannot use the state directory {self.directory}: {exc.strerror or exc}"
            if explicit:
                raise ServerSessionError(problem) from None
            log.warning("%s; subscriptions will not be kept across a restart (give --state-dir)", problem)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            problem = f"the state directory {self.directory} is used by another serversession serve"
            if explicit:
                raise ServerSessionError(problem) from None
            log.warning("%s; this one keeps its subscriptions only until it stops (give --state-dir)", problem)
            return
        self._lock_fd = fd
        self.path = os.path.join(self.directory, STATE_FILE)

    def close(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    def load(self) -> dict[str, list[Any]]:
        """The sections of the file (each a list of entries); empty ones if there is no file.
        A file that is not what this server writes is moved aside with a warning."""
        empty: dict[str, list[Any]] = {name: [] for name in SECTIONS}
        if self.path is None or not os.path.lexists(self.path):
            return empty
        try:
            text = read_bytes(self.path, "state file", MAX_STATE_BYTES).decode("utf-8")  # else a ValueError
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError(f"not a format {FORMAT} state file")
            sections = {name: data.get(name, []) for name in SECTIONS}
            if not all(isinstance(entries, list) for entries in sections.values()):
                raise ValueError("a section is not a list")
            return sections
        except (ValueError, RecursionError) as exc:  # json's and UTF-8's errors are ValueErrors
            aside = f"{self.path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
            try:
                os.replace(self.path, aside)
            except OSError as move:
                raise ServerSessionError(
                    f"the state file {self.path} is damaged ({exc}) and cannot be moved aside: {move.strerror}"
                ) from None
            log.warning(
                "the state file %s is damaged (%s): moved to %s; starting with no subscriptions",
                self.path,
                str(exc)[:200],
                aside,
            )
            return empty
        except SourceUnavailable as exc:  # a directory, a FIFO, unreadable, too large
            raise ServerSessionError(f"cannot read the state file: {exc}") from None

    def save(self, sections: dict[str, list[Any]]) -> None:
        """Replace the file with ``sections`` atomically (OSError if it cannot be written)."""
        if self.path is None:
            return
        text = json.dumps({"format": FORMAT, **sections}, indent=1, sort_keys=True)
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".subscriptions-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        with contextlib.suppress(OSError):  # the rename itself on disk
            directory = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
