"""The CIM operations of DSP0200 over the schema and the live instances (read-only).

Each operation is a plain function of the request and a snapshot of the instances; the server
runs it in a worker thread (:mod:`.work`), never on the event loop. The state shared between
requests (the open enumerations, the rendered fragments) is guarded by a lock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidInput, NotFound, ServerSessionError
from ..model import CIMObject, ClassDef, load_schema
from ..model.instances import local_server_name
from ..model.objectpath import ObjectPath
from ..model.schema import NAMESPACE, cim_classes
from ..wql import NotSupported, compile_query, find_instance
from ..xmltext import xml_safe
from . import xmlwrite
from .cimxml import (
    CIM_ERR_FAILED,
    CIM_ERR_INVALID_CLASS,
    CIM_ERR_INVALID_ENUMERATION_CONTEXT,
    CIM_ERR_INVALID_NAMESPACE,
    CIM_ERR_INVALID_OPERATION_TIMEOUT,
    CIM_ERR_INVALID_PARAMETER,
    CIM_ERR_INVALID_QUERY,
    CIM_ERR_NOT_FOUND,
    CIM_ERR_NOT_SUPPORTED,
    CIM_ERR_QUERY_LANGUAGE_NOT_SUPPORTED,
    CIM_ERR_SERVER_LIMITS_EXCEEDED,
    CIMError,
    Request,
    method_response,
)
from .queries import QueryFailed, QueryRunner, unpack
from .work import Checked, WorkPool, abandoned, checkpoint

CIM_ERR_FILTERED_ENUMERATION_NOT_SUPPORTED = 25
CIM_ERR_CONTINUATION_ON_ERROR_NOT_SUPPORTED = 26
READ_ONLY = ("modifyinstance", "createinstance", "deleteinstance", "modifyclass", "createclass", "deleteclass",
             "setproperty", "setqualifier", "deletequalifier")  # fmt: skip
MAX_OPERATION_TIMEOUT = 600  # seconds an open enumeration may wait between pulls
DEFAULT_OPERATION_TIMEOUT = 60
UINT32_MAX = 2**32 - 1  # MaxObjectCount and OperationTimeout are uint32 (DSP0200)
MAX_QUERY_LENGTH = 65536  # characters of a WQL query
MAX_FRAGMENT_CACHE = 64 << 20  # characters of rendered instances kept between requests
MAX_CONTEXT_CHARS = 256 << 20  # characters of rendered instances held by open enumerations
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# operations that need the instances (read from the source before the operation runs)
_NEEDS_INSTANCES = frozenset({"enumerateinstancenames", "enumerateinstances", "getinstance", "execquery",
                              "openenumerateinstances", "openenumerateinstancepaths", "openqueryinstances"})  # fmt: skip

_OPEN = ("operationtimeout", "continueonerror", "maxobjectcount", "filterquerylanguage", "filterquery")
_INSTANCE = ("localonly", "includequalifiers", "includeclassorigin", "propertylist")
# the parameters each operation takes (DSP0200); any other is refused rather than silently ignored
PARAMETERS: dict[str, frozenset[str]] = {
    name: frozenset(params)
    for name, params in {
        "enumerateclassnames": ("classname", "deepinheritance"),
        "enumerateclasses": ("classname", "deepinheritance", *_INSTANCE),
        "getclass": ("classname", *_INSTANCE),
        "enumerateinstancenames": ("classname",),
        "enumerateinstances": ("classname", "deepinheritance", *_INSTANCE),
        "getinstance": ("instancename", *_INSTANCE),
        "execquery": ("querylanguage", "query"),
        "openenumerateinstances": ("classname", "deepinheritance", *_INSTANCE, *_OPEN),
        "openenumerateinstancepaths": ("classname", *_OPEN),
        "openqueryinstances": ("returnqueryresultclass", *_OPEN),
        "pullinstanceswithpath": ("enumerationcontext", "maxobjectcount"),
        "pullinstancepaths": ("enumerationcontext", "maxobjectcount"),
        "pullinstances": ("enumerationcontext", "maxobjectcount"),
        "closeenumeration": ("enumerationcontext",),
    }.items()
}

Snapshot = tuple[int, list[CIMObject]]  # generation, instances


@dataclass
class Context:
    """An open enumeration: the fragments not yet pulled."""

    owner: str
    kind: str  # the pull method that reads it
    items: list[str]
    timeout: float
    chars: int = 0  # size of the fragments it holds (the memory budget of open enumerations)
    expires: float = field(default=0.0)

    def touch(self) -> None:
        self.expires = time.monotonic() + self.timeout


class Rendered:
    """The XML fragments of one class's instances (one read, one set of options)."""

    __slots__ = ("_joined", "chars", "items")

    def __init__(self, items: list[str]) -> None:
        self.items = items
        self.chars = sum(map(len, items))
        self._joined: bytes | None = None

    def joined(self) -> bytes:
        """All fragments, encoded once and shared by every response that returns them all."""
        if self._joined is None:
            self._joined = "".join(self.items).encode()
        return self._joined


