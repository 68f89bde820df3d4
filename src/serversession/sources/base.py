"""The record every source returns, and the interface a source implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

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


@dataclass(frozen=True, slots=True)
class ConnectionRecord:
    """One tree connect (a session's connection to a share) as a source read it."""

    session_id: str  # the SessionRecord.session_id of its session
    share_name: str
    connection_id: int
    established: float | None  # Unix seconds
    server: str | None = None


#: what a snapshot can hold besides sessions (each read only when a class needs it)
CONNECTIONS = "connections"


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
