"""The CIM operations of DSP0200 over the schema and the live instances (read-only)."""

from __future__ import annotations

import asyncio
import copy
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidInput, NotFound, ServerSessionError
from ..model import CIMObject, ClassDef, load_schema
from ..model.instances import local_server_name
from ..model.schema import NAMESPACE, cim_classes
from ..wql import NotSupported, compile_query, find_instance
from ..wql.lookup import resolve_path
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

CIM_ERR_FILTERED_ENUMERATION_NOT_SUPPORTED = 25
CIM_ERR_CONTINUATION_ON_ERROR_NOT_SUPPORTED = 26
READ_ONLY = ("modifyinstance", "createinstance", "deleteinstance", "modifyclass", "createclass", "deleteclass",
             "setproperty", "setqualifier", "deletequalifier")  # fmt: skip
MAX_OPERATION_TIMEOUT = 600  # seconds an open enumeration may wait between pulls
DEFAULT_OPERATION_TIMEOUT = 60


@dataclass
class Context:
    """An open enumeration: the fragments not yet pulled."""

    owner: str
    kind: str  # "instances with path", "paths", "instances"
    items: list[str]
    timeout: float
    expires: float = field(default=0.0)

    def touch(self) -> None:
        self.expires = time.monotonic() + self.timeout


