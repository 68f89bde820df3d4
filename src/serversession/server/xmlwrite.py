"""CIM-XML fragments of instances and instance names, fast.

pywbem's ``tocimxmlstr()`` builds a minidom tree per object (about 0.5 ms per instance here),
which would cap a server at a few 1,000-instance responses a second. The common fragments
(INSTANCE without qualifiers, INSTANCENAME, INSTANCEPATH) are therefore written from
templates; the tests check they parse to the same objects as pywbem's own XML. Anything else
(qualifiers on instances, classes) goes through pywbem.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from ..model import CIMObject, ClassDef
from ..model.instances import cim_datetime_text
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
) -> str:
    """``<INSTANCE>`` with the named properties (no qualifiers)."""
    parts = [f"<INSTANCE CLASSNAME={quoteattr(cls.name)}>"]
    for name in properties:
        prop = cls.properties[name]
        attrs = f"NAME={quoteattr(name)} TYPE={quoteattr(prop.type)}"
        if include_class_origin:
            attrs += f" CLASSORIGIN={quoteattr(prop.class_origin)}"
            if prop.class_origin != cls.name:
                attrs += ' PROPAGATED="true"'
        value = getattr(instance, name)
        if value is None:
            parts.append(f"<PROPERTY {attrs}></PROPERTY>")
        else:
            parts.append(f"<PROPERTY {attrs}><VALUE>{_value(value)}</VALUE></PROPERTY>")
    parts.append("</INSTANCE>")
    return "".join(parts)


def instance_name_xml(instance: CIMObject, cls: ClassDef) -> str:
    """``<INSTANCENAME>`` with the key bindings."""
    parts = [f"<INSTANCENAME CLASSNAME={quoteattr(cls.name)}>"]
    for key in cls.keys:
        value = getattr(instance, key)
        prop_type = cls.properties[key].type
        if isinstance(value, bool):
            value_type = "boolean"
        elif isinstance(value, int | float):
            value_type = "numeric"
        else:
            value_type = "string"
        parts.append(
            f"<KEYBINDING NAME={quoteattr(key)}><KEYVALUE VALUETYPE={quoteattr(value_type)} "
            f"TYPE={quoteattr(prop_type)}>{_value(value)}</KEYVALUE></KEYBINDING>"
        )
    parts.append("</INSTANCENAME>")
    return "".join(parts)


def namespace_xml(namespace: str) -> str:
    """``<LOCALNAMESPACEPATH>`` of ``root/cimv2``."""
    names = "".join(f"<NAMESPACE NAME={quoteattr(n)}></NAMESPACE>" for n in namespace.split("/") if n)
    return f"<LOCALNAMESPACEPATH>{names}</LOCALNAMESPACEPATH>"


def instance_path_xml(instance: CIMObject, cls: ClassDef, host: str, namespace: str) -> str:
    """``<INSTANCEPATH>``: host, namespace and instance name."""
    return (
        f"<INSTANCEPATH><NAMESPACEPATH><HOST>{xml_safe(escape(host))}</HOST>{namespace_xml(namespace)}</NAMESPACEPATH>"
        f"{instance_name_xml(instance, cls)}</INSTANCEPATH>"
    )
