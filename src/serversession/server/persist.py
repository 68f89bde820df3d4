"""Filters, destinations and subscriptions as the state file holds them: plain JSON.

An entry is ``{"owner": USER, "created": UNIX-TIME, "properties": {NAME: VALUE}}`` with the
instance's non-null properties: strings, numbers and booleans as they are, datetimes as CIM
datetime text, a reference (a subscription's Filter and Handler) as
``{"classname": ..., "keys": {...}}``. Read back, every value is typed by the property's
declaration in the class (DMTF's MOF), then checked again as a client's new instance is.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

INTEROP = "root/interop"


def _plain(value: Any) -> Any:
    import pywbem

    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, pywbem.CIMInstanceName):
        return {"classname": value.classname, "keys": {k: _plain(v) for k, v in value.keybindings.items()}}
    if isinstance(value, pywbem.CIMDateTime):
        return str(value)
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def entry_json(entry: Any) -> dict[str, Any]:
    """The state file's form of a store entry (:class:`.subscriptions.Entry`)."""
    properties = {
        name: _plain(prop.value) for name, prop in entry.instance.properties.items() if prop.value is not None
    }
    return {"owner": entry.owner, "created": entry.created, "properties": properties}


def _path(value: Any) -> Any:
    import pywbem

    if (
        not isinstance(value, dict)
        or not isinstance(value.get("classname"), str)
        or not isinstance(value.get("keys"), dict)
    ):
        raise ValueError("a reference is not {classname, keys}")
    keys = {str(k): _path(v) if isinstance(v, dict) else v for k, v in value["keys"].items()}
    return pywbem.CIMInstanceName(value["classname"], keybindings=keys, namespace=INTEROP)


def _typed(value: Any, cim_type: str) -> Any:
    import pywbem

    if cim_type == "reference":
        return _path(value)
    if cim_type == "datetime":
        return pywbem.CIMDateTime(str(value))
    if cim_type == "string":
        if not isinstance(value, str):
            raise ValueError("a string property holds something else")
        return value
    if cim_type == "boolean":
        if not isinstance(value, bool):
            raise ValueError("a boolean property holds something else")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"a {cim_type} property holds something else")
    return pywbem.type_from_name(cim_type)(value)


def entry_instance(raw: Any, classname: str, resolve: Callable[[str], Any]) -> tuple[Any, str, float]:
    """The new instance (to be checked as a client's), owner and creation time of a saved entry;
    ValueError, KeyError or TypeError if it is not one. ``resolve(classname)`` gives the class
    with every property (inherited ones included)."""
    import pywbem

    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("owner"), str)
        or not isinstance(raw.get("properties"), dict)
    ):
        raise ValueError("not an entry of {owner, created, properties}")
    created = raw.get("created", 0.0)
    if isinstance(created, bool) or not isinstance(created, int | float):
        raise ValueError("created is not a time")
    try:
        created = float(created)
    except OverflowError:  # an integer of hundreds of digits
        raise ValueError("created is not a time (out of range)") from None
    if not math.isfinite(created):  # json reads Infinity and NaN
        raise ValueError("created is not a time (not finite)")
    cls = resolve(classname)
    instance = pywbem.CIMInstance(cls.classname)
    for name, value in raw["properties"].items():
        declared = cls.properties[name]  # KeyError: a property the class does not have
        if declared.is_array:
            if not isinstance(value, list):
                raise ValueError(f"{name} is not an array")
            typed: Any = [_typed(v, declared.type) for v in value]
        else:
            typed = _typed(value, declared.type)
        instance[declared.name] = pywbem.CIMProperty(
            declared.name, typed, type=declared.type, is_array=declared.is_array,
            reference_class=declared.reference_class,
        )  # fmt: skip
    return instance, raw["owner"], created
