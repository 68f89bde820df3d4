"""WQL compiled against the schema into one Python function, then run over instances.

The WHERE clause becomes the condition of a single list comprehension generated as Python
source (``[o for o in rows if ...]``), so evaluating a row costs attribute reads and
comparisons, no function call per node. Only two kinds of text reach the generated code:
property names checked against the schema (identifiers), and ``c0``, ``c1``... naming
constants passed in as objects, never as source text.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

from ..errors import InvalidInput
from ..model import CIMObject, ClassDef, load_schema
from ..model.instances import SYSTEM_PROPERTIES, local_server_name
from . import parser as wql
from .like import compile_like
from .parser import WQLError, shorten

_FLIP = {"=": "=", "<>": "<>", "!=": "!=", "<": ">", ">": "<", "<=": ">=", ">=": "<="}
_PYTHON_OP = {"=": "==", "<>": "!=", "!=": "!=", "<": "<", ">": ">", "<=": "<=", ">=": ">="}
_NUMERIC = ("uint8", "uint16", "uint32", "uint64", "sint8", "sint16", "sint32", "sint64", "real32", "real64")
_SYSTEM_TYPES = {"__GENUS": "sint32", "__PROPERTY_COUNT": "sint32", "__DERIVATION": "string[]"}
_CIM_DATETIME = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})\.([0-9]{6})([+-])([0-9]{3})")
_ASCII_SPACE = " \t\r\n\f\v"


class QueryResult(list[CIMObject]):
    """The instances a query returned, with the names of the properties it selected."""

    def __init__(self, items: Iterable[CIMObject], classname: str, properties: tuple[str, ...]) -> None:
        super().__init__(items)
        self.classname = classname
        #: property names returned, in schema order, keys included
        self.properties = properties


@dataclass(frozen=True)
class CompiledQuery:
    """A parsed and type-checked query, ready to run over any number of instance lists."""

    text: str
    classname: str  # the FROM class as the schema spells it
    classes: frozenset[str]  # it and its subclasses
    properties: tuple[str, ...]  # selected properties (all for *), keys included, schema order
    select_all: bool
    where: Callable[[Sequence[CIMObject]], list[CIMObject]]

    def run(self, instances: Iterable[CIMObject]) -> QueryResult:
        """The instances of the FROM class (or a subclass) that satisfy WHERE, projected."""
        rows = instances if isinstance(instances, list) else list(instances)
        present = set(map(type, rows))  # one pass at C speed; usually a single class
        kinds = {kind for kind in present if kind.classname in self.classes}
        if kinds != present:
            rows = [o for o in rows if type(o) in kinds]
        matched = self.where(rows)
        if not self.select_all:
            return QueryResult([_project(o, self.properties) for o in matched], self.classname, self.properties)
        present = {o.classname for o in matched}
        if len(present) == 1:  # SELECT * of a superclass returns the subclass's instances whole
            cls = load_schema().get(present.pop())
            return QueryResult(matched, cls.name, tuple(cls.properties))
        return QueryResult(matched, self.classname, self.properties)


def _project(instance: CIMObject, keep: tuple[str, ...]) -> CIMObject:
    dropped = {p: None for p in instance.to_dict() if p not in keep}
    return dataclasses.replace(instance, **dropped)  # type: ignore[type-var]


def compile_query(text: str) -> CompiledQuery:
    """Parse ``text`` and compile it; WQLError (invalid input) when it is not a valid query."""
    if not isinstance(text, str):
        raise InvalidInput("a WQL query must be text")
    return _compile(text)


@lru_cache(maxsize=256)
def _compile(text: str) -> CompiledQuery:
    query = wql.parse(text)
    schema = load_schema()
    try:
        cls = schema.get(query.classname)
    except Exception:
        raise WQLError(query.class_position, f"unknown class {shorten(query.classname)}") from None
    if query.properties is None:
        properties = tuple(cls.properties)
    else:
        chosen = {_resolve(cls, p)[0] for p in query.properties}
        properties = tuple(p for p in cls.properties if p in chosen or cls.properties[p].is_key)
    compiler = _Compiler(cls)
    where = compiler.build(query.where)
    return CompiledQuery(
        text=text,
        classname=cls.name,
        classes=frozenset(schema.subclasses(cls.name)),
        properties=properties,
        select_all=query.properties is None,
        where=where,
    )


def _resolve(cls: ClassDef, prop: wql.Property) -> tuple[str, str]:
    """(canonical name, CIM type) of a property or system property of ``cls``."""
    upper = prop.name.upper()
    for name in SYSTEM_PROPERTIES:
        if name == upper:
            return name, _SYSTEM_TYPES.get(name, "string")
    if upper == "__THIS":
        return "__THIS", "object"
    for name, definition in cls.properties.items():
        if name.lower() == prop.name.lower():
            return name, definition.type + ("[]" if definition.is_array else "")
    raise WQLError(prop.position, f"{cls.name} has no property {shorten(prop.name)}")


class _Compiler:
    def __init__(self, cls: ClassDef) -> None:
        self.cls = cls
        self.constants: dict[str, Any] = {}

    def build(self, node: wql.Node | None) -> Callable[[Sequence[CIMObject]], list[CIMObject]]:
        if node is None:
            return list
        condition = self.node(node)
        source = f"def where(rows):\n    return [o for o in rows if {condition}]\n"
        namespace: dict[str, Any] = {
            "len": len,  # a global of the generated code: found before the builtins
            "_system": _system_value,
            "_local": local_server_name,
            **self.constants,
        }
        exec(compile(source, "<wql>", "exec"), namespace)
        return namespace["where"]  # type: ignore[no-any-return]

    def constant(self, value: Any) -> str:
        name = f"c{len(self.constants)}"
        self.constants[name] = value
        return name

    def node(self, node: wql.Node) -> str:
        if isinstance(node, wql.Or):
            return "(" + " or ".join(self.node(n) for n in node.operands) + ")"
        if isinstance(node, wql.And):
            return "(" + " and ".join(self.node(n) for n in node.operands) + ")"
        if isinstance(node, wql.Not):
            return f"(not {self.node(node.operand)})"
        if isinstance(node, wql.IsNull):
            access, _ = self.access(node.prop)
            return f"({access} is {'not ' if node.negated else ''}None)"
        if isinstance(node, wql.Like):
            return self.like(node)
        if isinstance(node, wql.Isa):
            return self.isa(node)
        return self.compare(node)

    def access(self, prop: wql.Property) -> tuple[str, str]:
        """Python expression reading ``prop`` from row ``o``, and the property's CIM type."""
        name, cim_type = _resolve(self.cls, prop)
        if name == "__CLASS":
            return "o.classname", cim_type
        if name == "__SERVER":
            return "(o.server or _local())", cim_type
        if name.startswith("__"):
            return f"_system(o, {name!r})", cim_type
        return f"o.{name}", cim_type

    def compare(self, node: wql.Compare) -> str:
        if isinstance(node.left, wql.Property) and isinstance(node.right, wql.Property):
            raise WQLError(node.position, "WQL compares a property with a constant, not with another property")
        if isinstance(node.left, wql.Property):
            prop, const, op = node.left, node.right, node.op
        else:
            prop, const, op = node.right, node.left, _FLIP[node.op]  # type: ignore[assignment]
        assert isinstance(prop, wql.Property) and isinstance(const, wql.Constant)
        access, cim_type = self.access(prop)
        if cim_type == "object" or cim_type.endswith("[]"):
            raise WQLError(prop.position, f"{prop.name} cannot be compared with {op}")
        if const.value is None:
            if op not in ("=", "<>", "!="):
                raise WQLError(const.position, "NULL can only be compared with =, <> or != (or use IS NULL)")
            return f"({access} is {'' if op == '=' else 'not '}None)"
        value = _coerce(const, cim_type, prop.name)
        python_op = _PYTHON_OP[op]
        if cim_type == "boolean" and op not in ("=", "<>", "!="):
            raise WQLError(node.position, f"{prop.name} is boolean: use = or <>")
        if cim_type == "string":
            folded = value.lower()
            if op in ("=", "<>", "!=") and folded.isascii():
                # a length test first spares most rows the lower(); lower() keeps the length of
                # every character whose lower case is ASCII, so no match is lost
                equal = f"(len(_v) == {len(folded)} and _v.lower() == {self.constant(folded)})"
                return f"((_v := {access}) is not None and {'' if op == '=' else 'not '}{equal})"
            return f"((_v := {access}) is not None and _v.lower() {python_op} {self.constant(folded)})"
        return f"((_v := {access}) is not None and _v {python_op} {self.constant(value)})"

    def like(self, node: wql.Like) -> str:
        access, cim_type = self.access(node.prop)
        if cim_type != "string":
            raise WQLError(node.prop.position, f"LIKE needs a string property; {node.prop.name} is {cim_type}")
        match = self.constant(compile_like(node.pattern, node.position))
        return f"((_v := {access}) is not None and {match}(_v) is {'' if node.negated else 'not '}None)"

    def isa(self, node: wql.Isa) -> str:
        name, _ = _resolve(self.cls, node.prop)
        if name != "__THIS":
            raise WQLError(node.prop.position, "ISA applies to __THIS (or an embedded object) in a data query")
        try:
            classes = frozenset(load_schema().subclasses(node.classname))
        except Exception:
            raise WQLError(node.position, f"unknown class {shorten(node.classname)}") from None
        return f"(o.classname in {self.constant(classes)})"


