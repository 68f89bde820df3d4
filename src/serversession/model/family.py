"""The class family besides Win32_ServerSession (DESIGN.md section 2a), built from one snapshot.

Each function takes a :class:`~serversession.sources.base.Snapshot` and returns the instances
of one class. Values a source could not read stay None; nothing here makes one up.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from ..sources.base import ConnectionRecord, OpenRecord, SessionRecord, ShareRecord, Snapshot
from .instances import UINT32_MAX, CIMObject, instance_class, local_datetime, server_sessions
from .objectpath import ObjectPath

SERVER_CONNECTION = "Win32_ServerConnection"
SHARE = "Win32_Share"
SESSION_CONNECTION = "Win32_SessionConnection"
CONNECTION_SHARE = "Win32_ConnectionShare"
SMB_SESSION = "MSFT_SmbSession"
SMB_OPEN_FILE = "MSFT_SmbOpenFile"
UINT64_MAX = 2**64 - 1
NO_SCOPE = "*"  # MSFT_Smb*.ScopeName of a server that is not part of a cluster
log = logging.getLogger("serversession")


def _seconds(value: float, limit: int = UINT32_MAX) -> int:
    return max(0, min(limit, int(value)))


def _age(now: float, moment: float | None) -> int | None:
    return None if moment is None else _seconds(now - moment, UINT64_MAX)


def _sessions_by_id(snapshot: Snapshot) -> dict[tuple[str | None, str], SessionRecord]:
    return {(s.server, s.session_id): s for s in snapshot.sessions}


def _ends(record: ConnectionRecord, sessions: dict[tuple[str | None, str], SessionRecord]) -> tuple[str, str] | None:
    """(computer, user) of a tree connect: from its session, or as the source gave them; None if neither."""
    if record.session_id is not None:
        session = sessions.get((record.server, record.session_id))
        return None if session is None else (session.computer_name, session.user_name)
    if record.computer_name is None or record.user_name is None:
        return None
    return record.computer_name, record.user_name


def _opens_per_connection(snapshot: Snapshot) -> dict[tuple[str | None, Any], int] | None:
    """Open handles counted by (server, tree connect id) and, for a handle whose tree connect is
    not known but whose share is (one session's several tree connects to one share: they make
    one Win32_ServerConnection), by (server, (session id, share name folded))."""
    if snapshot.opens is None:
        return None
    counts: dict[tuple[str | None, Any], int] = defaultdict(int)
    for record in snapshot.opens:
        if record.session_id is None:
            continue
        if record.connection_id is not None:
            counts[(record.server, record.connection_id)] += 1
        elif record.share_name is not None:
            counts[(record.server, (record.session_id, record.share_name.lower()))] += 1
    return counts


def _connection_groups(
    snapshot: Snapshot,
) -> dict[tuple[str | None, str, str, str], list[tuple[ConnectionRecord, SessionRecord | None]]]:
    """Tree connects grouped by Win32_ServerConnection's keys (server, computer, share, user)."""
    sessions = _sessions_by_id(snapshot)
    groups: dict[tuple[str | None, str, str, str], list[tuple[ConnectionRecord, SessionRecord | None]]] = {}
    spelling: dict[tuple[str | None, str, str, str], tuple[str | None, str, str, str]] = {}
    for record in snapshot.connections or ():
        ends = _ends(record, sessions)
        if ends is None:
            continue
        session = sessions.get((record.server, record.session_id)) if record.session_id is not None else None
        # keys compare case-blind (as server_sessions groups); the first one's spelling names the group
        key = (record.server, ends[0].lower(), record.share_name.lower(), ends[1].lower())
        spelled = spelling.setdefault(key, (record.server, ends[0], record.share_name, ends[1]))
        groups.setdefault(spelled, []).append((record, session))
    return groups


