"""``get``: the instance an object path names."""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import InvalidInput, NotFound
from ..model import CIMObject, load_schema
from ..model.instances import local_server_name, wmi_namespace
from ..model.objectpath import ObjectPath, format_path, parse_path
from ..model.schema import namespace_name

_LOCAL_HOSTS = frozenset({".", "localhost", "127.0.0.1", "::1"})
_INTEGER_RANGES = {
    f"{kind}{bits}": (0, 2**bits - 1) if kind == "uint" else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    for kind in ("uint", "sint")
    for bits in (8, 16, 32, 64)
}


MAX_REFERENCE_DEPTH = 2  # an association's key names an instance, whose keys are plain values


def resolve_path(text: str | ObjectPath, _depth: int = 0) -> ObjectPath:
    """Parse ``text`` and check it against the schema: known class and namespace, its keys and no others.

    NotFound (exit 1) for a class or namespace that does not exist; InvalidInput (exit 2) for
    malformed paths and wrong keys. Key values are converted to the key's CIM type; a reference
    key's value (an object path in quotes) is checked the same way and written canonically.
    """
    if not isinstance(text, (str, ObjectPath)):
        raise InvalidInput("an object path must be text")
    path = parse_path(text) if isinstance(text, str) else text
    cls = load_schema().get(path.classname)
    if path.namespace:
        namespace = namespace_name(path.namespace)
        if namespace is None:
            raise NotFound(f"no namespace {path.namespace[:300]!r} (serversession serves {', '.join(_served())})")
        if namespace != cls.namespace:
            raise NotFound(
                f"no class {cls.name} in {wmi_namespace(namespace)} (it is in {wmi_namespace(cls.namespace)})"
            )
    if not cls.keys:
        raise NotFound(f"{cls.name} has no instances of its own (it has no key properties)")
    if path.singleton:
        raise InvalidInput(f"{cls.name} is not a singleton: name its keys ({', '.join(cls.keys)})")
    given = dict(path.keys)
    if len({(name or "").lower() for name in given}) < len(path.keys):
        raise InvalidInput(f"the path names a key of {cls.name} twice")
    if None in given:
        if len(cls.keys) != 1:
            raise InvalidInput(f"{cls.name} has {len(cls.keys)} keys: name each ({', '.join(cls.keys)})")
        given = {cls.keys[0]: given[None]}
    keys = []
    for name, value in given.items():
        key = next((k for k in cls.keys if k.lower() == (name or "").lower()), None)
        if key is None:
            raise InvalidInput(f"{name} is not a key of {cls.name} (its keys: {', '.join(cls.keys)})")
        expected = cls.properties[key].type
        if expected == "reference":
            value = _reference(key, value, cls.properties[key].reference_class or "", _depth)
        elif expected == "string" and not isinstance(value, str):
            raise InvalidInput(f"key {key} is a string: quote its value")
        if expected not in ("string", "reference") and isinstance(value, str):
            raise InvalidInput(f"key {key} is {expected}: give a number")
        if (expected == "boolean") != isinstance(value, bool):
            raise InvalidInput(
                f"key {key} is {expected}: give {'TRUE or FALSE' if expected == 'boolean' else 'a number'}"
            )
        if expected in _INTEGER_RANGES and not isinstance(value, bool):
            low, high = _INTEGER_RANGES[expected]
            if not low <= value <= high:  # type: ignore[operator]
                raise InvalidInput(f"key {key} is {expected}: {value} is out of its range ({low} to {high})")
        keys.append((key, value))
    missing = [k for k in cls.keys if k not in dict(keys)]
    if missing:
        raise InvalidInput(f"the path lacks key {', '.join(missing)} of {cls.name}")
    return ObjectPath(cls.name, tuple(keys), path.host, path.namespace)


def _served() -> list[str]:
    from ..model.schema import MOF_FILES

    return [wmi_namespace(ns) for ns in MOF_FILES]


def _reference(key: str, value: object, target: str, depth: int) -> str:
    """The canonical relative path a reference key's value names (InvalidInput if it names none)."""
    if not isinstance(value, str):
        raise InvalidInput(f"key {key} is a reference: give the object path it names, in quotes")
    if depth >= MAX_REFERENCE_DEPTH:
        raise InvalidInput(f"key {key}: references nest too deep")
    try:
        named = resolve_path(value, depth + 1)
    except NotFound as exc:
        raise InvalidInput(f"key {key}: {exc}") from None
    except InvalidInput as exc:
        raise InvalidInput(f"key {key} holds no valid object path: {exc}") from None
    if target not in [*load_schema().superclasses(named.classname), named.classname]:
        raise InvalidInput(f"key {key} must name a {target}, not a {named.classname}")
    return format_path(ObjectPath(named.classname, named.keys))


def find_instance(path: str | ObjectPath, instances: Iterable[CIMObject]) -> CIMObject:
    """The instance named by ``path`` (keys compared without regard to case, as WMI does).

    A path with a host matches only instances read from that server (``.``, ``localhost`` and
    this machine's name mean the local one); a relative path matches any server's.
    """
    wanted = resolve_path(path)
    host = wanted.host.lower() if wanted.host else None
    host_is_local = host in _LOCAL_HOSTS or host == local_server_name().lower()
    relative = ObjectPath(wanted.classname, wanted.keys)
    classes = set(load_schema().subclasses(wanted.classname))
    for instance in instances:
        if instance.classname not in classes:
            continue
        if host is not None:  # a relative path names an instance of whichever server was read
            server = instance.server.lower() if instance.server else None
            if not (server == host or (server is None and host_is_local)):
                continue
        if ObjectPath(wanted.classname, instance.object_path.keys) == relative:
            return instance
    text = path if isinstance(path, str) else str(path)
    if not text.isprintable() or len(text) > 300:  # one line, whatever the key values hold
        text = repr(text[:300]) + ("..." if len(text) > 300 else "")
    raise NotFound(f"no instance {text}")
