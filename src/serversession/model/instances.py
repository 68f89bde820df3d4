"""Session records become instances of the schema's classes.

Instance objects are generated from the MOF (one frozen dataclass per class, fields named
and typed after the CIM properties), so the code never repeats the schema.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from ..sources.base import SESS_GUEST, SESS_NOENCRYPTION, SessionRecord
from .schema import NAMESPACE, load_schema

if TYPE_CHECKING:  # object paths are imported when one is asked for: ``list`` needs none
    from .objectpath import KeyValue, ObjectPath

SERVER_SESSION = "Win32_ServerSession"
UINT32_MAX = 2**32 - 1
WMI_NAMESPACE = NAMESPACE.replace("/", "\\")  # root\cimv2


def wmi_namespace(namespace: str) -> str:
    """A namespace as WMI writes it: ``root\\cimv2``."""
    return namespace.replace("/", "\\")


SYSTEM_PROPERTIES = (
    "__GENUS", "__CLASS", "__SUPERCLASS", "__DYNASTY", "__RELPATH", "__PROPERTY_COUNT",
    "__DERIVATION", "__SERVER", "__NAMESPACE", "__PATH",
)  # fmt: skip


@cache
def local_server_name() -> str:
    """This machine's name as WMI reports it in ``__SERVER``: the short host name, upper case."""
    import socket

    return socket.gethostname().split(".")[0].upper()


_PYTHON_TYPES: dict[str, Any] = {
    "string": str,
    "boolean": bool,
    "datetime": datetime,
    "real32": float,
    "real64": float,
    "reference": Any,  # an ObjectPath (model/objectpath.py), imported only when a class has references
    **{f"{s}int{n}": int for s in "su" for n in (8, 16, 32, 64)},
}


class CIMObject:
    """Behaviour shared by every generated instance class."""

    __slots__ = ()
    classname: str = ""

    #: the server the instance was read from (None: this machine); not a CIM property
    server: str | None

    def to_dict(self) -> dict[str, Any]:
        """Property name to value, every property of the class (None when unknown)."""
        return {name: getattr(self, name) for name in load_schema().get(self.classname).properties}

    @property
    def object_path(self) -> ObjectPath:
        """The instance's :class:`ObjectPath`; with host and namespace when read from another server."""
        from .objectpath import ObjectPath

        cls = load_schema().get(self.classname)
        keys = self._key_values()
        if self.server:
            return ObjectPath(cls.name, keys, host=self.server, namespace=wmi_namespace(cls.namespace))
        return ObjectPath(cls.name, keys)

    def _key_values(self) -> tuple[tuple[str, KeyValue], ...]:
        """(key, value) of each key; a reference key's value is the relative path it names, as
        text (an association and its ends are always read from the same server)."""
        from .objectpath import ObjectPath, format_path

        out = []
        for name in load_schema().get(self.classname).keys:
            value = getattr(self, name)
            if isinstance(value, ObjectPath):
                value = format_path(ObjectPath(value.classname, value.keys))
            out.append((name, value))
        return tuple(out)

    @property
    def path(self) -> str:
        r"""The WMI object path: ``Win32_ServerSession.ComputerName="x",UserName="y"``, relative for
        this machine, ``\\SERVER\root\cimv2:...`` for an instance read from another server."""
        from .objectpath import format_path

        return format_path(self.object_path)

    def system_properties(self) -> dict[str, Any]:
        """WMI's system properties (``__CLASS``, ``__PATH``, ...) of this instance."""
        from .objectpath import ObjectPath, format_path

        cls = load_schema().get(self.classname)
        chain = load_schema().superclasses(cls.name)
        server = self.server or local_server_name()
        relative = format_path(ObjectPath(cls.name, self._key_values()))
        namespace = wmi_namespace(cls.namespace)
        return {
            "__GENUS": 2,
            "__CLASS": cls.name,
            "__SUPERCLASS": cls.superclass,
            "__DYNASTY": chain[-1] if chain else cls.name,
            "__RELPATH": relative,
            "__PROPERTY_COUNT": len(cls.properties),
            "__DERIVATION": chain,
            "__SERVER": server,
            "__NAMESPACE": namespace,
            "__PATH": f"\\\\{server}\\{namespace}:{relative}",
        }

    def to_cim_instance(self, properties: Sequence[str] | None = None) -> Any:
        """This instance as a ``pywbem.CIMInstance`` with its instance path (only ``properties`` if given)."""
        import pywbem

        cls = load_schema().get(self.classname)
        props = {}
        for prop in cls.properties.values():
            if properties is not None and prop.name not in properties:
                continue
            value = _cim_value(getattr(self, prop.name))
            props[prop.name] = pywbem.CIMProperty(
                prop.name, value, type=prop.type, reference_class=prop.reference_class
            )
        key_values = {k: _cim_value(getattr(self, k)) for k in cls.keys}
        path = pywbem.CIMInstanceName(cls.name, keybindings=key_values, namespace=cls.namespace, host=self.server)
        return pywbem.CIMInstance(cls.name, properties=props, path=path)