def server_connections(snapshot: Snapshot) -> list[CIMObject]:
    """One Win32_ServerConnection per (server, ComputerName, ShareName, UserName): of several tree
    connects with the same keys, ActiveTime, InstallDate and ConnectionID of the oldest,
    NumberOfFiles summed (DESIGN.md section 2a)."""
    cls = instance_class(SERVER_CONNECTION)
    per_connection = _opens_per_connection(snapshot)
    out = []
    for (server, computer, share, user), group in _connection_groups(snapshot).items():
        records = [r for r, _ in group]
        known = [r for r in records if r.established is not None]
        oldest = min(known, key=lambda r: r.established or 0.0) if known else records[0]
        files: list[int | None] = []
        for record in records:
            if record.opens is not None:
                files.append(record.opens)
            elif per_connection is not None and record.connection_id is not None:
                files.append(per_connection.get((record.server, record.connection_id), 0))
            else:
                files.append(None)
        if per_connection is not None:  # handles known by their session and share only, once per session
            for session_id in {r.session_id for r in records if r.session_id is not None}:
                files.append(per_connection.get((server, (session_id, share.lower())), 0))
        users = [r.users if r.users is not None else (1 if r.session_id is not None else None) for r in records]
        label = f"{user or 'anonymous'}@{computer}:{share}"
        out.append(
            cls(  # type: ignore[call-arg]
                ActiveTime=_seconds(snapshot.taken - oldest.established) if oldest.established is not None else None,
                Caption=label[:64],
                ComputerName=computer,
                ConnectionID=oldest.connection_id if oldest.connection_id is not None else None,
                Description=(f"{len(records)} connections" if len(records) > 1 else "Connection")
                + f" of {'user ' + user if user else 'an anonymous user'} from {computer} to share {share}",
                InstallDate=local_datetime(oldest.established) if oldest.established is not None else None,
                Name=label,
                NumberOfFiles=min(sum(files), UINT32_MAX) if None not in files else None,  # type: ignore[arg-type]
                NumberOfUsers=max(users) if None not in users else None,  # type: ignore[type-var]
                ShareName=share,
                Status="OK",
                UserName=user,
                server=server,
            )
        )
    out.sort(key=lambda c: (c.server or "", c.ComputerName.lower(), c.ShareName.lower(), c.UserName.lower()))  # type: ignore[attr-defined]
    return out


def shares(snapshot: Snapshot) -> list[CIMObject]:
    """One Win32_Share per share; AccessMask is null, as Windows reports it (deprecated)."""
    cls = instance_class(SHARE)
    out = [
        cls(  # type: ignore[call-arg]
            AllowMaximum=record.max_uses is None if record.limit_known else None,
            Caption=(record.remark or "")[:64] or record.name[:64],
            Description=record.remark,
            MaximumAllowed=record.max_uses,
            Name=record.name,
            Path=record.path,
            Status="OK",
            Type=record.share_type,
            server=record.server,
        )
        for record in snapshot.shares or ()
    ]
    out.sort(key=lambda s: (s.server or "", s.Name.lower()))  # type: ignore[attr-defined]
    return out


def _path(instance: CIMObject) -> ObjectPath:
    return instance.object_path


def session_connections(snapshot: Snapshot) -> list[CIMObject]:
    """Win32_SessionConnection: each Win32_ServerSession and the Win32_ServerConnection of its tree connects."""
    cls = instance_class(SESSION_CONNECTION)
    sessions: list[Any] = server_sessions(snapshot.sessions, snapshot.taken)
    connections: list[Any] = server_connections(snapshot)
    session_paths = {(s.server, *_fold(s.ComputerName, s.UserName)): _path(s) for s in sessions}
    connection_paths = {(c.server, *_fold(c.ComputerName, c.ShareName, c.UserName)): _path(c) for c in connections}
    out = []
    for (server, computer, share, user), group in _connection_groups(snapshot).items():
        antecedent = session_paths.get((server, *_fold(computer, user)))
        if antecedent is None or all(session is None for _, session in group):
            continue  # the source cannot say which session a connection belongs to (srvsvc)
        dependent = connection_paths[(server, *_fold(computer, share, user))]
        out.append(cls(Antecedent=antecedent, Dependent=dependent, server=server))  # type: ignore[call-arg]
    return out


