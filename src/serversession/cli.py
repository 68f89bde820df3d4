"""The ``serversession`` command (DESIGN.md section 4): its entry point.

Every error becomes one line on stderr and an exit code: 1 the operation failed, 2 invalid
input (click's usage errors included: ``serversession: error: ...`` naming the option, not
click's four lines). ``SERVERSESSION_DEBUG=1`` shows tracebacks of unexpected errors.

Lines on stderr (errors, warnings) quote file names, host names and text read from clients:
their control characters are shown as escapes (formats.visible) and a line longer than
MAX_LINE characters is shortened in the middle, so that nothing reaches the terminal raw.

Ctrl-C ends a command with ``serversession: interrupted`` and exit code 130; SIGTERM and SIGHUP
with ``serversession: terminated (SIGTERM)`` and 128 + the signal's number (143, 129), after
the command's own clean-up (``demo`` stops its sandbox). Output that cannot be written (stdout
closed, disk full) is an error (exit 1); a reader that went away (``| head -1``) ends the
command quietly with exit code 1.

The subcommands are click commands (commands.py).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from .errors import ServerSessionError

if TYPE_CHECKING:
    import click

PROG = "serversession"
# Commands that read, print and end. Their process ends right after its output is flushed,
# without the interpreter's clean-up (freeing every object, unloading Samba's bindings: 10 to
# 15 ms of a ``list``), and collects no cyclic garbage on the way: what they build lives until
# they end. The other commands (serve, sandbox, demo) end the usual way.
ONE_SHOT = frozenset({"list", "query", "get", "schema"})
MAX_LINE = 2000  # characters of one line on stderr; longer ones lose their middle
STOP_SIGNALS = ("SIGTERM", "SIGHUP")


class OutputError(ServerSessionError):
    """The output could not be written (stdout closed, disk full)."""


class Terminated(BaseException):  # like KeyboardInterrupt: not an Exception, so clean-up runs
    """A stop signal (SIGTERM, SIGHUP) arrived; raised in the main thread so that ``finally`` runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def list_text(
    fmt: str, width: int | None, source: dict[str, Any], encoding: str = "utf-8", classname: str | None = None
) -> str:
    """What ``list`` prints: the instances of ``classname`` (default Win32_ServerSession) of
    ``source`` (options of api.sessions)."""
    from .api import instances
    from .formats import render
    from .model import SERVER_SESSION, load_schema

    found = instances(SERVER_SESSION if classname is None else classname, **source)
    cls = load_schema().get(SERVER_SESSION if classname is None else classname)
    kinds = {i.classname for i in found}
    if len(kinds) == 1 and cls.name not in kinds:  # a superclass of one class: show that class's columns
        cls = load_schema().get(kinds.pop())
    return render(found, cls, fmt, width, encoding=encoding)


def line(text: str) -> str:
    """``text`` fit for one line on a terminal: control characters escaped, length bounded."""
    from .formats import visible

    text = visible(text)
    if len(text) > MAX_LINE:
        left_out = len(text) - MAX_LINE + 200
        text = f"{text[: MAX_LINE - 500]} [... {left_out} characters left out ...] {text[-300:]}"
    return text


def emit(text: str, utf8: bool = False) -> None:
    """Write ``text`` to stdout and flush it; ``utf8``: as UTF-8 whatever the locale (the machine
    formats). An output that cannot be written is an OutputError; a closed pipe stays a
    BrokenPipeError (``run`` ends quietly)."""
    stream = sys.stdout
    if stream is None:
        raise OutputError("cannot write the output: standard output is closed")
    try:
        buffer = getattr(stream, "buffer", None) if utf8 else None
        if buffer is not None:
            stream.flush()
            buffer.write(text.encode("utf-8", "replace"))
            buffer.flush()
        else:
            stream.write(text)
            stream.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write the output: {exc.strerror or exc}") from None


class _WarningFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{PROG}: {record.levelname.lower()}: {line(record.getMessage())}"


def _log_to_stderr() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_WarningFormatter())
    logger = logging.getLogger("serversession")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if os.environ.get("SERVERSESSION_DEBUG") else logging.WARNING)


