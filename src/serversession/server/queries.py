"""WQL queries evaluated in child processes, which are killed when their request is abandoned.

A worker thread cannot be stopped, and one long call into C that keeps the GIL (a backtracking
regular expression did) stalls every thread of the process, the event loop included. So the
server evaluates queries in a few child processes (forked from a fork server, cheap to replace):
the thread that waits for the answer polls, and when its request is abandoned (timed out, client
gone) it kills the child. Each child keeps the instances it was last sent (one read, the classes
a query is over), sent again only for another read or other classes.

Data queries (SELECT) and association queries (``ASSOCIATORS OF``, ``REFERENCES OF``) are both
evaluated there (:func:`evaluate`); ``SchemaOnly`` needs no instances and is sent none.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import multiprocessing.connection
import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any

from ..model import CIMObject
from .work import checkpoint

POLL = 0.05  # seconds between two looks at whether the request was abandoned
CHILD_MEMORY = 2 << 30  # bytes of address space a child may use

Rows = list[tuple[str, tuple[Any, ...]]]  # (class name, field values) per instance


class QueryFailed(Exception):
    """The query is invalid (``kind`` "invalid"), not supported ("unsupported"), names no instance
    ("notfound") or its evaluation failed ("failed")."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclasses.dataclass
class Answer:
    """What a query gave: instances (with the class named by ``classname``, the properties
    returned, and whether only keys were) or, for ClassDefsOnly and SchemaOnly, class names."""

    classname: str = ""
    properties: tuple[str, ...] = ()
    instances: list[CIMObject] = dataclasses.field(default_factory=list)
    keys_only: bool = False
    classes: list[str] | None = None  # ClassDefsOnly, SchemaOnly: the classes, not instances


def _pack(instances: list[CIMObject]) -> Rows:
    return [(o.classname, tuple(getattr(o, f.name) for f in dataclasses.fields(o))) for o in instances]  # type: ignore[arg-type]


def unpack(rows: Rows) -> list[CIMObject]:
    from ..model.instances import instance_class

    return [instance_class(name)(*values) for name, values in rows]


def evaluate(query: str, instances: Iterable[CIMObject]) -> Answer:
    """Answer the WQL ``query`` over ``instances``: a SELECT, or ASSOCIATORS OF / REFERENCES OF
    (whose instances must come from one snapshot). QueryFailed for what cannot be answered."""
    from ..errors import InvalidInput, NotFound
    from ..wql import ClassDefsResult, NotSupported, compile_wql
    from ..wql.events import is_event_query

    if is_event_query(query):  # answered as events arrive, to a subscribed listener: never at once
        raise QueryFailed(
            "unsupported",
            "an event query is not answered by a query operation: subscribe to it in root/interop "
            "(a CIM_IndicationFilter with this query, see docs/server.md, Indications)",
        )
    try:
        result = compile_wql(query).run(instances)
    except NotSupported as exc:
        raise QueryFailed("unsupported", str(exc)) from None
    except InvalidInput as exc:
        raise QueryFailed("invalid", str(exc)) from None
    except NotFound as exc:
        raise QueryFailed("notfound", str(exc)) from None
    except RecursionError:
        raise QueryFailed("invalid", "the query is nested too deeply") from None
    except MemoryError:
        raise QueryFailed("failed", "the query needs too much memory") from None
    if isinstance(result, ClassDefsResult):
        return Answer(classes=result.names)
    return Answer(result.classname, result.properties, list(result), getattr(result, "keys_only", False))


def _child(conn: multiprocessing.connection.Connection) -> None:  # pragma: no cover - runs in the child
    """Answer (rows or None, query) with ("ok", Answer with its instances packed) or (kind, message)."""
    import resource

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
            answer = evaluate(query, instances)
            reply: tuple[Any, ...] = (
                "ok", answer.classname, answer.properties, _pack(answer.instances), answer.keys_only, answer.classes
            )  # fmt: skip
        except QueryFailed as exc:
            reply = (exc.kind, str(exc))
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
        self.generation: Any = None

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

    def run(self, generation: Any, instances: list[CIMObject] | None, query: str, user: str = "") -> Answer:
        """Evaluate ``query`` over ``instances`` for ``user``: an :class:`Answer`, or QueryFailed.

        ``generation`` names ``instances`` (a read and the classes taken from it): a child that
        holds them already is not sent them again. ``instances`` None: the query needs none
        (SchemaOnly); the child keeps those it holds."""
        self._acquire(user)
        try:
            with self._lock:
                child = self._idle.pop() if self._idle else None
            if child is None:
                child = _Child(self._context)
            try:
                fresh = instances is not None and child.generation != generation
                child.conn.send((_pack(instances) if fresh and instances is not None else None, query))
                if instances is not None:
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
        _, classname, properties, rows, keys_only, classes = reply
        return Answer(classname, properties, unpack(rows), keys_only, classes)

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
