"""Several sources read at once, as one: the sessions of many servers.

Each source (one host) is read in a bounded pool of daemon threads, each with the whole
time-out. A host that fails does not lose the others' sessions: its error is kept in
:attr:`MultiSource.failures` and logged; only when every host fails is the read an error.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ServerSessionError, SourceTimeout, SourceUnavailable
from .base import DEFAULT_TIMEOUT, SessionRecord, Source

log = logging.getLogger(__name__)

MAX_WORKERS = 32  # hosts read at the same time
GRACE = 1.0  # seconds a host may overrun its own time-out before it counts as timed out


@dataclass(frozen=True, slots=True)
class HostFailure:
    """A host that could not be read, and why (the error's text starts with the host)."""

    host: str
    error: ServerSessionError


class MultiSource:
    """The sessions of every source in ``sources``, keyed ``name -> source``."""

    def __init__(self, sources: dict[str, Source], workers: int = MAX_WORKERS) -> None:
        if not sources:
            raise ValueError("MultiSource needs at least one source")
        self.sources = dict(sources)
        self.workers = max(1, min(workers, len(self.sources)))
        self.description = (
            next(iter(self.sources.values())).description if len(self.sources) == 1 else f"{len(self.sources)} hosts"
        )
        #: the hosts that failed in the last read
        self.failures: list[HostFailure] = []

    def time_limit(self, timeout: float) -> float:
        """Longest a read can take: ``timeout`` per wave of ``workers`` hosts."""
        return math.ceil(len(self.sources) / self.workers) * (timeout + GRACE)

    def sessions(self, timeout: float = DEFAULT_TIMEOUT) -> list[SessionRecord]:
        """Every host's sessions; raise only if every host failed (the one error, if one host)."""
        names = list(self.sources)
        outcomes = self._read_all(names, timeout)
        records: list[SessionRecord] = []
        failures: list[HostFailure] = []
        for name in names:
            outcome = outcomes.get(name)
            if isinstance(outcome, list):
                records.extend(outcome)
                continue
            if outcome is None:
                outcome = SourceTimeout(f"{name}: did not answer within {timeout:g} s")
            elif not isinstance(outcome, ServerSessionError):
                outcome = SourceUnavailable(f"{name}: {type(outcome).__name__}: {outcome}")
            failures.append(HostFailure(name, outcome))
        self.failures = failures
        if len(failures) == len(names) == 1:
            raise failures[0].error
        for failure in failures:
            log.error("%s", failure.error)
        if len(failures) == len(names):
            raise SourceUnavailable(f"all {len(names)} hosts failed")
        return records

    def _read_all(self, names: Sequence[str], timeout: float) -> dict[str, object]:
        """name -> list of records or the exception raised; hosts still running at the end are absent."""
        jobs: queue.SimpleQueue[str] = queue.SimpleQueue()
        for name in names:
            jobs.put(name)
        outcomes: dict[str, object] = {}
        finished = threading.Semaphore(0)

        def work() -> None:
            while True:
                try:
                    name = jobs.get_nowait()
                except queue.Empty:
                    return
                try:
                    outcomes[name] = self.sources[name].sessions(timeout)
                except Exception as exc:  # kept per host, reported by sessions()
                    outcomes[name] = exc
                finished.release()

        for number in range(self.workers):
            threading.Thread(target=work, name=f"read host {number}", daemon=True).start()
        deadline = time.monotonic() + self.time_limit(timeout)
        for _ in names:
            if not finished.acquire(timeout=max(0.0, deadline - time.monotonic())):
                break
        return dict(outcomes)