def connection_shares(snapshot: Snapshot) -> list[CIMObject]:
    """Win32_ConnectionShare: each Win32_Share and the Win32_ServerConnection made to it (none for a
    connection whose share is no longer in the configuration: the association never dangles)."""
    cls = instance_class(CONNECTION_SHARE)
    share_paths = {(s.server, s.Name.lower()): _path(s) for s in shares(snapshot)}  # type: ignore[attr-defined]
    out = []
    for connection in server_connections(snapshot):
        share = share_paths.get((connection.server, connection.ShareName.lower()))  # type: ignore[attr-defined]
        if share is not None:
            out.append(cls(Antecedent=share, Dependent=_path(connection), server=connection.server))  # type: ignore[call-arg]
    return out


def _scope(server: str | None) -> tuple[str | None, int | None]:
    """(ScopeName, SmbInstance): this machine's Samba serves no cluster scope and one instance,
    the default; of a remote server neither is known."""
    return (NO_SCOPE, 0) if server is None else (None, None)


def smb_sessions(snapshot: Snapshot) -> list[CIMObject]:
    """One MSFT_SmbSession per SMB session, no merging; sessions without a wire id (srvsvc) have none."""
    cls = instance_class(SMB_SESSION)
    out = []
    for record in snapshot.sessions:
        if record.wire_id is None:
            continue
        scope, instance = _scope(record.server)
        out.append(
            cls(  # type: ignore[call-arg]
                ClientComputerName=record.computer_name,
                ClientUserName=record.user_name,
                ClusterNodeName=None,
                Dialect=record.dialect,
                NumOpens=record.opens,
                ScopeName=scope,
                SecondsExists=_age(snapshot.taken, record.established),
                SecondsIdle=_age(snapshot.taken, record.last_request),
                SessionId=record.wire_id,
                SmbInstance=instance,
                TransportName=record.transport,
                server=record.server,
            )
        )
    out.sort(key=lambda s: (s.server or "", s.SessionId))  # type: ignore[attr-defined]
    return out


def smb_open_files(snapshot: Snapshot) -> list[CIMObject]:
    """One MSFT_SmbOpenFile per open handle (files, directories, pipes)."""
    cls = instance_class(SMB_OPEN_FILE)
    sessions = _sessions_by_id(snapshot)
    out = []
    for record in _unique(snapshot.opens or ()):
        session = sessions.get((record.server, record.session_id)) if record.session_id is not None else None
        scope, instance = _scope(record.server)
        out.append(
            cls(  # type: ignore[call-arg]
                ClientComputerName=session.computer_name if session else record.computer_name,
                ClientUserName=session.user_name if session else record.user_name,
                ClusterNodeName=None,
                ContinuouslyAvailable=record.continuously_available,
                Encrypted=record.encrypted,
                FileId=record.file_id,
                Locks=record.locks,
                Path=record.path,
                Permissions=record.access_mask,
                ScopeName=scope,
                SessionId=session.wire_id if session else None,
                ShareRelativePath=record.share_relative_path,
                Signed=record.signed,
                SmbInstance=instance,
                server=record.server,
            )
        )
    out.sort(key=lambda f: (f.server or "", f.FileId))  # type: ignore[attr-defined]
    return out


def _unique(records: Iterable[OpenRecord]) -> list[OpenRecord]:
    """The opens with a file id no other open of the same server has (a key names one instance)."""
    seen: dict[tuple[str | None, int], int] = defaultdict(int)
    kept = list(records)
    for record in kept:
        seen[(record.server, record.file_id)] += 1
    twice = sum(1 for count in seen.values() if count > 1)
    if twice:
        log.warning("%d file ids are given to more than one open handle; those handles are left out", twice)
    return [r for r in kept if seen[(r.server, r.file_id)] == 1]


