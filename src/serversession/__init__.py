"""serversession: the WMI class Win32_ServerSession for Samba and other SMB servers.

>>> import serversession
>>> for s in serversession.sessions(smb_conf="/etc/samba/smb.conf"):
...     print(s.UserName, s.ComputerName, s.IdleTime)
>>> idle = serversession.query("SELECT UserName FROM Win32_ServerSession WHERE IdleTime > 600")
>>> serversession.get('Win32_ServerSession.ComputerName="10.0.0.7",UserName="alice"')
"""

from .api import get, query, sessions
from .errors import InvalidInput, NotFound, ServerSessionError, SourceDataError, SourceTimeout, SourceUnavailable
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
    "get",
    "query",
    "sessions",
]
