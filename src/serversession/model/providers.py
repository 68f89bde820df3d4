"""One provider per class: it builds that class's instances from a source's snapshot.

Adding a class is adding its MOF file and a provider here (DESIGN.md section 3); the front
ends ask for a class by name and never know which records it comes from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import NotFound
from ..sources.base import CONNECTIONS, OPENS, SHARES, Snapshot
from .instances import SERVER_SESSION, CIMObject, server_sessions
from .schema import load_schema

if TYPE_CHECKING:
    from .objectpath import ObjectPath

Provider = Callable[[Snapshot], list[CIMObject]]


def _family(function: str) -> Provider:
    """A provider of model/family.py, imported when first used (``list`` of sessions needs none)."""

    def provide(snapshot: Snapshot) -> list[CIMObject]:
        from . import family

        return getattr(family, function)(snapshot)  # type: ignore[no-any-return]

    return provide


PROVIDERS: dict[str, Provider] = {
    SERVER_SESSION: lambda snapshot: server_sessions(snapshot.sessions, snapshot.taken),
    "Win32_ServerConnection": _family("server_connections"),
    "Win32_Share": _family("shares"),
    "Win32_SessionConnection": _family("session_connections"),
    "Win32_ConnectionShare": _family("connection_shares"),
    "MSFT_SmbSession": _family("smb_sessions"),
    "MSFT_SmbOpenFile": _family("smb_open_files"),
}
#: what each provider needs in the snapshot besides the sessions (sources/base.py: CONNECTIONS ...)
NEEDS: dict[str, frozenset[str]] = {
    SERVER_SESSION: frozenset(),
    "Win32_ServerConnection": frozenset({CONNECTIONS, OPENS}),
    "Win32_Share": frozenset({SHARES}),
    "Win32_SessionConnection": frozenset({CONNECTIONS}),
    "Win32_ConnectionShare": frozenset({CONNECTIONS, SHARES}),
    "MSFT_SmbSession": frozenset(),
    "MSFT_SmbOpenFile": frozenset({OPENS}),
}


def needs(classname: str) -> frozenset[str]:
    """The snapshot parts the instances of ``classname`` need, decided before the source is read.

    A class with a provider of its own is answered without the schema (``list`` reads the source
    first, and loads the schema only to build the instances); any other name through it.
    """
    for name, parts in NEEDS.items():
        if name.lower() == classname.lower():
            return parts
    return frozenset().union(*(NEEDS[name] for name in provided(classname)))


def provided(classname: str) -> tuple[str, ...]:
    """The classes with a provider among ``classname`` and its subclasses (schema spelling).

    NotFound if the schema has no such class, or neither it nor a subclass has instances.
    """
    schema = load_schema()
    found = tuple(name for name in schema.subclasses(classname) if name in PROVIDERS)
    if not found:
        raise NotFound(f"{schema.get(classname).name} has no instances (no provider serves it or a subclass)")
    return found


def build(classnames: tuple[str, ...], snapshot: Snapshot, near: ObjectPath | None = None) -> list[CIMObject]:
    """The instances of ``classnames`` (each with a provider), built from one ``snapshot``.

    ``near``: only those that can be associated with the instance this path names (and it),
    each still whole (model/family.py: narrowed); what an association query needs, at the
    cost of its answer rather than of the snapshot.
    """
    if near is not None:
        from .family import narrowed

        snapshot = narrowed(snapshot, near)
    out: list[CIMObject] = []
    for name in classnames:
        out.extend(PROVIDERS[name](snapshot))
    return out
