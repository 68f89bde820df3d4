"""The record every source returns, and the interface a source implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

# MS-SRVS session user flags (SESSION_INFO_502.sesi502_user_flags).
SESS_GUEST = 0x1
SESS_NOENCRYPTION = 0x2

DEFAULT_TIMEOUT = 30.0  # seconds a source may take to answer


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One session as a source read it: plain values, no CIM types.

    Times are Unix seconds; ``None`` means the source does not know the value.
    """

    session_id: str
    computer_name: str
    user_name: str
    established: float | None
    last_request: float | None
    opens: int | None
    user_flags: int | None
    client_type: str | None
    transport: str | None
    status: str = "OK"
    server: str | None = None
    client_address: str | None = None
    detail: str | None = None
    #: the SMB session id the client sees (SMB2 SessionId, SMB1 UID); None when the source cannot tell
    wire_id: int | None = None
    #: the dialect as Windows names it in MSFT_SmbSession.Dialect ("3.1.1", "2.0.2", "1.5"); None: unknown
    dialect: str | None = None
    #: whether the session's traffic was seen encrypted / signed (and never in clear / unsigned); None: unknown
    encrypted: bool | None = None
    signed: bool | None = None


@dataclass(frozen=True, slots=True)
class ConnectionRecord:
    """One tree connect (a session's connection to a share) as a source read it.

    A source that knows the session gives ``session_id`` (the user and computer then come from
    the session); one that does not (srvsvc) gives ``computer_name`` and ``user_name`` itself.
    """

    session_id: str | None  # the SessionRecord.session_id of its session; None: not known
    share_name: str
    connection_id: int | None  # the tree connect id (SMB2 TreeId); None: not known
    established: float | None  # Unix seconds
    server: str | None = None
    computer_name: str | None = None  # only when session_id is None
    user_name: str | None = None  # only when session_id is None
    #: handles open through it as the source counted them (srvsvc); None: count the OpenRecords
    opens: int | None = None
    users: int | None = None  # users of it as the source counted them (srvsvc); None: unknown


@dataclass(frozen=True, slots=True)
class ShareRecord:
    """One share of the server (Win32_Share)."""

    name: str
    path: str | None  # server-local path; None for IPC$ and print queues without one
    share_type: int | None  # MS-SRVS STYPE_*: 0 disk, 1 print queue, 2 device, 3 IPC, | 0x80000000 special
    remark: str | None
    max_uses: int | None  # None: no limit, or unknown when ``limit_known`` is False
    server: str | None = None
    limit_known: bool = True  # False: the source cannot tell the limit (srvsvc level 1)


@dataclass(frozen=True, slots=True)
class OpenRecord:
    """One open handle (file, directory or pipe) as a source read it.

    ``None`` means the source does not know the value; a durable handle whose client is gone
    has ``session_id`` None.
    """

    file_id: int  # the open's persistent id (SMB2 FileId.Persistent), unique on the server
    session_id: str | None  # the SessionRecord.session_id of its session
    connection_id: int | None  # the ConnectionRecord.connection_id it was opened through
    share_name: str | None
    path: str | None  # server-local path
    share_relative_path: str | None
    access_mask: int | None
    locks: int | None  # byte-range locks held through it
    durable: bool | None
    continuously_available: bool | None  # a persistent handle
    encrypted: bool | None
    signed: bool | None
    server: str | None = None
    user_name: str | None = None  # only when session_id is None
    computer_name: str | None = None  # only when session_id is None


#: what a snapshot can hold besides sessions (each read only when a class needs it)
CONNECTIONS = "connections"
SHARES = "shares"
OPENS = "opens"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one read of a source saw (DESIGN.md section 2a: one read is one snapshot).

    Every class's provider builds its instances from the same snapshot, so that instances of
    different classes agree. ``taken``: Unix seconds when the read ended (times are measured
    from it). A source with a ``snapshot(timeout, parts)`` method reads the ``parts`` asked
    for (e.g. :data:`CONNECTIONS`) in the same read as the sessions; the others give sessions.
    """

    sessions: tuple[SessionRecord, ...]
    taken: float
    connections: tuple[ConnectionRecord, ...] | None = None  # None: not read, or the source cannot
    shares: tuple[ShareRecord, ...] | None = None
    opens: tuple[OpenRecord, ...] | None = None
    #: indexes the model builds once per snapshot (model/family.py); not part of what was read
    cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


class Source(Protocol):
    """What every source offers.

    A source of several hosts (sources/multi.py) also has ``failures``, the hosts that failed
    in the last read, and ``time_limit(timeout)``, the longest a read may take in all.
    """

    #: short text naming the source and what it reads, for messages
    description: str

    def sessions(self, timeout: float = DEFAULT_TIMEOUT) -> list[SessionRecord]:
        """Read the sessions that exist now; raise SourceTimeout after ``timeout`` seconds.

        A source that can block where Python cannot interrupt it (C code holding the GIL)
        must bound that wait itself; :func:`read_sessions` also guards it with a thread.
        """
        ...