def _coerce(const: wql.Constant, cim_type: str, prop: str) -> Any:
    value = const.value
    if cim_type == "string":
        if isinstance(value, str):
            return value
        raise WQLError(const.position, f"{prop} is a string: compare it with a quoted string")
    if cim_type in _NUMERIC or cim_type == "sint32":
        if isinstance(value, bool):
            raise WQLError(const.position, f"{prop} is a number, not a boolean")
        if isinstance(value, str):  # '600': read as the number it spells, with the same syntax
            text = value.strip(_ASCII_SPACE)
            if not wql.NUMBER.fullmatch(text):
                raise WQLError(const.position, f"{prop} is a number; {shorten(value)} is not one")
            return wql.read_number(text, const.position)
        return value  # compared exactly, whatever the range: no uint32 value is -1 or 2**40
    if cim_type == "boolean":
        if isinstance(value, bool):
            return value
        raise WQLError(const.position, f"{prop} is boolean: compare it with TRUE or FALSE")
    if cim_type == "datetime":
        if isinstance(value, str):
            moment = parse_cim_datetime(value)
            if moment is not None:
                return moment
        raise WQLError(const.position, f"{prop} is a datetime: compare it with 'yyyymmddHHMMSS.mmmmmmsUUU'")
    raise WQLError(const.position, f"{prop} cannot be compared")  # pragma: no cover


def parse_cim_datetime(text: str) -> datetime | None:
    """A CIM datetime string (``20261124093000.000000+060``) as an aware datetime; None if it is not one."""
    found = _CIM_DATETIME.fullmatch(text.strip())
    if not found:
        return None
    year, month, day, hour, minute, second, micro, sign, offset = found.groups()
    minutes = int(offset) * (1 if sign == "+" else -1)
    try:
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), int(micro),
            tzinfo=timezone(timedelta(minutes=minutes)),
        )  # fmt: skip
    except ValueError:
        return None


def _system_value(instance: CIMObject, name: str) -> Any:
    return instance.system_properties()[name]


def run_query(text: str, instances: Iterable[CIMObject]) -> QueryResult:
    """Answer the WQL ``text`` over ``instances``."""
    return compile_query(text).run(instances)
