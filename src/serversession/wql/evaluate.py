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

from ..errors import InvalidInput, NotFound
from ..model import CIMObject, ClassDef, load_schema
from ..model.instances import SYSTEM_PROPERTIES, local_server_name, wmi_namespace
from ..model.objectpath import ObjectPath
from . import parser as wql
from .like import compile_like
from .parser import NotSupported, WQLError, shorten

_FLIP = {"=": "=", "<>": "<>", "!=": "!=", "<": ">", ">": "<", "<=": ">=", ">=": "<="}
_PYTHON_OP = {"=": "==", "<>": "!=", "!=": "!=", "<": "<", ">": ">", "<=": "<=", ">=": ">="}
_NUMERIC = ("uint8", "uint16", "uint32", "uint64", "sint8", "sint16", "sint32", "sint64", "real32", "real64")
_SYSTEM_TYPES = {"__GENUS": "sint32", "__PROPERTY_COUNT": "sint32", "__DERIVATION": "string[]"}
_CIM_DATETIME = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})([0-9]{2})\.([0-9]{6})([+-])([0-9]{3})")
_ASCII_SPACE = " \t\r\n\f\v"


class QueryResult(list[CIMObject]):
    """The instances a query returned, with the names of the properties it selected."""

    def __init__(
        self,
        items: Iterable[CIMObject],
        classname: str,
        properties: tuple[str, ...],
        keys_only: bool = False,
    ) -> None:
        super().__init__(items)
        self.classname = classname
        #: property names returned, in schema order, keys included (of several classes: the union)
        self.properties = properties
        #: only the key properties of each instance are set (ASSOCIATORS/REFERENCES OF ... KeysOnly)
        self.keys_only = keys_only

    def properties_of(self, classname: str) -> tuple[str, ...]:
        """The properties returned for the instances of ``classname``, in its schema order: of a
        result of several classes, those of :attr:`properties` it has (with KeysOnly, its keys)."""
        cls = load_schema().get(classname)
        if self.keys_only:
            return cls.keys
        return tuple(p for p in cls.properties if p in self.properties)


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
        # SELECT * of a superclass returns the subclasses' instances whole: every property of
        # each class present (those of the FROM class first), None where a class lacks one
        present = dict.fromkeys(o.classname for o in matched)
        if len(present) == 1:
            cls = load_schema().get(next(iter(present)))
            return QueryResult(matched, cls.name, tuple(cls.properties))
        union = dict.fromkeys(self.properties)
        for name in present:
            union.update(dict.fromkeys(load_schema().get(name).properties))
        return QueryResult(matched, self.classname, tuple(union))


def _project(instance: CIMObject, keep: tuple[str, ...]) -> CIMObject:
    dropped = {p: None for p in instance.to_dict() if p not in keep}
    return dataclasses.replace(instance, **dropped)  # type: ignore[type-var]


def compile_query(text: str) -> CompiledQuery:
    """Parse the data query (SELECT) ``text`` and compile it; WQLError (invalid input) when it is
    not a valid query. ``ASSOCIATORS OF`` and ``REFERENCES OF`` are checked as
    :func:`compile_wql` checks them, then refused with NotSupported: they are answered by
    :func:`compile_wql` (``serversession.query``), not by a run over one class's instances."""
    compiled = compile_wql(text)
    if isinstance(compiled, CompiledAssociation):
        raise NotSupported(
            f"{compiled.kind} OF is not a data query (SELECT): ask it through serversession query, "
            "or the CIM-XML operations Associators and References"
        )
    return compiled


def compile_wql(text: str) -> CompiledQuery | CompiledAssociation:
    """Parse ``text`` and compile it: a SELECT data query, or ``ASSOCIATORS OF``/``REFERENCES OF``.

    WQLError (invalid input) names the position of what is wrong: syntax, a class the schema
    does not have, a malformed object path or one with wrong keys.
    """
    if not isinstance(text, str):
        raise InvalidInput("a WQL query must be text")
    return _compile(text)


@lru_cache(maxsize=256)
def _compile(text: str) -> CompiledQuery | CompiledAssociation:
    query = wql.parse(text)
    if isinstance(query, wql.AssociationQuery):
        return _compile_association(query)
    if isinstance(query, wql.EventQuery):
        from .events import compile_event

        compile_event(text)  # an invalid event query is an error (exit 2) like any other
        raise NotSupported(
            "an event query is answered as events arrive, not at once: "
            "serversession watch 'QUERY' (or serversession.watch()) answers it"
        )
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
        if name == "__THIS":  # the instance itself: never null, compared with nothing but ISA
            return "o", cim_type
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
    """Answer the WQL data query ``text`` over ``instances``."""
    return compile_query(text).run(instances)


# --- ASSOCIATORS OF and REFERENCES OF -------------------------------------------------------------


