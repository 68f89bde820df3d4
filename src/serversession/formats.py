r"""Output formats of the reading commands (DESIGN.md section 4): table, json, csv, mof, xml.

Names and other strings come from SMB clients and are hostile: they are data, never markup,
and never reach a terminal as control sequences. What each format does with a character it
should not carry raw (the C0 and C1 controls, DEL, format characters such as the bidi override
U+202E, line and paragraph separators, lone surrogates: every character ``str.isprintable()``
rejects, spaces excepted):

- ``table`` (for people): shown as a Python-style escape, ``\xNN``, ``\uNNNN`` or
  ``\UNNNNNNNN`` (a backslash in a name is not doubled: the table is for reading, ``json`` is
  exact); also every character the output's encoding cannot hold. Cells are plain text, never
  rich markup (``[bold]``) or emoji codes (``:smile:``).
- ``json``: exact (every non-ASCII character is a ``\uNNNN`` escape).
- ``csv``: exact, for programs (CSV has no escapes; a row with a CR in a cell is quoted
  whole, else CR would end the row); only lone surrogates, which UTF-8 cannot encode, become
  U+FFFD. Cells starting with ``=``, ``+``, ``-`` or ``@`` are not prefixed
  with ``'``: that would change the data; open the file in a spreadsheet as text.
- ``mof``: DSP0004 string escapes (``\xNNNN``) for each such character up to U+FFFF; U+0000
  (which a CIM string cannot hold) and lone surrogates become U+FFFD.
- ``xml``: a character reference (``&#xNN;``) for each such character XML 1.0 allows (``\r``
  included, so it survives parsing); those it cannot carry at all (C0 controls other than tab,
  LF and CR, lone surrogates, U+FFFE, U+FFFF) become U+FFFD; tab and LF stay as they are.
  The document always parses.

``json``, ``csv``, ``mof`` and ``xml`` are written as UTF-8 whatever the locale (commands.py);
the table in the terminal's encoding.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .model import CIMObject, ClassDef, load_schema
from .model.instances import SYSTEM_PROPERTIES
from .model.objectpath import ObjectPath
from .xmltext import REPLACEMENT, shows, xml_safe

FORMATS = ("table", "json", "csv", "mof", "xml")

# Columns of the table per class, (heading, property), after `net session`, `net share`, the
# Shared Folders console, `Get-SmbSession` and `Get-SmbOpenFile`. A class without an entry
# shows its keys.
TABLE_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "Win32_ServerSession": (
        ("Computer", "ComputerName"),
        ("User", "UserName"),
        ("Client type", "ClientType"),
        ("Opens", "ResourcesOpened"),
        ("Active", "ActiveTime"),
        ("Idle", "IdleTime"),
        ("Type", "SessionType"),
        ("Status", "Status"),
    ),
    "Win32_ServerConnection": (
        ("Computer", "ComputerName"),
        ("User", "UserName"),
        ("Share", "ShareName"),
        ("Id", "ConnectionID"),
        ("Files", "NumberOfFiles"),
        ("Active", "ActiveTime"),
    ),
    "Win32_Share": (
        ("Name", "Name"),
        ("Type", "Type"),
        ("Path", "Path"),
        ("Description", "Description"),
        ("Max users", "MaximumAllowed"),
    ),
    "MSFT_SmbSession": (
        ("SessionId", "SessionId"),
        ("Computer", "ClientComputerName"),
        ("User", "ClientUserName"),
        ("Dialect", "Dialect"),
        ("Opens", "NumOpens"),
        ("Exists", "SecondsExists"),
        ("Idle", "SecondsIdle"),
    ),
    "MSFT_SmbOpenFile": (
        ("FileId", "FileId"),
        ("SessionId", "SessionId"),
        ("Path", "Path"),
        ("Share path", "ShareRelativePath"),
        ("Computer", "ClientComputerName"),
        ("User", "ClientUserName"),
        ("Access", "Permissions"),
        ("Locks", "Locks"),
    ),
}
#: what the table's last line counts, per class ("3 sessions")
COUNTED = {
    "Win32_ServerSession": "session",
    "Win32_ServerConnection": "connection",
    "Win32_Share": "share",
    "MSFT_SmbSession": "session",
    "MSFT_SmbOpenFile": "open file",
}
DURATIONS = frozenset({"SecondsExists", "SecondsIdle"})  # seconds, though the MOF has no Units for them
HEXADECIMAL = frozenset({"Permissions"})  # access masks, as Get-SmbOpenFile's users read them


_SURROGATES = re.compile("[\ud800-\udfff]")
_MOF_QUOTED = re.compile("[\\\\\"'\x00-\x1f]")  # what pywbem escapes: a long string must not be split then
_MOF_ESCAPE = re.compile(r"\\(.)", re.DOTALL)  # an escape pair of pywbem's MOF, read left to right


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def visible(text: str, encoding: str | None = None) -> str:
    """``text`` safe for a terminal: each character it should not print raw as an escape.

    Control characters (C0, DEL, C1), format characters (bidi overrides, zero-width joiners),
    line and paragraph separators, unassigned code points and lone surrogates become ``\\xNN``,
    ``\\uNNNN`` or ``\\UNNNNNNNN``; with ``encoding``, so does every character it cannot encode.
    """
    if text.isascii():
        if text.isprintable():
            return text
    elif text.isprintable() and (encoding is None or _encodes(text, encoding)):
        return text
    return "".join(
        char if shows(char) and (encoding is None or _encodes(char, encoding)) else _escape(char) for char in text
    )


def _encodes(text: str, encoding: str) -> bool:
    try:
        text.encode(encoding)
    except (UnicodeError, LookupError):
        return False
    return True


def no_surrogates(text: str) -> str:
    """``text`` with each lone surrogate (which no UTF encodes) replaced by U+FFFD."""
    return text if text.isascii() else _SURROGATES.sub(REPLACEMENT, text)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, ObjectPath):  # a reference: the path it names, as WMI writes it
        return str(value)
    return value


def _remote(instances: Sequence[CIMObject]) -> bool:
    """Whether the instances were read from other servers (then outputs name each one's server)."""
    return any(instance.server for instance in instances)


def _rows(
    instances: Sequence[CIMObject], properties: Sequence[str], system: bool, absent: bool = True
) -> list[dict[str, Any]]:
    """Each instance's ``properties`` (None for one its class lacks, or left out with ``absent``
    false), after its system properties or server."""
    server = not system and _remote(instances)
    known: dict[str, Any] = {}  # class name -> its properties (what to_dict() holds)
    rows = []
    for instance in instances:
        own = known.get(instance.classname)
        if own is None:
            own = known[instance.classname] = load_schema().get(instance.classname).properties
        row = instance.system_properties() if system else {"__SERVER": instance.server} if server else {}
        for prop in properties:
            if prop in own:
                row[prop] = getattr(instance, prop)
            elif absent:
                row[prop] = None
        rows.append(row)
    return rows


def to_json(instances: Sequence[CIMObject], properties: Sequence[str], system: bool = False) -> str:
    """A JSON array of objects keyed by CIM property name; null when unknown. Each object holds
    only its own class's properties (a result of several classes: null means unknown, never
    "not a property of this class").

    ``system`` puts WMI's system properties (``__CLASS``, ``__PATH``, ...) in front; without
    it, instances read from other servers get ``__SERVER`` in front.
    """
    rows = _rows(instances, properties, system, absent=False)
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
        if isinstance(value, (datetime, ObjectPath)):
            row[key] = _plain(value)
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
    # csv quotes a cell holding LF but not one holding CR, which readers take for the end of
    # the row: a client's name would make rows of its own. A row with a CR has every cell quoted.
    quoted = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    header = [*(SYSTEM_PROPERTIES if system else ("__SERVER",) if _remote(instances) else ()), *properties]
    writer.writerow(header)
    for row in _rows(instances, properties, system):
        cells = [_csv_cell(row.get(p)) for p in header]
        (quoted if any(isinstance(cell, str) and "\r" in cell for cell in cells) else writer).writerow(cells)
    return no_surrogates(out.getvalue())


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list):
        return ";".join(map(str, value))
    return _plain(value)


