"""CIM-XML fragments of instances and instance names, fast.

pywbem's ``tocimxmlstr()`` builds a minidom tree per object (about 0.5 ms per instance here),
which would cap a server at a few 1,000-instance responses a second. The common fragments
(INSTANCE without qualifiers, INSTANCENAME, INSTANCEPATH, and references as VALUE.REFERENCE
holding an INSTANCEPATH) are therefore written from templates; the tests check they parse to the same objects as pywbem's own XML. Anything else
(qualifiers on instances, classes) goes through pywbem.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from ..model import CIMObject, ClassDef, load_schema
from ..model.instances import cim_datetime_text
from ..model.objectpath import ObjectPath
from ..xmltext import xml_safe

_EMPTY_ELEMENT = re.compile(r"<([A-Z][A-Z0-9_.]*)([^<>]*?)/>")


def expand_empty(xml: str) -> str:
    """``<X a="1"/>`` written as ``<X a="1"></X>``: sblim wbemcli's parser only reads the latter."""
    return _EMPTY_ELEMENT.sub(r"<\1\2></\1>", xml)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, datetime):
        return cim_datetime_text(value)
    return xml_safe(escape(str(value)))  # names come from clients: any character


def instance_xml(
    instance: CIMObject,
    cls: ClassDef,
    properties: Sequence[str],
    include_class_origin: bool = False,
    host: str | None = None,
) -> str:
    """``<INSTANCE>`` with the named properties (no qualifiers).

    A reference property is ``PROPERTY.REFERENCE`` holding ``VALUE.REFERENCE`` with the full
    ``INSTANCEPATH`` of the instance it names (host: the reference's own, else ``host``, else
    the instance's server), so that a client can follow it as it is.
    """
    parts = [f"<INSTANCE CLASSNAME={quoteattr(cls.name)}>"]
    for name in properties:
        prop = cls.properties[name]
        origin = ""
        if include_class_origin:
            origin = f" CLASSORIGIN={quoteattr(prop.class_origin)}"
            if prop.class_origin != cls.name:
                origin += ' PROPAGATED="true"'
        value = getattr(instance, name)
        if prop.type == "reference":
            refclass = f" REFERENCECLASS={quoteattr(prop.reference_class)}" if prop.reference_class else ""
            inner = "" if value is None else reference_xml(value, host or instance.server or "")
            parts.append(f"<PROPERTY.REFERENCE NAME={quoteattr(name)}{refclass}{origin}>{inner}</PROPERTY.REFERENCE>")
            continue
        attrs = f"NAME={quoteattr(name)} TYPE={quoteattr(prop.type)}{origin}"
        if value is None:
            parts.append(f"<PROPERTY {attrs}></PROPERTY>")
        else:
            parts.append(f"<PROPERTY {attrs}><VALUE>{_value(value)}</VALUE></PROPERTY>")
    parts.append("</INSTANCE>")
    return "".join(parts)


def _keybindings(cls: ClassDef, pairs: Iterable[tuple[str, Any]], host: str) -> str:
    out = []
    for key, value in pairs:
        if isinstance(value, ObjectPath):
            out.append(f"<KEYBINDING NAME={quoteattr(key)}>{reference_xml(value, host)}</KEYBINDING>")
            continue
        prop_type = cls.properties[key].type
        if isinstance(value, bool):
            value_type = "boolean"
        elif isinstance(value, int | float):
            value_type = "numeric"
        else:
            value_type = "string"
        out.append(
            f"<KEYBINDING NAME={quoteattr(key)}><KEYVALUE VALUETYPE={quoteattr(value_type)} "
            f"TYPE={quoteattr(prop_type)}>{_value(value)}</KEYVALUE></KEYBINDING>"
        )
    return "".join(out)


def instance_name_xml(instance: CIMObject, cls: ClassDef, host: str | None = None) -> str:
    """``<INSTANCENAME>`` with the key bindings (a reference key as ``VALUE.REFERENCE``)."""
    pairs = [(key, getattr(instance, key)) for key in cls.keys]
    return (
        f"<INSTANCENAME CLASSNAME={quoteattr(cls.name)}>"
        f"{_keybindings(cls, pairs, host or instance.server or '')}</INSTANCENAME>"
    )


def reference_xml(path: ObjectPath, host: str) -> str:
    """``<VALUE.REFERENCE>`` of ``path``: an ``INSTANCEPATH`` (DSP0201) on ``path``'s host, else ``host``,
    in the namespace of the class it names."""
    cls = load_schema().get(path.classname)
    name = f"<INSTANCENAME CLASSNAME={quoteattr(cls.name)}>{_keybindings(cls, path.keys, host)}</INSTANCENAME>"
    return (
        f"<VALUE.REFERENCE><INSTANCEPATH><NAMESPACEPATH><HOST>{xml_safe(escape(path.host or host))}</HOST>"
        f"{namespace_xml(cls.namespace)}</NAMESPACEPATH>{name}</INSTANCEPATH></VALUE.REFERENCE>"
    )


def namespace_xml(namespace: str) -> str:
    """``<LOCALNAMESPACEPATH>`` of a namespace such as ``root/cimv2``."""
    names = "".join(f"<NAMESPACE NAME={quoteattr(n)}></NAMESPACE>" for n in namespace.split("/") if n)
    return f"<LOCALNAMESPACEPATH>{names}</LOCALNAMESPACEPATH>"


def instance_path_xml(instance: CIMObject, cls: ClassDef, host: str, namespace: str | None = None) -> str:
    """``<INSTANCEPATH>``: host, namespace (default: the class's) and instance name."""
    return (
        f"<INSTANCEPATH><NAMESPACEPATH><HOST>{xml_safe(escape(host))}</HOST>"
        f"{namespace_xml(namespace or cls.namespace)}</NAMESPACEPATH>"
        f"{instance_name_xml(instance, cls, host)}</INSTANCEPATH>"
    )


def class_path_xml(classname: str, host: str, namespace: str) -> str:
    """``<CLASSPATH>``: host, namespace and class name (class-level association answers)."""
    return (
        f"<CLASSPATH><NAMESPACEPATH><HOST>{xml_safe(escape(host))}</HOST>{namespace_xml(namespace)}</NAMESPACEPATH>"
        f"<CLASSNAME NAME={quoteattr(classname)}></CLASSNAME></CLASSPATH>"
    )
