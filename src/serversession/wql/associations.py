"""Association navigation over instances: what ``ASSOCIATORS OF``, ``REFERENCES OF`` and the
CIM-XML operations Associators, AssociatorNames, References and ReferenceNames answer.

The target is compared with an association's reference values by class lineage and key values
(names and string values without regard to case, as WMI compares paths), and by server: an
association and its ends are always read from the same server, so a target path with a host
matches only associations of that server (``.``, ``localhost`` and this machine's name mean
the local one); a relative path matches any server's. Each function makes one or two passes
over the instances: the cost is proportional to their number, whatever the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from ..errors import InvalidInput, NotFound
from ..model import CIMObject, load_schema
from ..model.instances import local_server_name
from ..model.objectpath import ObjectPath

_LOCAL_HOSTS = frozenset({".", "localhost", "127.0.0.1", "::1"})
# Qualifiers a subclass does not inherit (DSP0004 flavor Restricted), for RequiredQualifier
_RESTRICTED = frozenset({"abstract", "version", "uuid", "classversion"})


def association_classes(classname: str) -> tuple[str, ...]:
    """The association classes (with a provider) that have a reference able to point at an
    instance of ``classname``: the classes whose instances :func:`references` must be given.

    A reference "can point at" ``classname`` when its class is ``classname``, a superclass or a
    subclass of it. InvalidInput if the schema has no class ``classname``.
    """
    return _association_classes(_canonical(classname, "class"))


@lru_cache(maxsize=64)
def _association_classes(name: str) -> tuple[str, ...]:
    from ..model.providers import PROVIDERS

    schema = load_schema()
    lineage = _lineage(name)
    return tuple(
        cls.name
        for cls in schema.classes.values()
        if cls.name in PROVIDERS
        and cls.is_association
        and any((p.reference_class or "").lower() in lineage for p in cls.references)
    )


def result_classes(classname: str, assoc_class: str | None = None) -> tuple[str, ...]:
    """The classes at the other ends of those associations (with a provider): the classes
    whose instances :func:`associators` must be given, besides the associations.

    ``assoc_class`` keeps the associations of that class or a subclass. InvalidInput for a class
    name the schema does not have.
    """
    name = _canonical(classname, "class")
    assoc = _canonical(assoc_class, "association class") if assoc_class is not None else None
    return _result_classes(name, assoc)


@lru_cache(maxsize=64)
def _result_classes(name: str, assoc_class: str | None) -> tuple[str, ...]:
    from ..model.providers import PROVIDERS

    schema = load_schema()
    allowed = _family(assoc_class) if assoc_class else None
    out: dict[str, None] = {}
    for association in _association_classes(name):
        if allowed is not None and association not in allowed:
            continue
        for end in _other_ends(association, _lineage(name)):
            out.update(dict.fromkeys(c for c in schema.subclasses(end) if c in PROVIDERS))
    return tuple(out)


def _other_ends(association: str, lineage: frozenset[str]) -> list[str]:
    """The reference classes of ``association`` at the other end from a class of ``lineage``
    (of a self-association, every end)."""
    refs = load_schema().get(association).references
    hits = [p for p in refs if (p.reference_class or "").lower() in lineage]
    return [p.reference_class or "" for p in refs if len(hits) > 1 or p not in hits]


def references(
    target: ObjectPath,
    instances: Sequence[CIMObject],
    *,
    result_class: str | None = None,
    role: str | None = None,
) -> list[CIMObject]:
    """The association instances among ``instances`` that reference ``target`` (through the
    reference property ``role`` if given), of class ``result_class`` or a subclass if given.
    ``target`` must be resolved (lookup.resolve_path); class and role names are case-blind.

    In the order of ``instances``. A ``role`` that is no reference property of an association
    is no match (DSP0200); a ``result_class`` the schema does not have is InvalidInput.
    """
    wanted = _Target(target)
    allowed = _family(_canonical(result_class, "class")) if result_class is not None else None
    role_name = _role(role, "role")
    out = []
    for instance in instances:
        names = _reference_names(instance.classname)
        if not names or (allowed is not None and instance.classname not in allowed):
            continue
        if not wanted.serves(instance.server):
            continue
        for name in names:
            if (role_name is None or name.lower() == role_name) and wanted.matches(getattr(instance, name)):
                out.append(instance)
                break
    return out


def associators(
    target: ObjectPath,
    instances: Sequence[CIMObject],
    *,
    assoc_class: str | None = None,
    result_class: str | None = None,
    role: str | None = None,
    result_role: str | None = None,
) -> list[CIMObject]:
    """The instances among ``instances`` at the other ends of the associations (also among
    ``instances``) that reference ``target``: each once, in the order of ``instances``. Filters
    as in DSP0200 Associators: ``assoc_class`` (association class or subclass), ``result_class``
    (result class or subclass), ``role`` (the association's property that references the
    target) and ``result_role`` (the one that references the result).

    Two passes: the associations that reference the target give the paths of the other ends
    (a set); the second pass keeps the instances whose path is in it. An end that is not among
    ``instances`` is left out. Class names the schema does not have are InvalidInput; a role
    that no association has is no match.
    """
    wanted = _Target(target)
    assocs = _family(_canonical(assoc_class, "association class")) if assoc_class is not None else None
    results = _family(_canonical(result_class, "class")) if result_class is not None else None
    role_name = _role(role, "role")
    result_role_name = _role(result_role, "result_role")
    ends: set[tuple[str | None, tuple[Any, ...]]] = set()
    end_classes: set[str] = set()
    for instance in instances:
        names = _reference_names(instance.classname)
        if not names or (assocs is not None and instance.classname not in assocs):
            continue
        if not wanted.serves(instance.server):
            continue
        hits = [
            n for n in names if (role_name is None or n.lower() == role_name) and wanted.matches(getattr(instance, n))
        ]
        if not hits:
            continue
        server = instance.server.lower() if instance.server else None
        for name in names:
            if (len(hits) == 1 and name == hits[0]) or (
                result_role_name is not None and name.lower() != result_role_name
            ):
                continue
            value = getattr(instance, name)
            if isinstance(value, ObjectPath):
                ends.add((server, _identity(value)))
                end_classes.update(_lineage(_schema_name(value.classname)))
    if not ends:
        return []
    out = []
    for instance in instances:
        if instance.classname.lower() not in end_classes or (results is not None and instance.classname not in results):
            continue
        server = instance.server.lower() if instance.server else None
        if (server, _identity(instance.object_path)) in ends:
            out.append(instance)
    return out


class _Target:
    """What an association's reference value must be to name the target."""

    __slots__ = ("classes", "host", "keys", "local")

    def __init__(self, target: ObjectPath) -> None:
        if not isinstance(target, ObjectPath):
            raise InvalidInput("the target must be an ObjectPath (lookup.resolve_path)")
        self.classes = _lineage(_canonical(target.classname, "class"))
        self.keys = _identity(target)
        self.host = target.host.lower() if target.host else None
        self.local = self.host is not None and (self.host in _LOCAL_HOSTS or self.host == local_server_name().lower())

    def serves(self, server: str | None) -> bool:
        """Whether an association read from ``server`` (None: this machine) may name the target."""
        if self.host is None:
            return True
        if server is None:
            return self.local
        return server.lower() == self.host

    def matches(self, value: Any) -> bool:
        return (
            isinstance(value, ObjectPath) and value.classname.lower() in self.classes and _identity(value) == self.keys
        )


