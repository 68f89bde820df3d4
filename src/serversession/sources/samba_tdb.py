"""Read smbd's TDB databases without ever hanging.

A TDB is read under its lock. If another process holds that lock forever (a stuck smbd, an
administrator's ``tdbtool``), Samba's ``tdb`` module blocks inside C with Python's GIL held, so
no thread can time it out. The read therefore happens in a forked child process, which is
killed when the time is up; the records come back over a pipe (``marshal``: bytes only).
"""

from __future__ import annotations

import errno
import marshal
import os
import select
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from .. import errors
from ..errors import SourceDataError, SourceTimeout, SourceUnavailable

TDB_MUTEX_LOCKING = 0x1000  # not exported by the tdb module


def read_databases(tdb: Any, paths: Sequence[str], timeout: float, what: str) -> list[list[bytes]]:
    """The values of every record of each TDB in ``paths``, read in a child within ``timeout`` s."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: read, send, exit without running the parent's clean-up
        status = 0
        try:
            os.close(reader)
            try:
                answer: tuple[str, Any] = ("ok", [read_values(tdb, path) for path in paths])
            except SourceUnavailable as exc:
                answer = (type(exc).__name__, str(exc))
            except BaseException as exc:
                answer = ("SourceDataError", f"reading {', '.join(paths)} failed: {type(exc).__name__}: {exc}")
            view = memoryview(marshal.dumps(answer))
            while view:
                view = view[os.write(writer, view) :]
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(writer)
    try:
        data = _receive(reader, time.monotonic() + timeout)
    except TimeoutError:
        _kill(pid)
        raise SourceTimeout(f"{what} did not answer within {timeout:g} s (a lock on its database is held)") from None
    finally:
        os.close(reader)
    _reap(pid)
    try:
        kind, value = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        raise SourceDataError(f"the process reading {what} ended without an answer") from None
    if kind != "ok":
        raise getattr(errors, kind, SourceDataError)(value)
    return value


def _receive(fd: int, deadline: float) -> bytes:
    chunks = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise TimeoutError
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _kill(pid: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> None:
    with suppress(ChildProcessError):
        os.waitpid(pid, 0)


def read_values(tdb: Any, path: str) -> list[bytes]:
    """Every record's value of one TDB, read under a read lock of the whole database."""
    with _read_locked(tdb, path) as db:
        out = []
        try:
            key = db.firstkey()
            while key is not None:
                value = db.get(key)
                if value is not None:
                    out.append(value)
                key = db.nextkey(key)
        except (OSError, RuntimeError) as exc:
            raise SourceDataError(f"{path} is corrupt: {exc}") from exc
        return out


@contextmanager
def _read_locked(tdb: Any, path: str) -> Iterator[Any]:
    if not os.path.exists(path):
        raise SourceUnavailable(f"{path} does not exist; is this smbd's lock directory?")
    try:
        db = _open_tdb(tdb, path)
    except PermissionError:
        raise SourceUnavailable(f"permission denied reading {path}; run as root") from None
    except (OSError, RuntimeError) as exc:
        if "Permission denied" in str(exc):
            raise SourceUnavailable(f"permission denied reading {path}; run as root") from None
        raise SourceDataError(f"{path} is not a TDB file smbd wrote: {exc}") from exc
    try:
        try:
            db.read_lock_all()
        except (OSError, RuntimeError) as exc:
            raise SourceDataError(f"{path} cannot be locked for reading: {exc}") from exc
        try:
            yield db
        finally:
            db.read_unlock_all()
    finally:
        db.close()


def _open_tdb(tdb: Any, path: str) -> Any:
    """Open a TDB for reading as smbd shares it.

    smbd's volatile TDBs use process-shared mutexes (TDB_MUTEX_LOCKING) where the platform
    has them; locking those needs a read-write mapping, though nothing is ever written.
    Other TDBs are opened read-only. Neither way clears the file (no TDB_CLEAR_IF_FIRST).
    """
    try:
        return tdb.Tdb(path, 0, TDB_MUTEX_LOCKING | tdb.INCOMPATIBLE_HASH, os.O_RDWR)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    return tdb.Tdb(path, 0, tdb.DEFAULT, os.O_RDONLY)
