"""Extrinsic methods over CIM-XML (DSP0200 InvokeMethod): ``ForceClose()`` of MSFT_SmbSession and
MSFT_SmbOpenFile (DESIGN.md 2c), for the accounts ``serve --operator`` names.

A call is checked in this order: its class (of root/Microsoft/Windows/SMB; CIM_ERR_INVALID_CLASS),
its method (the class's ForceClose; CIM_ERR_METHOD_NOT_FOUND), no parameters and an instance path
(CIM_ERR_INVALID_PARAMETER), its caller (an operator; CIM_ERR_ACCESS_DENIED), then its instance:
one of the server's current read or, if not there, of a read made then (an id learnt elsewhere
need not wait for ``--max-age``), else CIM_ERR_NOT_FOUND, as DSP0200 says. Only then is anything
closed, by ``serversession.close_session`` / ``close_file`` with the source options ``serve`` reads
with: they read the source again and close exactly that id (docs/close.md). The return value is
the close's Win32 code: 0 closed; 1168 gone since the read; 1460 smbd did not act in time; 50 a
named pipe or an orphaned durable handle; 5 access denied (serve is not root, or the remote
account lacks the right); remote ones (2314, 2) as NetrFileClose answers them.

Every close is written to the access log (who asked, from where, what, what became of it, what
else ended with it), whatever the outcome, even if the client stopped waiting; the server's read
is dropped afterwards, so the next request reads the source again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import AccessDenied, ServerSessionError
from ..model import CIMObject
from ..sources.closing import ERROR_ACCESS_DENIED, FileTarget, SessionTarget
from .cimxml import (
    CIM_ERR_ACCESS_DENIED,
    CIM_ERR_FAILED,
    CIM_ERR_INVALID_PARAMETER,
    CIM_ERR_METHOD_NOT_FOUND,
    CIM_ERR_NOT_FOUND,
    CIMError,
    return_response,
)
from .work import checkpoint

if TYPE_CHECKING:
    from ..close import CloseReport
    from .operations import Call, Repository

SESSION, OPEN_FILE = "MSFT_SmbSession", "MSFT_SmbOpenFile"
FORCE_CLOSE = "ForceClose"
KEYS = {SESSION: "SessionId", OPEN_FILE: "FileId"}  # the classes with ForceClose, and their key
access_log = logging.getLogger("serversession.access")


@dataclass(frozen=True)
class Closing:
    """Who may close (``--operator``), and the source options ``serve`` reads with."""

    operators: frozenset[str]
    source: dict[str, Any]

    def close(self, classname: str, key: int, server: str | None) -> CloseReport:
        """Close the session or open file ``key``; ``server``: its host, when several are served."""
        from .. import api

        options = dict(self.source)
        if server and (options.get("hosts") or options.get("hosts_file")):
            options.update(hosts=(_host(options, server),), hosts_file=None)  # a close acts on one server
        if classname == SESSION:
            return api.close_session(key, **options)
        return api.close_file(key, **options)

    def warning(self) -> str | None:
        """What to say at start when every close would be refused (the local Samba, not root)."""
        remote = self.source.get("source") == "srvsvc" or self.source.get("hosts") or self.source.get("hosts_file")
        if self.operators and not remote and os.geteuid() != 0:
            return "--operator: closing on the local Samba needs root; ForceClose will return 5 (access denied)"
        return None


def _host(options: dict[str, Any], server: str) -> str:
    """The ``HOST:PORT`` of the served host whose label (``HOST`` or ``HOST@PORT``) is ``server``."""
    from ..sources.remote import SMB_PORT, endpoints

    served = endpoints(tuple(options.get("hosts") or ()), options.get("hosts_file"), options.get("smb_port", SMB_PORT))
    for endpoint in served:
        if endpoint.label.lower() == server.lower():
            return f"[{endpoint.host}]:{endpoint.port}" if ":" in endpoint.host else f"{endpoint.host}:{endpoint.port}"
    raise CIMError(CIM_ERR_FAILED, f"{server} is no longer one of the hosts served (--hosts-file changed?)")


def force_close(repository: Repository, call: Call) -> bytes:
    """Answer an InvokeMethod (in a worker thread): check it, find the instance, close it, log it."""
    request = call.request
    cls = repository._classdef(request.target.classname, call.namespace)
    if cls.name not in KEYS or request.method.lower() != FORCE_CLOSE.lower():
        has = ", ".join(cls.methods) or "no methods"
        raise CIMError(CIM_ERR_METHOD_NOT_FOUND, f"{cls.name} has no method {request.method[:100]!r} ({has})")
    if request.params:
        raise CIMError(CIM_ERR_INVALID_PARAMETER, f"{FORCE_CLOSE} takes no parameters")
    if not hasattr(request.target, "keybindings"):
        raise CIMError(CIM_ERR_INVALID_PARAMETER, f"{FORCE_CLOSE} is not static: call it on an instance")
    closing = repository.closing
    if closing is None or call.user not in closing.operators:
        raise CIMError(
            CIM_ERR_ACCESS_DENIED,
            f"{call.user} may not invoke {FORCE_CLOSE}: only the accounts serve names with --operator may",
        )
    path = repository._target(request.target, call, "InstanceName")
    try:
        found = repository._find(call, path)  # in the server's current read ...
    except CIMError as exc:
        if exc.code != CIM_ERR_NOT_FOUND:
            raise
        repository.invalidate()  # ... or, if not there, in a read made now (else CIM_ERR_NOT_FOUND)
        found = repository._find(call, path)
    key = getattr(found, KEYS[found.classname])
    _one_host(repository, call, found)
    checkpoint()  # a request already answered (timed out) closes nothing
    record: dict[str, Any] = {
        "event": "close", "client": call.client, "user": call.user, "operation": FORCE_CLOSE,
        "class": found.classname, KEYS[found.classname]: key, "host": found.server, "what": _label(found),
    }  # fmt: skip
    started = time.monotonic()
    try:
        report = closing.close(found.classname, key, found.server)
        code = report.code
        record.update(return_value=code, closed=bool(report.closed))
        for outcome in report.outcomes:
            record.update(what=outcome.target, reason=outcome.reason or None, also=list(outcome.also))
        if not report.matched:
            record["reason"] = "no longer there (ended since the server's read)"
    except AccessDenied as exc:  # this process may not close (the local Samba, not root)
        code = ERROR_ACCESS_DENIED
        record.update(return_value=code, closed=False, reason=str(exc))
    except ServerSessionError as exc:
        record.update(closed=False, error=str(exc))
        raise CIMError(CIM_ERR_FAILED, f"{FORCE_CLOSE} failed: {exc}") from None
    except BaseException as exc:
        record.update(closed=False, error=f"internal error ({type(exc).__name__})")
        raise
    finally:
        record["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
        access_log.info(json.dumps(record, default=str), extra={"audit": True})
        repository.invalidate()  # whatever happened, the next request reads again
    return return_response(request.message_id, request.method, "uint32", code)


def _one_host(repository: Repository, call: Call, found: CIMObject) -> None:
    """Refuse a path that names instances of several hosts (an instance name carries no host)."""
    same = [
        i
        for i in call.view((found.classname,)).of((found.classname,))
        if i.object_path.keys == found.object_path.keys and i.server != found.server
    ]
    if same:
        hosts = sorted({str(found.server), *(str(i.server) for i in same)})
        raise CIMError(
            CIM_ERR_INVALID_PARAMETER,
            f"{found.classname} {getattr(found, KEYS[found.classname])} exists on several hosts "
            f"({', '.join(hosts)}): serve one host per server to close it",
        )


def _label(found: CIMObject) -> str:
    """What is closed, as close-session and close-file name it."""
    if found.classname == SESSION:
        computer, user = getattr(found, "ClientComputerName", None), getattr(found, "ClientUserName", None)
        return SessionTarget(getattr(found, "SessionId", None), computer or "", user or "").label
    return FileTarget(getattr(found, "FileId", 0), getattr(found, "Path", None)).label