def _standard_streams() -> None:
    """Give a closed stdin, stdout or stderr /dev/null, so that no file the command opens gets
    its number (Samba's libraries write to fd 2); a closed stdout stays an error to write to."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115 - the process's stderr, never closed


def _stop(signum: int, frame: Any) -> None:
    raise Terminated(signum)


def _catch_stop_signals() -> None:
    for name in STOP_SIGNALS:
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) == signal.SIG_DFL:
            signal.signal(number, _stop)


def _invoke(argv: list[str]) -> Any:
    """Run the click command line ``argv``; click's own handling of errors, Ctrl-C and broken
    pipes (several lines, ``Aborted!``) is left out: ``run`` does it."""
    import click

    from .commands import main

    main._main_shell_completion({}, PROG, None)  # shell completion (_SERVERSESSION_COMPLETE): ends here
    try:
        with main.make_context(PROG, argv) as ctx:
            return main.invoke(ctx)
    except click.exceptions.Exit as exc:  # --help, --version
        return exc.exit_code


def run() -> None:
    """Entry point: run the command, turning every error into one line and an exit code."""
    argv = sys.argv[1:]
    one_shot = bool(argv) and argv[0] in ONE_SHOT
    if one_shot:
        gc.disable()
    _standard_streams()
    _log_to_stderr()
    _catch_stop_signals()
    try:
        code = _invoke(argv)
    except KeyboardInterrupt:
        _echo_error(f"{PROG}: interrupted")
        _exit_now(130)
    except Terminated as stop:
        _echo_error(f"{PROG}: terminated ({signal.Signals(stop.signum).name})")
        _exit_now(128 + stop.signum)
    except Exception as exc:
        _fail(exc)
        raise  # SERVERSESSION_DEBUG=1: the traceback of an unexpected error
    code = code if isinstance(code, int) else 0
    if one_shot:
        _exit_now(code)
    _flush_or_fail(code)
    sys.exit(code)


def _fail(exc: Exception) -> None:
    """Exit with the line and the code ``exc`` calls for; return only to let an unexpected
    error's traceback through (SERVERSESSION_DEBUG=1)."""
    import click

    if isinstance(exc, BrokenPipeError) or (isinstance(exc, OSError) and exc.errno == errno.EPIPE):
        _quiet_stdout()
        _exit_now(1)
    if isinstance(exc, click.exceptions.Abort):
        _echo_error(f"{PROG}: interrupted")
        _exit_now(130)
    if isinstance(exc, click.ClickException):  # usage errors: exit 2
        message = " ".join(exc.format_message().split())
        ctx = getattr(exc, "ctx", None)
        if isinstance(exc, click.UsageError) and ctx is not None:
            message += f" (see '{ctx.command_path} --help')"
        _echo_error(f"{PROG}: error: {message}")
        _exit_now(exc.exit_code)
    if isinstance(exc, ServerSessionError):
        _echo_error(f"{PROG}: error: {exc}")
        _exit_now(exc.exit_code)
    if os.environ.get("SERVERSESSION_DEBUG"):
        return
    # the promise: never a traceback
    _echo_error(f"{PROG}: internal error: {type(exc).__name__}: {exc} (SERVERSESSION_DEBUG=1 shows more)")
    _exit_now(1)


def _echo_error(text: str) -> None:
    """One line on stderr (if stderr can still be written to)."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(line(text) + "\n")
        sys.stderr.flush()


def _quiet_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered for a reader that went away is dropped
    there, not reported by the interpreter at exit."""
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)


def _flush_or_fail(code: int) -> None:
    """Flush stdout and stderr; an output that cannot be written ends the process with code 1."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except BrokenPipeError:
        _quiet_stdout()
        os._exit(1)
    except (OSError, ValueError) as exc:
        _echo_error(f"{PROG}: error: cannot write the output: {getattr(exc, 'strerror', None) or exc}")
        _quiet_stdout()
        os._exit(1)
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()


def _exit_now(code: int) -> None:
    """End the process at once, its output flushed (the end of a ONE_SHOT command)."""
    _flush_or_fail(code)
    os._exit(code)


def __getattr__(name: str) -> Any:
    """The click group and its commands, as ``serversession.cli`` offered them before commands.py."""
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import commands

    try:
        return getattr(commands, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


if TYPE_CHECKING:
    main: click.Group
