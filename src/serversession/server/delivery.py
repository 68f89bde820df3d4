"""Delivery of indications to one listener: a bounded queue and a sender with back-off.

Each listener destination has an :class:`Outbox`. The event engine's poll threads put ready
ExportIndication bodies into it (:meth:`Outbox.put`, which never blocks); a task on the
server's event loop sends them in order with aiohttp's client, one at a time:

- delivered: the listener answered 200 with an ``EXPMETHODRESPONSE`` and no ``ERROR``. Only
  then is the indication taken off the queue, so it is never sent again after a success.
- tried again, after 0.5 s doubling up to :data:`MAX_BACKOFF`: the listener cannot be reached,
  times out, answers 5xx, 408 or 429, or a CIM error ``CIM_ERR_FAILED`` (pywbem's listener
  says so when its own queue is full). Nothing behind the first indication overtakes it.
- refused (dropped, with a warning): any other answer (another HTTP status, a redirect, which
  is never followed, another CIM error, a body that is not CIM-XML): sending it again would get
  the same answer.

The queue holds at most :data:`MAX_QUEUE` indications and :data:`MAX_QUEUE_BYTES` bytes, and all
queues together :data:`MAX_TOTAL_BYTES` (a :class:`Budget`); when a listener is down that long,
its oldest are dropped (counted, with a rate-limited warning), so dead listeners cost bounded memory. A listener that comes back gets what is still queued. An
indication whose answer was lost (the listener took it, then the connection broke) is sent again:
``SequenceContext`` and ``SequenceNumber`` let the listener tell (DSP1054).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from defusedxml import ElementTree as SafeET

from .cimxml import CIM_ERR_FAILED
from .indications import EXPORT_HEADERS

log = logging.getLogger("serversession.server")  # rate-limited by serve's logging set-up
MAX_QUEUE = 1000  # indications waiting for one listener
MAX_QUEUE_BYTES = 8 << 20  # bytes waiting for one listener
MAX_TOTAL_BYTES = 64 << 20  # bytes waiting for all listeners together
FIRST_BACKOFF = 0.5  # seconds before the first retry; doubles each time
MAX_BACKOFF = 30.0
SEND_TIMEOUT = 10.0  # seconds to connect, and to wait for each part of the listener's answer
EXCHANGE_TIMEOUT = 30.0  # seconds for one whole ExportIndication once sending has begun
MAX_ANSWER = 64 << 10  # bytes of a listener's answer that are read
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class Refused(Exception):
    """The listener refused the indication for good (sending it again would not help)."""


@dataclass
class Counts:
    """What happened to one listener's indications (also for tests and the log)."""

    queued: int = 0
    delivered: int = 0
    dropped: int = 0  # the queue was full: the oldest went
    refused: int = 0
    retries: int = 0


class Budget:
    """The bytes queued for all listeners together: past ``limit``, a queue that grows drops its oldest."""

    def __init__(self, limit: int = MAX_TOTAL_BYTES) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def add(self, size: int) -> bool:
        """Count ``size`` more bytes (negative: fewer); whether the total is now past the limit."""
        with self._lock:
            self.used += size
            return self.used > self.limit


