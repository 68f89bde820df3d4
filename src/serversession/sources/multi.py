"""Several sources read at once, as one: the sessions of many servers.

Each source (one host) is read in a bounded pool of daemon threads, each with the whole
time-out. With several hosts, the hosts are shared out among forked child processes (one per
CPU, forked.py), each with its own pool: the CPU work of a read (impacket's NTLM and NDR) runs
on every core instead of behind one GIL, and a child still reading at the time limit is killed.
A host that fails does not lose the others' sessions: its error is kept in
:attr:`MultiSource.failures` and logged; only when every host fails is the read an error.
A snapshot (:meth:`MultiSource.snapshot`) is each host's snapshot, its parts concatenated; every
record names its host in ``server``.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ServerSessionError, SourceTimeout, SourceUnavailable
from . import forked
from .base import CONNECTIONS, DEFAULT_TIMEOUT, OPENS, SHARES, SessionRecord, Snapshot, Source

log = logging.getLogger(__name__)

MAX_WORKERS = 32  # hosts read at the same time
GRACE = 1.0  # seconds a host may overrun its own time-out before it counts as timed out
REPORT_TIME = 0.5  # seconds a child process has, after its own time limit, to send what it read


@dataclass(frozen=True, slots=True)
class HostFailure:
    """A host that could not be read, and why (the error's text starts with the host)."""

    host: str
    error: ServerSessionError


class MultiSource:
    """The sessions of every source in ``sources``, keyed ``name -> source``."""

    def __init__(self, sources: dict[str, Source], workers: int = MAX_WORKERS, processes: int | None = None) -> None:
        """``workers``: hosts read at once; ``processes``: child processes to share them among
        (default: one per CPU; 1 reads in this process; without os.fork always 1)."""
        if not sources:
            raise ValueError("MultiSource needs at least one source")
        self.sources = dict(sources)
        self.workers = max(1, min(workers, len(self.sources)))
        wanted = processes if processes is not None else (os.cpu_count() or 1)
        self.processes = max(1, min(wanted, self.workers)) if forked.AVAILABLE else 1
        self.description = (
            next(iter(self.sources.values())).description if len(self.sources) == 1 else f"{len(self.sources)} hosts"
        )
        #: the hosts that failed in the last read
        self.failures: list[HostFailure] = []

    def time_limit(self, timeout: float) -> float:
        """Longest a read can take: ``timeout`` per wave of hosts a process reads at once."""
        groups, per_process = self._plan(list(self.sources))
        waves = math.ceil(max(len(group) for group in groups) / per_process)
        return waves * (timeout + GRACE) + (REPORT_TIME if self.processes > 1 else 0.0)

    def _plan(self, names: Sequence[str]) -> tuple[list[list[str]], int]:
        """The hosts of each process, and how many of them each process reads at once."""
        groups = [list(names[index :: self.processes]) for index in range(self.processes)]
        return groups, math.ceil(self.workers / self.processes)

    def sessions(self, timeout: float = DEFAULT_TIMEOUT) -> list[SessionRecord]:
        """Every host's sessions; raise only if every host failed (the one error, if one host)."""
        return [record for _, outcome in self._outcomes(timeout, None) for record in outcome]  # type: ignore[attr-defined]

    def snapshot(self, timeout: float = DEFAULT_TIMEOUT, parts: frozenset[str] = frozenset()) -> Snapshot:
        """One snapshot of every host: sessions and ``parts`` concatenated, each record's ``server``
        its host. A part is None only if no host that answered could give it (each such host has
        said why in a warning); a host that failed is a failure, as for :meth:`sessions`."""
        answered = self._outcomes(timeout, parts)
        sessions: list[SessionRecord] = []
        found: dict[str, list[Any] | None] = {part: None for part in (CONNECTIONS, SHARES, OPENS)}
        for name, snapshot in answered:
            sessions.extend(_named(snapshot.sessions, name))
            for part in found:
                records = getattr(snapshot, part)
                if records is not None:
                    found[part] = [*(found[part] or []), *_named(records, name)]

        def part(name: str) -> tuple[Any, ...] | None:
            records = found[name]
            return None if records is None or name not in parts else tuple(records)

        return Snapshot(tuple(sessions), time.time(), part(CONNECTIONS), part(SHARES), part(OPENS))

    def _outcomes(self, timeout: float, parts: frozenset[str] | None) -> list[tuple[str, Any]]:
        """(host, what it answered) of every host that answered, in the order of the hosts;
        the others are in :attr:`failures`. Raise if every host failed (the one error, if one host)."""
        names = list(self.sources)
        outcomes = self._read_all(names, timeout, parts)
        answered: list[tuple[str, Any]] = []
        failures: list[HostFailure] = []
        expected = list if parts is None else Snapshot
        for name in names:
            outcome = outcomes.get(name)
            if isinstance(outcome, expected):
                answered.append((name, outcome))
                continue
            if not isinstance(outcome, ServerSessionError):
                outcome = SourceTimeout(f"{name}: did not answer within {timeout:g} s")
            failures.append(HostFailure(name, outcome))
        self.failures = failures
        if len(failures) == len(names) == 1:
            raise failures[0].error
        for failure in failures:
            log.error("%s", failure.error)
        if len(failures) == len(names):
            raise SourceUnavailable(f"all {len(names)} hosts failed")
        return answered

    def _read_all(self, names: Sequence[str], timeout: float, parts: frozenset[str] | None = None) -> dict[str, object]:
        """name -> list of sessions (``parts`` None) or Snapshot, or the exception raised; hosts
        not read in time are absent."""
        groups, per_process = self._plan(names)
        if self.processes == 1:
            return self._read_in_threads(names, per_process, timeout, parts)
        children = [
            forked.start(lambda group=group: self._read_in_threads(group, per_process, timeout, parts))
            for group in groups
        ]
        outcomes: dict[str, object] = {}
        answers = forked.finish(children, time.monotonic() + self.time_limit(timeout))
        for group, outcome in zip(groups, answers, strict=True):
            if isinstance(outcome.value, dict):
                outcomes.update(outcome.value)
            elif not isinstance(outcome.error, forked.Late):  # late: its hosts count as timed out
                reason = "it ended without an answer" if isinstance(outcome.error, forked.Lost) else outcome.error
                for name in group:
                    outcomes[name] = SourceUnavailable(f"{name}: the process reading it failed: {reason}")
        return outcomes

    def _read_in_threads(
        self, names: Sequence[str], workers: int, timeout: float, parts: frozenset[str] | None = None
    ) -> dict[str, object]:
        """Read ``names`` in ``workers`` daemon threads; hosts still running at the time limit are absent."""
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
                    outcomes[name] = _read_host(self.sources[name], timeout, parts)
                except ServerSessionError as exc:  # kept per host, reported by sessions()
                    outcomes[name] = exc
                except Exception as exc:  # made plain, so it can travel from a child process
                    outcomes[name] = SourceUnavailable(f"{name}: {type(exc).__name__}: {exc}")
                finished.release()

        for number in range(min(workers, len(names))):
            threading.Thread(target=work, name=f"read host {number}", daemon=True).start()
        deadline = time.monotonic() + math.ceil(len(names) / workers) * (timeout + GRACE)
        for _ in names:
            if not finished.acquire(timeout=max(0.0, deadline - time.monotonic())):
                break
        return dict(outcomes)


def _read_host(source: Source, timeout: float, parts: frozenset[str] | None) -> object:
    """A host's sessions (``parts`` None), else its snapshot; a source that reads no parts
    gives a snapshot of its sessions alone."""
    if parts is None:
        return source.sessions(timeout)
    read = getattr(source, "snapshot", None)
    if read is None:
        return Snapshot(tuple(source.sessions(timeout)), time.time())
    snapshot = read(timeout, parts)
    if not isinstance(snapshot, Snapshot):
        raise TypeError(f"snapshot() gave {type(snapshot).__name__}, not a Snapshot")
    return snapshot


def _named(records: Sequence[Any], name: str) -> list[Any]:
    """``records`` with ``server`` = ``name`` where the source left it None."""
    return [record if record.server is not None else replace(record, server=name) for record in records]