class ClassDefsResult(list[ClassDef]):
    """What ``ClassDefsOnly`` and ``SchemaOnly`` return: class definitions (the schema's
    :class:`~serversession.model.ClassDef`), each once, in the order first met."""

    @property
    def names(self) -> list[str]:
        return [cls.name for cls in self]


def class_system_properties(cls: ClassDef) -> dict[str, Any]:
    """WMI's system properties of a class definition (``__GENUS`` 1), as a class object returned
    by ``ClassDefsOnly`` has them."""
    schema = load_schema()
    chain = schema.superclasses(cls.name)
    server = local_server_name()
    namespace = wmi_namespace(cls.namespace)
    return {
        "__GENUS": 1,
        "__CLASS": cls.name,
        "__SUPERCLASS": cls.superclass,
        "__DYNASTY": chain[-1] if chain else cls.name,
        "__RELPATH": cls.name,
        "__PROPERTY_COUNT": len(cls.properties),
        "__DERIVATION": chain,
        "__SERVER": server,
        "__NAMESPACE": namespace,
        "__PATH": f"\\\\{server}\\{namespace}:{cls.name}",
    }


@dataclass(frozen=True)
class CompiledAssociation:
    """``ASSOCIATORS OF {path}`` or ``REFERENCES OF {path}`` checked against the schema, ready to run.

    ``target`` is the resolved object path (of ``SchemaOnly``: a path naming the class, no keys);
    class names are the schema's spelling; role and qualifier names as written (compared
    without regard to case; a role no association has is no match).
    """

    text: str
    kind: str  # ASSOCIATORS or REFERENCES
    target: ObjectPath
    assoc_class: str | None = None
    result_class: str | None = None
    role: str | None = None
    result_role: str | None = None
    required_qualifier: str | None = None
    required_assoc_qualifier: str | None = None
    class_defs_only: bool = False
    keys_only: bool = False
    schema_only: bool = False

    @property
    def classes(self) -> tuple[str, ...]:
        """The classes (each with a provider) whose instances :meth:`run` needs, all from one
        snapshot: the target's, the associations' and, for ASSOCIATORS, the result classes'.
        Empty for SchemaOnly, which reads no instances."""
        from ..model.providers import provided
        from .associations import association_classes, result_classes

        if self.schema_only:
            return ()
        schema = load_schema()
        out = dict.fromkeys(provided(self.target.classname))
        if self.kind == "REFERENCES":
            keep = set(schema.subclasses(self.result_class)) if self.result_class else None
            out.update(
                dict.fromkeys(c for c in association_classes(self.target.classname) if keep is None or c in keep)
            )
            return tuple(out)
        keep_assoc = set(schema.subclasses(self.assoc_class)) if self.assoc_class else None
        out.update(
            dict.fromkeys(
                c for c in association_classes(self.target.classname) if keep_assoc is None or c in keep_assoc
            )
        )
        keep = set(schema.subclasses(self.result_class)) if self.result_class else None
        ends = result_classes(self.target.classname, self.assoc_class)
        out.update(dict.fromkeys(c for c in ends if keep is None or c in keep))
        return tuple(out)

    def run(self, instances: Iterable[CIMObject]) -> QueryResult | ClassDefsResult:
        """The answer over ``instances`` (those of :attr:`classes`, from one snapshot; others are
        ignored). NotFound if the target is not among them (WMI's WBEM_E_NOT_FOUND).

        Instances come in the order of ``instances``; KeysOnly leaves only key properties set.
        """
        from .associations import associators, has_qualifier, references, schema_associators, schema_references
        from .lookup import find_instance

        schema = load_schema()
        if self.schema_only:
            if self.kind == "REFERENCES":
                names = schema_references(self.target.classname, result_class=self.result_class, role=self.role)
            else:
                names = schema_associators(
                    self.target.classname,
                    assoc_class=self.assoc_class,
                    result_class=self.result_class,
                    role=self.role,
                    result_role=self.result_role,
                    assoc_qualifier=self.required_assoc_qualifier,
                )
            if self.required_qualifier is not None:
                names = [n for n in names if has_qualifier(n, self.required_qualifier)]
            return ClassDefsResult(schema.get(n) for n in names)
        rows = instances if isinstance(instances, list) else list(instances)
        found = find_instance(self.target, rows)
        target = ObjectPath(found.classname, found.object_path.keys, host=found.server or ".")
        if self.kind == "REFERENCES":
            result = references(target, rows, result_class=self.result_class, role=self.role)
            if self.required_qualifier is not None:
                result = _with_qualifier(result, self.required_qualifier)
        else:
            if self.required_assoc_qualifier is not None:
                wanted = self.required_assoc_qualifier
                rows = [
                    o for o in rows if not schema.get(o.classname).is_association or _qualified(o.classname, wanted)
                ]
            result = associators(
                target, rows, assoc_class=self.assoc_class, result_class=self.result_class,
                role=self.role, result_role=self.result_role,
            )  # fmt: skip
            if self.required_qualifier is not None:
                result = _with_qualifier(result, self.required_qualifier)
        if self.class_defs_only:
            return ClassDefsResult(schema.get(n) for n in dict.fromkeys(o.classname for o in result))
        return self._result(result)

    def _result(self, found: list[CIMObject]) -> QueryResult:
        schema = load_schema()
        present = list(dict.fromkeys(o.classname for o in found))
        if present:
            classname = _common_superclass(present)
        else:  # nothing found: the class the results would have been of
            from .associations import association_classes, result_classes

            if self.result_class:
                classname = self.result_class
            elif self.kind == "REFERENCES":
                classname = _common_superclass(
                    list(association_classes(self.target.classname)) or [self.target.classname]
                )
            else:
                ends = result_classes(self.target.classname, self.assoc_class)
                classname = _common_superclass(list(ends) or [self.target.classname])
        union: dict[str, None] = {}
        for name in present or [classname]:
            cls = schema.get(name)
            union.update(dict.fromkeys(cls.keys if self.keys_only else cls.properties))
        if self.keys_only:  # each instance with its own class's keys (a Name key of one is no key of another)
            found = [_project(o, schema.get(o.classname).keys) for o in found]
        return QueryResult(found, classname, tuple(union), self.keys_only)


