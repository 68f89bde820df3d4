"""The local Samba server's sessions, read the way ``smbstatus`` reads them.

smbd keeps every session in ``smbXsrv_session_global.tdb`` and every open handle (files,
directories, named pipes) in ``smbXsrv_open_global.tdb``, both in its ``lock directory``.
This source reads both under a TDB read lock with Samba's own ``tdb`` and NDR bindings,
and asks the kernel how long each session's TCP connection has been idle.
See docs/samba.md for the method and its limits.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import sys
import sysconfig
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import SourceDataError, SourceTimeout, SourceUnavailable
from ..files import check_regular_file, read_bytes
from . import forked, samba_tdb, smbd_connections, tcp_idle
from . import samba_records as records
from .base import CONNECTIONS, DEFAULT_TIMEOUT, SESS_GUEST, ConnectionRecord, SessionRecord, Snapshot

SAMBA_PYTHON_DIRS = ("/usr/lib/python3/dist-packages", "/usr/lib64/python3/site-packages")
log = logging.getLogger(__name__)
ANONYMOUS_SID = "S-1-5-7"
RECHECK_DELAY = 0.2  # seconds before the second look at connections without a session
REPLAY_CACHE_KEY_SIZE = 32  # key of smbd's durable-handle replay cache in the open database (4.23+)
BUILTIN_GUESTS_SID = "S-1-5-32-546"
DIALECTS = {
    0x0000: "NT1",
    0x0202: "SMB2_02",
    0x0210: "SMB2_10",
    0x0222: "SMB2_22",
    0x0224: "SMB2_24",
    0x0300: "SMB3_00",
    0x0302: "SMB3_02",
    0x0310: "SMB3_10",
    0x0311: "SMB3_11",
}


def _import_bindings() -> tuple[Any, Any, Any, Any]:
    """Samba's Python bindings (tdb, samba.param, samba.ndr, samba.dcerpc.auth).

    They come with Samba (Debian: python3-samba, python3-tdb) and are built for the
    distribution's Python; they are added to the path only when their ABI tag matches
    this interpreter's.
    """
    try:
        return _load_bindings()
    except ImportError:
        pass
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    for directory in SAMBA_PYTHON_DIRS:
        if glob.glob(os.path.join(directory, "tdb" + suffix)) and directory not in sys.path:
            sys.path.append(directory)
            try:
                return _load_bindings()
            except ImportError:
                sys.path.remove(directory)
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    raise SourceUnavailable(
        f"Samba's Python bindings (tdb, samba) are not importable from Python {version}; "
        "install Samba with them (Debian: apt-get install samba python3-samba) and run "
        "serversession with the same Python version as the distribution's python3"
    )


def _load_bindings() -> tuple[Any, Any, Any, Any]:
    import samba.ndr
    import samba.param
    import tdb
    from samba.dcerpc import auth

    return tdb, samba.param, samba.ndr, auth


@dataclass(frozen=True)
class SambaConfig:
    """What the source needs from smb.conf."""

    path: str
    lock_directory: str
    pid_directory: str
    guest_account: str
    samba_version: str
    share_paths: tuple[str, ...] = ()  # the disk shares' paths, for the open-file cross-check
    own_directories: tuple[str, ...] = ()  # Samba's own directories (lock, state, log ...)


CONFIG_TIME_LIMIT = 10.0  # seconds Samba's parser may take; a real smb.conf takes milliseconds
CONFIG_MEMORY_LIMIT = 1 << 30  # bytes the parser's process may grow by
IN_PROCESS_BYTES = 32 << 10  # smb.conf and includes this small, all followed, are parsed here (0.2 s at worst)
MAX_INCLUDE_DEPTH = 16


def load_config(path: str | None, param: Any, timeout: float = CONFIG_TIME_LIMIT) -> SambaConfig:
    """Read smb.conf with Samba's own parser (includes, defaults and synonyms as smbd sees them).

    Samba's parser waits forever on a FIFO (holding Python's lock: no thread can time it out,
    Ctrl-C does nothing), reads a device or a huge sparse file until memory runs out, and takes
    time quadratic in the number of parametric options (20,000 lines: 5 s). So smb.conf and
    every file its ``include =`` lines name are checked first (a regular file of at most
    files.MAX_CONFIG_BYTES: one clear error naming the include otherwise). When they are all
    known and small (IN_PROCESS_BYTES together), the parser runs here (0.1 ms; a fork costs
    2-3 ms of every ``list``); otherwise (larger files, includes with %-substitutions, which
    the check cannot follow) in a forked child that is killed after ``timeout`` seconds (and
    ends itself a second later if this process is gone by then) and may not grow by more than
    CONFIG_MEMORY_LIMIT bytes.
    """
    path = path or param.default_path()
    check_regular_file(path, "smb.conf")
    size, followed = _check_includes(path)

    def parse() -> SambaConfig:
        lp = param.LoadParm()
        try:
            lp.load(path)
        except RuntimeError:
            raise SourceUnavailable(f"smb.conf cannot be parsed: {path} (run testparm {path})") from None
        from samba import version as samba_version

        return SambaConfig(
            path=path,
            lock_directory=lp.get("lock directory"),
            pid_directory=lp.get("pid directory"),
            guest_account=lp.get("guest account") or "nobody",
            samba_version=samba_version,
            share_paths=tuple(smbd_connections.share_paths(lp)),
            own_directories=tuple(smbd_connections.own_directories(lp)),
        )

    if (followed and size <= IN_PROCESS_BYTES) or not forked.AVAILABLE:
        return parse()

    def parse_bounded() -> SambaConfig:
        _bound_this_child(timeout)
        return parse()

    (outcome,) = forked.finish([forked.start(parse_bounded)], time.monotonic() + timeout)
    if isinstance(outcome.error, forked.Late):
        raise SourceTimeout(
            f"Samba's parser did not finish reading {path} within {timeout:g} s "
            "(an include of a FIFO or a huge file, or thousands of parameters?)"
        )
    if isinstance(outcome.error, forked.Lost):
        raise SourceUnavailable(
            f"smb.conf cannot be parsed: {path} (Samba's parser crashed or ran out of memory; run testparm {path})"
        )
    if outcome.error is not None:
        raise outcome.error
    return outcome.value  # type: ignore[return-value]


def _check_includes(path: str) -> tuple[int, bool]:
    """Check the files the ``include =`` lines of ``path`` name (and theirs): SourceUnavailable
    if one is not a regular file of at most files.MAX_CONFIG_BYTES (files.check_regular_file).
    Return the bytes read, and whether every include could be followed.

    Samba's syntax as its parser reads it: a backslash at the end of a line joins the next
    one (even inside a name), parameter names are compared without case and spaces, the value
    is the rest of the line, relative names are relative to the working directory. Includes
    that do not exist are left to Samba's parser (it fails on them at once); those holding a
    %-substitution, or deeper than MAX_INCLUDE_DEPTH, are not followed.
    """
    seen: set[str] = set()
    pending = [(path, 0)]
    size, followed = 0, True
    while pending:
        current, depth = pending.pop()
        if current in seen:
            continue  # Samba reports loops itself
        if depth > MAX_INCLUDE_DEPTH:
            followed = False
            continue
        seen.add(current)
        data = read_bytes(current, "smb.conf" if depth == 0 else "smb.conf include")
        size += len(data)
        for target in _include_lines(data.decode("utf-8", "replace")):
            if "%" in target:
                followed = False
            elif os.path.lexists(target):
                check_regular_file(target, f"smb.conf {current}: include")
                pending.append((target, depth + 1))
    return size, followed


def _include_lines(text: str) -> list[str]:
    """The values of the ``include`` parameters in smb.conf text."""
    found = []
    for logical in text.replace("\\\r\n", "").replace("\\\n", "").splitlines():
        name, equals, value = logical.partition("=")
        if equals and "".join(name.split()).lower() == "include" and value.strip():
            found.append(value.strip())
    return found


def _bound_this_child(timeout: float) -> None:
    """In the parser's child: end it (SIGALRM, even blocked in C) a second after ``timeout``,
    whatever becomes of the parent; let go of the parent's stdin, stdout and stderr (a child
    left behind would keep a pipe such as ``$(serversession list)`` open); cap its address
    space at CONFIG_MEMORY_LIMIT more."""
    import resource
    import signal

    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(math.ceil(timeout) + 1)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)
    try:
        with open("/proc/self/statm", "rb") as statm:
            size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = size + CONFIG_MEMORY_LIMIT
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        if soft == resource.RLIM_INFINITY or soft > limit:
            resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (OSError, ValueError, IndexError):
        pass


def _process_is_smbd(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/comm", "rb") as comm:
            name = comm.read().strip()
    except OSError:
        return False
    return name.startswith((b"smbd", b"samba"))  # smbd renames its children ("smbd[1.2.3.4]")


def smbd_pid(config: SambaConfig) -> int:
    """The pid of the running smbd for ``config``; SourceUnavailable if none runs."""
    pidfile = os.path.join(config.pid_directory, "smbd.pid")
    try:
        with open(pidfile) as handle:
            pid = int(handle.read().split()[0])
    except FileNotFoundError:
        raise SourceUnavailable(f"smbd is not running for {config.path} (no {pidfile})") from None
    except PermissionError:
        raise SourceUnavailable(f"permission denied reading {pidfile}; run as root") from None
    except (ValueError, IndexError):
        raise SourceUnavailable(f"smbd is not running for {config.path} ({pidfile} is empty)") from None
    if not _process_is_smbd(pid):
        raise SourceUnavailable(f"smbd is not running for {config.path} (pid {pid} from {pidfile} is gone)")
    return pid


_endpoint = records.parse_address  # smbd's "ipv4:IP:PORT" to (ip, port)
_format_endpoint = tcp_idle.format_endpoint


def _server_alive(lock_directory: str, pid: int, unique_id: int) -> bool:
    """Whether the smbd process of a record's server id still runs: the pid is an smbd, and
    that process is the one that wrote the record, not a later one given the same pid.

    Every smbd process keeps its random unique id in ``LOCKDIR/msg.lock/PID`` (what smbstatus
    checks); when that file cannot be read, the pid alone decides.
    """
    if not _process_is_smbd(pid):
        return False
    try:
        with open(os.path.join(lock_directory, "msg.lock", str(pid)), "rb") as handle:
            text = handle.read(64)
    except OSError:
        return True
    try:
        return int(text) == unique_id
    except ValueError:
        return True


class SambaSource:
    """Sessions of the local smbd described by an smb.conf (default: Samba's own default)."""

    def __init__(self, smb_conf: str | None = None) -> None:
        self.smb_conf = smb_conf
        self.description = f"Samba ({smb_conf or 'default smb.conf'})"
        self.warnings: list[str] = []
        #: channels of the sessions still authenticating in the last read (for the cross-check)
        self.pending_channels: list[records.ChannelRecord] = []

    def sessions(self, timeout: float = DEFAULT_TIMEOUT) -> list[SessionRecord]:
        return list(self.snapshot(timeout).sessions)

    def snapshot(self, timeout: float = DEFAULT_TIMEOUT, parts: frozenset[str] = frozenset()) -> Snapshot:
        """Sessions, and the tree connects if ``parts`` holds CONNECTIONS, from one read."""
        self.warnings = []
        tdb, param, ndr, auth = _import_bindings()
        config = load_config(self.smb_conf, param)
        self.description = f"Samba ({config.path})"
        main_pid = smbd_pid(config)
        layout = records.layout_for_version(config.samba_version)
        if layout is None:
            raise SourceUnavailable(
                f"Samba {config.samba_version} is not supported ({records.LAYOUTS[0].name} or newer is)"
            )
        lock = config.lock_directory
        session_path = os.path.join(lock, "smbXsrv_session_global.tdb")
        open_path = os.path.join(lock, "smbXsrv_open_global.tdb")
        paths = [session_path, open_path]
        if CONNECTIONS in parts:
            paths.append(os.path.join(lock, "smbXsrv_tcon_global.tdb"))
        processes = smbd_connections.smbd_processes(main_pid, config.share_paths, config.own_directories)
        session_blobs, open_blobs, *tcon_blobs = samba_tdb.read_databases(
            tdb, paths, timeout, self.description, skip_key_size=REPLAY_CACHE_KEY_SIZE
        )
        now = time.time()
        # A release that was not run in the version matrix is trusted only while every one of
        # its records passes the strict checks; otherwise smbstatus reads it (see _fall_back).
        strict = not records.is_verified(config.samba_version)
        try:
            sessions = self._decode_sessions(session_blobs, layout, ndr, auth, config, strict)
            opens = self._decode_opens(open_blobs, layout, strict)
            tcons = self._decode_tcons(tcon_blobs[0], layout, config, strict) if tcon_blobs else None
        except records.RecordFormatError as exc:
            return Snapshot(tuple(self._fall_back(config, layout, exc, timeout)), time.time())
        ports = {_endpoint(ch.local_address)[1] for s, _ in sessions for ch in s.channels}
        if processes and main_pid in processes:
            ports |= smbd_connections.listening_ports(processes[main_pid])
        sockets = tcp_idle.tcp_sockets(ports) if ports else {}
        idle = {key: info[0] for key, info in sockets.items() if info[0] is not None}

        def channels_now() -> list[tuple[tcp_idle.Endpoint, tcp_idle.Endpoint]]:
            """Every channel of the sessions in the database now (a second read, for the cross-check)."""
            (blobs,) = samba_tdb.read_databases(tdb, (session_path,), timeout, self.description)
            kept = len(self.warnings)
            again = self._decode_sessions(blobs, layout, ndr, auth, config)
            del self.warnings[kept:]  # said once already
            return _channel_endpoints(again, self.pending_channels)

        self._cross_check(main_pid, processes, ports, sockets, sessions, channels_now)
        found = self._records(sessions, opens, idle, config, now)
        return Snapshot(tuple(found), now, None if tcons is None else _connections(tcons, sessions))

    def _cross_check(
        self,
        main_pid: int,
        processes: dict[int, smbd_connections.SmbdProcess] | None,
        ports: set[int],
        sockets: dict[tcp_idle.ConnectionKey, tcp_idle.SocketInfo],
        sessions: list[tuple[records.SessionGlobalRecord, Any]],
        channels_now: Callable[[], list[tuple[tcp_idle.Endpoint, tcp_idle.Endpoint]]],
    ) -> None:
        """Warn when the kernel shows connections to smbd that have no session in the database.

        Clients come and go between the database read and the kernel's answer: a connection
        without a session counts only if it still has none in a second read a moment later.

        Skipped when smbd's file descriptors cannot be read (not root). Open files are not
        compared with smbd's descriptors: smbd opens a file before it stores its record and
        deletes the record before it closes the file, so a client opening files in a loop always
        shows files without records (docs/samba.md); the open database's own structure is checked.
        """
        if processes is None:
            return
        connections = smbd_connections.smbd_client_connections(main_pid, ports, processes, sockets)
        channels = _channel_endpoints(sessions, self.pending_channels)
        if connections is None or smbd_connections.check_sessions(connections, channels) is None:
            return
        time.sleep(RECHECK_DELAY)
        channels = channels_now()
        still = tcp_idle.tcp_sockets(ports)
        connections = [
            c for c in connections if still.get((c.local, c.remote), (0, 0, 0))[2] == tcp_idle.TCP_ESTABLISHED
        ]
        warning = smbd_connections.check_sessions(connections, channels)
        if warning:
            self._warn(warning)

    def _fall_back(
        self, config: SambaConfig, layout: records.Layout, error: Exception, timeout: float
    ) -> list[SessionRecord]:
        """Sessions through ``smbstatus --json``, for a release whose records are not what was expected."""
        from .samba_smbstatus import lost, read_smbstatus

        self._warn(
            f"Samba {config.samba_version} was not verified and its records do not match the layout of "
            f"{layout.name} ({error}); read through smbstatus --json instead, which loses "
            f"{lost(config.samba_version)}"
        )
        return read_smbstatus(config.path, timeout)

    def _decode_sessions(
        self,
        blobs: list[bytes],
        layout: records.Layout,
        ndr: Any,
        auth: Any,
        config: SambaConfig,
        strict: bool = False,
    ) -> list[tuple[records.SessionGlobalRecord, Any]]:
        """Decoded sessions of live smbd processes; a strict read raises RecordFormatError on any failure."""
        decoded = []
        self.pending_channels = []
        failures = 0
        alive: dict[tuple[int, int], bool] = {}
        for value in blobs:
            try:
                blob = records.strip_watchers(value)
                if not blob:
                    continue
                session = records.decode_session(blob, layout)
                info = _unpack_auth(ndr, auth, blob, session.auth_offset) if session.auth_offset >= 0 else None
            except (records.RecordFormatError, RuntimeError, AttributeError, ValueError) as exc:
                failures += 1
                last_error = exc
                continue
            live = False
            for ch in session.channels:
                key = (ch.server_pid, ch.server_unique_id)
                if key not in alive:
                    alive[key] = _server_alive(config.lock_directory, *key)
                live = live or alive[key]
            if not live:
                continue  # stale record of an smbd that died (smbstatus skips these too)
            if info is None:  # authentication still in progress: not a session yet
                self.pending_channels.extend(session.channels)
                continue
            decoded.append((session, info))
        if failures:
            message = f"{failures} of {len(blobs)} session records of Samba {config.samba_version} could not be decoded"
            if strict:
                raise records.RecordFormatError(f"{message}: {last_error}")
            if not decoded:
                raise SourceDataError(f"{message}: {last_error}")
            self._warn(message)
        return decoded

    def _warn(self, message: str) -> None:
        """Records skipped but the answer still useful: kept in ``warnings`` and logged."""
        self.warnings.append(message)
        log.warning("%s: %s", self.description, message)

    def _decode_tcons(
        self, blobs: list[bytes], layout: records.Layout, config: SambaConfig, strict: bool = False
    ) -> list[records.TconGlobalRecord] | None:
        """The tree connects of live smbd processes that have a share (smbstatus's choice); None if
        there are some and none decodes. A strict read raises RecordFormatError on the first failure."""
        tcons = []
        failures = 0
        for value in blobs:
            try:
                tcon = records.decode_tcon(value, layout)
            except records.RecordFormatError as exc:
                if strict:
                    raise records.RecordFormatError(f"a tree-connect record could not be decoded: {exc}") from None
                failures += 1
                continue
            if tcon.share_name and _server_alive(config.lock_directory, tcon.server_pid, tcon.server_unique_id):
                tcons.append(tcon)
        if failures:
            self._warn(f"{failures} of {len(blobs)} tree-connect records could not be decoded")
            if failures == len(blobs):
                return None
        return tcons

    def _decode_opens(
        self, blobs: list[bytes], layout: records.Layout, strict: bool = False
    ) -> list[records.OpenGlobalRecord] | None:
        """The open-file records; None (counts unknown) if there are some and none decodes.

        A strict read raises RecordFormatError on the first record that does not decode.
        """
        opens = []
        for value in blobs:
            try:
                opens.append(records.decode_open(_open_blob(value, layout), layout))
            except records.RecordFormatError as exc:
                if strict:
                    raise records.RecordFormatError(f"an open-file record could not be decoded: {exc}") from None
                continue
        if len(opens) < len(blobs):
            unknown = " (ResourcesOpened unknown)" if not opens else ""
            self._warn(f"{len(blobs) - len(opens)} of {len(blobs)} open-file records could not be decoded{unknown}")
            if not opens:
                return None
        return opens

    def _records(
        self,
        sessions: list[tuple[records.SessionGlobalRecord, Any]],
        opens: list[records.OpenGlobalRecord] | None,
        idle: dict[tcp_idle.ConnectionKey, int],
        config: SambaConfig,
        now: float,
    ) -> list[SessionRecord]:
        ordered = sorted(sessions, key=lambda item: item[0].session_global_id)
        tokens = [[str(sid) for sid in info.security_token.sids] if info.security_token else [] for _, info in ordered]
        counts = _open_counts([s for s, _ in ordered], [sids[0] if sids else "" for sids in tokens], opens)
        out = []
        for (session, info), sids in zip(ordered, tokens, strict=True):
            user_sid = sids[0] if sids else ""
            unix_name = info.unix_info.unix_name if info.unix_info else ""
            anonymous = user_sid == ANONYMOUS_SID
            guest = anonymous or unix_name == config.guest_account or BUILTIN_GUESTS_SID in sids
            count = None if counts is None else counts.get(session.session_global_id, 0)
            last_request = None
            for ch in session.channels:
                ms = idle.get((_endpoint(ch.local_address), _endpoint(ch.remote_address)))
                if ms is not None:
                    last_request = max(last_request or 0.0, now - ms / 1000.0)
            first = session.channels[0]
            expired = session.expiration_time is not None and session.expiration_time < now
            dialect = DIALECTS.get(session.connection_dialect, f"0x{session.connection_dialect:04x}")
            remote = _format_endpoint(_endpoint(first.remote_address))
            out.append(
                SessionRecord(
                    session_id=f"{session.session_wire_id:#x}",
                    computer_name=first.remote_name,
                    user_name="" if anonymous else unix_name,
                    established=session.creation_time,
                    last_request=last_request,
                    opens=count,
                    user_flags=SESS_GUEST if guest else 0,
                    client_type=dialect,
                    transport=f"{first.transport}:{_format_endpoint(_endpoint(first.local_address))}",
                    status="Degraded" if expired else "OK",
                    client_address=remote,
                    detail=f"smbd pid {first.server_pid}",
                )
            )
        return out


def _connections(
    tcons: list[records.TconGlobalRecord], sessions: list[tuple[records.SessionGlobalRecord, Any]]
) -> tuple[ConnectionRecord, ...]:
    """The tree connects of the sessions read (one whose session is not among them is left out:
    it is still being made, or its session is being torn down)."""
    wire_ids = {session.session_global_id: session.session_wire_id for session, _ in sessions}
    return tuple(
        ConnectionRecord(
            session_id=f"{wire_ids[tcon.session_global_id]:#x}",
            share_name=tcon.share_name,
            connection_id=tcon.tcon_global_id,
            established=tcon.creation_time,
        )
        for tcon in sorted(tcons, key=lambda t: t.tcon_global_id)
        if tcon.session_global_id in wire_ids
    )


def _channel_endpoints(
    sessions: list[tuple[records.SessionGlobalRecord, Any]], pending: list[records.ChannelRecord]
) -> list[tuple[tcp_idle.Endpoint, tcp_idle.Endpoint]]:
    """(local, remote) of every channel of ``sessions`` and of the sessions still authenticating."""
    every = [ch for session, _ in sessions for ch in session.channels] + pending
    return [(_endpoint(ch.local_address), _endpoint(ch.remote_address)) for ch in every]


def _open_counts(
    sessions: list[records.SessionGlobalRecord], user_sids: list[str], opens: list[records.OpenGlobalRecord] | None
) -> dict[int, int] | None:
    """Open handles per session global id; None when the opens are unknown.

    From Samba 4.23 an open names its session. Before, it names its connection (smbd process)
    and owner SID: it goes to the first session (by id) of that owner on that connection, and
    an open whose owner has no session there (a share with ``force user`` or ``guest only``
    records the forced account) to the first session on that connection. Disconnected durable
    handles belong to no session.
    """
    if opens is None:
        return None
    counts: dict[int, int] = defaultdict(int)
    by_owner: dict[tuple[int, int, str], int] = defaultdict(int)
    for op in opens:
        if op.disconnected:
            continue
        if op.session_global_id is not None:
            counts[op.session_global_id] += 1
        else:
            by_owner[(op.server_pid, op.server_unique_id, op.owner_sid)] += 1
    first_on: dict[tuple[int, int], int] = {}
    for session, sid in zip(sessions, user_sids, strict=True):  # in order of session id
        for ch in session.channels:
            connection = (ch.server_pid, ch.server_unique_id)
            first_on.setdefault(connection, session.session_global_id)
            counts[session.session_global_id] += by_owner.pop((*connection, sid), 0)
    for (pid, unique_id, _owner), count in by_owner.items():
        if (pid, unique_id) in first_on:
            counts[first_on[(pid, unique_id)]] += count
    return counts


def _open_blob(value: bytes, layout: records.Layout) -> bytes:
    """An open record without dbwrap's persistency header, which 4.25+ adds with ``persistent handles``.

    The header (version 1, flags, two zero words) cannot be taken for a record: a record's
    third word, its union switch, is the record version, never 0 from 4.25 on.
    """
    if layout.envelope_version >= 1 and value[8:16] == bytes(8):
        return records.strip_persistency_header(value)
    return value


def _unpack_auth(ndr: Any, auth: Any, blob: bytes, offset: int) -> Any:
    """Decode the auth_session_info at ``offset`` with Samba's own NDR bindings.

    NDR aligns relative to the start of the buffer, so the referent is wrapped in an
    auth_session_info_transport whose padding blob keeps it at the same offset modulo 8.
    """
    pad = offset % 8
    wrapper = b"\x00\x00\x02\x00" + pad.to_bytes(4, "little") + bytes(pad) + blob[offset:]
    transport = ndr.ndr_unpack(auth.session_info_transport, wrapper)  # the whole rest of the record
    info = transport.session_info
    if info is None:
        raise records.RecordFormatError("session has no authentication record")
    return info