class Repository:
    """Answers operations in ``root/cimv2`` with the instances ``read`` returns.

    ``read`` is called in a worker thread, at most once per ``max_age`` seconds however many
    requests arrive (one read in flight; the others wait for it).
    """

    def __init__(
        self,
        read: Callable[[], list[CIMObject]],
        host: str | None = None,
        max_age: float = 1.0,
        max_contexts: int = 64,
    ) -> None:
        self.read = read
        self.host = host or local_server_name()
        self.max_age = max_age
        self.max_contexts = max_contexts
        self.contexts: dict[str, Context] = {}
        self._lock = asyncio.Lock()
        self._cached: tuple[float, int, list[CIMObject]] | None = None
        self._fragments: dict[tuple[Any, ...], list[str]] = {}
        self.schema = load_schema()
        self.classes = {name.lower(): cls for name, cls in cim_classes().items()}
        self._methods: dict[str, Callable[[Request, str], Awaitable[bytes]]] = {
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
        method = self._methods.get(request.method.lower())
        if method is None:
            what = "this server is read-only" if request.method.lower() in READ_ONLY else "not supported"
            raise CIMError(CIM_ERR_NOT_SUPPORTED, f"{request.method}: {what}")
        return await method(request, user)

    async def instances(self) -> tuple[int, list[CIMObject]]:
        """The current instances and their generation number (read again after ``max_age``)."""
        async with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self.max_age:
                try:
                    found = await asyncio.to_thread(self.read)
                except ServerSessionError as exc:
                    raise CIMError(CIM_ERR_FAILED, f"reading the sessions failed: {exc}") from None
                generation = (self._cached[1] + 1) if self._cached else 1
                self._cached = (time.monotonic(), generation, found)
                self._fragments.clear()
            return self._cached[1], self._cached[2]

    # --- classes --------------------------------------------------------------------------

    def _classdef(self, name: Any, parameter: str = "ClassName") -> ClassDef:
        text = getattr(name, "classname", name)
        if not isinstance(text, str) or not text:
            raise CIMError(CIM_ERR_INVALID_PARAMETER, f"{parameter} is missing")
        try:
            return self.schema.get(text)
        except NotFound:
            raise CIMError(CIM_ERR_INVALID_CLASS, f"no class {text!r} in {NAMESPACE}") from None

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

    async def enumerate_class_names(self, request: Request, user: str) -> bytes:
        names = self._class_names(request.param("ClassName"), request.flag("DeepInheritance", False))
        return method_response(
            request.message_id, request.method, [f'<CLASSNAME NAME="{n}"></CLASSNAME>' for n in names]
        )

    async def enumerate_classes(self, request: Request, user: str) -> bytes:
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

    async def get_class(self, request: Request, user: str) -> bytes:
        cls = self._classdef(request.param("ClassName"))
        xml = self._cim_class(cls.name, *self._class_flags(request), request.param("PropertyList")).tocimxmlstr()
        xml = xmlwrite.expand_empty(xml)
        return method_response(request.message_id, request.method, [xml])

    # --- instances ------------------------------------------------------------------------

    async def _fragments_for(
        self, cls: ClassDef, kind: str, deep: bool, plist: Any, qualifiers: bool, origin: bool
    ) -> list[str]:
        """XML fragments of every instance of ``cls`` (and subclasses), memoised per read."""
        generation, instances = await self.instances()
        wanted = _property_filter(plist)
        key = (generation, cls.name, kind, deep, None if wanted is None else tuple(sorted(wanted)), qualifiers, origin)
        cached = self._fragments.get(key)
        if cached is not None:
            return cached
        classes = set(self.schema.subclasses(cls.name))
        out = []
        for instance in instances:
            if instance.classname not in classes:
                continue
            own = self.schema.get(instance.classname)
            shown = cls if not deep else own
            props = [p for p in shown.properties if wanted is None or p.lower() in wanted]
            out.append(self._fragment(instance, own, kind, props, qualifiers, origin))
        if len(self._fragments) > 64:
            self._fragments.clear()
        self._fragments[key] = out
        return out

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
        return xmlwrite.expand_empty(cim.tocimxmlstr())

    def _instance_flags(self, request: Request) -> tuple[bool, Any, bool, bool]:
        return (
            request.flag("DeepInheritance", True),
            request.param("PropertyList"),
            request.flag("IncludeQualifiers", False),
            request.flag("IncludeClassOrigin", False),
        )

    async def enumerate_instance_names(self, request: Request, user: str) -> bytes:
        cls = self._classdef(request.param("ClassName"))
        items = await self._fragments_for(cls, "name", True, None, False, False)
        return method_response(request.message_id, request.method, items)

    async def enumerate_instances(self, request: Request, user: str) -> bytes:
        # LocalOnly is deprecated for instances; as DSP0200 1.4 recommends, it is treated as false
        cls = self._classdef(request.param("ClassName"))
        items = await self._fragments_for(cls, "named", *self._instance_flags(request))
        return method_response(request.message_id, request.method, items)

    async def get_instance(self, request: Request, user: str) -> bytes:
        name = request.param("InstanceName")
        if name is None or not hasattr(name, "keybindings"):
            raise CIMError(CIM_ERR_INVALID_PARAMETER, "InstanceName is missing")
        cls = self._classdef(name.classname, "InstanceName")
        keys = ",".join(f"{k}={_path_value(v)}" for k, v in name.keybindings.items())
        try:
            path = resolve_path(f"{cls.name}.{keys}" if keys else cls.name)
            _, instances = await self.instances()
            found = find_instance(path, instances)
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

    async def _query(self, language: Any, query: Any) -> tuple[list[CIMObject], tuple[str, ...], ClassDef]:
        if not isinstance(language, str) or language.upper() != "WQL":
            raise CIMError(CIM_ERR_QUERY_LANGUAGE_NOT_SUPPORTED, f"query language {language!r}; this server knows WQL")
        if not isinstance(query, str):
            raise CIMError(CIM_ERR_INVALID_PARAMETER, "the query is missing")
        try:
            compiled = compile_query(query)
        except NotSupported as exc:
            raise CIMError(CIM_ERR_NOT_SUPPORTED, str(exc)) from None
        except InvalidInput as exc:
            raise CIMError(CIM_ERR_INVALID_QUERY, str(exc)) from None
        _, instances = await self.instances()
        result = compiled.run(instances)
        return list(result), result.properties, self.schema.get(result.classname)

    async def exec_query(self, request: Request, user: str) -> bytes:
        found, props, cls = await self._query(request.param("QueryLanguage"), request.param("Query"))
        items = [self._fragment(i, cls, "object with path", list(props), False, False) for i in found]
        return method_response(request.message_id, request.method, items)

    # --- pull operations ------------------------------------------------------------------

    def _open_checks(self, request: Request) -> tuple[float, int]:
        if request.param("FilterQuery") is not None or request.param("FilterQueryLanguage") is not None:
            raise CIMError(CIM_ERR_FILTERED_ENUMERATION_NOT_SUPPORTED, "filtered enumerations are not supported")
        if request.flag("ContinueOnError", False):
            raise CIMError(CIM_ERR_CONTINUATION_ON_ERROR_NOT_SUPPORTED, "ContinueOnError is not supported")
        timeout = request.integer("OperationTimeout", DEFAULT_OPERATION_TIMEOUT)
        if timeout is None or timeout < 0 or timeout > MAX_OPERATION_TIMEOUT:
            raise CIMError(CIM_ERR_INVALID_OPERATION_TIMEOUT, f"OperationTimeout must be 0 to {MAX_OPERATION_TIMEOUT}")
        count = request.integer("MaxObjectCount", 0)
        if count is None or count < 0:
            raise CIMError(CIM_ERR_INVALID_PARAMETER, "MaxObjectCount must not be negative")
        return float(timeout or DEFAULT_OPERATION_TIMEOUT), count

    def _open(self, request: Request, user: str, kind: str, items: list[str], timeout: float, count: int) -> bytes:
        self._expire()
        first, rest = items[:count], items[count:]
        out: dict[str, tuple[str, Any]] = {"EndOfSequence": ("boolean", not rest)}
        if rest:
            if len(self.contexts) >= self.max_contexts:
                raise CIMError(CIM_ERR_SERVER_LIMITS_EXCEEDED, f"{self.max_contexts} enumerations are open already")
            token = secrets.token_urlsafe(18)
            context = Context(user, kind, rest, timeout)
            context.touch()
            self.contexts[token] = context
            out["EnumerationContext"] = ("string", token)
        else:
            out["EnumerationContext"] = ("string", None)
        return method_response(request.message_id, request.method, first, out)

    async def open_enumerate_instances(self, request: Request, user: str) -> bytes:
        timeout, count = self._open_checks(request)
        cls = self._classdef(request.param("ClassName"))
        deep, plist, _, origin = self._instance_flags(request)
        items = await self._fragments_for(cls, "with path", deep, plist, False, origin)
        return self._open(request, user, "pullinstanceswithpath", items, timeout, count)

    async def open_enumerate_instance_paths(self, request: Request, user: str) -> bytes:
        timeout, count = self._open_checks(request)
        cls = self._classdef(request.param("ClassName"))
        items = await self._fragments_for(cls, "path", True, None, False, False)
        return self._open(request, user, "pullinstancepaths", items, timeout, count)

    async def open_query_instances(self, request: Request, user: str) -> bytes:
        if request.flag("ReturnQueryResultClass", False):
            raise CIMError(CIM_ERR_NOT_SUPPORTED, "ReturnQueryResultClass is not supported")
        # the query comes in FilterQuery, which _open_checks refuses for the other Open operations
        language = request.params.pop("filterquerylanguage", None)
        query = request.params.pop("filterquery", None)
        timeout, count = self._open_checks(request)
        found, props, cls = await self._query(language, query)
        items = [self._fragment(i, cls, "instance", list(props), False, False) for i in found]
        return self._open(request, user, "pullinstances", items, timeout, count)

    def _context(self, request: Request, user: str) -> tuple[str, Context]:
        self._expire()
        token = request.param("EnumerationContext")
        context = self.contexts.get(token) if isinstance(token, str) else None
        if context is None or context.owner != user:
            raise CIMError(CIM_ERR_INVALID_ENUMERATION_CONTEXT, "no such enumeration (closed, finished or expired)")
        return token, context

    async def pull(self, request: Request, user: str) -> bytes:
        token, context = self._context(request, user)
        if context.kind != request.method.lower():
            raise CIMError(CIM_ERR_INVALID_ENUMERATION_CONTEXT, f"this enumeration is pulled with {context.kind}")
        count = request.integer("MaxObjectCount", None)
        if count is None or count < 0:
            raise CIMError(CIM_ERR_INVALID_PARAMETER, "MaxObjectCount is required and must not be negative")
        first, context.items = context.items[:count], context.items[count:]
        out: dict[str, tuple[str, Any]] = {"EndOfSequence": ("boolean", not context.items)}
        if context.items:
            context.touch()
            out["EnumerationContext"] = ("string", token)
        else:
            del self.contexts[token]
            out["EnumerationContext"] = ("string", None)
        return method_response(request.message_id, request.method, first, out)

    async def close_enumeration(self, request: Request, user: str) -> bytes:
        token, _ = self._context(request, user)
        del self.contexts[token]
        return method_response(request.message_id, request.method, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for token in [t for t, c in self.contexts.items() if c.expires < now]:
            del self.contexts[token]


def _property_filter(plist: Any) -> set[str] | None:
    if plist is None:
        return None
    if isinstance(plist, str):
        plist = [plist]
    if not isinstance(plist, list | tuple) or not all(isinstance(p, str) for p in plist):
        raise CIMError(CIM_ERR_INVALID_PARAMETER, "PropertyList must be an array of property names")
    return {p.lower() for p in plist}


def _path_value(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
