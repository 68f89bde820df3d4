"""Sources of session records, one small module per server kind (psutil's backend pattern).

A source knows nothing of WQL, HTTP or the CLI: it returns :class:`SessionRecord` objects.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from ..errors import InvalidInput, SourceTimeout, SourceUnavailable
from .base import DEFAULT_TIMEOUT, SessionRecord, Snapshot, Source
from .remote import SMB_PORT

__all__ = [
    "DEFAULT_TIMEOUT",
    "SOURCE_NAMES",
    "SessionRecord",
    "Snapshot",
    "Source",
    "open_source",
    "read_sessions",
    "read_snapshot",
]

SOURCE_NAMES = ("auto", "samba", "srvsvc")
GRACE = 1.0  # extra seconds the guard thread gives a source that bounds its own wait

T = TypeVar("T")


def open_source(
    name: str = "auto",
    *,
    smb_conf: str | None = None,
    hosts: Sequence[str] = (),
    hosts_file: str | None = None,
    smb_port: int = SMB_PORT,
    user: str | None = None,
    password: str | None = None,
    password_file: str | None = None,
) -> Source:
    """The source called ``name``; ``auto`` is srvsvc when hosts are given, else this machine's Samba.

    srvsvc reads ``hosts`` (``HOST``, ``HOST:PORT``; ``smb_port`` by default) and the lines of
    ``hosts_file`` as ``user`` (``DOMAIN\\user``) with ``password``, else the first line of
    ``password_file``, else env ``SERVERSESSION_PASSWORD``.
    """
    if name not in SOURCE_NAMES:
        raise InvalidInput(f"unknown source {name!r}; choose one of {', '.join(SOURCE_NAMES)}")
    remote = bool(hosts or hosts_file)
    if name == "srvsvc" or (name == "auto" and remote):
        return _open_srvsvc(hosts, hosts_file, smb_port, user, password, password_file)
    if remote or user or password_file:
        raise InvalidInput(f"hosts and credentials are for the srvsvc source; the {name} source reads this machine")
    smb_conf = smb_conf or os.environ.get("SERVERSESSION_SMB_CONF") or None
    from .samba import SambaSource

    if name in ("samba", "auto"):
        return SambaSource(smb_conf=smb_conf)
    raise SourceUnavailable(f"no source available for {name!r}")  # pragma: no cover


def _open_srvsvc(
    hosts: Sequence[str],
    hosts_file: str | None,
    smb_port: int,
    user: str | None,
    password: str | None,
    password_file: str | None,
) -> Source:
    """One MS-SRVS source per host, read together (sources/multi.py)."""
    from .multi import MultiSource
    from .remote import credentials, endpoints
    from .srvsvc import SrvsvcSource, check_impacket

    targets = endpoints(tuple(hosts), hosts_file, smb_port)
    if not targets:
        raise InvalidInput("the srvsvc source needs at least one host to ask")
    account = credentials(user, password, password_file)
    check_impacket()  # once, not once per host
    return MultiSource({target.label: SrvsvcSource(target, account) for target in targets})


def call_with_timeout(function: Callable[[], T], timeout: float, what: str) -> T:
    """Run ``function`` in a worker thread; raise SourceTimeout if it has not returned in time.

    A read stuck in the kernel (a lock another process holds forever) cannot be interrupted
    from Python, so the worker is a daemon thread that is abandoned, never waited for.
    """
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except BaseException as exc:  # handed to the caller below
            outcome["error"] = exc

    worker = threading.Thread(target=run, name=f"read {what}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise SourceTimeout(f"{what} did not answer within {timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def read_sessions(source: Source, timeout: float = DEFAULT_TIMEOUT) -> list[SessionRecord]:
    """All session records of ``source``, bounded in time."""
    return _bounded(source, lambda: source.sessions(timeout), timeout)


def read_snapshot(source: Source, timeout: float = DEFAULT_TIMEOUT, parts: frozenset[str] = frozenset()) -> Snapshot:
    """One snapshot of ``source`` with ``parts`` besides the sessions (if the source reads them),
    bounded in time as :func:`read_sessions` is."""
    read = getattr(source, "snapshot", None)
    if read is None or not parts:
        return Snapshot(tuple(read_sessions(source, timeout)), time.time())
    return _bounded(source, lambda: read(timeout, parts), timeout)


def _bounded(source: Source, function: Callable[[], T], timeout: float) -> T:
    """``function()`` (a read of ``source``), given up after ``timeout`` (several hosts: the
    source's own limit, as it asks them in waves) and a grace period."""
    limit = source.time_limit(timeout) if hasattr(source, "time_limit") else timeout
    try:
        return call_with_timeout(function, limit + GRACE, source.description)
    except SourceTimeout as exc:
        if str(exc).startswith(source.description):  # the guard's own message: say the time-out asked for
            raise SourceTimeout(f"{source.description} did not answer within {timeout:g} s") from None
        raise
