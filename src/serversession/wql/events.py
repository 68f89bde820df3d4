"""WQL event queries (DESIGN.md section 2b), compiled like data queries into one Python function.

``SELECT * FROM __InstanceCreationEvent WITHIN 5 WHERE TargetInstance ISA 'Win32_ServerSession'
AND TargetInstance.UserName = 'alice'``: WMI's intrinsic events over a polled provider. The
WHERE clause is compiled by the data-query compiler (wql/evaluate.py) with its property access
widened to an event's properties (``TargetInstance.Prop``, ``PreviousInstance.Prop``,
``TIME_CREATED``, ``__CLASS``) and with comparisons of two properties, which event queries allow
(``TargetInstance.ResourcesOpened <> PreviousInstance.ResourcesOpened``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from ..model import CIMObject, ClassDef, load_schema
from . import parser as wql
from .evaluate import _PYTHON_OP, _Compiler, _resolve
from .parser import NotSupported, WQLError, shorten

CREATION = "__InstanceCreationEvent"
DELETION = "__InstanceDeletionEvent"
MODIFICATION = "__InstanceModificationEvent"
OPERATION = "__InstanceOperationEvent"  # any of the three
INSTANCE_EVENTS = {name.lower(): name for name in (CREATION, DELETION, MODIFICATION, OPERATION)}
#: what each event class (and its superclasses) stands for
_KINDS = {
    CREATION: frozenset({CREATION}),
    DELETION: frozenset({DELETION}),
    MODIFICATION: frozenset({MODIFICATION}),
    OPERATION: frozenset({CREATION, DELETION, MODIFICATION}),
}
_EVENT_ANCESTORS = {  # ISA on an event: the event classes an event of each kind is an instance of
    "__event": frozenset({CREATION, DELETION, MODIFICATION}),
    "__instanceoperationevent": frozenset({CREATION, DELETION, MODIFICATION}),
    "__instancecreationevent": frozenset({CREATION}),
    "__instancedeletionevent": frozenset({DELETION}),
    "__instancemodificationevent": frozenset({MODIFICATION}),
}
EVENT_PROPERTIES = ("__CLASS", "TIME_CREATED", "TargetInstance", "PreviousInstance")
REGISTRATION_TOO_PRECISE = 0x80042002  # WBEM_E_REGISTRATION_TOO_PRECISE: an event query without WITHIN
MIN_WITHIN = 0.5  # seconds: no finer polling than this
MAX_WITHIN = 86400.0  # a day
FILETIME_EPOCH = 11644473600  # seconds from 1601-01-01 to 1970-01-01 (UTC)


def filetime(seconds: float) -> int:
    """A Unix time as WMI's TIME_CREATED: 100-nanosecond intervals since 1601-01-01 UTC."""
    return round((seconds + FILETIME_EPOCH) * 10_000_000)


def unix_time(stamp: int) -> float:
    """TIME_CREATED (100 ns since 1601, UTC) as a Unix time."""
    return stamp / 10_000_000 - FILETIME_EPOCH


@dataclass(frozen=True, eq=False)
class Event:
    """One intrinsic event: its class (``__InstanceCreationEvent``, ...), TIME_CREATED, the
    instance it is about and, for a modification, the instance as the poll before saw it."""

    classname: str
    time_created: int
    target: CIMObject
    previous: CIMObject | None = None

    @property
    def TargetInstance(self) -> CIMObject:  # WMI's property names
        return self.target

    @property
    def PreviousInstance(self) -> CIMObject | None:
        return self.previous

    @property
    def TIME_CREATED(self) -> int:
        return self.time_created


@dataclass(frozen=True)
class CompiledEvent:
    """An event query, checked against the schema: which events of which classes it wants, how
    often to poll (``within`` seconds), and its WHERE clause as one function."""

    text: str
    event_class: str  # as the schema of events spells it: __InstanceCreationEvent, ...
    within: float
    target_class: str  # the class named by TargetInstance ISA
    classes: tuple[str, ...]  # the classes with a provider among it and its subclasses
    properties: tuple[str, ...] | None  # the event properties selected; None for *
    where: Callable[[Sequence[Event]], list[Event]]

    @property
    def kinds(self) -> frozenset[str]:
        """The event classes of the events the query wants (all three for __InstanceOperationEvent)."""
        return _KINDS[self.event_class]

    def select(self, events: Sequence[Event]) -> list[Event]:
        """The events (of the target class and its subclasses, in order) that the query wants."""
        classes = frozenset(self.classes)
        return self.where([e for e in events if e.classname in self.kinds and e.target.classname in classes])


