"""Sources of session records, one small module per server kind (psutil's backend pattern).

A source knows nothing of WQL, HTTP or the CLI: it returns :class:`SessionRecord` objects.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

from ..errors import InvalidInput, SourceTimeout, SourceUnavailable
from .base import DEFAULT_TIMEOUT, SessionRecord, Source

__all__ = ["DEFAULT_TIMEOUT", "SOURCE_NAMES", "SessionRecord", "Source", "open_source", "read_sessions"]

SOURCE_NAMES = ("auto", "samba")
GRACE = 1.0  # extra seconds the guard thread gives a source that bounds its own wait

T = TypeVar("T")


def open_source(name: str = "auto", *, smb_conf: str | None = None) -> Source:
    """The source called ``name``; ``auto`` picks the first one that fits this machine."""
    if name not in SOURCE_NAMES:
        raise InvalidInput(f"unknown source {name!r}; choose one of {', '.join(SOURCE_NAMES)}")
    smb_conf = smb_conf or os.environ.get("SERVERSESSION_SMB_CONF") or None
    from .samba import SambaSource

    if name in ("samba", "auto"):
        return SambaSource(smb_conf=smb_conf)
    raise SourceUnavailable(f"no source available for {name!r}")  # pragma: no cover


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
    try:
        return call_with_timeout(lambda: source.sessions(timeout), timeout + GRACE, source.description)
    except SourceTimeout:
        raise SourceTimeout(f"{source.description} did not answer within {timeout:g} s") from None
