"""The ``serversession`` command (DESIGN.md section 4): its entry point.

Every error becomes one line on stderr and an exit code: 1 the operation failed, 2 invalid
input. ``SERVERSESSION_DEBUG=1`` shows tracebacks of unexpected errors.

The subcommands are click commands (commands.py).
"""

from __future__ import annotations

import gc
import logging
import os
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


def list_text(fmt: str, width: int | None, source: dict[str, Any]) -> str:
    """What ``list`` prints: the Win32_ServerSession instances of ``source`` (options of api.sessions)."""
    from .api import sessions
    from .formats import render
    from .model import SERVER_SESSION, load_schema

    instances = sessions(**source)
    cls = load_schema().get(SERVER_SESSION)
    return render(instances, cls, fmt, width)


class _WarningFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{PROG}: {record.levelname.lower()}: {record.getMessage()}"


def _log_to_stderr() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_WarningFormatter())
    logger = logging.getLogger("serversession")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if os.environ.get("SERVERSESSION_DEBUG") else logging.WARNING)


def run() -> None:
    """Entry point: run the command, turning every error into one line and an exit code."""
    argv = sys.argv[1:]
    one_shot = bool(argv) and argv[0] in ONE_SHOT
    if one_shot:
        gc.disable()
    _log_to_stderr()
    try:
        from .commands import main

        code = main.main(prog_name=PROG, standalone_mode=False)
    except KeyboardInterrupt:
        _echo_error("interrupted")
        sys.exit(130)
    except Exception as exc:
        _fail(exc)
        raise  # SERVERSESSION_DEBUG=1: the traceback of an unexpected error
    code = code if isinstance(code, int) else 0
    if one_shot:
        _exit_now(code)
    sys.exit(code)


def _fail(exc: Exception) -> None:
    """Exit with the line and the code ``exc`` calls for; return only to let an unexpected
    error's traceback through (SERVERSESSION_DEBUG=1)."""
    import click

    if isinstance(exc, click.exceptions.Abort):
        click.echo("aborted", err=True)
        sys.exit(130)
    if isinstance(exc, click.ClickException):
        exc.show()
        sys.exit(exc.exit_code)
    if isinstance(exc, ServerSessionError):
        click.echo(f"{PROG}: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    if isinstance(exc, BrokenPipeError):
        sys.stderr.close()
        sys.exit(1)
    if os.environ.get("SERVERSESSION_DEBUG"):
        return
    # the promise: never a traceback
    click.echo(f"{PROG}: internal error: {type(exc).__name__}: {exc} (SERVERSESSION_DEBUG=1 shows more)", err=True)
    sys.exit(1)


def _echo_error(text: str) -> None:
    import click

    click.echo(text, err=True)


def _exit_now(code: int) -> None:
    """End the process at once, its output flushed (the end of a ONE_SHOT command)."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:  # let the interpreter's own exit deal with it, as it always did
        sys.exit(code)
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