@lru_cache(maxsize=64)
def _qualified(classname: str, qualifier: str) -> bool:
    from .associations import has_qualifier

    return has_qualifier(classname, qualifier)


def _with_qualifier(found: list[CIMObject], qualifier: str) -> list[CIMObject]:
    return [o for o in found if _qualified(o.classname, qualifier)]


def _common_superclass(names: list[str]) -> str:
    """The nearest class that ``names`` all are or derive from; the first name if they share none."""
    schema = load_schema()
    chains = [[n, *schema.superclasses(n)] for n in names]
    common = set(chains[0]).intersection(*chains[1:])
    return next((n for n in chains[0] if n in common), names[0])


def _compile_association(query: wql.AssociationQuery) -> CompiledAssociation:
    from .lookup import resolve_path

    schema = load_schema()

    def known(word: wql.Word | None, association: bool = False) -> str | None:
        if word is None:
            return None
        try:
            cls = schema.get(word.value)
        except NotFound:
            raise WQLError(word.position, f"unknown class {shorten(word.value)}") from None
        if association and not cls.is_association:
            raise WQLError(word.position, f"{cls.name} is not an association class")
        return cls.name

    target = _target(query, resolve_path)
    return CompiledAssociation(
        text=query.text,
        kind=query.kind,
        target=target,
        assoc_class=known(query.assoc_class, association=True),
        result_class=known(query.result_class, association=query.kind == "REFERENCES"),
        role=query.role.value if query.role else None,
        result_role=query.result_role.value if query.result_role else None,
        required_qualifier=query.required_qualifier.value if query.required_qualifier else None,
        required_assoc_qualifier=query.required_assoc_qualifier.value if query.required_assoc_qualifier else None,
        class_defs_only=bool(query.class_defs_only),
        keys_only=bool(query.keys_only),
        schema_only=bool(query.schema_only),
    )


def _target(query: wql.AssociationQuery, resolve: Callable[[ObjectPath], ObjectPath]) -> ObjectPath:
    """The object path of the query resolved against the schema; errors as WQLError at its position."""
    from ..model.objectpath import parse_path
    from ..model.schema import namespace_name

    path = parse_path(query.path)  # its syntax was checked by the parser
    text = query.path
    start = text.index(":") + 1 if path.namespace else 0
    class_position = query.path_position + start + len(text[start:]) - len(text[start:].lstrip(" \t\r\n\f\v"))
    try:
        cls = load_schema().get(path.classname)
    except NotFound:
        raise WQLError(class_position, f"unknown class {shorten(path.classname)}") from None
    if query.schema_only:
        if path.keys or path.singleton:
            raise WQLError(query.schema_only, f"SchemaOnly asks about a class: write {{{cls.name}}}, without keys")
        if path.namespace and namespace_name(path.namespace) != cls.namespace:
            raise NotFound(f"no class {cls.name} in {wmi_namespace(path.namespace)}")
        return ObjectPath(cls.name, (), path.host, path.namespace)
    if not path.keys and not path.singleton:
        raise WQLError(
            class_position,
            f"{{{cls.name}}} names a class: name an instance with its keys ({', '.join(cls.keys) or 'it has none'}), "
            "or add WHERE SchemaOnly to ask about the class",
        )
    try:
        return resolve(path)
    except NotFound:
        raise  # a namespace not served, or a class that has no instances: exit 1, as get says
    except InvalidInput as exc:
        message = str(exc) if len(str(exc)) <= 300 else str(exc)[:300] + "..."
        raise WQLError(query.path_position, f"in the object path: {message}") from None
