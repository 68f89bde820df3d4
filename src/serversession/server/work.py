"""CPU-heavy steps of the server, run off the event loop in bounded thread pools.

The event loop only moves bytes, checks headers and keeps state; parsing a request body,
evaluating a query and rendering a response run in a :class:`WorkPool`. A request that runs
past its time-out is answered at once (the coroutine awaiting the work is cancelled); its worker
is then *abandoned*: told to stop at its next :func:`checkpoint`, its result discarded. A
thread cannot be killed, so abandoned workers are counted and bounded: past the bound, new work
is refused (:class:`Busy`, answered 503) until they end, and one user cannot hold more than half
of the workers or of the abandoned ones.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_local = threading.local()
CHECK_EVERY = 64  # items between two checkpoints in a long loop


class Busy(Exception):
    """The server cannot take this work now (answered 503 with Retry-After)."""


class Abandoned(Exception):
    """Raised in a worker whose request was already answered (timed out or went away)."""


def checkpoint() -> None:
    """Stop here (raise :class:`Abandoned`) if the request this worker serves was abandoned."""
    token = getattr(_local, "token", None)
    if token is not None and token.is_set():
        raise Abandoned


def abandoned() -> bool:
    """Whether the request this worker serves was abandoned (for commits that must not happen)."""
    token = getattr(_local, "token", None)
    return token is not None and token.is_set()


class Checked(list):  # type: ignore[type-arg]
    """A list whose iteration stops at a checkpoint every :data:`CHECK_EVERY` items.

    Handed to code that loops over instances (a WQL evaluation), so that an abandoned
    evaluation ends soon instead of running to completion.
    """

    def __iter__(self) -> Iterator[Any]:
        for count, item in enumerate(super().__iter__(), start=1):
            if count % CHECK_EVERY == 0:
                checkpoint()
            yield item


class Tally:
    """Futures still running, counted in all and per key (a user, a client address).

    A future is counted from :meth:`hold` until it ends, even if nobody awaits it any more (its
    request timed out): what it costs is still being paid. Counts change on the event loop only.
    """

    def __init__(self) -> None:
        self.total = 0
        self.by: Counter[str] = Counter()

    def hold(self, key: str, future: concurrent.futures.Future[Any]) -> None:
        """Count ``future`` under ``key`` until it ends (call on the event loop)."""
        loop = asyncio.get_running_loop()
        self.total += 1
        self.by[key] += 1

        def release() -> None:
            self.total -= 1
            self.by[key] -= 1
            if self.by[key] <= 0:
                del self.by[key]

        def done(_: concurrent.futures.Future[Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the server is stopping
                loop.call_soon_threadsafe(release)

        future.add_done_callback(done)


def _call(token: threading.Event, function: Callable[..., T], args: tuple[Any, ...]) -> T:
    if token.is_set():  # abandoned while queued
        raise Abandoned
    _local.token = token
    try:
        return function(*args)
    finally:
        _local.token = None


class WorkPool:
    """``workers`` threads for CPU-heavy steps, plus room for ``max_abandoned`` abandoned ones.

    ``run`` waits (within the caller's time-out) for one of ``workers`` slots; a user holds at
    most half of them at once (more of theirs wait), so one user's heavy queries leave workers
    for everyone else.
    """

    def __init__(self, workers: int = 4, max_abandoned: int = 4, name: str = "serversession-work") -> None:
        self.workers = max(1, workers)
        self.max_abandoned = max(1, max_abandoned)
        self.per_user = max(1, self.workers // 2)
        self.per_user_abandoned = max(1, self.max_abandoned // 2)
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.workers + self.max_abandoned, thread_name_prefix=name
        )
        self._slots: asyncio.Semaphore | None = None
        self._user_slots: dict[str, asyncio.Semaphore] = {}
        self._user_refs: Counter[str] = Counter()
        self._abandoned = Tally()

    @property
    def abandoned(self) -> int:
        """Workers still running for requests already answered."""
        return self._abandoned.total

    def _refuse(self, user: str) -> None:
        if self.abandoned >= self.max_abandoned:
            raise Busy(f"{self.abandoned} timed-out requests are still being wound up; try again shortly")
        if self._abandoned.by[user] >= self.per_user_abandoned:
            raise Busy(
                f"{self._abandoned.by[user]} of your timed-out requests are still being wound up "
                f"(at most {self.per_user_abandoned} per user); try again shortly"
            )

    async def run(self, user: str, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in a worker thread; the caller may be cancelled at any time."""
        self._refuse(user)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers)
        gate = self._user_slots.get(user)
        if gate is None:
            gate = self._user_slots[user] = asyncio.Semaphore(self.per_user)
        self._user_refs[user] += 1
        try:
            async with gate, self._slots:
                self._refuse(user)  # abandoned ones may have piled up while this one waited
                return await self._submit(user, function, args)
        finally:
            self._user_refs[user] -= 1
            if self._user_refs[user] <= 0:
                del self._user_refs[user]
                self._user_slots.pop(user, None)

    async def _submit(self, user: str, function: Callable[..., T], args: tuple[Any, ...]) -> T:
        token = threading.Event()
        future = self._executor.submit(_call, token, function, args)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            token.set()
            if not future.cancel() and not future.done():
                self._abandoned.hold(user, future)
            raise

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
