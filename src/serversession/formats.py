"""Output formats of the reading commands (DESIGN.md section 4): table, json, csv, mof, xml."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .model import CIMObject, ClassDef, load_schema
from .model.instances import SYSTEM_PROPERTIES

FORMATS = ("table", "json", "csv", "mof", "xml")

# Columns of the table, after `net session` and `Get-SmbSession`: (heading, property).
TABLE_COLUMNS = (
    ("Computer", "ComputerName"),
    ("User", "UserName"),
    ("Client type", "ClientType"),
    ("Opens", "ResourcesOpened"),
    ("Active", "ActiveTime"),
    ("Idle", "IdleTime"),
    ("Type", "SessionType"),
    ("Status", "Status"),
)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _remote(instances: Sequence[CIMObject]) -> bool:
    """Whether the instances were read from other servers (then outputs name each one's server)."""
    return any(instance.server for instance in instances)


def _rows(instances: Sequence[CIMObject], properties: Sequence[str], system: bool) -> list[dict[str, Any]]:
    """Each instance's ``properties`` (None for one its class lacks), after its system properties or server."""
    server = not system and _remote(instances)
    known: dict[str, Any] = {}  # class name -> its properties (what to_dict() holds)
    rows = []
    for instance in instances:
        own = known.get(instance.classname)
        if own is None:
            own = known[instance.classname] = load_schema().get(instance.classname).properties
        row = instance.system_properties() if system else {"__SERVER": instance.server} if server else {}
        for prop in properties:
            row[prop] = getattr(instance, prop) if prop in own else None
        rows.append(row)
    return rows


def to_json(instances: Sequence[CIMObject], properties: Sequence[str], system: bool = False) -> str:
    """A JSON array of objects keyed by CIM property name; null when unknown.

    ``system`` puts WMI's system properties (``__CLASS``, ``__PATH``, ...) in front; without
    it, instances read from other servers get ``__SERVER`` in front.
    """
    rows = _rows(instances, properties, system)
    if not rows:
        return "[]"
    return "[\n  " + ",\n  ".join(map(_json_object, rows)) + "\n]"


# json.dumps(rows, indent=2) writes the same text, but an indent makes it use the pure-Python
# encoder. An object of scalars is written as well by the C encoder with an item separator
# that holds the newline and the indent, in a third of the time.
_encode_flat_object = json.JSONEncoder(separators=(",\n    ", ": ")).encode
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _json_object(row: dict[str, Any]) -> str:
    """One object of the array (its datetimes made text in place), as ``json.dumps(rows, indent=2)``
    writes it: inner lines at depth 2."""
    flat = bool(row)
    for key, value in row.items():
        if type(value) in _SCALARS:
            continue
        if isinstance(value, datetime):
            row[key] = value.isoformat()
        elif isinstance(value, (list, tuple, dict)):
            flat = False
    if not flat:
        return json.dumps(row, indent=2).replace("\n", "\n  ")
    return "{\n    " + _encode_flat_object(row)[1:-1] + "\n  }"


def to_csv(instances: Sequence[CIMObject], properties: Sequence[str], system: bool = False) -> str:
    """CSV with a header row of property names; empty cells when unknown (arrays joined by ``;``)."""
    import csv

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = [*(SYSTEM_PROPERTIES if system else ("__SERVER",) if _remote(instances) else ()), *properties]
    writer.writerow(header)
    for row in _rows(instances, properties, system):
        writer.writerow([_csv_cell(row.get(p)) for p in header])
    return out.getvalue()


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list):
        return ";".join(map(str, value))
    return _plain(value)


def to_mof(instances: Sequence[CIMObject], properties: Sequence[str] | None = None) -> str:
    """``instance of CLASS { ... };`` blocks, as pywbem writes them."""
    return "\n".join(i.to_cim_instance(properties).tomof() for i in instances)


def to_xml(instances: Sequence[CIMObject], properties: Sequence[str] | None = None) -> str:
    """A CIM-XML document (DSP0201): each instance with its namespace and key bindings.

    DECLGROUP.WITHPATH of VALUE.OBJECTWITHLOCALPATH, i.e. (LOCALINSTANCEPATH, INSTANCE).
    """
    parts = ['<?xml version="1.0" encoding="utf-8" ?>', '<CIM CIMVERSION="2.0" DTDVERSION="2.0">']
    parts.append("<DECLARATION><DECLGROUP.WITHPATH>")
    # pywbem writes an instance whose path has a namespace and no host as VALUE.OBJECTWITHLOCALPATH
    parts.extend(instance.to_cim_instance(properties).tocimxmlstr() for instance in instances)
    parts.append("</DECLGROUP.WITHPATH></DECLARATION></CIM>")
    return "\n".join(parts) + "\n"


def human_duration(seconds: int | None) -> str:
    """Seconds as ``HH:MM:SS``, with days in front when there are any (like ``net session``)."""
    if seconds is None:
        return "-"
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    text = f"{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{days}d {text}" if days else text


def _cell(instance: CIMObject, prop: str, cls: ClassDef) -> str:
    value = getattr(instance, prop)
    if value is None:
        return "-"
    if cls.properties[prop].qualifiers.get("Units") == "seconds":
        return human_duration(value)
    values = cls.properties[prop].qualifiers.get("Values")
    value_map = cls.properties[prop].qualifiers.get("ValueMap")
    if values and value_map and str(value) in value_map:
        return values[value_map.index(str(value))]
    if prop == "UserName" and value == "":
        return "(anonymous)"
    return str(value)


def to_table(
    instances: Sequence[CIMObject], cls: ClassDef, width: int | None = None, properties: Sequence[str] | None = None
) -> str:
    """An aligned table for people: the usual columns, or ``properties`` when a query chose them;
    first a Server column when the instances were read from other servers."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    columns = TABLE_COLUMNS
    if properties is not None and list(properties) != list(cls.properties):
        columns = tuple((p, p) for p in properties)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    server = _remote(instances)
    if server:
        table.add_column("Server", overflow="fold")
    for heading, prop in columns:
        numeric = (
            cls.properties[prop].type.startswith(("uint", "sint")) and "ValueMap" not in cls.properties[prop].qualifiers
        )
        table.add_column(heading, justify="right" if numeric else "left", overflow="fold")
    for instance in instances:
        cells = [_cell(instance, prop, cls) for _, prop in columns]
        table.add_row(*([instance.server or "-", *cells] if server else cells))
    out = io.StringIO()
    console = Console(file=out, width=width or 200, color_system=None, highlight=False, soft_wrap=False)
    console.print(table)
    count = len(instances)
    console.print(f"{count} session{'s' if count != 1 else ''}")
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()) + "\n"


def render(
    instances: Sequence[CIMObject],
    cls: ClassDef,
    fmt: str,
    width: int | None = None,
    properties: Sequence[str] | None = None,
    system: bool = False,
) -> str:
    """``instances`` in the format called ``fmt`` (one of FORMATS).

    ``properties``: the properties to show (default: all of ``cls``); ``system``: add WMI's
    system properties to json and csv (what ``query`` returns).
    """
    chosen = list(cls.properties) if properties is None else list(properties)
    if fmt == "json":
        return to_json(instances, chosen, system) + "\n"
    if fmt == "csv":
        return to_csv(instances, chosen, system)
    if fmt == "mof":
        return to_mof(instances, properties)
    if fmt == "xml":
        return to_xml(instances, properties)
    return to_table(instances, cls, width, properties)