def to_mof(instances: Sequence[CIMObject], properties: Sequence[str] | None = None) -> str:
    """``instance of CLASS { ... };`` blocks, as pywbem writes them, every string escaped (DSP0004).

    pywbem escapes backslashes, quotes and C0 controls, and splits long strings over lines,
    within a word when there is no space: an escape sequence could be cut in two, so an
    instance with any of them is written without splits. Its ``\\'`` is written ``'`` (DSP0004
    needs no escape for it in a double-quoted string, and pywbem's own compiler drops it). What pywbem leaves raw and a terminal
    should not see (C1 controls, bidi overrides ...) becomes ``\\xNNNN``; U+0000 and lone
    surrogates, which a CIM string cannot hold, become U+FFFD.
    """
    blocks = []
    for instance in instances:
        cim = instance.to_cim_instance(properties)
        escaped = any(_MOF_QUOTED.search(text) for prop in cim.properties.values() for text in _strings(prop.value))
        blocks.append(_mof_safe(cim.tomof(maxline=1 << 30) if escaped else cim.tomof()))
    return "\n".join(blocks)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if hasattr(value, "keybindings"):  # a reference: its key values are strings of clients too
        return [str(value)]
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _mof_safe(text: str) -> str:
    # line by line: pywbem's own line breaks are the only raw LF (strings hold it as \n)
    return "\n".join(_mof_line(line) for line in text.split("\n"))