def _identity(path: ObjectPath) -> tuple[Any, ...]:
    """The keys of ``path`` as compared (names and string values without regard to case)."""
    return tuple(
        (name.lower() if name else None, value.lower() if isinstance(value, str) else (type(value), value))
        for name, value in path.keys
    )


def _canonical(name: object, what: str) -> str:
    """The schema's spelling of the class ``name``; InvalidInput if there is none."""
    if not isinstance(name, str):
        raise InvalidInput(f"the {what} name must be text")
    try:
        return load_schema().get(name).name
    except NotFound:
        shown = repr(name[:100]) + ("..." if len(name) > 100 else "")
        raise InvalidInput(f"unknown {what} {shown}") from None


def _schema_name(name: str) -> str:
    try:
        return load_schema().get(name).name
    except NotFound:
        return name


def _role(role: object, what: str) -> str | None:
    if role is None:
        return None
    if not isinstance(role, str):
        raise InvalidInput(f"{what} must be a property name (text)")
    return role.lower()


@lru_cache(maxsize=256)
def _lineage(name: str) -> frozenset[str]:
    """``name``, its superclasses and its subclasses, lower-cased (a class unknown: itself)."""
    schema = load_schema()
    try:
        return frozenset(n.lower() for n in (*schema.superclasses(name), *schema.subclasses(name)))
    except NotFound:
        return frozenset({name.lower()})


