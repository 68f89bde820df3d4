"""The namespace ``root/interop``: the server described (``CIM_ObjectManager``, one
``CIM_Namespace`` per namespace served) and indication subscriptions (DSP1054:
``CIM_IndicationFilter``, ``CIM_ListenerDestinationCIMXML``, ``CIM_IndicationSubscription``),
as pywbem's ``WBEMServer`` and ``WBEMSubscriptionManager`` and ``pywbemcli subscription`` use it.

Its classes are DMTF's own (schema/DMTF_Interop.mof, compiled by pywbem's MOF compiler). They
are kept apart from the schema of the other namespaces (model/schema.py), whose classes follow
WMI's CIMv2 and share names with DMTF's (CIM_ManagedSystemElement, CIM_LogicalElement) while
differing from them. Instances here are pywbem CIMInstances, written by pywbem; references in
them (a subscription's Filter and Handler) carry the namespace and no host
(``LOCALINSTANCEPATH``), which is what pywbem's subscription manager compares with the paths it
enumerates when it recognises the subscriptions it owns.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from typing import Any

from .. import __version__
from ..model.schema import MOF_FILES
from ..xmltext import xml_safe
from . import xmlwrite
from .cimxml import (
    CIM_ERR_INVALID_CLASS,
    CIM_ERR_INVALID_PARAMETER,
    CIM_ERR_NOT_FOUND,
    CIM_ERR_NOT_SUPPORTED,
    CIMError,
    method_response,
)
from .subscriptions import DESTINATION, FILTER, SUBSCRIPTION, Store
from .work import checkpoint

INTEROP = "root/interop"
MOF = ("DMTF_qualifiers.mof", "DMTF_Interop.mof")
CREATABLE = {name.lower(): name for name in (FILTER, DESTINATION, SUBSCRIPTION)}
OBJECT_MANAGER = "serversession"  # CIM_ObjectManager.Name and ElementName (pywbem's WBEMServer.brand)


def is_interop(namespace: object) -> bool:
    """Whether ``namespace`` names root/interop (``/`` or ``\\``, any case)."""
    return isinstance(namespace, str) and namespace.replace("\\", "/").strip("/").lower() == INTEROP


@cache
def _classes() -> dict[str, Any]:
    """DMTF's classes of root/interop, by lower-case name (each with its own members only)."""
    import pywbem

    from .. import schema as schema_package

    directory = os.path.dirname(os.path.abspath(schema_package.__file__ or ""))
    conn = pywbem.MOFWBEMConnection()
    compiler = pywbem.MOFCompiler(conn, verbose=False, log_func=lambda _msg: None)
    for name in MOF:
        with open(os.path.join(directory, name), encoding="utf-8") as handle:
            compiler.compile_string(handle.read(), INTEROP, filename=name)
    return {cls.classname.lower(): cls for cls in conn.classes[INTEROP].values()}


def class_names() -> list[str]:
    """The classes of root/interop, superclasses first."""
    return [cls.classname for cls in _classes().values()]


def superclasses(name: str) -> list[str]:
    """The superclasses of ``name``, nearest first."""
    chain, cls = [], _classes()[name.lower()]
    while cls.superclass:
        cls = _classes()[cls.superclass.lower()]
        chain.append(cls.classname)
    return chain


def is_subclass(name: str, ancestor: str) -> bool:
    """Whether ``name`` is ``ancestor`` or derives from it (False for a class not here)."""
    if name.lower() not in _classes() or ancestor.lower() not in _classes():
        return False
    return ancestor.lower() in {name.lower(), *(c.lower() for c in superclasses(name))}


@cache
def resolved(name: str) -> Any:
    """The class ``name`` with every property, inherited ones included (a shared object: copy it)."""
    from .operations import shape_class

    cls = _classes()[name.lower()]
    whole = shape_class(_classes(), superclasses(cls.classname), cls.classname, False, True, True, None)
    place = {name: index for index, name in enumerate(_declared_order(cls.classname))}
    names = sorted(whole.properties, key=lambda n: place[n.lower()])  # where first declared: superclasses' first
    whole.properties = {n: whole.properties[n] for n in names}
    return whole


