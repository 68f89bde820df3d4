"""``serversession serve``: a WBEM server (CIM-XML over HTTP, DMTF DSP0200/DSP0201).

Existing CIM clients (pywbem, pywbemcli, sblim wbemcli) read the sessions with no change on
their side. Needs the ``server`` extra (aiohttp, bcrypt, python-pam).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import logging.handlers
import math
import os
import queue
import signal
import stat
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..errors import InvalidInput, ServerSessionError, SourceUnavailable
from ..xmltext import shows

DEFAULT_PORT, DEFAULT_TLS_PORT = 5988, 5989
MAX_SECONDS = 86400.0  # the largest time option serve takes (one day)
AUDIT_WAIT = 10.0  # seconds a close's access log line may wait for room in the log's queue
SHUTDOWN_GRACE = 0.5  # seconds, twice over (aiohttp waits, then cancels and waits): SIGTERM is not held up by a request


@dataclass
class ServeOptions:
    """How ``serve`` listens and whom it lets in."""

    bind: str = "127.0.0.1"
    port: int | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    insecure: bool = False
    htpasswd: str | None = None
    pam: bool = False
    pam_service: str = "login"
    no_auth: bool = False
    max_age: float = 1.0
    access_log: str | None = None  # a file; "-" for stderr
    limits: Any = field(default=None)
    source_timeout: float | None = None  # --timeout of the source options, checked here too
    # indications (root/interop, server/interop.py)
    state_dir: str | None = None  # None: state.default_state_dir()
    poll_interval: float = 5.0  # WITHIN of DMTF-style filters
    allow_destinations: tuple[str, ...] = ()
    subscribers: tuple[str, ...] = ()  # empty: every authenticated user
    no_auth_subscriptions: bool = False
    operators: tuple[str, ...] = ()  # users who may invoke ForceClose (server/methods.py); empty: nobody


def _is_loopback(host: str) -> bool:
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_options(options: ServeOptions) -> None:
    """Refuse unsafe or contradictory settings before anything listens (InvalidInput, exit 2)."""
    if bool(options.tls_cert) != bool(options.tls_key):
        raise InvalidInput("--tls-cert and --tls-key go together")
    if not options.bind.strip() or not options.bind.isprintable():  # '' would listen on every address
        raise InvalidInput(f"--bind needs one address to listen on (0.0.0.0 or :: for all), not {options.bind!r}")
    if not _is_loopback(options.bind) and not options.tls_cert and not options.insecure:
        raise InvalidInput(
            f"refusing to listen on {options.bind} without TLS: passwords would cross the network in clear "
            "(give --tls-cert/--tls-key, or --insecure if you must)"
        )
    chosen = sum(bool(x) for x in (options.htpasswd, options.pam, options.no_auth))
    if chosen == 0:
        raise InvalidInput("choose how clients authenticate: --htpasswd FILE, --pam, or --no-auth")
    if chosen > 1:
        raise InvalidInput("--htpasswd, --pam and --no-auth exclude each other")
    _seconds("--max-age", options.max_age, 0.0)
    if options.limits is not None:
        _seconds("--request-timeout", options.limits.request_timeout, 0.1)
    if options.source_timeout is not None:
        _seconds("--timeout", options.source_timeout, 0.1)
    _seconds("--poll-interval", options.poll_interval, 0.5)
    if options.no_auth_subscriptions and not options.no_auth:
        raise InvalidInput("--no-auth-subscriptions goes with --no-auth (authenticated users may subscribe anyway)")
    if options.subscribers and options.no_auth:
        raise InvalidInput("--subscriber names users: it needs --htpasswd or --pam, not --no-auth")
    if options.operators and options.no_auth:
        raise InvalidInput("--operator names users: it needs --htpasswd or --pam, not --no-auth")
    if options.operators and not options.access_log:
        raise InvalidInput("--operator needs --access-log FILE ('-' for stderr): every close is written there")
    for user in options.operators:
        if not user.strip() or not user.isprintable():
            raise InvalidInput(f"--operator takes a user name, not {user!r}")
    for host in options.allow_destinations:
        if not host.strip() or not host.isprintable() or any(c in host for c in "/@ "):
            raise InvalidInput(f"--allow-destination takes a host name or address, not {host!r}")
    if options.state_dir is not None and (not options.state_dir.strip() or "\0" in options.state_dir):
        raise InvalidInput("--state-dir needs a directory")


def _seconds(option: str, value: float, low: float) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or not low <= value <= MAX_SECONDS:
        raise InvalidInput(f"{option} must be a number of seconds from {low:g} to {MAX_SECONDS:g}, not {value}")


def _import_aiohttp() -> None:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise SourceUnavailable("serve needs aiohttp: pip install 'serversession[server]'") from None


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """Hands records to the writer thread; drops them (counted) when it cannot keep up.

    An audit record (a close, logged by a worker thread with ``extra={"audit": True}``) waits up
    to AUDIT_WAIT seconds for room rather than being dropped at once.
    """

    dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            if getattr(record, "audit", False):
                self.queue.put(record, timeout=AUDIT_WAIT)
            else:
                self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


class _LogWriter(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes access log lines; a failing write is reported once, not as a traceback per line."""

    failed = False

    def handleError(self, record: logging.LogRecord) -> None:
        if not self.failed:
            self.failed = True
            error = sys.exc_info()[1]
            logging.getLogger("serversession.server").warning("cannot write the access log: %s", error)


