"""The CIM schema, read once from the MOF files shipped in the package.

The MOF is the single source of truth (DESIGN.md section 2). pywbem's MOF compiler turns it
into classes; the compiled result is cached as JSON next to the user's other caches, keyed by
checksums of the MOF text, so commands that only need property names and types (``list``) do
not pay for importing pywbem.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from ..errors import NotFound, ServerSessionError

NAMESPACE = "root/cimv2"  # SessionProvider's classes (and CIMWin32's Win32_Share)
SMB_NAMESPACE = "root/Microsoft/Windows/SMB"  # the SMB provider's MSFT_Smb* classes
# Per namespace, in compile order: qualifier declarations, then each class after its superclass
# and after the classes its references name.
MOF_FILES: dict[str, tuple[str, ...]] = {
    NAMESPACE: (
        "qualifiers.mof",
        "CIM_ManagedSystemElement.mof",
        "CIM_LogicalElement.mof",
        "CIM_Dependency.mof",
        "Win32_ServerSession.mof",
        "Win32_ServerConnection.mof",
        "Win32_Share.mof",
        "Win32_SessionConnection.mof",
        "Win32_ConnectionShare.mof",
    ),
    SMB_NAMESPACE: ("qualifiers.mof", "MSFT_SmbSession.mof", "MSFT_SmbOpenFile.mof"),
}
CACHE_FORMAT = 2


@dataclass(frozen=True, slots=True)
class PropertyDef:
    """One property of a class, inherited ones included."""

    name: str
    type: str  # CIM type name: string, uint32, datetime, boolean, ...
    is_array: bool
    class_origin: str
    qualifiers: dict[str, Any] = field(default_factory=dict)
    reference_class: str | None = None  # the class a REF property names

    @property
    def is_key(self) -> bool:
        return bool(self.qualifiers.get("Key"))


@dataclass(frozen=True, slots=True)
class MethodDef:
    """One method of a class: return type, parameters (name to CIM type) and qualifiers."""

    name: str
    return_type: str
    parameters: dict[str, str]
    class_origin: str
    qualifiers: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClassDef:
    """A class with all its properties in declaration order (superclasses first)."""

    name: str
    superclass: str | None
    qualifiers: dict[str, Any]
    properties: dict[str, PropertyDef]
    namespace: str = NAMESPACE
    methods: dict[str, MethodDef] = field(default_factory=dict)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.properties.values() if p.is_key)

    @property
    def is_association(self) -> bool:
        return bool(self.qualifiers.get("Association"))

    @property
    def is_abstract(self) -> bool:
        return bool(self.qualifiers.get("Abstract"))

    @property
    def references(self) -> tuple[PropertyDef, ...]:
        """The REF properties (an association's ends), in declaration order."""
        return tuple(p for p in self.properties.values() if p.type == "reference")

    def property(self, name: str) -> PropertyDef:
        """The property called ``name``, matched without regard to case as CIM does."""
        found = self.properties.get(name)
        if found is None:
            for prop in self.properties.values():
                if prop.name.lower() == name.lower():
                    return prop
            raise NotFound(f"{self.name} has no property {name!r}")
        return found


@dataclass(frozen=True)
class Schema:
    """All classes of the package's MOF."""

    classes: dict[str, ClassDef]
    mof_text: str

    def superclasses(self, name: str) -> list[str]:
        """The superclasses of ``name``, nearest first (WMI's ``__DERIVATION``)."""
        chain = []
        cls = self.get(name)
        while cls.superclass:
            cls = self.get(cls.superclass)
            chain.append(cls.name)
        return chain

    def subclasses(self, name: str) -> list[str]:
        """``name`` and every class derived from it, directly or not."""
        base = self.get(name).name
        return [c for c in self.classes if c == base or base in self.superclasses(c)]

    def get(self, name: str) -> ClassDef:
        """The class called ``name`` (case-insensitive); NotFound if there is none."""
        for cls in self.classes.values():
            if cls.name.lower() == name.lower():
                return cls
        raise NotFound(f"no class {name!r} in the schema (known: {', '.join(self.classes)})")

    def namespace_classes(self, namespace: str) -> list[str]:
        """The classes of ``namespace`` (spelled with ``/`` or ``\\``, any case)."""
        wanted = namespace.replace("\\", "/").strip("/").lower()
        return [c.name for c in self.classes.values() if c.namespace.lower() == wanted]


def namespace_name(text: str) -> str | None:
    """The schema's spelling of the namespace ``text`` names (``/`` or ``\\``, any case); None if none."""
    wanted = text.replace("\\", "/").strip("/").lower()
    return next((ns for ns in MOF_FILES if ns.lower() == wanted), None)


def _mof_sources() -> dict[tuple[str, str], str]:
    """(namespace, file name) to MOF text, in compile order."""
    # The package is always installed as files (setuptools, not zipped); reading them
    # directly spares ``list`` the import of importlib.resources (about 20 ms).
    from .. import schema as schema_package

    root = os.path.dirname(os.path.abspath(schema_package.__file__ or ""))
    texts: dict[str, str] = {}
    out = {}
    for namespace, names in MOF_FILES.items():
        for name in names:
            if name not in texts:
                with open(os.path.join(root, name), encoding="utf-8") as handle:
                    texts[name] = handle.read()
            out[(namespace, name)] = texts[name]
    return out


def _digest(text: str) -> str:
    """64 bits of checksums of the MOF text, which name its cache file.

    Only the package's own MOF is hashed, so checksums serve as well as a cryptographic hash,
    and zlib loads in a fraction of the 2 ms hashlib takes to load OpenSSL (each ``list`` paid it).
    """
    data = text.encode()
    return f"{zlib.crc32(data):08x}{zlib.adler32(data):08x}"


def _cache_path(digest: str) -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "serversession", f"schema-{CACHE_FORMAT}-{digest[:16]}.json")


