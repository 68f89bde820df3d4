"""The Python API: ``serversession.sessions()``, in the spirit of the ``wmi`` and ``psutil`` modules."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .model import CIMObject, server_sessions
from .sources import DEFAULT_TIMEOUT, open_source, read_sessions

if TYPE_CHECKING:
    from .wql import QueryResult


def sessions(
    source: str = "auto",
    smb_conf: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> list[CIMObject]:
    """The Win32_ServerSession instances of a source, one per (ComputerName, UserName).

    Each object has the CIM property names as attributes (``s.UserName``, ``s.IdleTime``),
    ``to_dict()``, ``path`` and ``to_cim_instance()``.

    :param source: ``auto`` or ``samba``.
    :param smb_conf: Samba configuration file (default: env ``SERVERSESSION_SMB_CONF``,
        then Samba's own default).
    :param timeout: seconds to wait for the source before raising ``SourceTimeout``.
    :raises serversession.errors.ServerSessionError: the source cannot be read.
    """
    return server_sessions(read_sessions(open_source(source, smb_conf=smb_conf), timeout))


def query(wql: str, **source_options: Any) -> QueryResult:
    """Answer a WQL query, e.g. ``query("SELECT * FROM Win32_ServerSession WHERE IdleTime > 600")``.

    The result is a list of instances with ``.properties``, the names selected (keys included).
    ``source_options`` are those of :func:`sessions`. The query is checked before the source is
    read: :class:`~serversession.wql.WQLError` (invalid input) names the position of an error.
    """
    from .wql import compile_query

    compiled = compile_query(wql)
    return compiled.run(sessions(**source_options))


def get(path: str, **source_options: Any) -> CIMObject:
    """The instance an object path names, e.g. ``get('Win32_ServerSession.ComputerName="10.0.0.7",UserName="alice"')``.

    Raises :class:`~serversession.errors.NotFound` if there is none, and
    :class:`~serversession.wql.PathError` (invalid input) if the path is malformed.
    """
    from .wql import find_instance
    from .wql.lookup import resolve_path

    wanted = resolve_path(path)
    return find_instance(wanted, sessions(**source_options))
