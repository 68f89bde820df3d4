"""The Python API: ``serversession.sessions()``, in the spirit of the ``wmi`` and ``psutil`` modules."""

from __future__ import annotations

from .model import CIMObject, server_sessions
from .sources import DEFAULT_TIMEOUT, open_source, read_sessions


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
