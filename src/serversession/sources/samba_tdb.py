"""Read smbd's TDB databases without ever hanging.

A TDB is read under its lock. If another process holds that lock forever (a stuck smbd, an
administrator's ``tdbtool``), Samba's ``tdb`` module blocks inside C with Python's GIL held, so
no thread can time it out. The read therefore happens in a forked child process, which is
killed when the time is up (forked.py).
"""

from __future__ import annotations

import errno
import os
import struct
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..errors import SourceDataError, SourceTimeout, SourceUnavailable
from . import forked

TDB_MUTEX_LOCKING = 0x1000  # not exported by the tdb module
RECORD_HEADER_SIZE = 24  # struct tdb_record
TDB_HEADER_SIZE = 168  # struct tdb_header; the free list head and the hash chain heads follow it
# tdb_header after its 32-byte magic food: version, hash_size, rwlocks, recovery_start,
# sequence_number, magic1_hash, magic2_hash, feature_flags, mutex_size
TDB_HEADER = struct.Struct("<32x9I")
TDB_FEATURE_FLAG_MUTEX = 0x1
TDB_MAGIC_FOOD = b"TDB file\n"
TDB_VERSION = 0x26011967 + 6  # tdb_private.h: TDB_VERSION
TDB_MAGIC, TDB_DEAD_MAGIC, TDB_FREE_MAGIC = 0x26011999, 0xFEE1DEAD, ~0x26011999 & 0xFFFFFFFF
RECORD = struct.Struct("<6I")  # struct tdb_record: next, rec_len, key_len, data_len, full_hash, magic
MAX_HASH_SIZE = 1 << 24
MAX_TDB_SIZE = 4 << 30  # 4 GiB: a million sessions take about 4 GB


def read_databases(
    tdb: Any,
    paths: Sequence[str],
    timeout: float,
    what: str,
    skip_key_size: int | None = None,
) -> list[list[bytes]]:
    """The values of every record of each TDB in ``paths``, read in a child within ``timeout`` s.

    With ``skip_key_size``, not the records whose key has that many bytes (see :func:`walk_records`).
    The records are walked in the child, which sends back only their values: a TDB's file
    keeps the size it grew to, which can be far more than its live records.
    """

    def read_all() -> list[list[bytes]]:
        try:
            return [read_values(tdb, path, skip_key_size) for path in paths]
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


def read_values(tdb: Any, path: str, skip_key_size: int | None = None) -> list[bytes]:
    """Every live record's value of one TDB, read under a read lock of the whole database.

    Samba's ``tdb`` module holds the lock; the records are read from the file by walking its
    hash chains here, because tdb's own traversal ends quietly at a damaged chain, so that a
    damaged database would read as a short or empty one. Every step is checked instead: a
    record that starts or ends past the file, a bad magic number or a chain that loops makes
    the database "damaged" (SourceDataError). It is also one pass over the file, faster than
    a call into tdb per record.
    """
    return walk_records(path, read_image(tdb, path), skip_key_size)


def read_image(tdb: Any, path: str) -> bytes:
    """The bytes of the TDB file ``path``, read under a read lock of the whole database."""
    with _read_locked(tdb, path):
        return _image(path)


def _image(path: str) -> bytes:
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > MAX_TDB_SIZE:
            raise SourceDataError(f"{path} is {size} bytes, more than the {MAX_TDB_SIZE} read at most")
        return handle.read(size)


def _layout(path: str, data: bytes) -> tuple[int, tuple[int, ...]]:
    """Where the TDB proper starts in ``data`` (after any mutex area) and its chain heads.

    The records follow the hash table: the chain heads' count is the hash size.
    """
    _check_magic(path, data)
    version, hash_size, _rwlocks, _recovery, _seqnum, _m1, _m2, features, mutex_size = TDB_HEADER.unpack_from(data)
    if version != TDB_VERSION:
        raise SourceDataError(f"{path} is not a TDB this machine wrote (version {version:#x})")
    base = mutex_size if features & TDB_FEATURE_FLAG_MUTEX else 0
    table = base + TDB_HEADER_SIZE
    if not 0 < hash_size <= MAX_HASH_SIZE or table + 4 * (hash_size + 1) > len(data):
        raise SourceDataError(f"{path} is damaged: its hash table is truncated or implausible")
    heads = struct.unpack_from(f"<{hash_size}I", data, table + 4)  # after the free-list head
    return base, heads


