"""WQL queries evaluated in child processes, which are killed when their request is abandoned.

A worker thread cannot be stopped, and one long call into C that keeps the GIL (a backtracking
regular expression did) stalls every thread of the process, the event loop included. So the
server evaluates queries in a few child processes (forked from a fork server, cheap to replace):
the thread that waits for the answer polls, and when its request is abandoned (timed out, client
gone) it kills the child. Each child keeps the instances of the latest read, sent once per read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import multiprocessing.connection
import threading
from collections import Counter
from typing import Any

from ..model import CIMObject
from .work import checkpoint

POLL = 0.05  # seconds between two looks at whether the request was abandoned
CHILD_MEMORY = 2 << 30  # bytes of address space a child may use

Rows = list[tuple[str, tuple[Any, ...]]]  # (class name, field values) per instance


class QueryFailed(Exception):
    """The query is invalid (``kind`` "invalid"), not supported ("unsupported") or its evaluation failed."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _pack(instances: list[CIMObject]) -> Rows:
    return [(o.classname, tuple(getattr(o, f.name) for f in dataclasses.fields(o))) for o in instances]  # type: ignore[arg-type]


def unpack(rows: Rows) -> list[CIMObject]:
    from ..model.instances import instance_class

    return [instance_class(name)(*values) for name, values in rows]


def _child(conn: multiprocessing.connection.Connection) -> None:  # pragma: no cover - runs in the child
    """Answer (generation, rows or None, query) with ("ok", classname, properties, rows) or an error."""
    import resource

    from ..errors import InvalidInput
    from ..wql import NotSupported, compile_query

    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, resource.getrlimit(resource.RLIMIT_AS)[1]))
    instances: list[CIMObject] = []
    while True:
        try:
            rows, query = conn.recv()
        except (EOFError, OSError):  # the server is gone
            return
        if rows is not None:
            instances = unpack(rows)
        try:
            result = compile_query(query).run(instances)
            reply: tuple[Any, ...] = ("ok", result.classname, result.properties, _pack(list(result)))
        except NotSupported as exc:
            reply = ("unsupported", str(exc))
        except InvalidInput as exc:
            reply = ("invalid", str(exc))
        except RecursionError:
            reply = ("invalid", "the query is nested too deeply")
        except MemoryError:
            reply = ("failed", "the query needs too much memory")
        except Exception as exc:
            reply = ("failed", f"internal error ({type(exc).__name__})")
        conn.send(reply)


class _Child:
    def __init__(self, context: Any) -> None:
        self.conn, theirs = context.Pipe()
        self.process = context.Process(target=_child, args=(theirs,), name="serversession-query", daemon=True)
        self.process.start()
        theirs.close()
        self.generation: int | None = None

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.process.kill()
            self.process.join(1)
        with contextlib.suppress(Exception):
            self.conn.close()


class QueryRunner:
    """At most ``processes`` children evaluating queries; called from worker threads (blocking).

    One user evaluates at most half of them at once (at least one): a user's slow queries leave
    children for everyone else's.
    """

    def __init__(self, processes: int = 2) -> None:
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload([__name__])
        self.processes = max(1, processes)
        self.per_user = max(1, self.processes // 2)
        self._turns = threading.Condition()
        self._running: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._idle: list[_Child] = []
        self._closed = False

    def _acquire(self, user: str) -> None:
        """Wait (stopping at checkpoints) for a child that ``user`` may use."""
        with self._turns:
            while sum(self._running.values()) >= self.processes or self._running[user] >= self.per_user:
                self._turns.wait(POLL)
                checkpoint()
            self._running[user] += 1

    def _release(self, user: str) -> None:
        with self._turns:
            self._running[user] -= 1
            if self._running[user] <= 0:
                del self._running[user]
            self._turns.notify_all()

    def run(
        self, generation: int, instances: list[CIMObject], query: str, user: str = ""
    ) -> tuple[str, tuple[str, ...], Rows]:
        """Evaluate ``query`` over ``instances`` for ``user``: (class name, properties, rows), or QueryFailed."""
        self._acquire(user)
        try:
            with self._lock:
                child = self._idle.pop() if self._idle else None
            if child is None:
                child = _Child(self._context)
            try:
                fresh = child.generation != generation
                child.conn.send((_pack(instances) if fresh else None, query))
                child.generation = generation
                while not child.conn.poll(POLL):
                    checkpoint()
                    if not child.process.is_alive():
                        raise EOFError
                reply = child.conn.recv()
            except (EOFError, OSError):
                child.kill()
                raise QueryFailed("failed", "the query's evaluation ended abnormally (out of memory?)") from None
            except BaseException:  # Abandoned above all: killing the child is the only sure way to stop it
                child.kill()
                raise
            with self._lock:
                if self._closed:
                    child.kill()
                else:
                    self._idle.append(child)
        finally:
            self._release(user)
        if reply[0] != "ok":
            raise QueryFailed(reply[0], reply[1])
        return reply[1], reply[2], reply[3]

    def warm(self) -> None:
        """Start the fork server and one child now, so that the first query does not wait for them."""
        child = _Child(self._context)
        with self._lock:
            if self._closed:
                child.kill()
            else:
                self._idle.append(child)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            children, self._idle = self._idle, []
        for child in children:
            child.kill()
