"""serversession: the WMI class Win32_ServerSession for Samba and other SMB servers.

>>> import serversession
>>> for s in serversession.sessions(smb_conf="/etc/samba/smb.conf"):
...     print(s.UserName, s.ComputerName, s.IdleTime)
>>> idle = serversession.query("SELECT UserName FROM Win32_ServerSession WHERE IdleTime > 600")
>>> serversession.get('Win32_ServerSession.ComputerName="10.0.0.7",UserName="alice"')
>>> serversession.instances("CIM_LogicalElement")  # a class and its subclasses, from one read
>>> serversession.associators('Win32_ServerSession.ComputerName="10.0.0.7",UserName="alice"')  # her connections
>>> serversession.references('Win32_Share.Name="data"')  # the Win32_ConnectionShare instances of a share
>>> serversession.close_session(client_user="alice").code  # 0: every session of alice ended (root)
>>> serversession.close_file(path="/srv/data/report.xlsx", what_if=True).matched  # who has it open
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import InvalidInput, NotFound, ServerSessionError, SourceDataError, SourceTimeout, SourceUnavailable

if TYPE_CHECKING:
    from .api import associators, close_file, close_session, get, instances, query, references, sessions
    from .model import CIMObject

__version__ = "0.1.0"

__all__ = [
    "CIMObject",
    "InvalidInput",
    "NotFound",
    "ServerSessionError",
    "SourceDataError",
    "SourceTimeout",
    "SourceUnavailable",
    "associators",
    "close_file",
    "close_session",
    "get",
    "instances",
    "query",
    "references",
    "sessions",
    "watch",
]


# The API and the model are imported on first use (PEP 562), so that ``python -m serversession``
# and ``serversession.cli`` load only what the command they run needs.
def __getattr__(name: str) -> Any:
    if name in ("associators", "close_file", "close_session", "get", "instances", "query", "references", "sessions",
                "watch"):  # fmt: skip
        from . import api as module
    elif name == "CIMObject":
        from . import model as module  # type: ignore[no-redef]
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
