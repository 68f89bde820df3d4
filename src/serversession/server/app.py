"""The HTTP side of the WBEM server (DSP0200 over aiohttp): headers, limits, authentication, log.

The event loop only moves bytes and keeps counts. Password checks run in the login pool
(:class:`.auth.LoginGate`), request parsing and operations in the work pool (:class:`.work.WorkPool`);
both are bounded, and a request's time-out is enforced around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
import traceback
from collections import Counter
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from .auth import LoginGate
from .cimxml import (
    CIM_ERR_FAILED,
    CIM_ERR_SERVER_LIMITS_EXCEEDED,
    CIMError,
    CIMErrorWithId,
    ProtocolError,
    Request,
    error_response,
    parse_request,
)
from .limits import Limits
from .operations import Repository
from .queries import QueryRunner
from .work import Busy, WorkPool

log = logging.getLogger("serversession.server")
access_log = logging.getLogger("serversession.access")
CIM_HEADERS = ("cimoperation", "cimmethod", "cimobject", "cimprotocolversion")
SINGLE_HEADERS = ("authorization", "content-length", "content-type", "content-encoding", *CIM_HEADERS)


class Server:
    """One ``/cimom`` endpoint over a :class:`Repository`."""

    def __init__(self, repository: Repository, authenticator: Any | None, limits: Limits | None = None) -> None:
        self.repository = repository
        self.authenticator = authenticator
        self.limits = limits or Limits()
        self.work = WorkPool(self.limits.workers, self.limits.max_abandoned)
        if repository.pool is None:
            repository.pool = self.work
        if repository.queries is None:
            repository.queries = QueryRunner(self.limits.query_processes)
        self.logins = (
            LoginGate(authenticator, self.limits.login_workers, self.limits.max_pending_logins,
                      self.limits.auth_cache_seconds)
            if authenticator is not None else None
        )  # fmt: skip
        self._in_flight = 0
        self._in_flight_by: Counter[str] = Counter()
        self.per_user = max(1, self.limits.max_in_flight // 2)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.limits.max_body)
        app.router.add_route("*", "/cimom", self.handle)
        app.router.add_route("*", "/{tail:.*}", self.not_found)
        app.cleanup_ctx.append(self._background)
        return app

    async def _background(self, app: web.Application) -> Any:
        """While the server runs: notice a changed htpasswd file every second (see LoginGate),
        and deliver indications (root/interop)."""
        task = asyncio.ensure_future(self._watch()) if self.logins is not None else None
        warming = asyncio.get_running_loop().run_in_executor(None, self._warm)
        interop = self.repository.interop
        if interop is not None:  # indication subscriptions: senders and restored subscriptions
            await interop.start()
        yield
        if interop is not None:
            await interop.stop()
        await warming
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.work.shutdown()
        self.repository.close()
        if self.logins is not None:
            self.logins.shutdown()

    def _warm(self) -> None:
        if self.repository.queries is not None:
            try:
                self.repository.queries.warm()
            except Exception as exc:  # the first query will try again, and say why it fails
                log.warning("cannot start the query process: %s", exc)

    async def _watch(self) -> None:
        assert self.logins is not None
        while True:
            await asyncio.sleep(1)
            try:
                await self.logins.refresh()
            except Exception as exc:  # never let the watcher die; the next check reads the file anyway
                log.warning("checking the password file failed: %s", exc)

    async def not_found(self, request: web.Request) -> web.Response:
        return web.Response(status=404, text="the CIM-XML endpoint is /cimom\n")

    async def handle(self, http: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        record: dict[str, Any] = {"client": http.remote, "user": None, "operation": None, "class": None}
        try:
            response = await self._handle(http, record)
        except ProtocolError as exc:
            headers = {"CIMError": exc.cim_error} if exc.cim_error else {}
            response = web.Response(status=exc.status, text=exc.message + "\n", headers=headers)
        except Busy as exc:
            response = _busy(str(exc))
        record.update(status=response.status, duration_ms=round((time.monotonic() - started) * 1000, 1))
        access_log.info(json.dumps(record, default=str))
        return response

    async def _handle(self, http: web.Request, record: dict[str, Any]) -> web.StreamResponse:
        if http.method != "POST":
            raise ProtocolError(405, None, "CIM operations are sent with POST (M-POST is not supported)")
        for name in SINGLE_HEADERS:
            if len(http.headers.getall(name, ())) > 1:
                raise ProtocolError(400, "header-mismatch" if name in CIM_HEADERS else None, f"{name} is given twice")
        try:
            user = await self._authenticate(http)
        except Busy as exc:  # a flood of logins: no bcrypt for this one, and no quick retry either
            await asyncio.sleep(self.limits.failure_delay)
            return _busy(str(exc))
        if user is None:
            await asyncio.sleep(self.limits.failure_delay)
            return web.Response(
                status=401,
                text="authentication required\n",
                headers={"WWW-Authenticate": 'Basic realm="serversession"'},
            )
        record["user"] = user
        headers = {name: http.headers[name] for name in CIM_HEADERS if name in http.headers}
        if headers.get("cimoperation", "").lower() != "methodcall":
            raise ProtocolError(400, "unsupported-operation", "CIMOperation: MethodCall is required")
        version = headers.get("cimprotocolversion")
        if version is not None and not version.strip().startswith("1."):
            raise ProtocolError(400, "unsupported-protocol-version", f"CIMProtocolVersion {version[:20]!r} is not 1.x")
        encoding = http.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding != "identity":
            raise ProtocolError(415, None, "request bodies are not compressed in CIM-XML (Content-Encoding)")
        if self._in_flight >= self.limits.max_in_flight:
            return _busy(f"{self._in_flight} requests are being handled already")
        if self._in_flight_by[user] >= self.per_user:
            return _busy(
                f"user {user} has {self._in_flight_by[user]} requests in progress, "
                f"the most one user may have ({self.per_user}, half of --max-requests)"
            )
        self._in_flight += 1
        self._in_flight_by[user] += 1
        try:
            return await self._timed(http, headers, record, user)
        finally:
            self._in_flight -= 1
            self._in_flight_by[user] -= 1
            if self._in_flight_by[user] <= 0:
                del self._in_flight_by[user]

    async def _timed(
        self, http: web.Request, headers: dict[str, str], record: dict[str, Any], user: str
    ) -> web.StreamResponse:
        """The request within --request-timeout: 408 while reading it, a CIM error once it is known."""
        timeout = self.limits.request_timeout
        body: bytes | None = None
        request: Request | None = None
        try:
            async with asyncio.timeout(timeout):
                body = await self._body(http)
                try:
                    request = await self.work.run(user, parse_request, body, self.limits.max_depth)
                except CIMErrorWithId as exc:
                    record["operation"], record["cim_status"] = exc.method, exc.error.code
                    return _xml(error_response(exc.message_id, exc.method, exc.error, exc.extrinsic))
                record["operation"] = request.method
                record["class"] = _target(request)
                _check_headers(headers, request)
                return await self._operation(request, record, user)
        except TimeoutError:
            if body is None:
                raise ProtocolError(408, None, f"the request took longer than {timeout:g} s") from None
            if request is None:  # the body arrived; no worker was free to read it (the user's share is busy)
                return _busy(f"no worker was free to read the request within {timeout:g} s")
            record["cim_status"] = CIM_ERR_FAILED
            error = CIMError(CIM_ERR_FAILED, f"the operation took longer than {timeout:g} s (--request-timeout)")
            return _xml(error_response(request.message_id, request.method, error, request.extrinsic))

    async def _body(self, http: web.Request) -> bytes:
        if http.content_length is not None and http.content_length > self.limits.max_body:
            raise ProtocolError(413, None, f"the body is larger than {self.limits.max_body} bytes")
        try:
            return await http.read()
        except web.HTTPRequestEntityTooLarge:
            raise ProtocolError(413, None, f"the body is larger than {self.limits.max_body} bytes") from None

    async def _operation(self, request: Request, record: dict[str, Any], user: str) -> web.StreamResponse:
        try:
            payload = await self.repository.handle(request, user, record["client"])
            record["cim_status"] = 0
        except CIMError as exc:
            record["cim_status"] = exc.code
            payload = error_response(request.message_id, request.method, exc, request.extrinsic)
        except Busy as exc:
            record["cim_status"] = CIM_ERR_SERVER_LIMITS_EXCEEDED
            payload = error_response(
                request.message_id,
                request.method,
                CIMError(CIM_ERR_SERVER_LIMITS_EXCEEDED, str(exc)),
                request.extrinsic,
            )
        except Exception as exc:  # a bug must not take the server down or reach the client
            log.error("%s failed: %s", request.method, traceback.format_exc())
            record["cim_status"] = CIM_ERR_FAILED
            error = CIMError(CIM_ERR_FAILED, f"internal error ({type(exc).__name__})")
            payload = error_response(request.message_id, request.method, error, request.extrinsic)
        return _xml(payload)

    async def _authenticate(self, http: web.Request) -> str | None:
        """The user the request authenticates as; None when it does not; Busy when checks pile up."""
        if self.logins is None:
            return "(no authentication)"
        from .auth import parse_basic

        credentials = parse_basic(http.headers.get("Authorization"))
        if credentials is None:
            return None
        user, password = credentials
        if await self.logins.check(user, password, http.remote or "?"):
            return user
        log.warning("failed login for %r from %s", user[:100], http.remote)
        return None


def _busy(text: str) -> web.Response:
    return web.Response(status=503, text=text + "\n", headers={"Retry-After": "1"})


def _check_headers(headers: dict[str, str], request: Request) -> None:
    method = headers.get("cimmethod")
    if method is None or unquote(method).lower() != request.method.lower():
        raise ProtocolError(400, "header-mismatch", "the CIMMethod header does not name the method in the body")
    target = headers.get("cimobject")
    if target is not None:
        text = unquote(target)
        if request.extrinsic:  # an object path, NAMESPACE:CLASS[.KEYS] (DSP0200 6.3.7)
            text = text.partition(":")[0]
        namespace = text.replace("\\", "/").strip("/").lower()
        if namespace != request.namespace.replace("\\", "/").strip("/").lower():
            raise ProtocolError(400, "header-mismatch", "the CIMObject header does not match the body's namespace")


def _target(request: Request) -> str | None:
    if request.extrinsic:
        return str(getattr(request.target, "classname", ""))[:200]
    for name in ("classname", "instancename", "newinstance", "objectname"):
        value = request.params.get(name)
        if value is not None:
            return str(getattr(value, "classname", value))[:200]
    query = request.params.get("query") or request.params.get("filterquery")
    return str(query)[:200] if query is not None else None


def _xml(payload: bytes) -> web.Response:
    return web.Response(
        body=payload,
        headers={"CIMOperation": "MethodResponse", "Content-Type": 'application/xml; charset="utf-8"'},
    )


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2 or newer) from PEM files, checked first (regular, bounded)."""
    from ..errors import InvalidInput, SourceUnavailable
    from ..files import MAX_SECRET_BYTES, check_regular_file

    for path in (cert, key):
        try:
            check_regular_file(path, "TLS file", MAX_SECRET_BYTES)
        except SourceUnavailable as exc:
            raise InvalidInput(str(exc)) from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2

    def no_passphrase() -> str:  # OpenSSL would otherwise ask on the terminal and wait
        raise InvalidInput(f"the TLS key {key} is encrypted; give an unencrypted key (openssl pkey -in KEY -out NEW)")

    try:
        context.load_cert_chain(cert, key, password=no_passphrase)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise InvalidInput(f"cannot use {cert} and {key} for TLS: {exc}") from None
    return context
