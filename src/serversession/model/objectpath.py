r"""WMI object paths: ``\\HOST\root\cimv2:Win32_ServerSession.ComputerName="x",UserName="y"``.

Parsed by hand: pywbem's ``CIMInstanceName.from_wbem_uri`` reads DMTF WBEM URIs
(``/root/cimv2:Class.k="v"``), not WMI's ``\\host\namespace:`` form, its single-quoted values
or its ``Class="v"`` and ``Class=@`` shorthands.

Comparison follows WMI: class, key and host names and string key values are compared without
regard to case; ``root/cimv2`` equals ``root\cimv2``; key order does not matter.
:func:`format_path` writes the canonical form: keys sorted by name, values in double quotes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidInput

MAX_PATH_LENGTH = 4096
MAX_KEY_INTEGER = 10**20 - 1  # 20 digits: every sint64 and uint64 value (ranges: resolve_path)
KeyValue = str | int | bool
_SPACE = " \t\r\n\f\v"  # ASCII white space only


class PathError(InvalidInput):
    """A malformed object path; ``position`` is 1-based."""

    def __init__(self, position: int, message: str) -> None:
        super().__init__(f"object path error at {position}: {message}")
        self.position = position
        self.reason = message


@dataclass(frozen=True, eq=False)
class ObjectPath:
    """One WMI object path. ``keys`` is ``((name, value), ...)``; a name is None in the
    ``Class="value"`` shorthand, which names the class's single key implicitly."""

    classname: str
    keys: tuple[tuple[str | None, KeyValue], ...] = ()
    host: str | None = None
    namespace: str | None = None
    singleton: bool = False  # Class=@
    _identity: tuple[Any, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for _, value in self.keys:  # so that every path can be written and read back
            if isinstance(value, int) and not -MAX_KEY_INTEGER <= value <= MAX_KEY_INTEGER:
                raise InvalidInput("an integer key value has more than 20 digits")
        keys = tuple(sorted(self.keys, key=lambda kv: (kv[0] or "").lower()))
        object.__setattr__(self, "keys", keys)
        identity = (
            self.host.lower() if self.host else None,
            self.namespace.replace("/", "\\").strip("\\").lower() if self.namespace else None,
            self.classname.lower(),
            tuple((k.lower() if k else None, _fold(v)) for k, v in keys),
            self.singleton,
        )
        object.__setattr__(self, "_identity", identity)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and self._identity == other._identity

    def __hash__(self) -> int:
        return hash(self._identity)

    def __str__(self) -> str:
        return format_path(self)

    @property
    def key_dict(self) -> dict[str | None, KeyValue]:
        return dict(self.keys)


def _fold(value: KeyValue) -> Any:
    return value.lower() if isinstance(value, str) else (type(value), value)


def format_path(path: ObjectPath) -> str:
    """The canonical text of ``path``."""
    prefix = ""
    if path.namespace:
        namespace = path.namespace.replace("/", "\\")
        prefix = f"\\\\{path.host}\\{namespace}:" if path.host else f"{namespace}:"
    if path.singleton:
        return f"{prefix}{path.classname}=@"
    if len(path.keys) == 1 and path.keys[0][0] is None:
        return f"{prefix}{path.classname}={_format_value(path.keys[0][1])}"
    keys = ",".join(f"{name}={_format_value(value)}" for name, value in path.keys)
    return f"{prefix}{path.classname}.{keys}" if keys else f"{prefix}{path.classname}"


def _format_value(value: KeyValue) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[+-]?(?:0[xX][0-9A-Fa-f]+|[0-9]+)(?![A-Za-z0-9_.])")  # ASCII digits only
_HOST = re.compile(r"[^\\/:\s\x00-\x1f\x7f-\x9f]+")  # no white space, no C0 or C1 control
_NAMESPACE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:[\\/][A-Za-z_][A-Za-z0-9_]*)*")


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, expected: str) -> PathError:
        found = repr(self.text[self.pos]) if self.pos < len(self.text) else "the end"  # one character
        return PathError(self.pos + 1, f"expected {expected}, found {found}")

    def match(self, pattern: re.Pattern[str], expected: str) -> str:
        found = pattern.match(self.text, self.pos)
        if not found:
            raise self.error(expected)
        self.pos = found.end()
        return found.group()

    def literal(self, text: str) -> bool:
        if self.text.startswith(text, self.pos):
            self.pos += len(text)
            return True
        return False

    def spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def value(self) -> KeyValue:
        self.spaces()
        if self.pos < len(self.text) and self.text[self.pos] in "'\"":
            return self.string()
        for word, value in (("TRUE", True), ("FALSE", False)):
            candidate = self.text[self.pos : self.pos + len(word)]
            if candidate.isascii() and candidate.upper() == word:  # 'fals\u017fe'.upper() is 'FALSE' too
                self.pos += len(word)
                return value
        start = self.pos
        number = self.match(_NUMBER, "a quoted string, a number, TRUE or FALSE")
        body = number.lstrip("+-")
        hexadecimal = body[:2].lower() == "0x"
        digits = (body[2:] if hexadecimal else body).lstrip("0") or "0"
        if len(digits) > (16 if hexadecimal else 20):  # checked before int(), which has its own limits
            raise PathError(start + 1, "number is out of range (more than 20 digits)")
        value = int(digits, 16 if hexadecimal else 10) * (-1 if number.startswith("-") else 1)
        if abs(value) > MAX_KEY_INTEGER:
            raise PathError(start + 1, "number is out of range (more than 20 digits)")
        return value

    def string(self) -> str:
        quote = self.text[self.pos]
        start = self.pos
        self.pos += 1
        out = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == quote:
                self.pos += 1
                return "".join(out)
            if char == "\\":
                follower = self.text[self.pos + 1 : self.pos + 2]
                if follower not in ("\\", '"', "'"):
                    raise PathError(self.pos + 1, "a backslash in a key value must be written \\\\")
                out.append(follower)
                self.pos += 2
                continue
            out.append(char)
            self.pos += 1
        raise PathError(start + 1, "quoted value is not closed")


