"""The exporter's HTTP server: the standard library's WSGI server, one thread per connection.

Bounded: at most :data:`MAX_CONNECTIONS` connections at once, :data:`MAX_PER_CLIENT` of them from
one client address (more are closed at once: one address cannot take every slot), a request
head of at most :data:`MAX_REQUEST` bytes read within :data:`REQUEST_TIMEOUT` seconds (else 431 or
the connection is closed), no request body is ever read, and the TLS handshake happens in the
connection's own thread under the same time-out (a client that stalls it holds up nobody else).
Only GET and HEAD are answered: ``/metrics`` (prometheus-client's text format or OpenMetrics, by
the ``Accept`` header; gzip when asked), ``/`` a short HTML page, anything else 404. With basic
auth configured every path needs it, as in Prometheus' exporter-toolkit.
"""

from __future__ import annotations

import html
import http.client
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from .. import __version__
from ..errors import ServerSessionError
from .webconfig import WebSettings, peer_allowed

log = logging.getLogger("serversession.exporter")

MAX_CONNECTIONS = 64
MAX_PER_CLIENT = 16  # connections from one client address (Prometheus needs one per target)
MAX_REQUEST = 16 * 1024  # bytes of request line and headers
REQUEST_TIMEOUT = 10.0  # seconds to receive a request head (and the TLS handshake before it)
SEND_TIMEOUT = 30.0  # seconds a blocked send of the answer may wait

StartResponse = Callable[..., Any]
App = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>serversession exporter</title></head>
<body><h1>serversession exporter</h1>
<p>Sessions, idle times and open files of SMB servers ({source}) for Prometheus.</p>
<p><a href="metrics">Metrics</a></p>
<p>serversession {version}</p></body></html>
"""


class _HeadReader:
    """The request's input: at most MAX_REQUEST bytes, all of them by a deadline."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buffer, self.left = sock, b"", MAX_REQUEST
        self.deadline = time.monotonic() + REQUEST_TIMEOUT

    def readline(self, limit: int = -1) -> bytes:
        while b"\n" not in self.buffer and (limit < 0 or len(self.buffer) < limit):
            if self.left <= 0:
                raise http.client.LineTooLong(f"a request head larger than {MAX_REQUEST} bytes")
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the request head did not arrive in time")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(min(4096, self.left))
            if not chunk:
                break
            self.left -= len(chunk)
            self.buffer += chunk
        end = self.buffer.find(b"\n") + 1 or len(self.buffer)
        end = end if limit < 0 else min(end, limit)
        line, self.buffer = self.buffer[:end], self.buffer[end:]
        return line

    def read(self, size: int = -1) -> bytes:  # the WSGI input: no request here has a body
        return b""

    def close(self) -> None:
        pass


class _Answer(ServerHandler):
    server_software = f"serversession-exporter/{__version__}"

    def log_exception(self, exc_info: Any) -> None:  # no traceback on stderr
        log.error("error while answering: %s: %s", exc_info[0].__name__, exc_info[1])