def _mof_line(line: str) -> str:
    if "\\'" in line:  # pywbem's \' (valid, but its own compiler reads it as nothing): a plain '
        line = _MOF_ESCAPE.sub(lambda m: "'" if m.group(1) == "'" else m.group(0), line)
    return line if line.isprintable() else "".join(map(_mof_char, line))


def _mof_char(char: str) -> str:
    if shows(char):
        return char
    code = ord(char)
    if code == 0 or 0xD800 <= code <= 0xDFFF:
        return REPLACEMENT
    return f"\\x{code:04X}" if code < 0x10000 else char


def to_xml(instances: Sequence[CIMObject], properties: Sequence[str] | None = None) -> str:
    """A CIM-XML document (DSP0201): each instance with its namespace and key bindings.

    DECLGROUP.WITHPATH of VALUE.OBJECTWITHLOCALPATH, i.e. (LOCALINSTANCEPATH, INSTANCE).
    """
    parts = ['<?xml version="1.0" encoding="utf-8" ?>', '<CIM CIMVERSION="2.0" DTDVERSION="2.0">']
    parts.append("<DECLARATION><DECLGROUP.WITHPATH>")
    # pywbem writes an instance whose path has a namespace and no host as VALUE.OBJECTWITHLOCALPATH
    parts.extend(xml_safe(instance.to_cim_instance(properties).tocimxmlstr()) for instance in instances)
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


def cell_text(instance: CIMObject, prop: str, cls: ClassDef) -> str:
    """The text of one table cell: durations, value maps, (anonymous), as `list` shows them."""
    if prop not in cls.properties:  # a subclass's own property in a table of several classes
        cls = load_schema().get(instance.classname)
        if prop not in cls.properties:
            return "-"
    value = getattr(instance, prop)
    if value is None:
        return "-"
    if cls.properties[prop].qualifiers.get("Units") == "seconds" or prop in DURATIONS:
        return human_duration(value)
    if prop in HEXADECIMAL and isinstance(value, int):
        return f"0x{value:08x}"
    values = cls.properties[prop].qualifiers.get("Values")
    value_map = cls.properties[prop].qualifiers.get("ValueMap")
    if values and value_map and str(value) in value_map:
        return values[value_map.index(str(value))]
    if prop == "UserName" and value == "":
        return "(anonymous)"
    return str(value)