def _declared_order(name: str) -> list[str]:
    """Property names (lower case) in the order the classes declare them, superclasses first."""
    out: list[str] = []
    for level in (*reversed(superclasses(name)), name):
        out.extend(p.lower() for p in _classes()[level.lower()].properties if p.lower() not in out)
    return out


def new_instance(classname: str, values: dict[str, Any]) -> Any:
    """An instance of ``classname`` with every property of the class, typed as declared (the class's
    default value where ``values``, by property name in any case, has none); CIMError
    INVALID_PARAMETER for a property the class does not have or a value of another type."""
    import pywbem

    cls = resolved(classname)
    given = {name.lower(): value for name, value in values.items()}
    out = pywbem.CIMInstance(cls.classname)
    for name, declared in cls.properties.items():
        value = given.pop(name.lower(), declared.value)  # not given: the class's default (DSP0004)
        if isinstance(value, pywbem.CIMProperty):
            if value.value is not None and (
                value.type != declared.type or bool(value.is_array) != bool(declared.is_array)
            ):
                kind = f"{declared.type}{'[]' if declared.is_array else ''}"
                raise CIMError(CIM_ERR_INVALID_PARAMETER, f"{classname}.{name} is a {kind}, not a {value.type}")
            value = value.value
        try:
            out[name] = pywbem.CIMProperty(
                name, value, type=declared.type, is_array=declared.is_array,
                reference_class=declared.reference_class, embedded_object=declared.embedded_object,
            )  # fmt: skip
        except (TypeError, ValueError) as exc:
            raise CIMError(CIM_ERR_INVALID_PARAMETER, f"{classname}.{name}: {exc}") from None
    if given:
        raise CIMError(CIM_ERR_INVALID_PARAMETER, f"{classname} has no property {next(iter(given))[:100]}")
    return out