def parse_path(text: str) -> ObjectPath:
    """Parse a WMI object path (absolute, namespace-relative or class-relative)."""
    if not isinstance(text, str):
        raise InvalidInput("an object path must be text")
    if len(text) > MAX_PATH_LENGTH:
        raise PathError(MAX_PATH_LENGTH + 1, f"path is longer than {MAX_PATH_LENGTH} characters")
    end = len(text.rstrip(_SPACE))
    r = _Reader(text[:end])  # positions stay those of ``text``
    r.pos = min(len(text) - len(text.lstrip(_SPACE)), end)
    host = namespace = None
    if r.literal("\\\\") or r.literal("//"):
        host = r.match(_HOST, "a host name")
        if not (r.literal("\\") or r.literal("/")):
            raise r.error("\\ and a namespace")
        namespace = r.match(_NAMESPACE, "a namespace such as root\\cimv2")
        if not r.literal(":"):
            raise r.error(": and a class name")
    else:
        prefix = _NAMESPACE.match(r.text, r.pos)  # root\cimv2: before the class name
        if prefix and r.text.startswith(":", prefix.end()):
            namespace = prefix.group()
            r.pos = prefix.end() + 1
    classname = r.match(_NAME, "a class name")
    keys: list[tuple[str | None, KeyValue]] = []
    singleton = False
    if r.literal("="):
        if r.literal("@"):
            singleton = True
        else:
            keys.append((None, r.value()))
    elif r.literal("."):
        seen: set[str] = set()
        while True:
            r.spaces()
            start = r.pos
            name = r.match(_NAME, "a key property name")
            if name.lower() in seen:
                raise PathError(start + 1, f"key {name} is given twice")
            seen.add(name.lower())
            r.spaces()
            if not r.literal("="):
                raise r.error("=")
            keys.append((name, r.value()))
            r.spaces()
            if not r.literal(","):
                break
    r.spaces()
    if r.pos != len(r.text):
        raise r.error(", and another key" if keys else ". and the keys")
    return ObjectPath(classname, tuple(keys), host, namespace, singleton)