def to_table(
    instances: Sequence[CIMObject],
    cls: ClassDef,
    width: int | None = None,
    properties: Sequence[str] | None = None,
    encoding: str = "utf-8",
) -> str:
    """An aligned table for people: the usual columns, or ``properties`` when a query chose them;
    first a Server column when the instances were read from other servers.

    Every cell is plain text (never rich markup) made :func:`visible` for ``encoding``, the
    encoding of the terminal or file it goes to (not a UTF one: the lines are ASCII). The table
    is at least 4 characters per column wide (narrower, rich would leave columns out).
    """
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    columns = TABLE_COLUMNS.get(cls.name) or tuple((p, p) for p in cls.keys)
    if properties is not None and list(properties) != list(cls.properties):
        columns = tuple((p, p) for p in properties)
    lines = box.SIMPLE_HEAD
    if not encoding.lower().replace("_", "-").startswith("utf"):  # the same look in ASCII
        lines = box.Box(str(box.SIMPLE_HEAD).replace("\u2500", "-"), ascii=True)
    table = Table(box=lines, show_edge=False, pad_edge=False)
    server = _remote(instances)
    if server:
        table.add_column(Text("Server"), overflow="fold")
    for heading, prop in columns:
        known = cls.properties.get(prop)
        numeric = (
            known is not None
            and known.type.startswith(("uint", "sint"))
            and "ValueMap" not in known.qualifiers
            and prop not in DURATIONS | HEXADECIMAL
        )
        table.add_column(Text(heading), justify="right" if numeric else "left", overflow="fold")
    for instance in instances:
        cells = [cell_text(instance, prop, cls) for _, prop in columns]
        if server:
            cells.insert(0, instance.server or "-")
        table.add_row(*(Text(visible(cell, encoding)) for cell in cells))
    out = _Output(encoding)
    width = max(width or 200, 4 * len(table.columns))
    console = Console(
        file=out,
        width=width,
        color_system=None,
        highlight=False,
        soft_wrap=False,
        markup=False,
        emoji=False,
        force_terminal=False,
        force_jupyter=False,
        force_interactive=False,
        legacy_windows=False,
    )
    console.print(table)
    count, noun = len(instances), COUNTED.get(cls.name, "instance")
    console.print(Text(f"{count} {noun}{'s' if count != 1 else ''}"))
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()) + "\n"


class _Output(io.StringIO):
    """What rich writes the table into; its ``encoding`` tells rich whether box lines may be non-ASCII."""

    def __init__(self, encoding: str) -> None:
        super().__init__()
        self._encoding = encoding

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._encoding


def render(
    instances: Sequence[CIMObject],
    cls: ClassDef,
    fmt: str,
    width: int | None = None,
    properties: Sequence[str] | None = None,
    system: bool = False,
    encoding: str = "utf-8",
) -> str:
    """``instances`` in the format called ``fmt`` (one of FORMATS).

    ``properties``: the properties to show (default: all of ``cls``); ``system``: add WMI's
    system properties to json and csv (what ``query`` returns); ``encoding``: what the table
    will be written in (the other formats are always UTF-8).
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
    if fmt == "table":
        return to_table(instances, cls, width, properties, encoding)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


# --- events (serversession watch) ---------------------------------------------------------------

EVENT_VERBS = {
    "__InstanceCreationEvent": "created",
    "__InstanceDeletionEvent": "deleted",
    "__InstanceModificationEvent": "modified",
}


def _embedded(instance: CIMObject) -> dict[str, Any]:
    """An event's TargetInstance or PreviousInstance as JSON: system properties, then properties."""
    row = instance.system_properties()
    row.update(instance.to_dict())
    return {key: _plain(value) for key, value in row.items()}


def event_json(event: Any, properties: Sequence[str] | None = None) -> str:
    """One event as one line of JSON (JSON Lines): ``__CLASS``, ``TIME_CREATED``, ``TargetInstance``
    and, for a modification, ``PreviousInstance`` (``properties``: those the query selected)."""
    row: dict[str, Any] = {"__CLASS": event.classname}
    if properties is None or "TIME_CREATED" in properties:
        row["TIME_CREATED"] = event.time_created
    if properties is None or "TargetInstance" in properties:
        row["TargetInstance"] = _embedded(event.target)
    if event.previous is not None and (properties is None or "PreviousInstance" in properties):
        row["PreviousInstance"] = _embedded(event.previous)
    return json.dumps(row, separators=(",", ":"))  # ASCII: any character of a hostile name escaped


def event_line(event: Any, encoding: str = "utf-8") -> str:
    """One event as one line for people: local time, what happened, the instance's path and, for a
    modification, what changed (``ResourcesOpened 1->2``); control characters made visible."""
    from .model.instances import local_datetime
    from .wql.events import unix_time

    when = local_datetime(unix_time(event.time_created)).strftime("%Y-%m-%d %H:%M:%S")
    verb = EVENT_VERBS.get(event.classname, event.classname)
    text = f"{when}  {verb:<8}  {event.target.path}"
    if event.previous is not None:
        before = event.previous.to_dict()
        changes = [
            f"{name} {_short(before[name])}->{_short(value)}"
            for name, value in event.target.to_dict().items()
            if before[name] != value
        ]
        if changes:
            text += "  " + ", ".join(changes)
    return visible(text, encoding)


def _short(value: Any) -> str:
    value = _plain(value)
    text = "null" if value is None else str(value)
    return text if len(text) <= 64 else text[:61] + "..."