def is_event_query(text: str) -> bool:
    """Whether ``text`` parses as an event query (False for any other query and invalid text)."""
    try:
        return isinstance(wql.parse(text), wql.EventQuery)
    except Exception:
        return False


def compile_event(text: str) -> CompiledEvent:
    """Compile an event query; WQLError (exit 2) names the position of what is wrong, and
    NotSupported (exit 1) refuses what WMI has but serversession does not answer (GROUP)."""
    if not isinstance(text, str):
        raise WQLError(1, "a WQL query must be text")
    return _compile_event(text)


@lru_cache(maxsize=64)
def _compile_event(text: str) -> CompiledEvent:
    query = wql.parse(text)
    if not isinstance(query, wql.EventQuery):
        raise WQLError(
            1, "not an event query: name an event class, e.g. SELECT * FROM __InstanceCreationEvent WITHIN 5 ..."
        )
    event_class = INSTANCE_EVENTS.get(query.classname.lower())
    if event_class is None:
        if query.classname.lower() in wql.EVENT_CLASSES:
            raise NotSupported(
                f"{shorten(query.classname)} events are not supported: serversession answers "
                f"{', '.join(INSTANCE_EVENTS.values())}"
            )
        raise WQLError(
            query.within_position or query.group_position or query.class_position,
            f"WITHIN and GROUP belong to event queries; {shorten(query.classname)} is not an event class "
            f"(use {CREATION}, {DELETION}, {MODIFICATION} or {OPERATION})",
        )
    if query.group_position:
        raise NotSupported("aggregate events (GROUP WITHIN ... BY ... HAVING) are not supported")
    if query.within is None:
        raise WQLError(
            query.class_position,
            f"an event query over a polled class needs WITHIN seconds (WMI refuses it without: "
            f"WBEM_E_REGISTRATION_TOO_PRECISE, {REGISTRATION_TOO_PRECISE:#x})",
        )
    within = float(query.within)  # an int or a Decimal; inf beyond real64's range
    if not MIN_WITHIN <= within <= MAX_WITHIN:
        raise WQLError(query.within_position, f"WITHIN must be {MIN_WITHIN:g} to {MAX_WITHIN:g} seconds")
    isa = _target_isa(query.where)
    if isa is None:
        raise WQLError(
            len(text) + 1,
            "an event query names the class to watch: WHERE TargetInstance ISA 'Win32_ServerSession' "
            "(joined by AND to the other conditions)",
        )
    schema = load_schema()
    try:
        target = schema.get(isa.classname)
    except Exception:
        raise WQLError(isa.position, f"unknown class {shorten(isa.classname)}") from None
    classes = tuple(name for name in schema.subclasses(target.name) if _has_provider(name))
    if not classes:
        raise WQLError(isa.position, f"{target.name} has no instances to watch")
    properties = None
    if query.properties is not None:
        chosen = set()
        for prop in query.properties:
            name = next((p for p in EVENT_PROPERTIES if p.lower() == prop.name.lower()), None)
            if name is None:
                raise WQLError(
                    prop.position, f"an event has no property {shorten(prop.name)} ({', '.join(EVENT_PROPERTIES)})"
                )
            chosen.add(name)
        properties = tuple(p for p in EVENT_PROPERTIES if p in chosen)
    where = _EventCompiler(target).build(query.where)
    return CompiledEvent(text, event_class, within, target.name, classes, properties, where)  # type: ignore[arg-type]


def _has_provider(classname: str) -> bool:
    from ..model.providers import PROVIDERS

    return classname in PROVIDERS


def _target_isa(node: wql.Node | None) -> wql.Isa | None:
    """The ``TargetInstance ISA 'Class'`` that every event the query wants satisfies: the WHERE
    itself or one operand of its top-level AND."""
    operands = node.operands if isinstance(node, wql.And) else (node,) if node is not None else ()
    for operand in operands:
        if isinstance(operand, wql.Isa) and operand.prop.name.lower() == "targetinstance":
            return operand
    return None