def walk_records(path: str, data: bytes, skip_key_size: int | None = None) -> list[bytes]:
    """The values of the live records in the TDB image ``data``, every chain checked.

    ``skip_key_size`` leaves out the records whose key is that long: from 4.23 smbd keeps its
    durable-handle replay cache (a client and a create GUID, 32 bytes, to a 4-byte global id)
    in the same database as its open records, which are keyed by the 4-byte global id.
    """
    base, heads = _layout(path, data)
    end = len(data) - base  # record offsets count from the TDB's own header
    seen: set[int] = set()
    values = []
    for head in heads:
        offset = head
        while offset:
            if offset in seen:
                raise SourceDataError(f"{path} is damaged: a record chain loops")
            if offset + RECORD_HEADER_SIZE > end:
                raise SourceDataError(f"{path} is damaged: a record chain points past its end (truncated?)")
            seen.add(offset)
            following, length, key_length, data_length, _hash, magic = RECORD.unpack_from(data, base + offset)
            if magic == TDB_MAGIC:
                if key_length + data_length > length or offset + RECORD_HEADER_SIZE + length > end:
                    raise SourceDataError(f"{path} is damaged: a record is longer than its room")
                if key_length != skip_key_size:
                    start = base + offset + RECORD_HEADER_SIZE + key_length
                    values.append(data[start : start + data_length])
            elif magic != TDB_DEAD_MAGIC:
                raise SourceDataError(f"{path} is damaged: a record has a bad magic number")
            offset = following
    in_chains = sum(1 for offset in seen if RECORD.unpack_from(data, base + offset)[5] == TDB_MAGIC)
    on_disk = _live_records_in_order(data, base, TDB_HEADER_SIZE + 4 * (len(heads) + 1), end)
    if on_disk is not None and on_disk != in_chains:
        raise SourceDataError(
            f"{path} is damaged: it holds {on_disk} records, of which its hash chains reach {in_chains}"
        )
    return values


def _live_records_in_order(data: bytes, base: int, start: int, end: int) -> int | None:
    """The live records counted by walking the data area from record to record, as tdb_check does.

    The data area is tiled with records (used, dead, free); a record cut out of its chain, or a
    chain head set to 0, is still here. None when the walk meets what it cannot step over (a
    recovery area or dead space left by a crash): then nothing is concluded.
    """
    count, offset = 0, start
    while offset + RECORD_HEADER_SIZE <= end:
        _next, length, _key, _data, _hash, magic = RECORD.unpack_from(data, base + offset)
        if magic == TDB_MAGIC:
            count += 1
        elif magic not in (TDB_DEAD_MAGIC, TDB_FREE_MAGIC):
            return None
        offset += RECORD_HEADER_SIZE + length
    return count if offset == end else None


def _check_magic(path: str, head: bytes) -> None:
    if not head.startswith(TDB_MAGIC_FOOD[: len(head)]) or not head:
        raise SourceDataError(f"{path} is not a TDB file smbd wrote")
    if len(head) < TDB_HEADER.size:
        raise SourceDataError(f"{path} is damaged: its TDB header is truncated")


def check_header(path: str) -> None:
    """SourceDataError unless the file holds a TDB header, its mutex area and hash table.

    tdb itself dies of SIGBUS opening a file shorter than its mutex area; this runs first.
    """
    with open(path, "rb") as handle:
        head = handle.read(TDB_HEADER.size)
        _check_magic(path, head)
        size = os.fstat(handle.fileno()).st_size
    hash_size, features, mutex_size = (TDB_HEADER.unpack(head)[i] for i in (1, 7, 8))
    base = mutex_size if features & TDB_FEATURE_FLAG_MUTEX else 0
    if not 0 < hash_size <= MAX_HASH_SIZE or base + TDB_HEADER_SIZE + 4 * (hash_size + 1) > size:
        raise SourceDataError(f"{path} is damaged: its hash table is truncated or implausible")


@contextmanager
def _read_locked(tdb: Any, path: str) -> Iterator[Any]:
    if not os.path.exists(path):
        raise SourceUnavailable(f"{path} does not exist; is this smbd's lock directory?")
    try:
        check_header(path)
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
