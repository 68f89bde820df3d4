"""The HTTP side of the WBEM server (DSP0200 over aiohttp): headers, limits, authentication, log."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import secrets
import ssl
import time
import traceback
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from .cimxml import (
    CIM_ERR_FAILED,
    CIMError,
    CIMErrorWithId,
    ProtocolError,
    Request,
    error_response,
    parse_request,
)
from .limits import Limits
from .operations import Repository

log = logging.getLogger("serversession.server")
access_log = logging.getLogger("serversession.access")
CIM_HEADERS = ("cimoperation", "cimmethod", "cimobject", "cimprotocolversion")


class Server:
    """One ``/cimom`` endpoint over a :class:`Repository`."""

    def __init__(self, repository: Repository, authenticator: Any | None, limits: Limits | None = None) -> None:
        self.repository = repository
        self.authenticator = authenticator
        self.limits = limits or Limits()
        self._in_flight = 0
        self._auth_key = secrets.token_bytes(32)
        self._auth_cache: dict[bytes, tuple[str, float]] = {}

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.limits.max_body)
        app.router.add_route("*", "/cimom", self.handle)
        app.router.add_route("*", "/{tail:.*}", self.not_found)
        return app

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
        record.update(status=response.status, duration_ms=round((time.monotonic() - started) * 1000, 1))
        access_log.info(json.dumps(record, default=str))
        return response

    async def _handle(self, http: web.Request, record: dict[str, Any]) -> web.StreamResponse:
        if http.method not in ("POST", "M-POST"):
            raise ProtocolError(405, None, "CIM operations are sent with POST")
        user = await self._authenticate(http)
        if user is None:
            await asyncio.sleep(self.limits.failure_delay)
            return web.Response(
                status=401,
                text="authentication required\n",
                headers={"WWW-Authenticate": 'Basic realm="serversession"'},
            )
        record["user"] = user
        headers = _cim_headers(http)
        if headers.get("cimoperation", "").lower() != "methodcall":
            raise ProtocolError(400, "unsupported-operation", "CIMOperation: MethodCall is required")
        if self._in_flight >= self.limits.max_in_flight:
            return web.Response(status=503, text="too many requests at once\n", headers={"Retry-After": "1"})
        self._in_flight += 1
        try:
            async with asyncio.timeout(self.limits.request_timeout):
                return await self._operation(http, headers, record, user)
        except TimeoutError:
            raise ProtocolError(408, None, f"the request took longer than {self.limits.request_timeout:g} s") from None
        finally:
            self._in_flight -= 1

    async def _operation(
        self, http: web.Request, headers: dict[str, str], record: dict[str, Any], user: str
    ) -> web.StreamResponse:
        if http.content_length is not None and http.content_length > self.limits.max_body:
            raise ProtocolError(413, None, f"the body is larger than {self.limits.max_body} bytes")
        try:
            body = await http.read()
        except web.HTTPRequestEntityTooLarge:
            raise ProtocolError(413, None, f"the body is larger than {self.limits.max_body} bytes") from None
        try:
            request = parse_request(body, self.limits.max_depth)
        except CIMErrorWithId as exc:
            record["operation"], record["cim_status"] = exc.method, exc.error.code
            return _xml(error_response(exc.message_id, exc.method, exc.error, exc.extrinsic))
        record["operation"] = request.method
        record["class"] = _target(request)
        _check_headers(headers, request)
        try:
            payload = await self.repository.handle(request, user)
            record["cim_status"] = 0
        except CIMError as exc:
            record["cim_status"] = exc.code
            payload = error_response(request.message_id, request.method, exc)
        except Exception as exc:  # a bug must not take the server down or reach the client
            log.error("%s failed: %s", request.method, traceback.format_exc())
            record["cim_status"] = CIM_ERR_FAILED
            payload = error_response(
                request.message_id, request.method, CIMError(CIM_ERR_FAILED, f"internal error ({type(exc).__name__})")
            )
        return _xml(payload)

    async def _authenticate(self, http: web.Request) -> str | None:
        """The user the request authenticates as; None when it does not."""
        if self.authenticator is None:
            return "(no authentication)"
        from .auth import parse_basic

        credentials = parse_basic(http.headers.get("Authorization"))
        if credentials is not None:
            user, password = credentials
            key = hmac.new(self._auth_key, f"{user}\0{password}".encode(), hashlib.sha256).digest()
            cached = self._auth_cache.get(key)
            if cached and cached[1] > time.monotonic():
                return cached[0]
            if await asyncio.to_thread(self.authenticator.check, user, password):
                if len(self._auth_cache) > 1024:
                    self._auth_cache.clear()
                self._auth_cache[key] = (user, time.monotonic() + self.limits.auth_cache_seconds)
                return user
            log.warning("failed login for %r from %s", user, http.remote)
        return None


def _cim_headers(http: web.Request) -> dict[str, str]:
    """The CIM headers, also from an M-POST's ``Man: ...;ns=NN`` extension (``NN-CIMOperation``)."""
    out = {name: http.headers[name] for name in CIM_HEADERS if name in http.headers}
    if http.method == "M-POST":
        man = http.headers.get("Man", "")
        prefix = man.split("ns=", 1)[1].strip() + "-" if "ns=" in man else ""
        for name in CIM_HEADERS:
            value = http.headers.get(prefix + name)
            if value is not None:
                out[name] = value
    return {k.lower(): v for k, v in out.items()}


def _check_headers(headers: dict[str, str], request: Request) -> None:
    method = headers.get("cimmethod")
    if method is None or unquote(method).lower() != request.method.lower():
        raise ProtocolError(400, "header-mismatch", "the CIMMethod header does not name the method in the body")
    target = headers.get("cimobject")
    if target is not None:
        namespace = unquote(target).replace("\\", "/").strip("/").lower()
        if namespace != request.namespace.replace("\\", "/").strip("/").lower():
            raise ProtocolError(400, "header-mismatch", "the CIMObject header does not match the body's namespace")


def _target(request: Request) -> str | None:
    for name in ("classname", "instancename"):
        value = request.params.get(name)
        if value is not None:
            return str(getattr(value, "classname", value))
    query = request.params.get("query") or request.params.get("filterquery")
    return str(query)[:200] if query is not None else None


def _xml(payload: bytes) -> web.Response:
    return web.Response(
        body=payload,
        headers={"CIMOperation": "MethodResponse", "Content-Type": 'application/xml; charset="utf-8"'},
    )


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2 or newer) from PEM files."""
    for path in (cert, key):
        if not os.path.isfile(path):
            from ..errors import InvalidInput

            raise InvalidInput(f"TLS file not found: {path}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        from ..errors import InvalidInput

        raise InvalidInput(f"cannot use {cert} and {key} for TLS: {exc}") from None
    return context
