"""The event engine (DESIGN.md section 2b): polls a source, diffs the instances by key, and hands
each subscriber the creation, deletion and modification events its WQL event query wants.

One :class:`Hub` per source. Subscriptions whose WITHIN falls on the same poll interval
(:data:`INTERVALS`: WITHIN 1 to 1.99 polls every second) share one poll (one read of the source,
building the classes all of them watch); each poll is compared with
the one before it, class by class, instances matched by their keys. What exists when a class is
first polled is the baseline: it makes no events (as in WMI). A session that appears and ends
between two polls is never seen, as in WMI. A poll that fails is a warning and the watch goes on
with the next one; the instances of the last good poll stay the baseline.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from .errors import ServerSessionError
from .model import CIMObject
from .sources.base import Snapshot
from .wql.events import CREATION, DELETION, MODIFICATION, CompiledEvent, Event, compile_event, filetime

log = logging.getLogger("serversession")

Reader = Callable[[frozenset[str]], Snapshot]  # api.snapshot_reader(): the parts -> one snapshot
#: the poll intervals: a WITHIN is polled at the largest of these not above it (WITHIN is how long
#: a change may wait to be reported, so polling more often is always right). So subscriptions with
#: WITHIN 1.001, 1.002 ... share one poll, and no user can start a poll per distinct WITHIN.
INTERVALS = (0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 86400.0)


def interval(within: float) -> float:
    """The poll interval for ``within`` seconds: the largest of INTERVALS not above it."""
    return max((i for i in INTERVALS if i <= within), default=INTERVALS[0])


Instances = dict[str, dict[tuple[str, str], CIMObject]]  # class -> key -> instance


def _key(instance: CIMObject) -> tuple[str, str]:
    """An instance's identity across polls: its server and its path, case-blind as WMI's keys."""
    return (instance.server or "", instance.path.lower())


def diff(before: dict[Any, CIMObject], after: dict[Any, CIMObject], when: float) -> list[Event]:
    """The events from one poll to the next: creations and modifications in the order of
    ``after``, then deletions in the order of ``before`` (their TargetInstance as last seen)."""
    stamp = filetime(when)
    events = []
    for key, instance in after.items():
        old = before.get(key)
        if old is None:
            events.append(Event(CREATION, stamp, instance))
        elif old != instance:
            events.append(Event(MODIFICATION, stamp, instance, old))
    events.extend(Event(DELETION, stamp, instance) for key, instance in before.items() if key not in after)
    return events


def poll(read: Reader, classes: frozenset[str]) -> tuple[Instances, float]:
    """One read of the source: the instances of ``classes`` by class and key, and when they were read."""
    from .model.providers import build, needs

    snapshot = read(frozenset().union(*(needs(name) for name in classes)))
    found: Instances = {name: {} for name in classes}
    for instance in build(tuple(sorted(classes)), snapshot):
        found[instance.classname][_key(instance)] = instance
    return found, snapshot.taken


class Subscription:
    """One event query and where its events go (``deliver`` must not block: a queue's put)."""

    def __init__(self, query: CompiledEvent, deliver: Callable[[Event], None]) -> None:
        self.query = query
        self.deliver = deliver


class _Loop:
    """The poll shared by the subscriptions of one WITHIN: a thread, started with the first one."""

    def __init__(self, read: Reader, within: float) -> None:
        self.read = read
        self.within = within
        self.subscriptions: list[Subscription] = []
        self.previous: Instances = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        self.polls = 0  # for tests and benchmarks
        self.failures = 0

    def add(self, subscription: Subscription) -> None:
        """Subscribe; a class no poll has read yet gets its baseline now, so that a source that
        cannot be read at all is the caller's error (ServerSessionError), not a warning."""
        with self.lock:
            missing = frozenset(subscription.query.classes) - set(self.previous)
            if missing:
                found, _ = poll(self.read, missing)
                self.previous.update(found)
            self.subscriptions.append(subscription)
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name=f"serversession-poll-{self.within:g}s", daemon=True
                )
                self.thread.start()

    def remove(self, subscription: Subscription) -> bool:
        """Unsubscribe; True when no subscription is left (the loop then stops)."""
        with self.lock:
            if subscription in self.subscriptions:
                self.subscriptions.remove(subscription)
            if not self.subscriptions:
                self.stopped.set()
                return True
            return False

    def _run(self) -> None:
        deadline = time.monotonic() + self.within
        while not self.stopped.wait(max(0.0, deadline - time.monotonic())):
            deadline += self.within
            if deadline < time.monotonic():  # a slow poll: the next one a whole interval from now
                deadline = time.monotonic() + self.within
            self.tick()

    def tick(self) -> None:
        """One poll: diff each watched class against the poll before and deliver the events."""
        with self.lock:
            subscriptions = list(self.subscriptions)
        classes = frozenset(name for s in subscriptions for name in s.query.classes)
        if not classes:
            return
        try:
            found, taken = poll(self.read, classes)
        except (ServerSessionError, OSError) as exc:
            self.failures += 1
            log.warning("the source could not be read (%s); the watch goes on", exc)
            return
        except Exception as exc:  # a bug must not end every watch of the process
            self.failures += 1
            log.exception("polling failed: %s; the watch goes on", exc)
            return
        self.polls += 1
        events: list[Event] = []
        with self.lock:
            for name, instances in found.items():
                before = self.previous.get(name)
                if before is not None:
                    events.extend(diff(before, instances, taken))
            watched = {name for s in self.subscriptions for name in s.query.classes}
            # a class a subscription added during this poll keeps the baseline add() read for it;
            # classes nobody watches any more are dropped
            self.previous = {
                name: found.get(name, self.previous.get(name, {}))
                for name in watched
                if name in found or name in self.previous
            }
        if not events:
            return
        for subscription in subscriptions:
            try:
                wanted = subscription.query.select(events)
            except Exception as exc:  # a condition that fails on odd data: that subscriber's loss only
                log.warning("event query %r failed: %s", subscription.query.text[:200], exc)
                continue
            for event in wanted:
                subscription.deliver(event)


