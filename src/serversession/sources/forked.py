"""Work done in forked child processes that are killed when their time is up.

Two sources need it. A TDB read can block inside C with the GIL held (samba_tdb.py), so no
thread can time it out; and reading many hosts (multi.py) is CPU work in impacket that one
process's GIL would serialize. A child runs one function and sends back its result, or the
exception it raised, pickled over a pipe; the parent waits for all children until one deadline
and kills those still running. Only where ``os.fork`` exists (POSIX).
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field

from ..errors import SourceDataError

AVAILABLE = hasattr(os, "fork")


class Late(Exception):
    """The child was still working at the deadline and has been killed."""


class Lost(Exception):
    """The child ended without an answer (killed by someone else, or crashed)."""


@dataclass
class Child:
    """A forked child running one function; its answer arrives on ``fd``."""

    pid: int
    fd: int
    chunks: list[bytes] = field(default_factory=list)
    ended: bool = False


def start(work: Callable[[], object]) -> Child:
    """Fork a child that runs ``work()`` and sends back what it returns or raises."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer, then exit without running the parent's clean-up
        status = 0
        try:
            os.close(reader)
            view = memoryview(_answer(work))
            while view:
                view = view[os.write(writer, view) :]
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(writer)
    return Child(pid, reader)


def _answer(work: Callable[[], object]) -> bytes:
    try:
        value = work()
    except BaseException as exc:
        try:
            return pickle.dumps((False, exc))
        except Exception:  # an exception that does not pickle travels as text
            return pickle.dumps((False, SourceDataError(f"{type(exc).__name__}: {exc}")))
    try:
        return pickle.dumps((True, value))
    except Exception as exc:
        return pickle.dumps((False, SourceDataError(f"the answer cannot be sent back (pickle): {exc}")))


@dataclass(frozen=True)
class Outcome:
    """What one child's work gave: its ``value``, or the ``error`` it raised (or Late, or Lost)."""

    value: object = None
    error: BaseException | None = None


def finish(children: Sequence[Child], deadline: float) -> list[Outcome]:
    """Each child's outcome, in the order of ``children``.

    Waits until every child has answered or ``deadline`` (time.monotonic()) has passed; a child
    still running then is killed. Every child is reaped; every pipe is closed.
    """
    try:
        waiting = {child.fd: child for child in children}
        while waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            for fd in select.select(list(waiting), [], [], remaining)[0]:
                chunk = os.read(fd, 1 << 20)
                if chunk:
                    waiting[fd].chunks.append(chunk)
                else:
                    waiting.pop(fd).ended = True
    finally:
        for child in children:
            os.close(child.fd)
            if not child.ended:
                with suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
            with suppress(ChildProcessError):
                os.waitpid(child.pid, 0)
    return [_result(child) for child in children]


def _result(child: Child) -> Outcome:
    if not child.ended:
        return Outcome(error=Late())
    try:
        succeeded, value = pickle.loads(b"".join(child.chunks))
    except Exception:
        return Outcome(error=Lost())
    return Outcome(value=value) if succeeded else Outcome(error=value)