def _cim_value(value: Any) -> Any:
    """A property value as pywbem types it: CIMDateTime, CIMInstanceName for a reference."""
    import pywbem

    from .objectpath import ObjectPath

    if isinstance(value, datetime):
        return pywbem.CIMDateTime(value)
    if isinstance(value, ObjectPath):
        namespace = load_schema().get(value.classname).namespace
        keys = {k: _cim_value(v) for k, v in value.keys}
        return pywbem.CIMInstanceName(value.classname, keybindings=keys, namespace=namespace, host=value.host)
    return value


@cache
def instance_class(name: str) -> type[CIMObject]:
    """The generated dataclass for the schema class ``name``."""
    cls = load_schema().get(name)
    fields: list[Any] = [
        (p.name, _PYTHON_TYPES.get(p.type, Any) | None, dataclasses.field(default=None))
        for p in cls.properties.values()
    ]
    fields.append(("server", str | None, dataclasses.field(default=None, repr=False)))
    generated = dataclasses.make_dataclass(
        cls.name,
        fields,
        bases=(CIMObject,),
        frozen=True,
        slots=True,
        namespace={"classname": cls.name, "__doc__": cls.qualifiers.get("Description")},
    )
    generated.__module__ = __name__
    return generated


def session_type(user_flags: int | None) -> int | None:
    """SessionType from MS-SRVS user flags: Guest 0, NoEncryption 1, Other 2 (None: flags unknown)."""
    if user_flags is None:
        return None
    if user_flags & SESS_GUEST:
        return 0
    if user_flags & SESS_NOENCRYPTION:
        return 1
    return 2


def _seconds(value: float) -> int:
    return max(0, min(UINT32_MAX, int(value)))


def cim_datetime_text(moment: datetime) -> str:
    """CIM datetime ``yyyymmddHHMMSS.mmmmmmsUUU`` of an aware datetime."""
    offset = moment.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return moment.strftime("%Y%m%d%H%M%S.%f") + f"{sign}{abs(minutes):03d}"


def local_datetime(timestamp: float) -> datetime:
    """An aware datetime in the machine's time zone (WMI reports local time with its offset)."""
    return datetime.fromtimestamp(timestamp, UTC).astimezone()


def server_sessions(records: Iterable[SessionRecord], now: float | None = None) -> list[CIMObject]:
    """One Win32_ServerSession per (server, ComputerName, UserName), merged as DESIGN.md section 2 says;
    the names compare case-blind (the keys are the oldest session's spelling).

    Of several sessions with the same keys: ActiveTime and InstallDate of the oldest,
    IdleTime of the least idle, ResourcesOpened summed, the rest from the oldest.
    """
    now = time.time() if now is None else now
    groups: dict[tuple[str | None, str, str], list[SessionRecord]] = {}
    for record in records:
        # keys compare case-blind, as WMI's and object paths' do: WS1/alice and ws1/ALICE are one
        key = (record.server, (record.computer_name or "").lower(), (record.user_name or "").lower())
        groups.setdefault(key, []).append(record)
    cls = instance_class(SERVER_SESSION)
    out = [_merged(cls, group, now) for group in groups.values()]
    out.sort(key=lambda s: (s.server or "", s.ComputerName.lower(), s.UserName.lower()))  # type: ignore[attr-defined]
    return out


def _merged(cls: type[CIMObject], group: Sequence[SessionRecord], now: float) -> CIMObject:
    known = [r for r in group if r.established is not None]
    oldest = min(known, key=lambda r: r.established or 0.0) if known else group[0]
    active = _seconds(now - oldest.established) if oldest.established is not None else None
    recent = [r.last_request for r in group if r.last_request is not None]
    idle = _seconds(now - max(recent)) if recent else None
    if idle is not None and active is not None:
        idle = min(idle, active)
    opens = [r.opens for r in group if r.opens is not None]
    user, computer = oldest.user_name, oldest.computer_name
    label = f"{user or 'anonymous'}@{computer}"
    count = f"{len(group)} sessions" if len(group) > 1 else "Session"
    statuses = {r.status for r in group}
    description = (
        f"{count} of {'user ' + user if user else 'an anonymous user'} from {computer}"
        + (
            f" ({oldest.client_address})"
            if oldest.client_address and oldest.client_address.split(":")[0] != computer
            else ""
        )
        + (f" over {oldest.client_type}" if oldest.client_type else "")
        + (f", {oldest.detail}" if oldest.detail else "")
    )
    return cls(  # type: ignore[call-arg]
        ActiveTime=active,
        Caption=label[:64],
        ClientType=oldest.client_type,
        ComputerName=computer,
        Description=description,
        IdleTime=idle,
        InstallDate=local_datetime(oldest.established) if oldest.established is not None else None,
        Name=label,
        ResourcesOpened=min(sum(opens), UINT32_MAX) if opens else None,
        SessionType=session_type(oldest.user_flags),
        Status="OK" if "OK" in statuses else oldest.status,
        TransportName=oldest.transport,
        UserName=user,
        server=oldest.server,
    )
