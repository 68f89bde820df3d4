"""``serversession exporter``: the sessions, idle times and open files as Prometheus metrics.

One :class:`Exporter` reads the source through the API (``api.snapshot_reader``: sessions, tree
connects, open handles and shares in one snapshot) and turns the snapshot into metric families
(metrics.py). Scrapes are served from a read no older than ``max_age`` seconds: one read at a
time, and a scrape that arrives while a read runs waits for it and takes its result, so any
number of scrapers cost one read per ``max_age``. A read is bounded by the source's time-out;
with several hosts, one that fails has ``serversession_up`` 0 and the others are served.

The HTTP side (http.py) speaks Prometheus' text format and OpenMetrics (prometheus-client
chooses by the ``Accept`` header) and reads TLS and basic auth from Prometheus' web
configuration file (webconfig.py). Listening beyond loopback without TLS and basic auth is
warned about; per-user series (user names) are refused there. docs/exporter.md has the metrics.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import signal
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput, ServerSessionError, SourceUnavailable

if TYPE_CHECKING:
    from prometheus_client.core import Metric
    from prometheus_client.registry import CollectorRegistry

    from ..sources.multi import HostFailure
    from .http import ExporterServer
    from .webconfig import WebSettings

log = logging.getLogger("serversession.exporter")

DEFAULT_PORT = 9923  # 9922 is Samba's own smb_prometheus_endpoint
MAX_AGE = 10.0
REPEAT = 3600.0  # seconds before the same log message is written again


def _prometheus_client() -> None:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise SourceUnavailable("the exporter needs prometheus-client: pip install 'serversession[exporter]'") from None


def host_labels(source: dict[str, Any]) -> list[str] | None:
    """The ``host`` labels of a remote (srvsvc) source, in order; None for this machine's server."""
    from ..sources.remote import SMB_PORT, endpoints

    hosts, hosts_file = tuple(source.get("hosts") or ()), source.get("hosts_file")
    if source.get("source", "auto") != "srvsvc" and not hosts and not hosts_file:
        return None
    return [e.label for e in endpoints(hosts, hosts_file, source.get("smb_port", SMB_PORT))]


class Exporter:
    """A prometheus-client collector of the source's metrics, read at most once per ``max_age``.

    ``source`` are the options of :func:`serversession.sessions` (checked now; InvalidInput).
    ``per_user`` adds per-user series, at most ``user_limit`` users' in all.
    """

    def __init__(
        self, *, max_age: float = MAX_AGE, per_user: bool = False, user_limit: int | None = None, **source: Any
    ) -> None:
        _prometheus_client()
        from ..api import snapshot_reader
        from .metrics import MAX_USERS, Tally

        if isinstance(max_age, bool) or not isinstance(max_age, int | float) or not 0 <= max_age <= 86400:
            raise InvalidInput(f"max_age {max_age!r} is not a number of seconds from 0 to 86400")
        self.max_age = float(max_age)
        self.per_user = per_user
        self.user_limit = MAX_USERS if user_limit is None else user_limit
        self.failures: list[HostFailure] = []
        self._read = snapshot_reader(**source, failures=self.failures)
        self.hosts = host_labels(source)
        self.description = "Samba on this machine" if self.hosts is None else f"{len(self.hosts)} host(s) over srvsvc"
        self.tally = Tally()
        self.reads = 0
        self._lock = threading.Lock()
        self._families: list[Metric] = []
        self._finished = -math.inf  # time.monotonic() when the last read ended

    def collect(self) -> Iterator[Metric]:
        """The families of a read no older than ``max_age`` (prometheus-client's Collector)."""
        asked = time.monotonic()
        with self._lock:  # one read at a time; who waited here takes the read that just ended
            if self._finished < asked - self.max_age:
                self._families = self._read_now()
                self._finished = time.monotonic()
            families = self._families
        yield from families

    def _read_now(self) -> list[Metric]:
        from ..sources.base import CONNECTIONS, OPENS, SHARES
        from .metrics import exporter_families, families

        self.failures.clear()
        started = time.monotonic()
        snapshot = None
        try:
            snapshot = self._read(frozenset({CONNECTIONS, OPENS, SHARES}))
        except ServerSessionError as exc:
            log.error("%s", exc)
        except Exception as exc:  # the exporter goes on; the next read may succeed
            log.error("reading the source failed: %s: %s", type(exc).__name__, exc)
        duration = time.monotonic() - started
        self.reads += 1
        failed = {failure.host for failure in self.failures}
        return [
            *families(snapshot, self.hosts, failed, self.tally, self.per_user, self.user_limit),
            *exporter_families(duration, time.time(), self.reads),
        ]

    def registry(self) -> CollectorRegistry:
        """A registry of this collector and prometheus-client's process and Python collectors."""
        from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
        return registry


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def check_exposure(bind: str, tls: bool, auth: bool, per_user: bool) -> str | None:
    """A warning for a non-loopback address without TLS and basic auth (None: nothing to say);
    InvalidInput for per-user series (user names) there."""
    if not bind.strip() or not bind.isprintable():
        raise InvalidInput(f"--bind needs one address to listen on (0.0.0.0 or :: for all), not {bind!r}")
    if is_loopback(bind) or (tls and auth):
        return None
    missing = " and ".join(name for name, there in (("TLS", tls), ("basic auth", auth)) if not there)
    if per_user:
        raise InvalidInput(
            f"refusing --per-user on {bind} without {missing}: user names would be open to anyone who reaches "
            "the port (give a --web-config-file with tls_server_config and basic_auth_users, or bind to 127.0.0.1)"
        )
    return f"listening on {bind} without {missing}: anyone who reaches the port can read the metrics"


