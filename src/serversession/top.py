"""``serversession top``: a live view of the Win32_ServerSession instances, like top(1).

Each refresh is one read of the source (sessions only, the cheap read), diffed with the one
before it by the event engine (events.py): sessions created since are highlighted for one
refresh, sessions that ended are shown once more, marked ``ended``. A read that fails is shown
in the header and the last table stays. The source and the first read are checked before the
screen is taken, so that a bad option is the usual one-line error.

On a terminal the view is full screen (rich's alternate screen) and keys are read in raw mode
without echo: i, o, a, u, c sort, r reverses, q or Ctrl-C quit (exit 0), Ctrl-Z suspends. The
terminal is restored on every way out (exceptions and SIGTERM included: cli.py raises
Terminated in the main thread). When stdout is not a terminal, or TERM is dumb or unset, a plain
table with a timestamp line is printed at each refresh instead.

Default orders put the sessions in use first, as top puts the busiest processes first: idle
(least idle first), opens (most open files first), active (newest first), user and computer
(alphabetical); r turns any of them round (idle reversed: the most idle sessions, the ones to
close, first).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import select
import signal
import socket
import sys
import termios
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .api import snapshot_reader
from .cli import emit
from .events import Instances, Reader, diff, poll
from .formats import TABLE_COLUMNS, cell_text, visible
from .model import SERVER_SESSION, CIMObject, load_schema
from .wql.events import CREATION, DELETION

CLASSES = frozenset({SERVER_SESSION})
#: sort name -> (property, descending by default, what comes first, what comes first reversed)
SORTS: dict[str, tuple[str, bool, str, str]] = {
    "idle": ("IdleTime", False, "least idle first", "most idle first"),
    "opens": ("ResourcesOpened", True, "most open files first", "fewest open files first"),
    "active": ("ActiveTime", False, "newest first", "oldest first"),
    "user": ("UserName", False, "A to Z", "Z to A"),
    "computer": ("ComputerName", False, "A to Z", "Z to A"),
}
SORT_KEYS = {"i": "idle", "o": "opens", "a": "active", "u": "user", "c": "computer"}
NAMES = frozenset({"__SERVER", "ComputerName", "UserName"})  # the columns that give way on a narrow screen
NAME_WIDTH = 10  # cells a name keeps however narrow the screen: beyond that, the right edge is cut
QUIT, SUSPEND = "q\x03", "\x1a"  # q and Ctrl-C; Ctrl-Z (the terminal's signals are off: raw mode)
_ESCAPES = re.compile(rb"\x1b(?:\[[0-?]*[ -/]*[@-~]|O.|.)?", re.DOTALL)  # arrows, function keys ...
log = logging.getLogger("serversession")


def run_top(interval: float, sort_by: str, count: int | None, **source: Any) -> None:
    """Show the sessions of ``source`` (options of api.sessions) every ``interval`` seconds,
    ``count`` times or until quit. ServerSessionError if the source or its first read fails."""
    read = snapshot_reader(**source)
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    view = View(_label(source), sort_by, interval, encoding)
    view.update(*poll(read, CLASSES))  # before the screen is taken: errors are the usual one line
    try:
        if _terminal():
            _screen(view, read, count)
        else:
            _plain(view, read, count)
    except KeyboardInterrupt:  # Ctrl-C is how top is left
        pass


def _terminal() -> bool:
    try:
        tty = sys.stdout is not None and sys.stdout.isatty()
    except (OSError, ValueError):
        tty = False
    return tty and os.environ.get("TERM", "dumb") not in ("", "dumb")


def _label(source: dict[str, Any]) -> str:
    """The server and source the view reads, for its header."""
    hosts = [*source.get("hosts", ()), *([f"@{source['hosts_file']}"] if source.get("hosts_file") else [])]
    if hosts:
        return "srvsvc " + " ".join(hosts)
    conf = source.get("smb_conf") or os.environ.get("SERVERSESSION_SMB_CONF")
    return f"{socket.gethostname()} samba {conf or '(default smb.conf)'}"


class View:
    """What top shows: the sessions of the last good read, what changed in it, and their order."""

    def __init__(self, label: str, sort_by: str, interval: float, encoding: str) -> None:
        self.label, self.sort_by, self.interval, self.encoding = label, sort_by, interval, encoding
        self.reverse = False
        self.sessions: dict[Any, CIMObject] = {}
        self.new: set[int] = set()  # id() of the sessions created since the refresh before
        self.ended: list[CIMObject] = []  # sessions gone since the refresh before, as last seen
        self.taken: float | None = None
        self.error: str | None = None  # the last read failed: why
        self.warning: str | None = None  # the last warning of a read (logged while the screen is up)

    def update(self, found: Instances, taken: float) -> None:
        """A new read: what it found, diffed with the one before (the first read is the baseline)."""
        sessions = found[SERVER_SESSION]
        events = diff(self.sessions, sessions, taken) if self.taken is not None else []
        self.new = {id(event.target) for event in events if event.classname == CREATION}
        self.ended = [event.target for event in events if event.classname == DELETION]
        self.sessions, self.taken, self.error = sessions, taken, None

    def fail(self, exc: BaseException) -> None:
        """A read failed: say so and keep the last table (its marks were for one refresh)."""
        self.new, self.ended = set(), []
        self.error = f"{_clock(time.time())} read failed: {str(exc) or type(exc).__name__}"

    def sort(self, name: str) -> None:
        self.sort_by, self.reverse = name, False

    def rows(self) -> list[tuple[CIMObject, str]]:
        """(session, "new" | "ended" | "") in the order chosen, ties by server, computer, user."""
        rows = [(s, "new" if id(s) in self.new else "") for s in self.sessions.values()]
        rows += [(s, "ended") for s in self.ended]
        rows.sort(key=lambda row: (row[0].server or "", row[0].ComputerName.casefold(), row[0].UserName.casefold()))
        prop, descending = SORTS[self.sort_by][:2]

        def key(row: tuple[CIMObject, str]) -> tuple[bool, Any]:
            value = getattr(row[0], prop)
            if isinstance(value, str):
                return False, value.casefold()
            return (value is None) != descending, value or 0  # unknown last

        rows.sort(key=key, reverse=descending != self.reverse)  # stable: ties keep their order
        return rows

    def summary(self) -> str:
        sessions = list(self.sessions.values())
        users = len({s.UserName for s in sessions})
        clients = len({(s.server, s.ComputerName) for s in sessions})
        opens = sum(s.ResourcesOpened or 0 for s in sessions)
        order = SORTS[self.sort_by][3 if self.reverse else 2]
        return (
            f"{_count(len(sessions), 'session')}, {_count(users, 'user')}, {_count(clients, 'client')}, "
            f"{_count(opens, 'open file')}  sort: {self.sort_by}, {order}"
        )

    def header(self) -> list[Text]:
        """The lines above the table, each one line (cut at the screen's edge)."""
        when = _clock(self.taken) if self.taken is not None else "-"
        lines = [
            Text(visible(f"serversession top  {self.label}  read {when}, every {self.interval:g} s", self.encoding)),
            Text(f"{self.summary()}  keys: i o a u c sort, r reverse, q quit"),
        ]
        if self.error:
            lines.append(Text(visible(self.error, self.encoding), style="bold red"))
        elif self.warning:
            lines.append(Text(visible(f"warning: {self.warning}", self.encoding), style="yellow"))
        for line in lines:
            line.no_wrap, line.overflow = True, "ellipsis"
        return lines

    def table(self, rows: list[tuple[CIMObject, str]], width: int | None = None) -> RenderableType:
        """The sessions as a table; with ``width``, each row one line: the names cut to what the
        other columns leave (at least NAME_WIDTH cells), then the right edge, as top does."""
        cls = load_schema().get(SERVER_SESSION)
        columns = [("", ""), *TABLE_COLUMNS[SERVER_SESSION]]
        server = any(s.server for s, _ in rows) or any(s.server for s in self.sessions.values())
        if server:
            columns.insert(1, ("Server", "__SERVER"))
        cells = [[_mark(state), *(self._cell(s, prop, state, cls) for _, prop in columns[1:])] for s, state in rows]
        limit = needed = None
        if width is not None:  # what the other columns leave, shared by the names
            fixed = [i for i, (_, prop) in enumerate(columns) if prop not in NAMES]
            used = sum(max([Text(columns[i][0]).cell_len, *(Text(r[i]).cell_len for r in cells)]) for i in fixed)
            used += 2 * (len(columns) - 1)  # the gaps
            names = len(columns) - len(fixed)
            limit = max(NAME_WIDTH, (width - used) // names)
            needed = used + limit * names
        table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
        for heading, prop in columns:
            numeric = prop == "ResourcesOpened"
            table.add_column(
                Text(heading, style="underline" if prop == SORTS[self.sort_by][0] else ""),
                justify="right" if numeric else "left",
                no_wrap=width is not None,
                overflow="ellipsis" if width is not None else "fold",
                max_width=limit if prop in NAMES else None,
            )
        for row, (_, state) in zip(cells, rows, strict=True):
            table.add_row(
                *map(Text, row), style={"new": "bold green", "ended": "dim red"}.get(state, "")
            )  # never markup
        return table if needed is None else _Wide(table, needed)

    def _cell(self, session: CIMObject, prop: str, state: str, cls: Any) -> str:
        if prop == "__SERVER":
            text = session.server or "-"
        elif prop == "Status" and state == "ended":
            text = "ended"
        else:
            text = cell_text(session, prop, cls)
        return visible(text, self.encoding)

    def frame(self, width: int, height: int) -> RenderableType:
        """The whole screen: header, then as many rows as fit and a "… N more" line for the rest."""
        head, rows = self.header(), self.rows()
        room = max(height - len(head) - 1, 1)  # the table's heading line
        more = 0
        if len(rows) > room:
            more = len(rows) - (room - 1)
            rows = rows[: room - 1]
        parts: list[RenderableType] = [*head, self.table(rows, width)]
        if more:
            parts.append(Text(f"{'…' if _utf(self.encoding) else '...'} {more} more", style="bold"))
        return Group(*parts)

    def plain(self) -> str:
        """One refresh for a pipe or a log: a timestamp line, the whole table, a blank line."""
        buffer = _Buffer(self.encoding)
        console = Console(
            file=buffer,
            width=200,
            color_system=None,
            force_terminal=False,
            highlight=False,
            markup=False,
            emoji=False,
            soft_wrap=False,
        )
        when = datetime.fromtimestamp(self.taken or time.time()).strftime("%Y-%m-%d %H:%M:%S")
        console.print(Text(visible(f"{when}  {self.label}  {self.summary()}", self.encoding)))
        console.print(self.table(self.rows()))
        return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n\n"


class _Wide:
    """A renderable drawn at least ``width`` cells wide: what the screen has no room for is cut at
    its right edge (rich would squeeze every column, the numbers too)."""

    def __init__(self, renderable: RenderableType, width: int) -> None:
        self.renderable, self.width = renderable, width

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield from console.render(self.renderable, options.update_width(max(options.max_width, self.width)))


class _Buffer:
    """Where the plain table is rendered; its ``encoding`` tells rich whether it may draw non-ASCII."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def getvalue(self) -> str:
        return "".join(self.parts)


def _mark(state: str) -> str:
    return {"new": "+", "ended": "-"}.get(state, "")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _clock(when: float) -> str:
    return datetime.fromtimestamp(when).strftime("%H:%M:%S")


def _utf(encoding: str) -> bool:
    return encoding.lower().replace("_", "-").startswith("utf")


def _plain(view: View, read: Reader, count: int | None) -> None:
    """Not a terminal: the table at each refresh, flushed; a failed read is a warning on stderr."""
    emit(view.plain())
    deadline, refreshes = time.monotonic(), 1
    while count is None or refreshes < count:
        deadline = max(deadline + view.interval, time.monotonic())
        time.sleep(max(0.0, deadline - time.monotonic()))
        refreshes += 1
        try:
            view.update(*poll(read, CLASSES))
        except Exception as exc:
            log.warning("the source could not be read (%s); top goes on", exc)
            continue
        emit(view.plain())


class _Waker:
    """A pipe that wakes the screen's select(): a read has ended, the window was resized."""

    def __init__(self) -> None:
        self.fd, self._write = os.pipe()
        for fd in (self.fd, self._write):
            os.set_blocking(fd, False)
        self._lock = threading.RLock()  # RLock: the resize handler may interrupt close() in the main thread
        self._closed = False

    def poke(self, *_: Any) -> None:
        with self._lock:
            if not self._closed:
                with contextlib.suppress(OSError):
                    os.write(self._write, b".")

    def drain(self) -> None:
        with contextlib.suppress(OSError):
            while os.read(self.fd, 4096):
                pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            os.close(self.fd)
            os.close(self._write)


class _Keyboard:
    """The terminal of stdin in raw mode without echo, and back as it was."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.saved = termios.tcgetattr(fd)

    def raw(self) -> None:
        mode = termios.tcgetattr(self.fd)
        mode[3] &= ~(termios.ECHO | termios.ICANON | termios.ISIG | termios.IEXTEN)
        mode[6][termios.VMIN], mode[6][termios.VTIME] = 1, 0
        termios.tcsetattr(self.fd, termios.TCSANOW, mode)

    def restore(self) -> None:
        with contextlib.suppress(termios.error):
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def keys(self) -> str | None:
        """The keys pressed (escape sequences left out, letters lower case); None at end of input."""
        try:
            data = os.read(self.fd, 1024)
        except BlockingIOError:
            return ""
        return _ESCAPES.sub(b"", data).decode("latin-1").lower() if data else None


@contextlib.contextmanager
def _keyboard() -> Iterator[_Keyboard | None]:
    """Raw keys from stdin if it is a terminal (else none: Ctrl-C quits through SIGINT)."""
    try:
        fd = sys.stdin.fileno() if sys.stdin is not None and sys.stdin.isatty() else None
    except (OSError, ValueError):
        fd = None
    if fd is None:
        yield None
        return
    keyboard = _Keyboard(fd)
    try:
        keyboard.raw()
        yield keyboard
    finally:
        keyboard.restore()


@contextlib.contextmanager
def _quiet(view: View) -> Iterator[None]:
    """While the screen is up: warnings go to the header, and what Samba's libraries write to
    stderr (the same terminal) goes nowhere; both come back on the way out."""
    logger = logging.getLogger("serversession")
    handlers, propagate = logger.handlers[:], logger.propagate

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            view.warning = record.getMessage()

    keep = Keep(logging.WARNING)
    for handler in handlers:
        logger.removeHandler(handler)
    logger.addHandler(keep)
    logger.propagate = False
    saved = None
    try:
        if os.isatty(2):
            sys.stderr.flush()
            saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
        yield
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)
        logger.removeHandler(keep)
        for handler in handlers:
            logger.addHandler(handler)
        logger.propagate = propagate


def _screen(view: View, read: Reader, count: int | None) -> None:
    """The full-screen view until q, Ctrl-C, end of input or ``count`` refreshes."""
    out = open(sys.stdout.fileno(), "w", encoding=view.encoding, errors="replace", closefd=False)  # noqa: SIM115
    console = Console(file=out, force_terminal=True, highlight=False, markup=False, emoji=False)
    results: queue.SimpleQueue[tuple[Instances, float] | BaseException] = queue.SimpleQueue()
    waker = _Waker()
    refreshes, reading, next_read = 1, False, time.monotonic() + view.interval

    def start_read() -> None:
        def work() -> None:
            try:
                results.put(poll(read, CLASSES))
            except Exception as exc:
                results.put(exc)
            waker.poke()

        view.warning = None
        threading.Thread(target=work, name="serversession-top-read", daemon=True).start()

    with contextlib.ExitStack() as stack:
        stack.callback(waker.close)
        stack.callback(out.close)
        previous = signal.signal(signal.SIGWINCH, waker.poke)
        stack.callback(signal.signal, signal.SIGWINCH, previous)
        stack.enter_context(_quiet(view))
        keyboard = stack.enter_context(_keyboard())
        live = stack.enter_context(
            Live(console=console, screen=True, auto_refresh=False, redirect_stdout=False, redirect_stderr=False)
        )

        def draw() -> None:
            with contextlib.suppress(OSError):
                size = os.get_terminal_size(out.fileno())
                console.size = (size.columns, size.lines)
            live.update(view.frame(console.width, console.height), refresh=True)

        draw()
        while True:
            timeout = None if reading else max(0.0, next_read - time.monotonic())
            watched = [waker.fd] if keyboard is None else [waker.fd, keyboard.fd]
            ready = select.select(watched, [], [], timeout)[0]
            if not ready:  # time for the next read
                reading, next_read = True, next_read + view.interval
                start_read()
                continue
            if waker.fd in ready:
                waker.drain()
                while not results.empty():
                    result = results.get()
                    if isinstance(result, BaseException):
                        view.fail(result)
                    else:
                        view.update(*result)
                    reading, refreshes = False, refreshes + 1
                    if next_read < time.monotonic():  # a slow read: the next one a whole interval from now
                        next_read = time.monotonic() + view.interval
            if keyboard is not None and keyboard.fd in ready:
                keys = keyboard.keys()
                if keys is None or any(key in QUIT for key in keys):
                    return
                for key in keys:
                    if key in SORT_KEYS:
                        view.sort(SORT_KEYS[key])
                    elif key == "r":
                        view.reverse = not view.reverse
                    elif key == SUSPEND:
                        live.stop()
                        keyboard.restore()
                        os.kill(os.getpid(), signal.SIGTSTP)  # stops here until fg
                        keyboard.raw()
                        live.start()
            draw()
            if count is not None and refreshes >= count:
                return