def _fold(*texts: str | None) -> tuple[str, ...]:
    return tuple((t or "").lower() for t in texts)


class _Index:
    """The snapshot's records by the keys of the classes whose instances associations name:
    built once per snapshot, so that each navigation costs what it answers."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.sessions: dict[tuple[str, ...], list[SessionRecord]] = defaultdict(list)
        self.by_id: dict[tuple[str | None, str], SessionRecord] = {}
        for record in snapshot.sessions:
            self.sessions[_fold(record.computer_name, record.user_name)].append(record)
            self.by_id[(record.server, record.session_id)] = record
        self.connections: dict[tuple[str | None, str], list[ConnectionRecord]] = defaultdict(list)
        self.unattached: dict[tuple[str, ...], list[ConnectionRecord]] = defaultdict(list)  # srvsvc: no session
        self.to_share: dict[tuple[str, ...], list[ConnectionRecord]] = defaultdict(list)
        for connection in snapshot.connections or ():
            if connection.session_id is not None:
                self.connections[(connection.server, connection.session_id)].append(connection)
            else:
                self.unattached[_fold(connection.computer_name, connection.user_name)].append(connection)
            self.to_share[_fold(connection.share_name)].append(connection)
        self.opens: dict[tuple[str | None, str], list[OpenRecord]] = defaultdict(list)
        for handle in snapshot.opens or ():
            if handle.session_id is not None:
                self.opens[(handle.server, handle.session_id)].append(handle)
        self.shares: dict[tuple[str, ...], list[ShareRecord]] = defaultdict(list)
        for share in snapshot.shares or ():
            self.shares[_fold(share.name)].append(share)


def narrowed(snapshot: Snapshot, target: ObjectPath) -> Snapshot:
    """The part of ``snapshot`` that the instances associated with ``target`` (a path of
    Win32_ServerSession, Win32_ServerConnection or Win32_Share) are built from, those instances
    whole: every session merged into the same Win32_ServerSession, every tree connect merged into
    the same Win32_ServerConnection, their opens and shares. Other targets: the whole snapshot."""
    keys = {(name or "").lower(): value for name, value in target.keys}
    classname = target.classname.lower()
    if classname not in ("win32_serversession", "win32_serverconnection", "win32_share"):
        return snapshot
    index = snapshot.cache.get("family")
    if index is None:
        index = snapshot.cache["family"] = _Index(snapshot)
    if classname == "win32_share":
        people = {_fold(*_ends_of(c, index)) for c in index.to_share.get(_fold(str(keys.get("name", ""))), ())}
        share = str(keys.get("name", "")).lower()
    else:
        people = {_fold(str(keys.get("computername", "")), str(keys.get("username", "")))}
        share = str(keys.get("sharename", "")).lower() if classname == "win32_serverconnection" else None
    sessions = [s for person in people for s in index.sessions.get(person, ())]
    connections = [c for s in sessions for c in index.connections.get((s.server, s.session_id), ())]
    connections += [c for person in people for c in index.unattached.get(person, ())]
    if share is not None:
        connections = [c for c in connections if c.share_name.lower() == share]
    opens = [o for s in sessions for o in index.opens.get((s.server, s.session_id), ())]
    shares = [
        r
        for name in {c.share_name.lower() for c in connections} | ({share} if share is not None else set())
        for r in index.shares.get((name,), ())
    ]
    return Snapshot(
        tuple(sessions),
        snapshot.taken,
        None if snapshot.connections is None else tuple(connections),
        None if snapshot.shares is None else tuple(shares),
        None if snapshot.opens is None else tuple(opens),
    )


def _ends_of(connection: ConnectionRecord, index: _Index) -> tuple[str | None, str | None]:
    if connection.session_id is None:
        return connection.computer_name, connection.user_name
    session = index.by_id.get((connection.server, connection.session_id))
    return (session.computer_name, session.user_name) if session else (None, None)