class _Handler(WSGIRequestHandler):
    def setup(self) -> None:
        super().setup()
        self.rfile = _HeadReader(self.connection)  # type: ignore[assignment]

    def handle(self) -> None:
        """One request (WSGIRequestHandler.handle with bounded input and no tracebacks)."""
        self.command, self.request_version, self.requestline = None, "HTTP/1.0", ""  # for send_error
        try:
            self.raw_requestline = self.rfile.readline(MAX_REQUEST + 1)
            if not self.raw_requestline.endswith(b"\n"):
                if self.raw_requestline:
                    self.send_error(400, "Bad request line")
                return
            if not self.parse_request():  # answers 431 itself for a head too large
                return
        except http.client.LineTooLong:
            self.send_error(414, f"Request line longer than {MAX_REQUEST} bytes")
            return
        except (OSError, ValueError):  # too slow, reset, not HTTP
            return
        self.connection.settimeout(SEND_TIMEOUT)
        answer = _Answer(self.rfile, self.wfile, self.get_stderr(), self.get_environ(), multithread=True)
        answer.request_handler = self  # type: ignore[attr-defined]
        answer.run(self.server.get_app())  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class ExporterServer(ThreadingMixIn, WSGIServer):
    """A threaded WSGI server; TLS (from the web settings, per connection) in each connection's thread."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = MAX_CONNECTIONS

    def __init__(self, address: tuple[str, int], app: App, web: WebSettings) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.web = web
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.per_client = MAX_PER_CLIENT
        self._clients: dict[str, int] = {}  # open connections by client address
        self._clients_lock = threading.Lock()
        super().__init__(address, _Handler)
        self.set_app(app)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS look-up of the address (it can stall the start)."""
        import socketserver

        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()

    def _take(self, client: str) -> bool:
        """Count a connection from ``client``; False (nothing counted) when it has its share, or
        when every slot is taken."""
        with self._clients_lock:
            if self._clients.get(client, 0) >= self.per_client:
                return False
            if not self.slots.acquire(blocking=False):
                return False
            self._clients[client] = self._clients.get(client, 0) + 1
            return True

    def _give_back(self, client: str) -> None:
        with self._clients_lock:
            left = self._clients.get(client, 0) - 1
            if left > 0:
                self._clients[client] = left
            else:
                self._clients.pop(client, None)
            self.slots.release()

    def process_request(self, request: Any, client_address: Any) -> None:
        client = str(client_address[0])
        if not self._take(client):  # too many connections, or too many from this address: closed
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._give_back(client)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            config = self.web.last_good()
            if config.tls is not None:
                request.settimeout(REQUEST_TIMEOUT)
                request = config.tls.wrap_socket(request, server_side=True)
                if config.allowed_sans and not peer_allowed(request, config.allowed_sans):
                    log.debug("%s: client certificate names none of client_allowed_sans", client_address[0])
                    return
            self.finish_request(request, client_address)
        except (OSError, ServerSessionError) as exc:  # ssl.SSLError is an OSError
            log.debug("%s: connection ended: %s", client_address[0], exc)
        except Exception as exc:
            log.error("%s: internal error: %s: %s", client_address[0], type(exc).__name__, exc)
        finally:
            self.shutdown_request(request)
            self._give_back(str(client_address[0]))


def web_app(metrics: App, web: WebSettings, source: str) -> App:
    """The WSGI application: authentication, then ``/metrics``, ``/`` or 404."""
    from ..server.auth import parse_basic

    page = PAGE.format(source=html.escape(source), version=html.escape(__version__)).encode()

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            config = web.current()
        except ServerSessionError:
            return _plain(start_response, "500 Internal Server Error", b"the web config file is invalid\n", [])
        headers = list(config.headers)
        if config.users:
            given = parse_basic(environ.get("HTTP_AUTHORIZATION"))
            if given is None or not web.authorized(config, *given):
                headers.append(("WWW-Authenticate", 'Basic realm="serversession exporter", charset="UTF-8"'))
                return _plain(start_response, "401 Unauthorized", b"Unauthorized\n", headers)
        method, path = environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", "")
        if method not in ("GET", "HEAD"):
            return _plain(
                start_response, "405 Method Not Allowed", b"only GET and HEAD\n", [*headers, ("Allow", "GET, HEAD")]
            )
        if path == "/metrics":

            def respond(status: str, more: list[tuple[str, str]], exc_info: Any = None) -> Any:
                return start_response(status, [*more, *headers], exc_info)

            body = metrics({**environ, "REQUEST_METHOD": "GET"}, respond)  # HEAD: the same, without the body
            return [] if method == "HEAD" else body
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), *headers])
            return [] if method == "HEAD" else [page]
        return _plain(start_response, "404 Not Found", b"Not Found: see /metrics\n", headers)

    return app


def _plain(start_response: StartResponse, status: str, body: bytes, headers: list[tuple[str, str]]) -> list[bytes]:
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), *headers])
    return [body]