@lru_cache(maxsize=256)
def _family(name: str) -> frozenset[str]:
    """``name`` and its subclasses, as the schema spells them (what ``instance.classname`` holds)."""
    return frozenset(load_schema().subclasses(name))


@lru_cache(maxsize=256)
def _reference_names(classname: str) -> tuple[str, ...]:
    """The reference properties of an association class; () for any other class."""
    cls = load_schema().get(classname)
    return tuple(p.name for p in cls.references) if cls.is_association else ()


def has_qualifier(classname: str, qualifier: str) -> bool:
    """Whether the class has the qualifier (case-blind), its own or inherited from a superclass
    (all but the restricted ones: Abstract, Version, UUID, ClassVersion)."""
    wanted = qualifier.lower()
    schema = load_schema()
    cls = schema.get(classname)
    if any(q.lower() == wanted for q in cls.qualifiers):
        return True
    if wanted in _RESTRICTED:
        return False
    return any(any(q.lower() == wanted for q in schema.get(s).qualifiers) for s in schema.superclasses(cls.name))


# --- schema queries (ASSOCIATORS OF {Class} WHERE SchemaOnly) -------------------------------------


def schema_references(classname: str, *, result_class: str | None = None, role: str | None = None) -> list[str]:
    """The association classes of the schema (with a provider or not) with a reference to
    ``classname`` or one of its superclasses (through ``role`` if given), of ``result_class``
    or a subclass if given. Names as the schema spells them, in schema order."""
    schema = load_schema()
    up = _up(_canonical(classname, "class"))
    allowed = _family(_canonical(result_class, "class")) if result_class is not None else None
    role_name = _role(role, "role")
    return [
        cls.name
        for cls in schema.classes.values()
        if cls.is_association
        and (allowed is None or cls.name in allowed)
        and any(
            (p.reference_class or "").lower() in up and (role_name is None or p.name.lower() == role_name)
            for p in cls.references
        )
    ]


def schema_associators(
    classname: str,
    *,
    assoc_class: str | None = None,
    result_class: str | None = None,
    role: str | None = None,
    result_role: str | None = None,
    assoc_qualifier: str | None = None,
) -> list[str]:
    """The classes at the other ends of :func:`schema_references` (of ``assoc_class`` or a
    subclass, with the qualifier ``assoc_qualifier``, if given): the reference classes, each
    once, of ``result_class`` or a subclass if given."""
    schema = load_schema()
    up = _up(_canonical(classname, "class"))
    assocs = schema_references(classname, result_class=assoc_class, role=role)
    if assoc_qualifier is not None:
        assocs = [a for a in assocs if has_qualifier(a, assoc_qualifier)]
    results = _family(_canonical(result_class, "class")) if result_class is not None else None
    role_name, result_role_name = _role(role, "role"), _role(result_role, "result_role")
    out: dict[str, None] = {}
    for association in assocs:
        refs = schema.get(association).references
        hits = [
            p
            for p in refs
            if (p.reference_class or "").lower() in up and (role_name is None or p.name.lower() == role_name)
        ]
        for p in refs:
            if (len(hits) == 1 and p is hits[0]) or (
                result_role_name is not None and p.name.lower() != result_role_name
            ):
                continue
            end = _schema_name(p.reference_class or "")
            if results is None or end in results:
                out[end] = None
    return list(out)


def _up(name: str) -> frozenset[str]:
    """``name`` and its superclasses, lower-cased."""
    return frozenset(n.lower() for n in (name, *load_schema().superclasses(name)))
