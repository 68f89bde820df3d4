"""Read smbd's TDB databases without ever hanging.

A TDB is read under its lock. If another process holds that lock forever (a stuck smbd, an
administrator's ``tdbtool``), Samba's ``tdb`` module blocks inside C with Python's GIL held, so
no thread can time it out. The read therefore happens in a forked child process, which is
killed when the time is up (forked.py).
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..errors import SourceDataError, SourceTimeout, SourceUnavailable
from . import forked

TDB_MUTEX_LOCKING = 0x1000  # not exported by the tdb module


def read_databases(tdb: Any, paths: Sequence[str], timeout: float, what: str) -> list[list[bytes]]:
    """The values of every record of each TDB in ``paths``, read in a child within ``timeout`` s."""

    def read_all() -> list[list[bytes]]:
        try:
            return [read_values(tdb, path) for path in paths]
        except SourceUnavailable:
            raise
        except BaseException as exc:
            raise SourceDataError(f"reading {', '.join(paths)} failed: {type(exc).__name__}: {exc}") from None

    (outcome,) = forked.finish([forked.start(read_all)], time.monotonic() + timeout)
    if isinstance(outcome.error, forked.Late):
        raise SourceTimeout(f"{what} did not answer within {timeout:g} s (a lock on its database is held)")
    if isinstance(outcome.error, forked.Lost):
        raise SourceDataError(f"the process reading {what} ended without an answer")
    if outcome.error is not None:
        raise outcome.error
    return outcome.value  # type: ignore[return-value]


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