class Repository:
    """Answers operations in ``root/cimv2`` with the instances ``read`` returns.

    ``read`` runs in a thread of its own, at most once per ``max_age`` seconds however many
    requests arrive (one read at a time; the others wait for it). Operations run in ``pool``
    (set by the server) or, without one, in the caller.
    """

    def __init__(
        self,
        read: Callable[[], list[CIMObject]],
        host: str | None = None,
        max_age: float = 1.0,
        max_contexts: int = 128,
        pool: WorkPool | None = None,
    ) -> None:
        self.read = read
        self.host = host or local_server_name()
        self.max_age = max_age
        self.max_contexts = max_contexts
        self.contexts_per_user = max(1, max_contexts // 2)
        self.context_chars = MAX_CONTEXT_CHARS
        self.pool = pool
        self.queries: QueryRunner | None = None  # set by the server: queries in child processes
        self.contexts: dict[str, Context] = {}
        self._state = threading.Lock()  # contexts and the fragment cache
        self._render = threading.Lock()  # one rendering at a time (the others reuse its result)
        self._reader = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="serversession-read")
        self._reading: asyncio.Future[Snapshot] | None = None
        self._cached: tuple[float, int, list[CIMObject]] | None = None
        self._fragments: dict[tuple[Any, ...], Rendered] = {}
        self._fragment_chars = 0
        self.schema = load_schema()
        self.classes = {name.lower(): cls for name, cls in cim_classes().items()}
        self._methods: dict[str, Callable[[Request, str, Snapshot | None], bytes]] = {
            "enumerateclassnames": self.enumerate_class_names,
            "enumerateclasses": self.enumerate_classes,
            "getclass": self.get_class,
            "enumerateinstancenames": self.enumerate_instance_names,
            "enumerateinstances": self.enumerate_instances,
            "getinstance": self.get_instance,
            "execquery": self.exec_query,
            "openenumerateinstances": self.open_enumerate_instances,
            "openenumerateinstancepaths": self.open_enumerate_instance_paths,
            "openqueryinstances": self.open_query_instances,
            "pullinstanceswithpath": self.pull,
            "pullinstancepaths": self.pull,
            "pullinstances": self.pull,
            "closeenumeration": self.close_enumeration,
        }

    # --- dispatch -------------------------------------------------------------------------

    async def handle(self, request: Request, user: str) -> bytes:
        namespace = request.namespace.replace("\\", "/").strip("/").lower()
        if namespace != NAMESPACE:
            raise CIMError(
                CIM_ERR_INVALID_NAMESPACE, f"no namespace {request.namespace!r}; this server has {NAMESPACE}"
            )
        name = request.method.lower()
        method = self._methods.get(name)
        if method is None:
            what = "this server is read-only" if name in READ_ONLY else "not supported"
            raise CIMError(CIM_ERR_NOT_SUPPORTED, f"{request.method}: {what}")
        unknown = sorted(set(request.params) - PARAMETERS[name])
        if unknown:
            raise CIMError(CIM_ERR_INVALID_PARAMETER, f"{request.method} has no parameter {unknown[0][:100]}")
        snapshot = await self.instances() if name in _NEEDS_INSTANCES else None
        if self.pool is None:
            return method(request, user, snapshot)
        return await self.pool.run(user, method, request, user, snapshot)

    async def instances(self) -> Snapshot:
        """The current instances and their generation number (read again after ``max_age``)."""
        cached = self._cached
        if cached is not None and time.monotonic() - cached[0] <= self.max_age:
            return cached[1], cached[2]
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(self._read())
            self._reading.add_done_callback(_retrieve)
        return await asyncio.shield(self._reading)  # a waiter that times out does not cancel the read

    async def _read(self) -> Snapshot:
        try:
            found = await asyncio.get_running_loop().run_in_executor(self._reader, self.read)
        except ServerSessionError as exc:
            raise CIMError(CIM_ERR_FAILED, f"reading the sessions failed: {exc}") from None
        generation = (self._cached[1] + 1) if self._cached else 1
        self._cached = (time.monotonic(), generation, found)
        with self._state:
            self._fragments.clear()
            self._fragment_chars = 0
        return generation, found

    def close(self) -> None:
        self._reader.shutdown(wait=False, cancel_futures=True)
        if self.queries is not None:
            self.queries.close()

    # --- classes --------------------------------------------------------------------------

    def _classdef(self, name: Any, parameter: str = "ClassName") -> ClassDef:
        text = getattr(name, "classname", name)
        if not isinstance(text, str) or not text:
            raise CIMError(CIM_ERR_INVALID_PARAMETER, f"{parameter} is missing")
        try:
            return self.schema.get(text)
        except NotFound:
            raise CIMError(CIM_ERR_INVALID_CLASS, f"no class {text[:200]!r} in {NAMESPACE}") from None

    def _class_names(self, name: Any, deep: bool) -> list[str]:
        if name is None:
            roots = [c.name for c in self.schema.classes.values() if not c.superclass]
            if not deep:
                return roots
            return list(self.schema.classes)
        base = self._classdef(name).name
        children = [c.name for c in self.schema.classes.values() if c.superclass == base]
        if not deep:
            return children
        return [c for c in self.schema.subclasses(base) if c != base]

    def _cim_class(self, name: str, local_only: bool, qualifiers: bool, origin: bool, plist: Any) -> Any:
        cls = copy.deepcopy(self.classes[name.lower()])  # the edits below must not reach the shared class
        if not local_only:  # add what the class inherits, as DSP0004 propagation says
            inherited = {}
            for ancestor in self.schema.superclasses(name):
                for prop in self.classes[ancestor.lower()].properties.values():
                    if prop.name not in cls.properties and prop.name not in inherited:
                        propagated = copy.deepcopy(prop)
                        propagated.propagated = True
                        propagated.class_origin = ancestor
                        inherited[prop.name] = propagated
            cls.properties.update(inherited)
        wanted = _property_filter(plist)
        for pname in list(cls.properties):
            prop = cls.properties[pname]
            if wanted is not None and pname.lower() not in wanted:
                del cls.properties[pname]
                continue
            if prop.class_origin is None:
                prop.class_origin = name
            if not origin:
                prop.class_origin = None
                prop.propagated = None
            if not qualifiers:
                prop.qualifiers = {}
        if not qualifiers:
            cls.qualifiers = {}
        return cls

    def enumerate_class_names(self, request: Request, user: str, snapshot: Snapshot | None) -> bytes:
        names = self._class_names(request.param("ClassName"), request.flag("DeepInheritance", False))
        return method_response(
            request.message_id, request.method, [f'<CLASSNAME NAME="{n}"></CLASSNAME>' for n in names]
        )

    def enumerate_classes(self, request: Request, user: str, snapshot: Snapshot | None) -> bytes:
        names = self._class_names(request.param("ClassName"), request.flag("DeepInheritance", False))
        args = self._class_flags(request)
        return method_response(
            request.message_id,
            request.method,
            [xmlwrite.expand_empty(self._cim_class(n, *args, None).tocimxmlstr()) for n in names],
        )

    def _class_flags(self, request: Request) -> tuple[bool, bool, bool]:
        return (
            request.flag("LocalOnly", True),
            request.flag("IncludeQualifiers", True),
            request.flag("IncludeClassOrigin", False),
        )

    def get_class(self, request: Request, user: str, snapshot: Snapshot | None) -> bytes:
        cls = self._classdef(request.param("ClassName"))
        xml = self._cim_class(cls.name, *self._class_flags(request), request.param("PropertyList")).tocimxmlstr()
        xml = xmlwrite.expand_empty(xml)
        return method_response(request.message_id, request.method, [xml])

    # --- instances ------------------------------------------------------------------------

    def _fragments_for(
        self, snapshot: Snapshot, cls: ClassDef, kind: str, deep: bool, plist: Any, qualifiers: bool, origin: bool
    ) -> Rendered:
        """XML fragments of every instance of ``cls`` (and subclasses), memoised per read."""
        generation, instances = snapshot
        wanted = _property_filter(plist)
        key = (generation, cls.name, kind, deep, None if wanted is None else tuple(sorted(wanted)), qualifiers, origin)
        cached = self._fragments.get(key)
        if cached is not None:
            return cached
        while not self._render.acquire(timeout=0.1):  # another worker renders; it may be this very key
            checkpoint()
        try:
            cached = self._fragments.get(key)
            if cached is not None:
                return cached
            classes = set(self.schema.subclasses(cls.name))
            out = []
            for number, instance in enumerate(instances):
                if number % 64 == 63:
                    checkpoint()
                if instance.classname not in classes:
                    continue
                own = self.schema.get(instance.classname)
                shown = cls if not deep else own
                props = [p for p in shown.properties if wanted is None or p.lower() in wanted]
                out.append(self._fragment(instance, own, kind, props, qualifiers, origin))
            rendered = Rendered(out)
            with self._state:
                if generation == self._generation() and rendered.chars <= MAX_FRAGMENT_CACHE:
                    while self._fragments and self._fragment_chars + rendered.chars > MAX_FRAGMENT_CACHE:
                        oldest = next(iter(self._fragments))
                        self._fragment_chars -= self._fragments.pop(oldest).chars
                    self._fragments[key] = rendered
                    self._fragment_chars += rendered.chars
            return rendered
        finally:
            self._render.release()

    def _generation(self) -> int:
        return self._cached[1] if self._cached else 0

    def _fragment(
        self, instance: CIMObject, cls: ClassDef, kind: str, props: list[str], qualifiers: bool, origin: bool
    ) -> str:
        if kind == "name":
            return xmlwrite.instance_name_xml(instance, cls)
        host = instance.server or self.host
        if kind == "path":
            return xmlwrite.instance_path_xml(instance, cls, host, NAMESPACE)
        body = self._instance_body(instance, cls, props, qualifiers, origin)
        if kind == "instance":
            return body
        if kind == "named":
            return f"<VALUE.NAMEDINSTANCE>{xmlwrite.instance_name_xml(instance, cls)}{body}</VALUE.NAMEDINSTANCE>"
        path = xmlwrite.instance_path_xml(instance, cls, host, NAMESPACE)
        if kind == "with path":
            return f"<VALUE.INSTANCEWITHPATH>{path}{body}</VALUE.INSTANCEWITHPATH>"
        return f"<VALUE.OBJECTWITHPATH>{path}{body}</VALUE.OBJECTWITHPATH>"

    def _instance_body(
        self, instance: CIMObject, cls: ClassDef, props: list[str], qualifiers: bool, origin: bool
    ) -> str:
        if not qualifiers:
            return xmlwrite.instance_xml(instance, cls, props, origin)
        cim = instance.to_cim_instance(props)  # rare (deprecated option): pywbem writes the qualifiers
        for name, prop in cim.properties.items():
            for level in [cls.name, *self.schema.superclasses(cls.name)]:
                source = self.classes[level.lower()].properties.get(name)
                if source is not None:
                    prop.qualifiers = source.qualifiers.copy()
                    break
            if origin:
                prop.class_origin = cls.properties[name].class_origin
                prop.propagated = cls.properties[name].class_origin != cls.name
        cim.path = None
        return xml_safe(xmlwrite.expand_empty(cim.tocimxmlstr()))  # pywbem writes values raw

    def _instance_flags(self, request: Request) -> tuple[bool, Any, bool, bool]:
        return (
            request.flag("DeepInheritance", True),
            request.param("PropertyList"),
            request.flag("IncludeQualifiers", False),
            request.flag("IncludeClassOrigin", False),
        )

    def enumerate_instance_names(self, request: Request, user: str, snapshot: Snapshot | None) -> bytes:
        cls = self._classdef(request.param("ClassName"))
        rendered = self._fragments_for(_need(snapshot), cls, "name", True, None, False, False)
        return method_response(request.message_id, request.method, encoded=rendered.joined())

    def enumerate_instances(self, request: Request, user: str, snapshot: Snapshot | None) -> bytes:
        # LocalOnly is deprecated for instances; as DSP0200 1.4 recommends, it is treated as false
        cls = self._classdef(request.param("ClassName"))
        rendered = self._fragments_for(_need(snapshot), cls, "named", *self._instance_flags(request))
        return method_response(request.message_id, request.method, encoded=rendered.joined())

    def get_instance(self, request: Request, user: str, snapshot: Snapshot | None) -> bytes:
        name = request.param("InstanceName")
        if name is None or not hasattr(name, "keybindings"):
            raise CIMError(CIM_ERR_INVALID_PARAMETER, "InstanceName is missing")
        cls = self._classdef(name.classname, "InstanceName")
        try:
            path = ObjectPath(cls.name, tuple((_key_name(k), _key_value(k, v)) for k, v in name.keybindings.items()))
            found = find_instance(path, _need(snapshot)[1])
        except NotFound as exc:
            raise CIMError(CIM_ERR_NOT_FOUND, str(exc)) from None
        except InvalidInput as exc:
            raise CIMError(CIM_ERR_INVALID_PARAMETER, str(exc)) from None
        own = self.schema.get(found.classname)
        _, plist, qualifiers, origin = self._instance_flags(request)
        wanted = _property_filter(plist)
        props = [p for p in own.properties if wanted is None or p.lower() in wanted]
        body = self._instance_body(found, own, props, qualifiers, origin)
        return method_response(request.message_id, request.method, [body])

    # --- queries --------------------------------------------------------------------------

    def _query(
        self, language: Any, query: Any, snapshot: Snapshot | None, user: str = ""
    ) -> tuple[list[CIMObject], tuple[str, ...], ClassDef]:
        if not isinstance(language, str) or language.upper() != "WQL":
            shown = language[:100] if isinstance(language, str) else type(language).__name__
            raise CIMError(CIM_ERR_QUERY_LANGUAGE_NOT_SUPPORTED, f"query language {shown!r}; this server knows WQL")
        if not isinstance(query, str):
            raise CIMError(CIM_ERR_INVALID_PARAMETER, "the query is missing")
        if len(query) > MAX_QUERY_LENGTH:
            raise CIMError(CIM_ERR_INVALID_QUERY, f"the query is longer than {MAX_QUERY_LENGTH} characters")
        generation, instances = _need(snapshot)
        if self.queries is not None:  # in a child process, killed if the request is abandoned
            try:
                classname, properties, rows = self.queries.run(generation, instances, query, user)
            except QueryFailed as exc:
                code = {"invalid": CIM_ERR_INVALID_QUERY, "unsupported": CIM_ERR_NOT_SUPPORTED}.get(exc.kind)
                raise CIMError(code or CIM_ERR_FAILED, str(exc)) from None
            return unpack(rows), properties, self.schema.get(classname)
        try:
            compiled = compile_query(query)
        except NotSupported as exc:
            raise CIMError(CIM_ERR_NOT_SUPPORTED, str(exc)) from None
        except InvalidInput as exc:
            raise CIMError(CIM_ERR_INVALID_QUERY, str(exc)) from None
        except RecursionError:
            raise CIMError(CIM_ERR_INVALID_QUERY, "the query is nested too deeply") from None
        result = compiled.run(Checked(instances))  # stops soon if the request is abandoned
        return list(result), result.properties, self.schema.get(result.classname)

    def exec_query(self, request: Request, user: str, snapshot: Snapshot | None) -> bytes:
        found, props, cls = self._query(request.param("QueryLanguage"), request.param("Query"), snapshot, user)
        items = self._query_fragments(found, cls, props, "object with path")
        return method_response(request.message_id, request.method, items)

    def _query_fragments(self, found: list[CIMObject], cls: ClassDef, props: tuple[str, ...], kind: str) -> list[str]:
        items = []
        for number, instance in enumerate(found):
            if number % 64 == 63:
                checkpoint()
            items.append(self._fragment(instance, cls, kind, list(props), False, False))
        return items

    # --- pull operations ------------------------------------------------------------------

    def _open_checks(self, request: Request) -> tuple[float, int]:
        if request.param("FilterQuery") is not None or request.param("FilterQueryLanguage") is not None:
            raise CIMError(CIM_ERR_FILTERED_ENUMERATION_NOT_SUPPORTED, "filtered enumerations are not supported")
        if request.flag("ContinueOnError", False):
            raise CIMError(CIM_ERR_CONTINUATION_ON_ERROR_NOT_SUPPORTED, "ContinueOnError is not supported")
        timeout = request.integer("OperationTimeout", DEFAULT_OPERATION_TIMEOUT)
        if timeout is None or timeout < 0 or timeout > UINT32_MAX:
            raise CIMError(CIM_ERR_INVALID_PARAMETER, "OperationTimeout is a uint32")
        if timeout == 0:  # DSP0200: 0 asks for no time-out at all, which would keep the enumeration forever
            raise CIMError(
                CIM_ERR_INVALID_OPERATION_TIMEOUT,
                f"OperationTimeout 0 (never time out) is not supported; give 1 to {MAX_OPERATION_TIMEOUT} seconds",
            )
        if timeout > MAX_OPERATION_TIMEOUT:
            raise CIMError(CIM_ERR_INVALID_OPERATION_TIMEOUT, f"OperationTimeout must be 1 to {MAX_OPERATION_TIMEOUT}")
        return float(timeout), _max_object_count(request, 0)

    def _open(self, request: Request, user: str, kind: str, items: list[str], timeout: float, count: int) -> bytes:
        first, rest = items[:count], items[count:]
        out: dict[str, tuple[str, Any]] = {"EndOfSequence": ("boolean", not rest)}
        if rest:
            chars = sum(map(len, rest))
            context = Context(user, kind, rest, timeout, chars)
            with self._state:
                self._expire()
                self._admit(user, chars)
                checkpoint()  # an abandoned request opens nothing
                token = secrets.token_urlsafe(18)
                context.touch()
                self.contexts[token] = context
            out["EnumerationContext"] = ("string", token)
        else:
            out["EnumerationContext"] = ("string", None)
        return method_response(request.message_id, request.method, first, out)

    def _admit(self, user: str, chars: int) -> None:
        """Room for one more open enumeration of ``user`` holding ``chars`` (with the lock held)."""
        mine = [c for c in self.contexts.values() if c.owner == user]
        if len(self.contexts) >= self.max_contexts:
            raise CIMError(CIM_ERR_SERVER_LIMITS_EXCEEDED, f"{self.max_contexts} enumerations are open already")
        if len(mine) >= self.contexts_per_user:
            raise CIMError(
                CIM_ERR_SERVER_LIMITS_EXCEEDED,
                f"user {user} has {len(mine)} enumerations open, the most one user may have "
                f"({self.contexts_per_user}); close some with CloseEnumeration or pull them to the end",
            )
        held, held_by_user = sum(c.chars for c in self.contexts.values()), sum(c.chars for c in mine)
        if held + chars > self.context_chars or held_by_user + chars > self.context_chars // 2:
            raise CIMError(
                CIM_ERR_SERVER_LIMITS_EXCEEDED,
                "open enumerations hold too much data already (a user may hold half of "
                f"{self.context_chars >> 20} MiB); close some with CloseEnumeration or pull them to the end",
            )

    def open_enumerate_instances(self, request: Request, user: str, snapshot: Snapshot | None) -> bytes:
        timeout, count = self._open_checks(request)
        cls = self._classdef(request.param("ClassName"))
        deep, plist, _, origin = self._instance_flags(request)
        rendered = self._fragments_for(_need(snapshot), cls, "with path", deep, plist, False, origin)
        return self._open(request, user, "pullinstanceswithpath", rendered.items, timeout, count)

    def open_enumerate_instance_paths(self, request: Request, user: str, snapshot: Snapshot | None) -> bytes:
        timeout, count = self._open_checks(request)
        cls = self._classdef(request.param("ClassName"))
        rendered = self._fragments_for(_need(snapshot), cls, "path", True, None, False, False)
        return self._open(request, user, "pullinstancepaths", rendered.items, timeout, count)

    def open_query_instances(self, request: Request, user: str, snapshot: Snapshot | None) -> bytes:
        if request.flag("ReturnQueryResultClass", False):
            raise CIMError(CIM_ERR_NOT_SUPPORTED, "ReturnQueryResultClass is not supported")
        # the query comes in FilterQuery, which _open_checks refuses for the other Open operations
        language = request.params.pop("filterquerylanguage", None)
        query = request.params.pop("filterquery", None)
        timeout, count = self._open_checks(request)
        found, props, cls = self._query(language, query, snapshot, user)
        items = self._query_fragments(found, cls, props, "instance")
        return self._open(request, user, "pullinstances", items, timeout, count)

    def _context(self, request: Request, user: str) -> tuple[str, Context]:
        """The open enumeration the request names (with the lock held)."""
        self._expire()
        token = request.param("EnumerationContext")
        context = self.contexts.get(token) if isinstance(token, str) else None
        if context is None or context.owner != user:  # another user's is as unknown as a forged one
            raise CIMError(CIM_ERR_INVALID_ENUMERATION_CONTEXT, "no such enumeration (closed, finished or expired)")
        return token, context

    def pull(self, request: Request, user: str, snapshot: Snapshot | None) -> bytes:
        count = _max_object_count(request, None)
        with self._state:
            token, context = self._context(request, user)
            if context.kind != request.method.lower():
                raise CIMError(CIM_ERR_INVALID_ENUMERATION_CONTEXT, f"this enumeration is pulled with {context.kind}")
            first, context.items = context.items[:count], context.items[count:]
            context.chars -= sum(map(len, first))
            more = bool(context.items)
            if more:
                context.touch()
            else:
                del self.contexts[token]
        out: dict[str, tuple[str, Any]] = {"EndOfSequence": ("boolean", not more)}
        out["EnumerationContext"] = ("string", token if more else None)
        response = method_response(request.message_id, request.method, first, out)
        if abandoned():  # the client never gets these items: resuming later would skip them silently
            with self._state:
                self.contexts.pop(token, None)
        return response

    def close_enumeration(self, request: Request, user: str, snapshot: Snapshot | None) -> bytes:
        with self._state:
            token, _ = self._context(request, user)
            del self.contexts[token]
        return method_response(request.message_id, request.method, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for token in [t for t, c in self.contexts.items() if c.expires < now]:
            del self.contexts[token]


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a shared read's failure as seen (its waiters may all have timed out)."""
    if not future.cancelled():
        future.exception()


def _need(snapshot: Snapshot | None) -> Snapshot:
    if snapshot is None:  # pragma: no cover - the dispatcher reads the instances for these operations
        raise CIMError(CIM_ERR_FAILED, "internal error (no instances)")
    return snapshot


def _max_object_count(request: Request, default: int | None) -> int:
    count = request.integer("MaxObjectCount", default)
    if count is None:
        raise CIMError(CIM_ERR_INVALID_PARAMETER, "MaxObjectCount is required")
    if not 0 <= count <= UINT32_MAX:
        raise CIMError(CIM_ERR_INVALID_PARAMETER, f"MaxObjectCount must be 0 to {UINT32_MAX} (a uint32)")
    return count


def _property_filter(plist: Any) -> set[str] | None:
    if plist is None:
        return None
    if isinstance(plist, str):
        plist = [plist]
    if not isinstance(plist, list | tuple) or not all(isinstance(p, str) for p in plist):
        raise CIMError(CIM_ERR_INVALID_PARAMETER, "PropertyList must be an array of property names")
    return {p.lower() for p in plist}


def _key_name(name: Any) -> str:
    """A key binding's name: a CIM identifier (never pasted into a path as text)."""
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        shown = name[:100] if isinstance(name, str) else name
        raise CIMError(CIM_ERR_INVALID_PARAMETER, f"key binding name {shown!r} is not a property name")
    return name


def _key_value(name: str, value: Any) -> str | int | bool:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if value is None or isinstance(value, float):
        raise CIMError(CIM_ERR_INVALID_PARAMETER, f"key binding {name} has no usable value")
    return str(value)  # a datetime or reference, compared as its text