class Outbox:
    """The queue and sender of one listener destination (``url``)."""

    def __init__(
        self, url: str, name: str, ssl: Any = None, max_queue: int = MAX_QUEUE, budget: Budget | None = None
    ) -> None:
        self.url = url
        self.name = name
        self.ssl = ssl
        self.max_queue = max(2, max_queue)
        self.budget = budget or Budget()
        self.counts = Counts()
        self._queue: deque[bytes] = deque()
        self._bytes = 0
        self._sending: bytes | None = None
        self._lock = threading.Lock()  # put() runs in poll threads, the sender on the event loop
        self.context = ""  # SequenceContext of its indications (set by the store)
        self._numbering = threading.Lock()
        self._next = 0  # SequenceNumber of the next indication
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, body: bytes) -> None:
        """Queue one ExportIndication body (any thread; never blocks). A full queue drops its oldest."""
        with self._lock:
            self._queue.append(body)
            self._bytes += len(body)
            self.counts.queued += 1
            over = self.budget.add(len(body))
            dropped = 0
            while len(self._queue) > self.max_queue or self._bytes > MAX_QUEUE_BYTES or over:
                first = 1 if self._queue[0] is self._sending else 0  # the one being sent stays: its answer decides
                if len(self._queue) <= first + 1:  # only the newest is left to drop: keep it
                    break
                size = len(self._queue[first])
                del self._queue[first]
                self._bytes -= size
                over = self.budget.add(-size)
                dropped += 1
            self.counts.dropped += dropped
        if dropped:
            log.warning(
                "listener %s is not taking indications: its queue is full, the oldest was dropped (%d so far)",
                self.name, self.counts.dropped,
            )  # fmt: skip
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            loop.call_soon_threadsafe(wake.set)

    def export(self, make: Callable[[str, int], bytes]) -> None:
        """Queue ``make(SequenceContext, SequenceNumber)``: numbers are given in the order queued."""
        with self._numbering:
            self.put(make(self.context, self._next))
            self._next = (self._next + 1) % (1 << 63)  # sint64, from 0 again after its largest value

    def start(self, session: Any) -> None:
        """Start sending (on the event loop), with the server's aiohttp ClientSession."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = asyncio.ensure_future(self._run(session))
        if self._queue:
            self._wake.set()

    async def stop(self) -> None:
        """Stop sending; what is queued is dropped with the outbox."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        with self._lock:
            self.budget.add(-self._bytes)
            self._queue.clear()
            self._bytes = 0

    def _first(self) -> bytes | None:
        with self._lock:
            self._sending = self._queue[0] if self._queue else None
            return self._sending

    def _done(self, body: bytes) -> None:
        """Take ``body``, the first, off the queue (put() never drops the one being sent)."""
        with self._lock:
            if self._queue and self._queue[0] is body:
                self._queue.popleft()
                self._bytes -= len(body)
                self.budget.add(-len(body))
            self._sending = None

    async def _run(self, session: Any) -> None:
        import aiohttp

        assert self._wake is not None
        backoff = FIRST_BACKOFF
        while True:
            body = self._first()
            if body is None:
                self._wake.clear()
                if self._first() is None:
                    await self._wake.wait()
                continue
            try:
                await send(session, self.url, body, self.ssl)
            except Refused as exc:
                self.counts.refused += 1
                log.warning("listener %s refused an indication, which is dropped: %s", self.name, exc)
            except Exception as exc:  # unreachable, timed out (an OSError), RetryLater: try again later
                if not isinstance(exc, OSError | aiohttp.ClientError | RetryLater):  # a bug: the sender goes on
                    log.error("sending to listener %s failed: %s: %s", self.name, type(exc).__name__, exc)
                self.counts.retries += 1
                log.warning(
                    "cannot deliver to listener %s (%s); trying again in %g s", self.name, _reason(exc), backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            else:
                self.counts.delivered += 1
            backoff = FIRST_BACKOFF
            self._done(body)


class RetryLater(Exception):
    """The listener is there but cannot take the indication now."""


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def client_session() -> Any:
    """The aiohttp client all senders share (on the running event loop). Its connector has no cap
    on connections, overall or per host: each outbox sends one indication at a time, so there are
    at most as many connections as destinations (``serve`` bounds those), and no sender ever waits
    for a pooled connection that other destinations hold (a listener that accepts and never
    answers delays only its own queue)."""
    import aiohttp

    return aiohttp.ClientSession(trust_env=False, connector=aiohttp.TCPConnector(limit=0, limit_per_host=0))


async def send(session: Any, url: str, body: bytes, ssl: Any = None) -> None:
    """POST one ExportIndication; return when the listener took it, else raise RetryLater,
    Refused, or the client's error (a connection or time-out error: also worth a retry).

    Time-outs count only this exchange: connecting (:data:`SEND_TIMEOUT`), each wait for the
    answer (:data:`SEND_TIMEOUT`), the whole of it (:data:`EXCHANGE_TIMEOUT`); never a wait for
    a pooled connection (see :func:`client_session`)."""
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=SEND_TIMEOUT, sock_read=SEND_TIMEOUT)
    async with asyncio.timeout(EXCHANGE_TIMEOUT):  # a TimeoutError (an OSError): tried again
        async with session.post(
            url, data=body, headers=EXPORT_HEADERS, timeout=timeout, allow_redirects=False, ssl=ssl
        ) as response:
            answer = await response.content.read(MAX_ANSWER)
            status = response.status
    if status in RETRY_STATUSES:
        raise RetryLater(f"HTTP {status}")
    if status != 200:
        raise Refused(f"HTTP {status}")
    code = export_status(answer)
    if code == CIM_ERR_FAILED:
        raise RetryLater("CIM_ERR_FAILED")
    if code:
        raise Refused(f"CIM error {code}")


def export_status(answer: bytes) -> int:
    """The CIM status of an ExportIndication answer: 0 for success; Refused if it is not one."""
    try:
        root = SafeET.fromstring(answer, forbid_dtd=True)
    except Exception as exc:  # defusedxml's refusals and expat's errors alike
        raise Refused(f"the answer is not CIM-XML ({type(exc).__name__})") from None
    response = root.find("./MESSAGE/SIMPLEEXPRSP/EXPMETHODRESPONSE")
    if root.tag != "CIM" or response is None:
        raise Refused("the answer is not an EXPMETHODRESPONSE")
    error = response.find("ERROR")
    if error is None:
        return 0
    try:
        return int(error.get("CODE", ""))
    except ValueError:
        raise Refused("the answer's ERROR has no CODE") from None