def make_server(exporter: Exporter, bind: str, port: int, web: WebSettings) -> ExporterServer:
    """The HTTP server of ``exporter`` on ``bind``:``port`` (0: any free port), not yet serving."""
    import socket

    from prometheus_client import make_wsgi_app

    from .http import ExporterServer, web_app

    app = web_app(make_wsgi_app(exporter.registry()), web, exporter.description)
    try:
        return ExporterServer((bind, port), app, web)
    except socket.gaierror as exc:
        raise InvalidInput(f"--bind {bind}: not an address to listen on ({exc.strerror})") from None
    except OSError as exc:
        raise ServerSessionError(f"cannot listen on {bind}:{port}: {exc.strerror or exc}") from None


class _Repeats(logging.Filter):
    """Lets a message through once per REPEAT seconds: a host down for a day is not 5,760 lines."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[tuple[int, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key, now = (record.levelno, record.getMessage()), time.monotonic()
        if now - self.seen.get(key, -REPEAT) < REPEAT:
            return False
        if len(self.seen) > 10_000:
            self.seen.clear()
        self.seen[key] = now
        return True


def run_exporter(
    *,
    bind: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    web_config_file: str | None = None,
    max_age: float = MAX_AGE,
    per_user: bool = False,
    user_limit: int | None = None,
    **source: Any,
) -> None:
    """Serve the metrics until SIGINT or SIGTERM (``serversession exporter``)."""
    from .webconfig import WebSettings

    _prometheus_client()
    web = WebSettings(web_config_file)
    config = web.current()
    warning = check_exposure(bind, config.tls is not None, bool(config.users), per_user)
    exporter = Exporter(max_age=max_age, per_user=per_user, user_limit=user_limit, **source)
    quiet = _Repeats()
    for handler in logging.getLogger("serversession").handlers:
        handler.addFilter(quiet)
    if warning:
        log.warning("%s", warning)
    server = make_server(exporter, bind, port, web)
    # a first read now: the source's modules loaded before the first scrape, and its errors said at once
    threading.Thread(target=lambda: list(exporter.collect()), name="first read", daemon=True).start()
    scheme = "https" if config.tls is not None else "http"
    host = f"[{bind}]" if ":" in bind else bind
    print(
        f"serving metrics of {exporter.description} on {scheme}://{host}:{server.server_port}/metrics "
        f"({config.description}; Ctrl-C stops)",
        flush=True,
    )
    stop = threading.Event()
    previous = _on_stop_signals(lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True)
    thread.start()
    try:
        while not stop.wait(1.0) and thread.is_alive():
            pass
        print("stopping", flush=True)
    finally:
        _on_stop_signals(previous)
        server.shutdown()
        server.server_close()


def _on_stop_signals(handler: Any) -> Any:
    """Install ``handler`` (a function, or the dict this returned) for SIGINT, SIGTERM and SIGHUP,
    in the main thread only; the handlers it replaced."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is not None:
            with contextlib.suppress(ValueError, OSError):
                chosen = handler.get(number, signal.SIG_DFL) if isinstance(handler, dict) else handler
                previous[number] = signal.signal(number, chosen)
    return previous