def _open_log(target: str) -> TextIO:
    """The access log file, opened without blocking (a FIFO nobody reads), one clear error otherwise."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(target, flags, 0o640)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.ENOENT:
            reason = f"its directory {os.path.dirname(os.path.abspath(target))} does not exist"
        elif exc.errno == errno.ENXIO:
            reason = "it is a FIFO nobody reads, or a socket"
        raise InvalidInput(f"cannot open the access log {target}: {reason}") from None
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
        os.close(fd)
        raise InvalidInput(f"cannot open the access log {target}: not a file, FIFO or character device")
    try:
        os.set_blocking(fd, True)  # written by a thread of its own: blocking there stalls no client
        return os.fdopen(fd, "a", encoding="utf-8", buffering=1)
    except OSError as exc:  # a file that cannot be appended to (/proc/self/mem cannot seek to its end)
        with contextlib.suppress(OSError):
            os.close(fd)
        raise InvalidInput(f"cannot open the access log {target}: {exc.strerror or exc}") from None


def _access_logging(target: str | None) -> logging.handlers.QueueListener | None:
    """Send the access log to ``target`` through a bounded queue and a writer thread."""
    logger = logging.getLogger("serversession.access")
    logger.propagate = False
    if not target:
        logger.disabled = True
        return None
    stream = sys.stderr if target == "-" else _open_log(target)
    writer = _LogWriter(stream)
    writer.setFormatter(logging.Formatter("%(message)s"))
    records: queue.Queue[logging.LogRecord] = queue.Queue(maxsize=10000)
    logger.addHandler(_DroppingQueueHandler(records))
    logger.setLevel(logging.INFO)
    listener = logging.handlers.QueueListener(records, writer)
    listener.start()
    return listener


class _RateLimit(logging.Filter):
    """At most ``burst`` records of one kind per ``window`` seconds; the next one says how many were left out.

    Failed logins and refused requests are what a hostile client makes: it must not fill the log.
    """

    def __init__(self, burst: int = 10, window: float = 10.0) -> None:
        super().__init__()
        self.burst, self.window = burst, window
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, Any], list[float | int]] = {}  # kind -> [window start, count, left out]

    def filter(self, record: logging.LogRecord) -> bool:
        kind = (record.name, record.msg)
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(kind)
            if seen is None or now - seen[0] > self.window:
                left_out = int(seen[2]) if seen is not None else 0
                if len(self._seen) > 1000:
                    self._seen.clear()
                self._seen[kind] = [now, 1, 0]
                if left_out:
                    record.msg, record.args = f"{record.getMessage()} ({left_out} more like it left out)", None
                return True
            seen[1] += 1
            if seen[1] <= self.burst:
                return True
            seen[2] += 1
            return False


class _OneLine(logging.Formatter):
    """aiohttp's and asyncio's messages on one line: the exception's type and text, no traceback."""

    def format(self, record: logging.LogRecord) -> str:
        text = " ".join(record.getMessage().split())  # a warning's source line joins its message
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            text += f": {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        text = "".join(c if shows(c) else f"\\x{ord(c):02x}" for c in text[:2000])
        return f"serversession: {record.levelname.lower()}: {text}"


class _ClientFaults(logging.Filter):
    """Malformed HTTP from a client is the client's problem: debug level, not the server's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError | ConnectionError):
            return logging.getLogger("serversession").isEnabledFor(logging.DEBUG)
        return True


def _server_logging() -> None:
    """No traceback from a hostile request in the log, and no flood of lines either.

    pywbem warns (on stderr, a line per distinct message) about what it parses, which here is
    what clients send: those warnings are dropped; any other warning is logged like aiohttp's.
    """
    limit = _RateLimit()
    for name in ("serversession.server", "serversession.server.auth"):
        logging.getLogger(name).addFilter(limit)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    handler.addFilter(_ClientFaults())
    handler.addFilter(limit)
    from pywbem import Warning as PywbemWarning

    warnings.filterwarnings("ignore", category=PywbemWarning)
    logging.captureWarnings(True)
    for name in ("aiohttp", "asyncio", "py.warnings"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(logging.DEBUG if os.environ.get("SERVERSESSION_DEBUG") else logging.WARNING)


def _more_files() -> None:
    """Raise the soft limit of open files to the hard one (many idle clients must not starve the others)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = hard if hard != resource.RLIM_INFINITY else 65536
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, 65536), hard))
    except (ImportError, ValueError, OSError):
        pass


