"""The CIM operations of DSP0200 over the schema and the live instances (read-only, but for the
ForceClose methods of server/methods.py).

Each operation is a plain function of the request and a view of one read of the source; the
server runs it in a worker thread (:mod:`.work`), never on the event loop. The operation asks
for the view when it knows which classes it needs (:meth:`Call.view`): one read of the source
holds every part (tree connects, opens, shares) those classes need, and serves every class
until ``max_age`` has passed. The state shared between requests (the open enumerations, the
rendered fragments) is guarded by a lock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import functools
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidInput, NotFound, ServerSessionError
from ..model import CIMObject, ClassDef, load_schema
from ..model.instances import local_server_name
from ..model.objectpath import ObjectPath, format_path
from ..model.providers import NEEDS, PROVIDERS
from ..model.schema import MOF_FILES, cim_classes, namespace_name
from ..sources.base import Snapshot
from ..wql import CompiledAssociation, compile_wql, find_instance
from ..wql import associations as navigation
from ..wql.lookup import resolve_path
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
from .methods import Closing, force_close
from .queries import Answer, QueryFailed, QueryRunner, evaluate
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
STICKY_PARTS = 60.0  # seconds a snapshot part (tree connects, opens, shares) asked for stays in every read
ALL_PARTS: frozenset[str] = frozenset().union(*NEEDS.values())
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_OPEN = ("operationtimeout", "continueonerror", "maxobjectcount", "filterquerylanguage", "filterquery")
_INSTANCE = ("localonly", "includequalifiers", "includeclassorigin", "propertylist")
_ASSOCIATOR = ("assocclass", "resultclass", "role", "resultrole")
_REFERENCE = ("resultclass", "role")
_OUTPUT = ("includequalifiers", "includeclassorigin", "propertylist")
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
        "associators": ("objectname", *_ASSOCIATOR, *_OUTPUT),
        "associatornames": ("objectname", *_ASSOCIATOR),
        "references": ("objectname", *_REFERENCE, *_OUTPUT),
        "referencenames": ("objectname", *_REFERENCE),
        "openenumerateinstances": ("classname", "deepinheritance", *_INSTANCE, *_OPEN),
        "openenumerateinstancepaths": ("classname", *_OPEN),
        "openqueryinstances": ("returnqueryresultclass", *_OPEN),
        "openassociatorinstances": ("instancename", *_ASSOCIATOR, "includeclassorigin", "propertylist", *_OPEN),
        "openassociatorinstancepaths": ("instancename", *_ASSOCIATOR, *_OPEN),
        "openreferenceinstances": ("instancename", *_REFERENCE, "includeclassorigin", "propertylist", *_OPEN),
        "openreferenceinstancepaths": ("instancename", *_REFERENCE, *_OPEN),
        "pullinstanceswithpath": ("enumerationcontext", "maxobjectcount"),
        "pullinstancepaths": ("enumerationcontext", "maxobjectcount"),
        "pullinstances": ("enumerationcontext", "maxobjectcount"),
        "closeenumeration": ("enumerationcontext",),
        "createinstance": ("newinstance",),  # in root/interop (server/interop.py); refused elsewhere
        "deleteinstance": ("instancename",),
    }.items()
}


class View:
    """One read of the source: its generation number, and each class's instances built from it
    once (by the class's provider, the first time a request asks for the class)."""

    def __init__(
        self,
        number: int,
        parts: frozenset[str],
        snapshot: Snapshot | None = None,
        instances: Iterable[CIMObject] | None = None,
    ) -> None:
        self.number = number
        self.parts = parts  # what the read holds besides the sessions
        self.read_at = time.monotonic()
        self._snapshot = snapshot
        self._built: dict[str, list[CIMObject]] = {}
        self._lock = threading.Lock()
        for instance in instances or ():  # a reader that gives instances, not a snapshot
            self._built.setdefault(instance.classname, []).append(instance)

    def of(self, classnames: Iterable[str]) -> list[CIMObject]:
        """The instances of ``classnames`` (classes with a provider), in that order."""
        out: list[CIMObject] = []
        for name in classnames:
            out.extend(self._class(name))
        return out

    def _class(self, name: str) -> list[CIMObject]:
        found = self._built.get(name)
        if found is not None or self._snapshot is None:
            return found or []
        with self._lock:  # built once per read, whoever asks first
            found = self._built.get(name)
            if found is None:
                found = self._built[name] = PROVIDERS[name](self._snapshot)
        return found


# Reads the source: the snapshot parts wanted -> one Snapshot (sources.read_snapshot)
SnapshotReader = Callable[[frozenset[str]], Snapshot]


@dataclass
class Call:
    """One operation being answered: the request, its user, its namespace, and how it gets a view."""

    request: Request
    user: str
    namespace: str  # the schema's spelling
    fetch: Callable[[frozenset[str]], View]
    client: str | None = None  # the client's address (the access log's)

    def view(self, classes: Iterable[str]) -> View:
        """A view holding what ``classes`` (classes with a provider) need."""
        return self.fetch(frozenset().union(*(NEEDS[c] for c in classes)))


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
    """Answers operations in ``root/cimv2`` and ``root/Microsoft/Windows/SMB``.

    ``snapshot(parts)`` reads the source (one :class:`~serversession.sources.base.Snapshot`
    holding ``parts`` besides the sessions); each class's provider builds its instances from it.
    Alternatively ``read()`` returns ready instances (of any classes; the benchmark's synthetic
    sessions). Reads run in a thread of their own, at most once per ``max_age`` seconds however
    many requests arrive (one read at a time; the others wait for it), and again sooner only
    when a request needs a part the current read lacks. A part asked for stays in every read
    for :data:`STICKY_PARTS` seconds, so that clients of Win32_ServerSession alone pay for no
    more than the sessions. Operations run in ``pool`` (set by the server) or, without one, in
    a thread of the default executor.
    """

    def __init__(
        self,
        read: Callable[[], list[CIMObject]] | None = None,
        host: str | None = None,
        max_age: float = 1.0,
        max_contexts: int = 128,
        pool: WorkPool | None = None,
        *,
        snapshot: SnapshotReader | None = None,
    ) -> None:
        if (read is None) == (snapshot is None):
            raise TypeError("give read (instances) or snapshot (a source's snapshot), one of them")
        self.read = read
        self.read_snapshot = snapshot
        self.host = host or local_server_name()
        self.max_age = max_age
        self.max_contexts = max_contexts
        self.contexts_per_user = max(1, max_contexts // 2)
        self.context_chars = MAX_CONTEXT_CHARS
        self.pool = pool
        self.queries: QueryRunner | None = None  # set by the server: queries in child processes
        self.interop: Any = None  # root/interop (server/interop.py), set by serve
        self.closing: Closing | None = None  # ForceClose (server/methods.py), set by serve
        self._epoch = object()  # replaced by invalidate(): a read begun before then is not kept
        self.contexts: dict[str, Context] = {}
        self._state = threading.Lock()  # contexts and the fragment cache
        self._render = threading.Lock()  # one rendering at a time (the others reuse its result)
        self._reader = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="serversession-read")
        self._reading: tuple[asyncio.Future[View], frozenset[str], object] | None = None
        self._cached: View | None = None
        self._number = 0
        self._asked: dict[str, float] = {}  # part -> when a request last needed it
        self._fragments: dict[tuple[Any, ...], Rendered] = {}
        self._fragment_chars = 0
        self.schema = load_schema()
        self.classes = {name.lower(): cls for name, cls in cim_classes().items()}
        self._methods: dict[str, Callable[[Call], bytes]] = {
            "enumerateclassnames": self.enumerate_class_names,
            "enumerateclasses": self.enumerate_classes,
            "getclass": self.get_class,
            "enumerateinstancenames": self.enumerate_instance_names,
            "enumerateinstances": self.enumerate_instances,
            "getinstance": self.get_instance,
            "execquery": self.exec_query,
            "associators": self.associators,
            "associatornames": self.associators,
            "references": self.associators,
            "referencenames": self.associators,
            "openenumerateinstances": self.open_enumerate_instances,
            "openenumerateinstancepaths": self.open_enumerate_instance_paths,
            "openqueryinstances": self.open_query_instances,
            "openassociatorinstances": self.open_associators,
            "openassociatorinstancepaths": self.open_associators,
            "openreferenceinstances": self.open_associators,
            "openreferenceinstancepaths": self.open_associators,
            "pullinstanceswithpath": self.pull,
            "pullinstancepaths": self.pull,
            "pullinstances": self.pull,
            "closeenumeration": self.close_enumeration,
        }

    # --- dispatch -------------------------------------------------------------------------

    async def handle(self, request: Request, user: str, client: str | None = None) -> bytes:
        from .interop import INTEROP, is_interop

        name = request.method.lower()
        if request.extrinsic:  # ForceClose (cimxml.py refuses extrinsic calls in other namespaces)
            namespace = namespace_name(request.namespace) or request.namespace
            method: Callable[[Call], bytes] = functools.partial(force_close, self)
        elif self.interop is not None and is_interop(request.namespace):
            namespace, method = INTEROP, self.interop.method(request.method)
        else:
            namespace = namespace_name(request.namespace) if isinstance(request.namespace, str) else None
            if namespace is None:
                shown = request.namespace[:200] if isinstance(request.namespace, str) else request.namespace
                spaces = ", ".join((*MOF_FILES, *((INTEROP,) if self.interop is not None else ())))
                raise CIMError(CIM_ERR_INVALID_NAMESPACE, f"no namespace {shown!r}; this server has {spaces}")
            method = self._methods.get(name)
            if method is None:
                what = "this server is read-only" if name in READ_ONLY else "not supported"
                if name in ("createinstance", "deleteinstance") and self.interop is not None:
                    what += f" here (indication subscriptions are created in {INTEROP})"
                raise CIMError(CIM_ERR_NOT_SUPPORTED, f"{request.method}: {what}")
        unknown = [] if request.extrinsic else sorted(set(request.params) - PARAMETERS[name])
        if unknown:
            raise CIMError(CIM_ERR_INVALID_PARAMETER, f"{request.method} has no parameter {unknown[0][:100]}")
        call = Call(request, user, namespace, self._fetcher(asyncio.get_running_loop()), client)
        if self.pool is None:
            return await asyncio.get_running_loop().run_in_executor(None, method, call)
        return await self.pool.run(user, method, call)

    def _fetcher(self, loop: asyncio.AbstractEventLoop) -> Callable[[frozenset[str]], View]:
        """What a worker calls for a view: the cached one if it holds ``parts`` and is fresh,
        else it waits (stopping at checkpoints) for a read made on the event loop."""

        def fetch(parts: frozenset[str]) -> View:
            now = time.monotonic()
            for part in parts:
                self._asked[part] = now
            cached = self._cached
            if cached is not None and now - cached.read_at <= self.max_age and parts <= cached.parts:
                return cached
            future = asyncio.run_coroutine_threadsafe(self.view(parts), loop)
            while True:
                try:
                    return future.result(timeout=0.05)
                except concurrent.futures.TimeoutError:
                    checkpoint()

        return fetch

    async def view(self, parts: frozenset[str] = frozenset()) -> View:
        """A view that holds ``parts``, read again after ``max_age`` (on the event loop)."""
        now = time.monotonic()
        for part in parts:
            self._asked[part] = now
        cached = self._cached
        if cached is not None and now - cached.read_at <= self.max_age and parts <= cached.parts:
            return cached
        reading = self._reading
        if reading is None or reading[0].done() or not parts <= reading[1] or reading[2] is not self._epoch:
            wanted = parts | {p for p, asked in self._asked.items() if now - asked <= STICKY_PARTS}
            future = asyncio.ensure_future(self._read(frozenset(wanted)))
            future.add_done_callback(_retrieve)
            self._reading = reading = (future, frozenset(wanted), self._epoch)
        return await asyncio.shield(reading[0])  # a waiter that times out does not cancel the read

    async def instances(self) -> tuple[int, list[CIMObject]]:
        """The sessions of the current view and its generation number (a convenience for tools)."""
        view = await self.view()
        return view.number, view.of(_provided("Win32_ServerSession"))

    def _load(self, parts: frozenset[str]) -> tuple[frozenset[str], Snapshot | None, list[CIMObject] | None]:
        if self.read_snapshot is not None:
            return parts, self.read_snapshot(parts), None
        assert self.read is not None
        return ALL_PARTS, None, self.read()

    def invalidate(self) -> None:
        """Forget the current read (after a close; from any thread): the next request reads again,
        and a read begun before now is answered to those waiting for it but not kept."""
        self._epoch = object()
        self._cached = None

    async def _read(self, parts: frozenset[str]) -> View:
        epoch = self._epoch
        try:
            held, snapshot, found = await asyncio.get_running_loop().run_in_executor(self._reader, self._load, parts)
        except ServerSessionError as exc:
            raise CIMError(CIM_ERR_FAILED, f"reading the sessions failed: {exc}") from None
        self._number += 1
        view = View(self._number, held, snapshot, found)
        if epoch is self._epoch:
            self._cached = view
        with self._state:
            self._fragments.clear()
            self._fragment_chars = 0
        return view

    def close(self) -> None:
        self._reader.shutdown(wait=False, cancel_futures=True)
        if self.queries is not None:
            self.queries.close()

    # --- classes --------------------------------------------------------------------------

    def _classdef(
        self, name: Any, namespace: str, parameter: str = "ClassName", code: int = CIM_ERR_INVALID_CLASS
    ) -> ClassDef:
        text = getattr(name, "classname", name)
        if not isinstance(text, str) or not text:
            raise CIMError(CIM_ERR_INVALID_PARAMETER, f"{parameter} is missing")
        try:
            cls = self.schema.get(text)
        except NotFound:
            raise CIMError(code, f"no class {text[:200]!r} in {namespace}") from None
        if cls.namespace != namespace:
            raise CIMError(code, f"no class {cls.name} in {namespace} (it is in {cls.namespace})")
        return cls

    def _class_names(self, name: Any, deep: bool, namespace: str) -> list[str]:
        here = [self.schema.classes[c] for c in self.schema.namespace_classes(namespace)]
        if name is None:
            roots = [c.name for c in here if not c.superclass]
            if not deep:
                return roots
            return [c.name for c in here]
        base = self._classdef(name, namespace).name
        children = [c.name for c in here if c.superclass == base]
        if not deep:
            return children
        return [c for c in self.schema.subclasses(base) if c != base]

    def _cim_class(self, name: str, local_only: bool, qualifiers: bool, origin: bool, plist: Any) -> Any:
        return shape_class(self.classes, self.schema.superclasses(name), name, local_only, qualifiers, origin, plist)

    def enumerate_class_names(self, call: Call) -> bytes:
        request = call.request
        names = self._class_names(request.param("ClassName"), request.flag("DeepInheritance", False), call.namespace)
        return method_response(
            request.message_id, request.method, [f'<CLASSNAME NAME="{n}"></CLASSNAME>' for n in names]
        )

    def enumerate_classes(self, call: Call) -> bytes:
        request = call.request
        names = self._class_names(request.param("ClassName"), request.flag("DeepInheritance", False), call.namespace)
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

    def get_class(self, call: Call) -> bytes:
        request = call.request
        cls = self._classdef(request.param("ClassName"), call.namespace)
        xml = self._cim_class(cls.name, *self._class_flags(request), request.param("PropertyList")).tocimxmlstr()
        xml = xmlwrite.expand_empty(xml)
        return method_response(request.message_id, request.method, [xml])

    # --- instances ------------------------------------------------------------------------

    def _fragments_for(
        self, call: Call, cls: ClassDef, kind: str, deep: bool, plist: Any, qualifiers: bool, origin: bool
    ) -> Rendered:
        """XML fragments of every instance of ``cls`` (and subclasses), memoised per read."""
        classes = _provided(cls.name)
        view = call.view(classes)
        wanted = _property_filter(plist)
        key = (view.number, cls.name, kind, deep, None if wanted is None else tuple(sorted(wanted)), qualifiers, origin)
        cached = self._fragments.get(key)
        if cached is not None:
            return cached
        while not self._render.acquire(timeout=0.1):  # another worker renders; it may be this very key
            checkpoint()
        try:
            cached = self._fragments.get(key)
            if cached is not None:
                return cached
            out = []
            for number, instance in enumerate(view.of(classes)):
                if number % 64 == 63:
                    checkpoint()
                own = self.schema.classes[instance.classname]
                shown = cls if not deep else own
                props = [p for p in shown.properties if wanted is None or p.lower() in wanted]
                out.append(self._fragment(instance, own, kind, props, qualifiers, origin))
            rendered = Rendered(out)
            with self._state:
                if view.number == self._generation() and rendered.chars <= MAX_FRAGMENT_CACHE:
                    while self._fragments and self._fragment_chars + rendered.chars > MAX_FRAGMENT_CACHE:
                        oldest = next(iter(self._fragments))
                        self._fragment_chars -= self._fragments.pop(oldest).chars
                    self._fragments[key] = rendered
                    self._fragment_chars += rendered.chars
            return rendered
        finally:
            self._render.release()

    def _generation(self) -> int:
        return self._cached.number if self._cached else 0

    def _fragment(
        self, instance: CIMObject, cls: ClassDef, kind: str, props: list[str], qualifiers: bool, origin: bool
    ) -> str:
        host = instance.server or self.host
        if kind == "name":
            return xmlwrite.instance_name_xml(instance, cls, host)
        if kind == "path":
            return xmlwrite.instance_path_xml(instance, cls, host)
        if kind == "objectpath":
            return f"<OBJECTPATH>{xmlwrite.instance_path_xml(instance, cls, host)}</OBJECTPATH>"
        body = self._instance_body(instance, cls, props, qualifiers, origin, host)
        if kind == "instance":
            return body
        if kind == "named":
            return f"<VALUE.NAMEDINSTANCE>{xmlwrite.instance_name_xml(instance, cls, host)}{body}</VALUE.NAMEDINSTANCE>"
        path = xmlwrite.instance_path_xml(instance, cls, host)
        if kind == "with path":
            return f"<VALUE.INSTANCEWITHPATH>{path}{body}</VALUE.INSTANCEWITHPATH>"
        return f"<VALUE.OBJECTWITHPATH>{path}{body}</VALUE.OBJECTWITHPATH>"

    def _instance_body(
        self, instance: CIMObject, cls: ClassDef, props: list[str], qualifiers: bool, origin: bool, host: str
    ) -> str:
        if not qualifiers:
            return xmlwrite.instance_xml(instance, cls, props, origin, host)
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
            if prop.type == "reference" and prop.value is not None and prop.value.host is None:
                prop.value.host = host  # the same INSTANCEPATH as the template writes
        cim.path = None
        return xml_safe(xmlwrite.expand_empty(cim.tocimxmlstr()))  # pywbem writes values raw

    def _instance_flags(self, request: Request) -> tuple[bool, Any, bool, bool]:
        return (
            request.flag("DeepInheritance", True),
            request.param("PropertyList"),
            request.flag("IncludeQualifiers", False),
            request.flag("IncludeClassOrigin", False),
        )

    def enumerate_instance_names(self, call: Call) -> bytes:
        request = call.request
        cls = self._classdef(request.param("ClassName"), call.namespace)
        rendered = self._fragments_for(call, cls, "name", True, None, False, False)
        return method_response(request.message_id, request.method, encoded=rendered.joined())

    def enumerate_instances(self, call: Call) -> bytes:
        # LocalOnly is deprecated for instances; as DSP0200 1.4 recommends, it is treated as false
        request = call.request
        cls = self._classdef(request.param("ClassName"), call.namespace)
        rendered = self._fragments_for(call, cls, "named", *self._instance_flags(request))
        return method_response(request.message_id, request.method, encoded=rendered.joined())

    def _target(self, name: Any, call: Call, parameter: str) -> ObjectPath:
        """The instance path ``name`` (a pywbem CIMInstanceName), checked against the schema and
        resolved: reference keys as canonical text. Key names are matched, never pasted."""
        if name is None or not hasattr(name, "keybindings"):
            raise CIMError(CIM_ERR_INVALID_PARAMETER, f"{parameter} is missing or not an instance name")
        cls = self._classdef(name.classname, call.namespace, parameter)
        for key, value in name.keybindings.items():
            prop = cls.properties.get(next((p for p in cls.keys if p.lower() == str(key).lower()), ""))
            if prop is not None and hasattr(value, "keybindings") and prop.type != "reference":
                raise CIMError(CIM_ERR_INVALID_PARAMETER, f"key binding {prop.name} is a {prop.type}, not a reference")
        try:
            keys = tuple((_key_name(k), _key_value(k, v)) for k, v in name.keybindings.items())
            return resolve_path(ObjectPath(cls.name, keys))
        except NotFound as exc:
            raise CIMError(CIM_ERR_NOT_FOUND, str(exc)) from None
        except InvalidInput as exc:
            raise CIMError(CIM_ERR_INVALID_PARAMETER, str(exc)) from None

    def _find(self, call: Call, path: ObjectPath) -> CIMObject:
        classes = _provided(path.classname)
        try:
            return find_instance(path, call.view(classes).of(classes))
        except NotFound as exc:
            raise CIMError(CIM_ERR_NOT_FOUND, str(exc)) from None
        except InvalidInput as exc:
            raise CIMError(CIM_ERR_INVALID_PARAMETER, str(exc)) from None

    def get_instance(self, call: Call) -> bytes:
        request = call.request
        found = self._find(call, self._target(request.param("InstanceName"), call, "InstanceName"))
        own = self.schema.classes[found.classname]
        _, plist, qualifiers, origin = self._instance_flags(request)
        wanted = _property_filter(plist)
        props = [p for p in own.properties if wanted is None or p.lower() in wanted]
        body = self._instance_body(found, own, props, qualifiers, origin, found.server or self.host)
        return method_response(request.message_id, request.method, [body])

    # --- associations ---------------------------------------------------------------------

    def _navigate(self, call: Call, target: ObjectPath, references: bool) -> list[CIMObject]:
        """The associations that reference ``target`` (references) or the instances at their other
        ends (associators), filtered by the request's AssocClass, ResultClass, Role, ResultRole."""
        request = call.request
        assoc = self._filter_class(request, "AssocClass", call.namespace) if not references else None
        result = self._filter_class(request, "ResultClass", call.namespace)
        role = _role(request, "Role")
        result_role = _role(request, "ResultRole") if not references else None
        try:
            associations = navigation.association_classes(target.classname)
            ends = () if references else navigation.result_classes(target.classname, assoc)
        except NotFound as exc:
            raise CIMError(CIM_ERR_INVALID_PARAMETER, str(exc)) from None
        own = _provided(target.classname)
        classes = tuple(dict.fromkeys((*own, *associations, *ends)))
        view = call.view(classes)
        self._find_in(view, own, target)  # DSP0200: an object that does not exist is CIM_ERR_NOT_FOUND
        instances = Checked(view.of(tuple(dict.fromkeys((*associations, *ends)))))
        if references:
            return navigation.references(target, instances, result_class=result, role=role)
        return navigation.associators(
            target, instances, assoc_class=assoc, result_class=result, role=role, result_role=result_role
        )

    def _find_in(self, view: View, classes: tuple[str, ...], target: ObjectPath) -> CIMObject:
        try:
            return find_instance(target, view.of(classes))
        except NotFound as exc:
            raise CIMError(CIM_ERR_NOT_FOUND, str(exc)) from None

    def _filter_class(self, request: Request, parameter: str, namespace: str) -> str | None:
        value = request.param(parameter)
        if value is None:
            return None
        return self._classdef(value, namespace, parameter, CIM_ERR_INVALID_PARAMETER).name

    def associators(self, call: Call) -> bytes:
        """Associators, AssociatorNames, References and ReferenceNames (DSP0200 5.3.2.4 to 5.3.2.7)."""
        request = call.request
        method = request.method.lower()
        references = method.startswith("reference")
        names = method.endswith("names")
        target = request.param("ObjectName")
        if target is None:
            raise CIMError(CIM_ERR_INVALID_PARAMETER, "ObjectName is missing")
        if not hasattr(target, "keybindings"):  # a class name: the class-level variant, from the schema
            return self._class_associators(call, target, references, names)
        found = self._navigate(call, self._target(target, call, "ObjectName"), references)
        if names:
            items = [self._fragment(i, self.schema.classes[i.classname], "objectpath", [], False, False) for i in found]
            return method_response(request.message_id, request.method, items)
        plist, qualifiers, origin = (
            request.param("PropertyList"),
            request.flag("IncludeQualifiers", False),
            request.flag("IncludeClassOrigin", False),
        )
        items = self._whole_fragments(found, "object with path", plist, qualifiers, origin)
        return method_response(request.message_id, request.method, items)

    def _whole_fragments(
        self, found: list[CIMObject], kind: str, plist: Any, qualifiers: bool, origin: bool
    ) -> list[str]:
        """Each instance with the properties of its own class that PropertyList names (all: None)."""
        wanted = _property_filter(plist)
        items = []
        for number, instance in enumerate(found):
            if number % 64 == 63:
                checkpoint()
            own = self.schema.classes[instance.classname]
            props = [p for p in own.properties if wanted is None or p.lower() in wanted]
            items.append(self._fragment(instance, own, kind, props, qualifiers, origin))
        return items

    def _class_associators(self, call: Call, name: Any, references: bool, names: bool) -> bytes:
        """The class-level variant (ObjectName a class): the association classes that can reference
        the class, or the classes at their other ends, as the schema says (DSP0200)."""
        request = call.request
        cls = self._classdef(name, call.namespace, "ObjectName", CIM_ERR_INVALID_PARAMETER)
        assoc = self._filter_class(request, "AssocClass", call.namespace) if not references else None
        result = self._filter_class(request, "ResultClass", call.namespace)
        role = (_role(request, "Role") or "").lower()
        result_role = (_role(request, "ResultRole") or "").lower() if not references else ""
        chain = {cls.name, *self.schema.superclasses(cls.name)}
        found: dict[str, None] = {}
        for association in self.schema.namespace_classes(call.namespace):
            adef = self.schema.classes[association]
            if not adef.is_association:
                continue
            for ref in adef.references:
                if ref.reference_class not in chain or (role and ref.name.lower() != role):
                    continue
                if references:
                    if result is None or association in self.schema.subclasses(result):
                        found[association] = None
                    continue
                if assoc is not None and association not in self.schema.subclasses(assoc):
                    continue
                for other in adef.references:
                    if other is ref or (result_role and other.name.lower() != result_role) or not other.reference_class:
                        continue
                    if result is None or other.reference_class in self.schema.subclasses(result):
                        found[self.schema.get(other.reference_class).name] = None
        if names:
            items = [f"<OBJECTPATH>{xmlwrite.class_path_xml(n, self.host, call.namespace)}</OBJECTPATH>" for n in found]
        else:
            flags = (False, request.flag("IncludeQualifiers", False), request.flag("IncludeClassOrigin", False))
            plist = request.param("PropertyList")
            items = [
                f"<VALUE.OBJECTWITHPATH>{xmlwrite.class_path_xml(n, self.host, call.namespace)}"
                f"{xmlwrite.expand_empty(self._cim_class(n, *flags, plist).tocimxmlstr())}</VALUE.OBJECTWITHPATH>"
                for n in found
            ]
        return method_response(request.message_id, request.method, items)

    # --- queries --------------------------------------------------------------------------

    def _query(self, language: Any, query: Any, call: Call, classes_allowed: bool = True) -> Answer:
        """Evaluate a WQL query (SELECT, ASSOCIATORS OF, REFERENCES OF) over one read, in a child
        process when the server has them. ``classes_allowed`` false: ClassDefsOnly and SchemaOnly
        (which answer classes) are refused before anything is read."""
        if not isinstance(language, str) or language.upper() != "WQL":
            shown = language[:100] if isinstance(language, str) else type(language).__name__
            raise CIMError(CIM_ERR_QUERY_LANGUAGE_NOT_SUPPORTED, f"query language {shown!r}; this server knows WQL")
        if not isinstance(query, str):
            raise CIMError(CIM_ERR_INVALID_PARAMETER, "the query is missing")
        if len(query) > MAX_QUERY_LENGTH:
            raise CIMError(CIM_ERR_INVALID_QUERY, f"the query is longer than {MAX_QUERY_LENGTH} characters")
        plan = _query_plan(query, call.namespace)
        if plan.answers_classes and not classes_allowed:
            raise CIMError(
                CIM_ERR_NOT_SUPPORTED,
                f"{call.request.method}: ClassDefsOnly and SchemaOnly answer classes, which pulled "
                "enumerations cannot return (they carry instances): use ExecQuery",
            )
        instances: list[CIMObject] | None = None
        generation: Any = None
        if not plan.schema_only:  # SchemaOnly is answered from the schema: nothing is read
            view = call.view(plan.classes)
            instances = view.of(plan.classes)
            generation = (view.number, plan.classes)
        try:
            if self.queries is not None:  # in a child process, killed if the request is abandoned
                return self.queries.run(generation, instances, query, call.user)
            return evaluate(query, Checked(instances or []))  # stops soon if the request is abandoned
        except QueryFailed as exc:
            raise CIMError(_QUERY_ERRORS.get(exc.kind, CIM_ERR_FAILED), str(exc)) from None

    def exec_query(self, call: Call) -> bytes:
        """ExecQuery (DSP0200 5.3.2.22): instances with their paths; of ClassDefsOnly and SchemaOnly,
        classes with theirs (VALUE.OBJECTWITHPATH holding CLASSPATH and CLASS)."""
        request = call.request
        answer = self._query(request.param("QueryLanguage"), request.param("Query"), call)
        if answer.classes is not None:
            host, namespace = self.host, call.namespace
            items = [
                f"<VALUE.OBJECTWITHPATH>{xmlwrite.class_path_xml(n, host, namespace)}"
                f"{xmlwrite.expand_empty(self._cim_class(n, False, True, False, None).tocimxmlstr())}"
                "</VALUE.OBJECTWITHPATH>"
                for n in answer.classes
            ]
        else:
            items = self._query_fragments(answer, "object with path")
        return method_response(request.message_id, request.method, items)

    def _query_fragments(self, answer: Answer, kind: str) -> list[str]:
        items = []
        for number, instance in enumerate(answer.instances):
            if number % 64 == 63:
                checkpoint()
            own = self.schema.classes[instance.classname]  # each instance with its own class's properties
            # KeysOnly: its own keys (a key of another class present is not one of its)
            props = list(own.keys) if answer.keys_only else [p for p in answer.properties if p in own.properties]
            items.append(self._fragment(instance, own, kind, props, False, False))
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

    def open_enumerate_instances(self, call: Call) -> bytes:
        request = call.request
        timeout, count = self._open_checks(request)
        cls = self._classdef(request.param("ClassName"), call.namespace)
        deep, plist, _, origin = self._instance_flags(request)
        rendered = self._fragments_for(call, cls, "with path", deep, plist, False, origin)
        return self._open(request, call.user, "pullinstanceswithpath", rendered.items, timeout, count)

    def open_enumerate_instance_paths(self, call: Call) -> bytes:
        request = call.request
        timeout, count = self._open_checks(request)
        cls = self._classdef(request.param("ClassName"), call.namespace)
        rendered = self._fragments_for(call, cls, "path", True, None, False, False)
        return self._open(request, call.user, "pullinstancepaths", rendered.items, timeout, count)

    def open_query_instances(self, call: Call) -> bytes:
        request = call.request
        if request.flag("ReturnQueryResultClass", False):
            raise CIMError(CIM_ERR_NOT_SUPPORTED, "ReturnQueryResultClass is not supported")
        # the query comes in FilterQuery, which _open_checks refuses for the other Open operations
        language = request.params.pop("filterquerylanguage", None)
        query = request.params.pop("filterquery", None)
        timeout, count = self._open_checks(request)
        answer = self._query(language, query, call, classes_allowed=False)
        items = self._query_fragments(answer, "instance")
        return self._open(request, call.user, "pullinstances", items, timeout, count)

    def open_associators(self, call: Call) -> bytes:
        """OpenAssociatorInstances, OpenAssociatorInstancePaths, OpenReferenceInstances and
        OpenReferenceInstancePaths (DSP0200 5.3.2.13 to 5.3.2.16); InstanceName must name an instance."""
        request = call.request
        method = request.method.lower()
        timeout, count = self._open_checks(request)
        target = self._target(request.param("InstanceName"), call, "InstanceName")
        found = self._navigate(call, target, method.startswith("openreference"))
        if method.endswith("paths"):
            items = [self._fragment(i, self.schema.classes[i.classname], "path", [], False, False) for i in found]
            return self._open(request, call.user, "pullinstancepaths", items, timeout, count)
        origin = request.flag("IncludeClassOrigin", False)
        items = self._whole_fragments(found, "with path", request.param("PropertyList"), False, origin)
        return self._open(request, call.user, "pullinstanceswithpath", items, timeout, count)

    def _context(self, request: Request, user: str) -> tuple[str, Context]:
        """The open enumeration the request names (with the lock held)."""
        self._expire()
        token = request.param("EnumerationContext")
        context = self.contexts.get(token) if isinstance(token, str) else None
        if context is None or context.owner != user:  # another user's is as unknown as a forged one
            raise CIMError(CIM_ERR_INVALID_ENUMERATION_CONTEXT, "no such enumeration (closed, finished or expired)")
        return token, context

    def pull(self, call: Call) -> bytes:
        request, user = call.request, call.user
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

    def close_enumeration(self, call: Call) -> bytes:
        request = call.request
        with self._state:
            token, _ = self._context(request, call.user)
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


def _max_object_count(request: Request, default: int | None) -> int:
    count = request.integer("MaxObjectCount", default)
    if count is None:
        raise CIMError(CIM_ERR_INVALID_PARAMETER, "MaxObjectCount is required")
    if not 0 <= count <= UINT32_MAX:
        raise CIMError(CIM_ERR_INVALID_PARAMETER, f"MaxObjectCount must be 0 to {UINT32_MAX} (a uint32)")
    return count


def shape_class(
    classes: Any, chain: list[str], name: str, local_only: bool, qualifiers: bool, origin: bool, plist: Any
) -> Any:
    """A copy of the class ``name`` (``classes``: lower-case name to pywbem.CIMClass, each with its
    own members; ``chain``: its superclasses, nearest first) as GetClass's flags ask for it."""
    cls = copy.deepcopy(classes[name.lower()])  # the edits below must not reach the shared class
    if not local_only:  # add what the class inherits, as DSP0004 propagation says
        for kind in ("properties", "methods"):
            inherited = {}
            members = getattr(cls, kind)
            for ancestor in chain:
                for member in getattr(classes[ancestor.lower()], kind).values():
                    if member.name not in members and member.name not in inherited:
                        propagated = copy.deepcopy(member)
                        propagated.propagated = True
                        propagated.class_origin = ancestor
                        inherited[member.name] = propagated
            members.update(inherited)
    wanted = _property_filter(plist)
    for pname in list(cls.properties):
        prop = cls.properties[pname]
        if wanted is not None and pname.lower() not in wanted:
            del cls.properties[pname]
            continue
        _member_flags(prop, cls.classname, origin, qualifiers)
    for method in cls.methods.values():
        _member_flags(method, cls.classname, origin, qualifiers)
        if not qualifiers:
            for parameter in method.parameters.values():
                parameter.qualifiers = {}
    if not qualifiers:
        cls.qualifiers = {}
    return cls


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


def _key_value(name: str, value: Any, depth: int = 0) -> str | int | bool:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if value is None or isinstance(value, float):
        raise CIMError(CIM_ERR_INVALID_PARAMETER, f"key binding {name} has no usable value")
    if hasattr(value, "keybindings"):  # a reference key: the path it names, as WMI path text
        return _reference_text(name, value, depth)
    return str(value)  # a datetime, compared as its text


def _reference_text(name: str, value: Any, depth: int) -> str:
    """The relative WMI path text of a reference key's value (a pywbem CIMInstanceName): class and
    key names checked as identifiers, values quoted by format_path, so nothing is pasted as text."""
    if depth >= 2:
        raise CIMError(CIM_ERR_INVALID_PARAMETER, f"key binding {name}: references nest too deep")
    classname = value.classname
    if not isinstance(classname, str) or not _IDENTIFIER.fullmatch(classname):
        raise CIMError(CIM_ERR_INVALID_PARAMETER, f"key binding {name} names no class")
    if value.namespace is not None and namespace_name(str(value.namespace)) is None:
        raise CIMError(
            CIM_ERR_NOT_FOUND, f"key binding {name} names namespace {str(value.namespace)[:200]!r}, not served here"
        )
    keys = tuple((_key_name(k), _key_value(k, v, depth + 1)) for k, v in value.keybindings.items())
    namespace = None if value.namespace is None else str(value.namespace)  # checked against the class's own later
    try:
        return format_path(ObjectPath(classname, keys, namespace=namespace))
    except InvalidInput as exc:
        raise CIMError(CIM_ERR_INVALID_PARAMETER, f"key binding {name}: {exc}") from None


def _provided(classname: str) -> tuple[str, ...]:
    """The classes with a provider among ``classname`` and its subclasses (none: no instances)."""
    schema = load_schema()
    return tuple(name for name in schema.subclasses(classname) if name in PROVIDERS)


@dataclass(frozen=True)
class _Plan:
    """What a query needs before it is evaluated: the classes whose instances it is evaluated over
    (from one read), and whether it answers classes rather than instances."""

    classes: tuple[str, ...] = ()
    schema_only: bool = False  # nothing to read
    answers_classes: bool = False  # ClassDefsOnly or SchemaOnly


_QUERY_ERRORS = {"invalid": CIM_ERR_INVALID_QUERY, "unsupported": CIM_ERR_NOT_SUPPORTED, "notfound": CIM_ERR_NOT_FOUND}


def _query_plan(query: str, namespace: str) -> _Plan:
    """The classes a query is evaluated over. SELECT: the FROM class and its subclasses (parsed
    here only to know what to read; errors are reported by the evaluation), else every class of
    the namespace with a provider. ASSOCIATORS OF and REFERENCES OF: compiled here (a parse and
    an object path checked against the schema, bounded like the parse) for the classes they need
    from one snapshot (:attr:`CompiledAssociation.classes`); their errors are reported at once.
    A class of the other namespace is refused as one that does not exist (CIM_ERR_INVALID_QUERY)."""
    from ..wql.parser import AssociationQuery, parse

    try:
        parsed = parse(query)
    except (ServerSessionError, RecursionError):
        return _Plan()
    schema = load_schema()
    if isinstance(parsed, AssociationQuery):
        try:
            compiled = compile_wql(query)
        except NotFound as exc:
            raise CIMError(CIM_ERR_NOT_FOUND, str(exc)) from None
        except InvalidInput as exc:
            raise CIMError(CIM_ERR_INVALID_QUERY, str(exc)) from None
        except RecursionError:
            raise CIMError(CIM_ERR_INVALID_QUERY, "the query is nested too deeply") from None
        assert isinstance(compiled, CompiledAssociation)
        for name in (compiled.target.classname, compiled.assoc_class, compiled.result_class):
            _in_namespace(name, namespace)
        return _Plan(
            compiled.classes,
            schema_only=compiled.schema_only,
            answers_classes=compiled.schema_only or compiled.class_defs_only,
        )
    classname = getattr(parsed, "classname", None)
    if isinstance(classname, str):
        try:
            _in_namespace(schema.get(classname).name, namespace)
        except NotFound:  # reported by the evaluation, with its position
            return _Plan()
        return _Plan(_provided(classname))
    return _Plan(tuple(name for name in schema.namespace_classes(namespace) if name in PROVIDERS))


def _in_namespace(classname: str | None, namespace: str) -> None:
    """CIM_ERR_INVALID_QUERY if a query names a class of the other namespace (as one that does not exist)."""
    if classname is None:
        return
    cls = load_schema().get(classname)
    if cls.namespace != namespace:
        raise CIMError(CIM_ERR_INVALID_QUERY, f"no class {cls.name} in {namespace} (it is in {cls.namespace})")


def _role(request: Request, parameter: str) -> str | None:
    value = request.param(parameter)
    if value is None:
        return None
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise CIMError(CIM_ERR_INVALID_PARAMETER, f"{parameter} must be a property name")
    return value


def _member_flags(member: Any, classname: str, origin: bool, qualifiers: bool) -> None:
    if member.class_origin is None:
        member.class_origin = classname
    if not origin:
        member.class_origin = None
        member.propagated = None
    if not qualifiers:
        member.qualifiers = {}