def _compiled(sources: dict[tuple[str, str], str]) -> dict[str, Any]:
    """pywbem's compiled classes, per namespace."""
    import pywbem

    conn = pywbem.MOFWBEMConnection()
    compiler = pywbem.MOFCompiler(conn, verbose=False, log_func=lambda _msg: None)
    for (namespace, name), text in sources.items():
        try:
            compiler.compile_string(text, namespace, filename=name)
        except pywbem.Error as exc:
            raise ServerSessionError(f"schema file {name} does not compile: {exc}") from exc
    return {namespace: conn.classes[namespace] for namespace in MOF_FILES}


def compile_mof(sources: dict[tuple[str, str], str]) -> dict[str, Any]:
    """Compile the MOF with pywbem into plain data (what the JSON cache holds)."""
    out: dict[str, Any] = {}
    for namespace, compiled in _compiled(sources).items():
        for name in compiled:
            chain = []
            cls = compiled[name]
            while cls is not None:
                chain.append(cls)
                cls = compiled[cls.superclass] if cls.superclass else None
            properties: dict[str, Any] = {}
            methods: dict[str, Any] = {}
            for level in reversed(chain):  # superclass members first, overrides keep their place
                for prop in level.properties.values():
                    properties[prop.name] = {
                        "type": prop.type,
                        "is_array": bool(prop.is_array),
                        "class_origin": level.classname,
                        "qualifiers": {q.name: _plain(q.value) for q in prop.qualifiers.values()},
                        "reference_class": prop.reference_class,
                    }
                for method in level.methods.values():
                    methods[method.name] = {
                        "return_type": method.return_type,
                        "parameters": {p.name: p.type for p in method.parameters.values()},
                        "class_origin": level.classname,
                        "qualifiers": {q.name: _plain(q.value) for q in method.qualifiers.values()},
                    }
            own = compiled[name]
            out[own.classname] = {
                "namespace": namespace,
                "superclass": own.superclass,
                "qualifiers": {q.name: _plain(q.value) for q in own.qualifiers.values()},
                "properties": properties,
                "methods": methods,
            }
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    return str(value)


def _from_data(data: dict[str, Any], mof_text: str) -> Schema:
    classes = {}
    for name, cls in data.items():
        props = {
            pname: PropertyDef(
                pname, p["type"], p["is_array"], p["class_origin"], p["qualifiers"], p["reference_class"]
            )
            for pname, p in cls["properties"].items()
        }
        methods = {
            mname: MethodDef(mname, m["return_type"], m["parameters"], m["class_origin"], m["qualifiers"])
            for mname, m in cls["methods"].items()
        }
        classes[name] = ClassDef(name, cls["superclass"], cls["qualifiers"], props, cls["namespace"], methods)
    return Schema(classes, mof_text)


@cache
def load_schema() -> Schema:
    """The package's schema, compiled once and cached (in memory and on disk)."""
    sources = _mof_sources()
    mof_text = "\n".join(sources.values())
    path = _cache_path(_digest(mof_text))
    try:
        with open(path, encoding="utf-8") as handle:
            return _from_data(json.load(handle), mof_text)
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no cache yet, or an unusable one: compile again
    data = compile_mof(sources)
    import tempfile

    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(path), delete=False, suffix=".tmp") as tmp:
            json.dump(data, tmp)
        os.replace(tmp.name, path)
    except OSError:
        pass  # a read-only home only costs the compile next time
    return _from_data(data, mof_text)


@cache
def cim_classes() -> dict[str, Any]:
    """The schema's classes (every namespace) as ``pywbem.CIMClass`` objects, as pywbem's MOF
    compiler builds them (each with its own members and qualifiers; inherited ones are not repeated)."""
    compiled = _compiled(_mof_sources())
    return {name: compiled[cls.namespace][name] for name, cls in load_schema().classes.items()}


def class_mof(name: str) -> str:
    """The MOF of one class as pywbem prints it after compiling (inherited properties omitted)."""
    return cim_classes()[load_schema().get(name).name].tomof()