class SourceReader:
    """A reader for :func:`serve`: the source options of ``serversession.sessions()`` (checked
    now, as the API checks them; an option given as None takes its default) -> a function of
    the snapshot parts (sources/base.py: CONNECTIONS, OPENS, SHARES) that reads one Snapshot
    holding them (:func:`serversession.api.snapshot_reader`). It keeps the options, with which
    ForceClose closes (server/methods.py)."""

    def __init__(self, **source: Any) -> None:
        from ..api import snapshot_reader

        self.options = {name: value for name, value in source.items() if value is not None}
        self._read = snapshot_reader(**self.options)

    def __call__(self, parts: frozenset[str]) -> Any:
        return self._read(parts)


source_reader = SourceReader


def _takes_parts(read: Callable[..., Any]) -> bool:
    """Whether ``read`` is a snapshot reader (one parameter: the parts) rather than a reader of instances."""
    import inspect

    try:
        parameters = inspect.signature(read).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    return bool(positional)


def serve(options: ServeOptions, read: Callable[..., Any], echo: Callable[[str], Any]) -> None:
    """Run the server until SIGINT or SIGTERM.

    ``read`` is a snapshot reader (:func:`source_reader`: parts -> Snapshot), from which every
    class of both namespaces is served; or, as before, a function of nothing returning the
    instances to serve (Win32_ServerSession alone, say).
    """
    check_options(options)
    _import_aiohttp()
    from aiohttp import web

    from .app import Server, tls_context
    from .limits import Limits
    from .operations import Repository

    authenticator = None
    if not options.no_auth:
        from .auth import make_authenticator

        authenticator = make_authenticator(options.htpasswd, options.pam, options.pam_service)
    else:
        echo("WARNING: --no-auth: anyone who can reach the port can read the sessions")
    context = tls_context(options.tls_cert, options.tls_key) if options.tls_cert and options.tls_key else None
    port = options.port or (DEFAULT_TLS_PORT if context else DEFAULT_PORT)
    _server_logging()
    _more_files()
    listener = _access_logging(options.access_log)
    if _takes_parts(read):
        repository = Repository(snapshot=read, max_age=options.max_age)
    else:
        repository = Repository(read, max_age=options.max_age)
    if _takes_parts(read):
        repository.interop = _interop(options, repository, read)
    if isinstance(read, SourceReader):
        from .methods import Closing

        repository.closing = Closing(frozenset(options.operators), read.options)
        warning = repository.closing.warning()
        if warning:
            echo(f"WARNING: {warning}")
    server = Server(repository, authenticator, options.limits or Limits())

    async def main() -> None:
        runner = web.AppRunner(
            server.app(), access_log=None, handler_cancellation=True, keepalive_timeout=15, auto_decompress=False,
            shutdown_timeout=SHUTDOWN_GRACE,  # requests still running then are cancelled: their work abandoned
        )  # fmt: skip
        await runner.setup()
        site = web.TCPSite(runner, options.bind, port, ssl_context=context, backlog=128)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ServerSessionError(f"cannot listen on {options.bind}:{port}: {exc.strerror}") from None
        scheme = "https" if context else "http"
        spaces = "root/cimv2, root/Microsoft/Windows/SMB and root/interop" if _takes_parts(read) else "root/cimv2"
        echo(f"serving {spaces} on {scheme}://{options.bind}:{port}/cimom (Ctrl-C stops)")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        echo("stopping")
        await runner.cleanup()

    try:
        asyncio.run(main())
    finally:
        if listener is not None:
            listener.stop()
    _exit_past_stuck_workers()


def _interop(options: ServeOptions, repository: Any, read: Callable[..., Any]) -> Any:
    """root/interop with the subscriptions kept in the state directory (locked, loaded now: an
    unreadable state file is an error before anything listens, a damaged one a warning)."""
    from ..events import Hub
    from .interop import Interop
    from .state import StateFile, default_state_dir
    from .subscriptions import Policy, Store

    state = StateFile(options.state_dir or default_state_dir())
    state.open(explicit=options.state_dir is not None)
    policy = Policy(
        poll_interval=options.poll_interval,
        allowed_hosts=tuple(options.allow_destinations),
        subscribers=tuple(options.subscribers) or None,
        authenticated=not options.no_auth,
        unauthenticated=options.no_auth_subscriptions,
    )
    store = Store(policy, Hub(read), state, repository.host)
    interop = Interop(repository, store)
    store.restore()
    return interop


def _exit_past_stuck_workers(grace: float = 2.0) -> None:
    """End the process even if an abandoned operation still runs (a thread cannot be stopped).

    The interpreter would otherwise wait for it at exit, and the server would not stop on SIGTERM.
    """
    deadline = time.monotonic() + grace
    for thread in threading.enumerate():
        if thread.name.startswith("serversession-") and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
    stuck = [t for t in threading.enumerate() if t.name.startswith("serversession-") and t.is_alive()]
    if stuck:
        logging.getLogger("serversession.server").warning(
            "%d operations still running; stopping without waiting for them", len(stuck)
        )
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(0)
