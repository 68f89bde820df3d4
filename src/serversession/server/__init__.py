"""``serversession serve``: a WBEM server (CIM-XML over HTTP, DMTF DSP0200/DSP0201).

Existing CIM clients (pywbem, pywbemcli, sblim wbemcli) read the sessions with no change on
their side. Needs the ``server`` extra (aiohttp, bcrypt, python-pam).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidInput, ServerSessionError, SourceUnavailable

DEFAULT_PORT, DEFAULT_TLS_PORT = 5988, 5989


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
    if options.max_age < 0:
        raise InvalidInput("--max-age must not be negative")


def _import_aiohttp() -> None:
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise SourceUnavailable("serve needs aiohttp: pip install 'serversession[server]'") from None


def _access_logging(target: str | None) -> None:
    logger = logging.getLogger("serversession.access")
    logger.propagate = False
    if not target:
        logger.disabled = True
        return
    handler: logging.Handler = logging.StreamHandler(sys.stderr) if target == "-" else logging.FileHandler(target)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def serve(options: ServeOptions, read: Callable[[], list[Any]], echo: Callable[[str], Any]) -> None:
    """Run the server until SIGINT or SIGTERM. ``read`` returns the instances to serve."""
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
    _access_logging(options.access_log)
    server = Server(Repository(read, max_age=options.max_age), authenticator, options.limits or Limits())

    async def main() -> None:
        runner = web.AppRunner(server.app(), access_log=None, handler_cancellation=True, keepalive_timeout=15)
        await runner.setup()
        site = web.TCPSite(runner, options.bind, port, ssl_context=context, backlog=128)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ServerSessionError(f"cannot listen on {options.bind}:{port}: {exc.strerror}") from None
        scheme = "https" if context else "http"
        echo(f"serving root/cimv2 on {scheme}://{options.bind}:{port}/cimom (Ctrl-C stops)")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        echo("stopping")
        await runner.cleanup()

    asyncio.run(main())
