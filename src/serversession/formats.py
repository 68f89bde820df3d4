"""Output formats of the reading commands (DESIGN.md section 4): table, json, csv, mof, xml."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .model import CIMObject, ClassDef

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


def to_json(instances: Sequence[CIMObject]) -> str:
    """A JSON array of objects keyed by CIM property name; null when unknown."""
    return json.dumps([{k: _plain(v) for k, v in i.to_dict().items()} for i in instances], indent=2)


def to_csv(instances: Sequence[CIMObject], cls: ClassDef) -> str:
    """CSV with a header row of property names; empty cells when unknown."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(cls.properties)
    for instance in instances:
        values = instance.to_dict()
        writer.writerow(["" if values[p] is None else _plain(values[p]) for p in cls.properties])
    return out.getvalue()


def to_mof(instances: Sequence[CIMObject]) -> str:
    """``instance of CLASS { ... };`` blocks, as pywbem writes them."""
    return "\n".join(i.to_cim_instance().tomof() for i in instances)


def to_xml(instances: Sequence[CIMObject]) -> str:
    """A CIM-XML document (DSP0201): each instance with its namespace and key bindings.

    DECLGROUP.WITHPATH of VALUE.OBJECTWITHLOCALPATH, i.e. (LOCALINSTANCEPATH, INSTANCE).
    """
    parts = ['<?xml version="1.0" encoding="utf-8" ?>', '<CIM CIMVERSION="2.0" DTDVERSION="2.0">']
    parts.append("<DECLARATION><DECLGROUP.WITHPATH>")
    # pywbem writes an instance whose path has a namespace and no host as VALUE.OBJECTWITHLOCALPATH
    parts.extend(instance.to_cim_instance().tocimxmlstr() for instance in instances)
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


def to_table(instances: Sequence[CIMObject], cls: ClassDef, width: int | None = None) -> str:
    """An aligned table for people."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for heading, prop in TABLE_COLUMNS:
        numeric = (
            cls.properties[prop].type.startswith(("uint", "sint")) and "ValueMap" not in cls.properties[prop].qualifiers
        )
        table.add_column(heading, justify="right" if numeric else "left", overflow="fold")
    for instance in instances:
        table.add_row(*(_cell(instance, prop, cls) for _, prop in TABLE_COLUMNS))
    out = io.StringIO()
    console = Console(file=out, width=width or 200, color_system=None, highlight=False, soft_wrap=False)
    console.print(table)
    count = len(instances)
    console.print(f"{count} session{'s' if count != 1 else ''}")
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()) + "\n"


def render(instances: Sequence[CIMObject], cls: ClassDef, fmt: str, width: int | None = None) -> str:
    """``instances`` in the format called ``fmt`` (one of FORMATS)."""
    if fmt == "json":
        return to_json(instances) + "\n"
    if fmt == "csv":
        return to_csv(instances, cls)
    if fmt == "mof":
        return to_mof(instances)
    if fmt == "xml":
        return to_xml(instances)
    return to_table(instances, cls, width)