class Interop:
    """Answers the operations of root/interop for a :class:`~.operations.Repository` (which owns
    the open enumerations and the pulls, for every namespace)."""

    def __init__(self, repository: Any, store: Store) -> None:
        self.repository = repository
        self.store = store
        self.host: str = repository.host
        self.fixed = [self._object_manager(), *self._namespaces()]
        self._session: Any = None  # aiohttp's client, for the listeners
        self._activator: Any = None  # the task starting restored subscriptions
        self.methods: dict[str, Callable[[Any], bytes]] = {
            "enumerateclassnames": self.enumerate_class_names,
            "enumerateclasses": self.enumerate_classes,
            "getclass": self.get_class,
            "enumerateinstancenames": self.enumerate_instances,
            "enumerateinstances": self.enumerate_instances,
            "getinstance": self.get_instance,
            "createinstance": self.create_instance,
            "deleteinstance": self.delete_instance,
            "associators": self.associators,
            "associatornames": self.associators,
            "references": self.associators,
            "referencenames": self.associators,
            "openenumerateinstances": self.open_enumerate,
            "openenumerateinstancepaths": self.open_enumerate,
            "openassociatorinstances": self.open_associators,
            "openassociatorinstancepaths": self.open_associators,
            "openreferenceinstances": self.open_associators,
            "openreferenceinstancepaths": self.open_associators,
            "pullinstanceswithpath": repository.pull,
            "pullinstancepaths": repository.pull,
            "pullinstances": repository.pull,
            "closeenumeration": repository.close_enumeration,
        }

    async def start(self) -> None:
        """On the server's event loop, before it answers: start the senders, and the restored
        subscriptions (in the background: each reads the source for its baseline)."""
        import asyncio

        from .delivery import client_session

        self._session = client_session()
        self.store.attach(asyncio.get_running_loop(), self._session)
        self._activator = asyncio.ensure_future(self._activate())

    async def _activate(self) -> None:
        import asyncio

        from .subscriptions import RETRY_ACTIVATION

        loop = asyncio.get_running_loop()
        while await loop.run_in_executor(None, self.store.activate_pending):
            await asyncio.sleep(RETRY_ACTIVATION)

    async def stop(self) -> None:
        """Stop the engine's polls, the senders and the retries of restored subscriptions."""
        import asyncio

        if self._activator is not None:
            self._activator.cancel()
            await asyncio.gather(self._activator, return_exceptions=True)
        await self.store.detach()
        if self._session is not None:
            await self._session.close()

    def method(self, name: str) -> Callable[[Any], bytes]:
        """The function answering the operation ``name`` here (CIM_ERR_NOT_SUPPORTED if none)."""
        found = self.methods.get(name.lower())
        if found is None:
            why = {"modifyinstance": "delete the instance and create it again",
                   "execquery": "root/interop answers no queries: enumerate its classes"}.get(name.lower(), "not supported")  # fmt: skip
            raise CIMError(CIM_ERR_NOT_SUPPORTED, f"{name} in {INTEROP}: {why}")
        return found

    # --- the server's own instances ---------------------------------------------------------

    def _system(self) -> dict[str, Any]:
        return {"SystemCreationClassName": "CIM_ComputerSystem", "SystemName": self.host}

    def _object_manager(self) -> Any:
        import pywbem

        keys = {**self._system(), "CreationClassName": "CIM_ObjectManager", "Name": OBJECT_MANAGER}
        instance = new_instance("CIM_ObjectManager", {
            **keys, "ElementName": OBJECT_MANAGER, "Caption": "serversession WBEM server",
            "Description": f"serversession WBEM server version {__version__}", "Started": True,
            "EnabledState": 2, "GatherStatisticalData": False,
        })  # fmt: skip
        instance.path = pywbem.CIMInstanceName("CIM_ObjectManager", keybindings=keys)
        return instance

    def _namespaces(self) -> list[Any]:
        import pywbem

        out = []
        for name in (*MOF_FILES, INTEROP):
            keys = {**self._system(), "ObjectManagerCreationClassName": "CIM_ObjectManager",
                    "ObjectManagerName": OBJECT_MANAGER, "CreationClassName": "CIM_Namespace", "Name": name}  # fmt: skip
            instance = new_instance("CIM_Namespace", {**keys, "ClassInfo": 0, "ClassType": 2})
            instance.path = pywbem.CIMInstanceName("CIM_Namespace", keybindings=keys)
            out.append(instance)
        return out

    def instances(self, classname: str) -> list[Any]:
        """The instances of ``classname`` and its subclasses (the server's own, then the store's)."""
        every = [*self.fixed, *(entry.instance for entry in self.store.all())]
        return [i for i in every if is_subclass(i.classname, classname)]

    # --- classes ----------------------------------------------------------------------------

    def _class(self, name: Any, parameter: str = "ClassName", code: int = CIM_ERR_INVALID_CLASS) -> str:
        text = getattr(name, "classname", name)
        if not isinstance(text, str) or not text:
            raise CIMError(CIM_ERR_INVALID_PARAMETER, f"{parameter} is missing")
        cls = _classes().get(text.lower())
        if cls is None:
            raise CIMError(code, f"no class {text[:200]!r} in {INTEROP}")
        return str(cls.classname)

    def _class_names(self, call: Any) -> list[str]:
        request = call.request
        deep = request.flag("DeepInheritance", False)
        base = request.param("ClassName")
        if base is None:
            return class_names() if deep else [n for n in class_names() if not _classes()[n.lower()].superclass]
        base = self._class(base)
        if deep:
            return [n for n in class_names() if n != base and is_subclass(n, base)]
        return [n for n in class_names() if (_classes()[n.lower()].superclass or "").lower() == base.lower()]

    def enumerate_class_names(self, call: Any) -> bytes:
        names = [f'<CLASSNAME NAME="{n}"></CLASSNAME>' for n in self._class_names(call)]
        return method_response(call.request.message_id, call.request.method, names)

    def _class_xml(self, name: str, request: Any, plist: Any = None) -> str:
        from .operations import shape_class

        flags = (
            request.flag("LocalOnly", True),
            request.flag("IncludeQualifiers", True),
            request.flag("IncludeClassOrigin", False),
        )
        cls = shape_class(_classes(), superclasses(name), name, *flags, plist)
        return xmlwrite.expand_empty(cls.tocimxmlstr())

    def enumerate_classes(self, call: Any) -> bytes:
        items = [self._class_xml(n, call.request) for n in self._class_names(call)]
        return method_response(call.request.message_id, call.request.method, items)

    def get_class(self, call: Any) -> bytes:
        request = call.request
        xml = self._class_xml(self._class(request.param("ClassName")), request, request.param("PropertyList"))
        return method_response(request.message_id, request.method, [xml])

    # --- instances --------------------------------------------------------------------------

    def _fragment(
        self, instance: Any, kind: str, shown: str | None = None, plist: Any = None, origin: bool = False
    ) -> str:
        """One instance as ``kind`` (as Repository._fragment): ``shown`` the class whose properties
        appear (DeepInheritance false), ``plist`` a PropertyList, ``origin`` IncludeClassOrigin."""
        from .operations import _property_filter

        path = instance.path.copy()
        if kind == "name":
            return xml_safe(path.tocimxmlstr())
        path.namespace, path.host = INTEROP, self.host
        if kind in ("path", "objectpath"):
            text = path.tocimxmlstr()
            return xml_safe(f"<OBJECTPATH>{text}</OBJECTPATH>" if kind == "objectpath" else text)
        wanted = _property_filter(plist)
        allowed = set(resolved(shown).properties) if shown else None
        own = resolved(instance.classname)
        body = instance.copy()
        for name in list(body.properties):
            if (wanted is not None and name.lower() not in wanted) or (allowed is not None and name not in allowed):
                del body.properties[name]
            else:
                body.properties[name].class_origin = own.properties[name].class_origin if origin else None
                body.properties[name].propagated = (
                    (own.properties[name].class_origin != own.classname) if origin else None
                )
        inner = body.tocimxmlstr(ignore_path=True)
        if kind == "instance":
            text = inner
        elif kind == "named":
            text = f"<VALUE.NAMEDINSTANCE>{instance.path.tocimxmlstr()}{inner}</VALUE.NAMEDINSTANCE>"
        else:
            element = "VALUE.INSTANCEWITHPATH" if kind == "with path" else "VALUE.OBJECTWITHPATH"
            text = f"<{element}>{path.tocimxmlstr()}{inner}</{element}>"
        return xml_safe(xmlwrite.expand_empty(text))

    def _enumerated(self, call: Any, kind: str) -> list[str]:
        request = call.request
        classname = self._class(request.param("ClassName"))
        deep = request.flag("DeepInheritance", True)
        plist, origin = request.param("PropertyList"), request.flag("IncludeClassOrigin", False)
        return [self._fragment(i, kind, None if deep else classname, plist, origin) for i in self.instances(classname)]

    def enumerate_instances(self, call: Any) -> bytes:
        request = call.request
        kind = "name" if request.method.lower() == "enumerateinstancenames" else "named"
        return method_response(request.message_id, request.method, self._enumerated(call, kind))

    def _target(self, name: Any, parameter: str) -> Any:
        """The instance ``name`` (a CIMInstanceName) names; CIM_ERR_NOT_FOUND if none."""
        from .subscriptions import _same

        if name is None or not hasattr(name, "keybindings"):
            raise CIMError(CIM_ERR_INVALID_PARAMETER, f"{parameter} is missing or not an instance name")
        self._class(name.classname, parameter)
        if name.namespace is not None and not is_interop(name.namespace):
            raise CIMError(CIM_ERR_INVALID_PARAMETER, f"{parameter} names namespace {str(name.namespace)[:200]!r}")
        for instance in self.instances(name.classname):
            if _same(name, instance.path):
                return instance
        raise CIMError(CIM_ERR_NOT_FOUND, f"no {name.classname} {_shown(name)} in {INTEROP}")

    def get_instance(self, call: Any) -> bytes:
        request = call.request
        found = self._target(request.param("InstanceName"), "InstanceName")
        item = self._fragment(
            found, "instance", None, request.param("PropertyList"), request.flag("IncludeClassOrigin", False)
        )
        return method_response(request.message_id, request.method, [item])

    # --- subscriptions ----------------------------------------------------------------------

    def create_instance(self, call: Any) -> bytes:
        """CreateInstance (DSP0200 5.3.2.6) of a filter, a listener destination or a subscription."""
        import pywbem

        request = call.request
        given = request.param("NewInstance")
        if not isinstance(given, pywbem.CIMInstance):
            raise CIMError(CIM_ERR_INVALID_PARAMETER, "NewInstance is missing or not an instance")
        classname = CREATABLE.get(given.classname.lower())
        if classname is None:
            self._class(given.classname, "NewInstance")
            raise CIMError(
                CIM_ERR_NOT_SUPPORTED,
                f"instances of {given.classname} cannot be created here (only {', '.join(CREATABLE.values())})",
            )
        self.store.check_user(call.user)
        instance = new_instance(classname, dict(given.properties))
        checkpoint()  # a request that timed out creates nothing
        entry = self.store.create(instance, call.user)
        return method_response(request.message_id, request.method, [xml_safe(entry.instance.path.tocimxmlstr())])

    def delete_instance(self, call: Any) -> bytes:
        request = call.request
        path = request.param("InstanceName")
        found = self._target(path, "InstanceName")
        if found.classname not in CREATABLE.values():
            raise CIMError(CIM_ERR_NOT_SUPPORTED, f"{found.classname} describes the server: it cannot be deleted")
        self.store.check_user(call.user)
        checkpoint()
        self.store.delete(found.path, call.user)
        return method_response(request.message_id, request.method, None)

    def _related(self, call: Any, target: Any, references: bool) -> list[Any]:
        """The subscriptions that name ``target`` (References), or the instances at their other
        ends (Associators), filtered by AssocClass, ResultClass, Role and ResultRole."""
        request = call.request
        assoc = self._optional_class(request, "AssocClass") if not references else None
        result = self._optional_class(request, "ResultClass")
        role = (request.param("Role") or "").lower()
        result_role = (request.param("ResultRole") or "").lower() if not references else ""
        entry = self.store.find(target.path)
        out = []
        for subscription in self.store.references(entry) if entry is not None else ():
            near = "filter" if subscription.filter is entry else "handler"
            far = subscription.handler if near == "filter" else subscription.filter
            if (role and role != near) or (assoc and not is_subclass(SUBSCRIPTION, assoc)):
                continue
            if references:
                if result is None or is_subclass(SUBSCRIPTION, result):
                    out.append(subscription.instance)
                continue
            other = "handler" if near == "filter" else "filter"
            if far is None or (result_role and result_role != other):
                continue
            if result is None or is_subclass(far.instance.classname, result):
                out.append(far.instance)
        return out

    def _optional_class(self, request: Any, parameter: str) -> str | None:
        value = request.param(parameter)
        return None if value is None else self._class(value, parameter, CIM_ERR_INVALID_PARAMETER)

    def associators(self, call: Any) -> bytes:
        """Associators, AssociatorNames, References, ReferenceNames of an instance (the only
        association here is CIM_IndicationSubscription, between a filter and a destination)."""
        request = call.request
        method = request.method.lower()
        target = request.param("ObjectName")
        if target is None or not hasattr(target, "keybindings"):
            raise CIMError(CIM_ERR_NOT_SUPPORTED, f"{request.method} of a class is not supported in {INTEROP}")
        found = self._related(call, self._target(target, "ObjectName"), method.startswith("reference"))
        if method.endswith("names"):
            items = [self._fragment(i, "objectpath") for i in found]
        else:
            plist, origin = request.param("PropertyList"), request.flag("IncludeClassOrigin", False)
            items = [self._fragment(i, "object with path", None, plist, origin) for i in found]
        return method_response(request.message_id, request.method, items)

    def open_enumerate(self, call: Any) -> bytes:
        request = call.request
        timeout, count = self.repository._open_checks(request)
        paths = request.method.lower().endswith("paths")
        items = self._enumerated(call, "path" if paths else "with path")
        kind = "pullinstancepaths" if paths else "pullinstanceswithpath"
        return self.repository._open(request, call.user, kind, items, timeout, count)

    def open_associators(self, call: Any) -> bytes:
        request = call.request
        method = request.method.lower()
        timeout, count = self.repository._open_checks(request)
        target = self._target(request.param("InstanceName"), "InstanceName")
        found = self._related(call, target, method.startswith("openreference"))
        if method.endswith("paths"):
            items, kind = [self._fragment(i, "path") for i in found], "pullinstancepaths"
        else:
            plist, origin = request.param("PropertyList"), request.flag("IncludeClassOrigin", False)
            items, kind = [self._fragment(i, "with path", None, plist, origin) for i in found], "pullinstanceswithpath"
        return self.repository._open(request, call.user, kind, items, timeout, count)


def _shown(path: Any) -> str:
    keys = ",".join(f"{k}={str(v)[:80]!r}" for k, v in path.keybindings.items())
    return keys[:300]