class Hub:
    """The event engine of one source: subscriptions with the same WITHIN share one poll."""

    def __init__(self, read: Reader) -> None:
        self.read = read
        self._loops: dict[float, _Loop] = {}
        self._lock = threading.Lock()

    def subscribe(self, query: str | CompiledEvent, deliver: Callable[[Event], None]) -> Subscription:
        """Start delivering the events ``query`` wants. WQLError for an invalid query, and the
        source's error (ServerSessionError) if it cannot be read for the baseline."""
        compiled = compile_event(query) if isinstance(query, str) else query
        subscription = Subscription(compiled, deliver)
        every = interval(compiled.within)
        with self._lock:
            loop = self._loops.get(every)
            if loop is None or loop.stopped.is_set():
                loop = self._loops[every] = _Loop(self.read, every)
        try:
            loop.add(subscription)
        except BaseException:
            with self._lock:
                if not loop.subscriptions and self._loops.get(every) is loop:
                    del self._loops[every]
            raise
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        every = interval(subscription.query.within)
        with self._lock:
            loop = self._loops.get(every)
            if loop is not None and loop.remove(subscription):
                del self._loops[every]

    def close(self) -> None:
        """Stop every poll."""
        with self._lock:
            loops, self._loops = list(self._loops.values()), {}
        for loop in loops:
            loop.stopped.set()

    def loops(self) -> dict[float, _Loop]:
        """The polls running, by WITHIN (each shared by its subscriptions)."""
        with self._lock:
            return dict(self._loops)


def watch(query: str | CompiledEvent, read: Reader, stop: threading.Event | None = None) -> Iterator[Event]:
    """The events ``query`` wants, as they come, until ``stop`` is set or the generator is closed.

    WQLError at once for an invalid query, ServerSessionError if the source cannot be read for
    the baseline; later failures of the source are warnings and the watch goes on.
    """
    hub = Hub(read)
    events: queue.Queue[Event] = queue.Queue(maxsize=100_000)

    def deliver(event: Event) -> None:
        try:
            events.put_nowait(event)
        except queue.Full:  # a consumer this far behind loses the newest, with a warning
            log.warning("events are coming faster than they are read: one was dropped")

    subscription = hub.subscribe(query, deliver)
    try:
        while stop is None or not stop.is_set():
            try:
                yield events.get(timeout=0.2)
            except queue.Empty:
                continue
    finally:
        hub.unsubscribe(subscription)
        hub.close()