class _EventCompiler(_Compiler):
    """The data-query compiler over events: ``o`` is an :class:`Event`, ``self.cls`` the class
    named by ``TargetInstance ISA`` (the properties of TargetInstance and PreviousInstance)."""

    def __init__(self, target: ClassDef) -> None:
        super().__init__(target)

    def access(self, prop: wql.Property) -> tuple[str, str]:
        head, dot, rest = prop.name.partition(".")
        which = head.lower()
        if which in ("targetinstance", "previousinstance"):
            holder = "o.target" if which == "targetinstance" else "_p"
            if not dot:
                return ("o.target" if which == "targetinstance" else "o.previous"), "object"
            inner = wql.Property(rest, prop.position + len(head) + 1)
            if "." in rest:
                raise WQLError(inner.position, f"{self.cls.name}.{shorten(rest)}: only one level of embedding")
            name, cim_type = _resolve(self.cls, inner)
            if name == "__THIS":
                raise WQLError(inner.position, f"{head}.__THIS: write {head} ISA 'Class'")
            if name == "__CLASS":
                read = f"{holder}.classname"
            elif name == "__SERVER":
                read = f"({holder}.server or _local())"
            elif name.startswith("__"):
                read = f"_system({holder}, {name!r})"
            else:
                read = f"{holder}.{name}"
            if which == "previousinstance":  # None for creations and deletions: every test of it is false
                read = f"({read} if (_p := o.previous) is not None else None)"
            return read, cim_type
        upper = prop.name.upper()
        if upper == "__CLASS":
            return "o.classname", "string"
        if upper == "TIME_CREATED":
            return "o.time_created", "uint64"
        if upper == "__THIS":
            return "o", "event"
        raise WQLError(
            prop.position,
            f"an event query tests TargetInstance.Property, PreviousInstance.Property, TIME_CREATED or "
            f"__CLASS, not {shorten(prop.name)}",
        )

    def compare(self, node: wql.Compare) -> str:
        if not (isinstance(node.left, wql.Property) and isinstance(node.right, wql.Property)):
            return super().compare(node)
        left, left_type = self.access(node.left)
        right, right_type = self.access(node.right)
        for prop, cim_type in ((node.left, left_type), (node.right, right_type)):
            if cim_type in ("object", "event") or cim_type.endswith("[]"):
                raise WQLError(prop.position, f"{shorten(prop.name)} cannot be compared with {node.op}")
        if _kind(left_type) != _kind(right_type):
            raise WQLError(node.position, f"{node.left.name} is {left_type} and {node.right.name} is {right_type}")
        if left_type == "boolean" and node.op not in ("=", "<>", "!="):
            raise WQLError(node.position, "booleans compare with = or <>")
        op = _PYTHON_OP[node.op]
        if left_type == "string":
            return f"((_a := {left}) is not None and (_b := {right}) is not None and _a.lower() {op} _b.lower())"
        return f"((_a := {left}) is not None and (_b := {right}) is not None and _a {op} _b)"

    def isa(self, node: wql.Isa) -> str:
        which = node.prop.name.lower()
        if which == "__this":
            classes = _EVENT_ANCESTORS.get(node.classname.lower())
            if classes is None:
                raise WQLError(node.position, f"{shorten(node.classname)} is not an event class")
            return f"(o.classname in {self.constant(classes)})"
        if which not in ("targetinstance", "previousinstance"):
            raise WQLError(node.prop.position, "ISA applies to TargetInstance, PreviousInstance or __THIS")
        try:
            classes = frozenset(load_schema().subclasses(node.classname))
        except Exception:
            raise WQLError(node.position, f"unknown class {shorten(node.classname)}") from None
        if which == "targetinstance":
            return f"(o.target.classname in {self.constant(classes)})"
        return f"((_p := o.previous) is not None and _p.classname in {self.constant(classes)})"


def _kind(cim_type: str) -> str:
    if cim_type in ("string", "boolean", "datetime"):
        return cim_type
    return "number"


__all__ = [
    "CREATION",
    "DELETION",
    "MODIFICATION",
    "OPERATION",
    "CompiledEvent",
    "Event",
    "compile_event",
    "filetime",
    "unix_time",
    "is_event_query",
]
