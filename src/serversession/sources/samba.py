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
import socket
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
from .base import (
    CONNECTIONS,
    DEFAULT_TIMEOUT,
    OPENS,
    SESS_GUEST,
    SHARES,
    ConnectionRecord,
    OpenRecord,
    SessionRecord,
    ShareRecord,
    Snapshot,
)

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
#: MSFT_SmbSession.Dialect: the dialect revision dotted, trailing zeros dropped; SMB1 (NT1) is "1.5"
SMB_DIALECTS = {
    0x0000: "1.5",
    0x0202: "2.0.2",
    0x0210: "2.1",
    0x0222: "2.2.2",
    0x0224: "2.2.4",
    0x0300: "3.0",
    0x0302: "3.0.2",
    0x0310: "3.1",
    0x0311: "3.1.1",
}
# MS-SRVS share types (Samba's srvsvc get_share_type)
STYPE_DISKTREE, STYPE_PRINTQ, STYPE_IPC, STYPE_SPECIAL = 0, 1, 3, 0x80000000
IPC_SHARE = "IPC$"
# smbXsrv encryption and signing flags as Samba's smbXsrv_is_encrypted/_is_signed read them
ENCRYPTION_REQUIRED, ENCRYPTION_DESIRED, PROCESSED_ENCRYPTED, PROCESSED_UNENCRYPTED = 1, 2, 4, 8
PROCESSED_SIGNED, PROCESSED_UNSIGNED = 2, 4


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
    shares: tuple[ShareConfig, ...] | None = None  # the services, when asked for (load_config's ``shares``)
    server_string: str = ""


@dataclass(frozen=True)
class ShareConfig:
    """One service of smb.conf as Samba's parser loaded it (values as written: not substituted)."""

    name: str
    path: str
    comment: str
    max_connections: int
    printable: bool
    ipc: bool  # fstype = IPC
    administrative: bool  # administrative share
    available: bool


def _share_configs(lp: Any) -> tuple[ShareConfig, ...]:
    shares = []
    for name in lp.services():
        if not isinstance(name, str) or name.lower() == "global":
            continue

        def get(parameter: str, service: str = name) -> Any:
            return lp.get(parameter, service)

        shares.append(
            ShareConfig(
                name=name,
                path=get("path") or "",
                comment=get("comment") or "",
                max_connections=int(get("max connections") or 0),
                printable=bool(get("printable")),
                ipc=str(get("fstype") or "").lower() == "ipc",
                administrative=bool(get("administrative share")),
                available=bool(get("available")),
            )
        )
    return tuple(shares)


CONFIG_TIME_LIMIT = 10.0  # seconds Samba's parser may take; a real smb.conf takes milliseconds
CONFIG_MEMORY_LIMIT = 1 << 30  # bytes the parser's process may grow by
IN_PROCESS_BYTES = 32 << 10  # smb.conf and includes this small, all followed, are parsed here (0.2 s at worst)
MAX_INCLUDE_DEPTH = 16


def load_config(path: str | None, param: Any, timeout: float = CONFIG_TIME_LIMIT, shares: bool = False) -> SambaConfig:
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
    CONFIG_MEMORY_LIMIT bytes. With ``shares``, also each service's settings (SambaConfig.shares).
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
            shares=_share_configs(lp) if shares else None,
            server_string=(lp.get("server string") or "") if shares else "",
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
        """Sessions, and the tree connects (CONNECTIONS), shares (SHARES) and open handles (OPENS)
        that ``parts`` asks for, from one read: every database in one ``read_databases`` call."""
        self.warnings = []
        tdb, param, ndr, auth = _import_bindings()
        want_opens = OPENS in parts
        want_tcons = bool(parts & {CONNECTIONS, SHARES, OPENS})  # shares: those only tree connects name
        config = load_config(self.smb_conf, param, shares=SHARES in parts or want_opens)
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
        # Opens are read right after the tree connects and right before their share modes and
        # locks: what changes between two databases' reads is then the least.
        paths = [session_path]
        if want_tcons:
            paths.append(os.path.join(lock, "smbXsrv_tcon_global.tdb"))
        paths.append(open_path)
        if want_opens:
            paths += [os.path.join(lock, "locking.tdb"), os.path.join(lock, "brlock.tdb")]
        processes = smbd_connections.smbd_processes(main_pid, config.share_paths, config.own_directories)
        blobs = samba_tdb.read_databases(tdb, paths, timeout, self.description, skip_key_size=REPLAY_CACHE_KEY_SIZE)
        session_blobs = blobs[0]
        tcon_blobs = blobs[1] if want_tcons else None
        open_blobs = blobs[2 if want_tcons else 1]
        now = time.time()
        # A release that was not run in the version matrix is trusted only while every one of
        # its records passes the strict checks; otherwise smbstatus reads it (see _fall_back).
        strict = not records.is_verified(config.samba_version)
        try:
            sessions = self._decode_sessions(session_blobs, layout, ndr, auth, config, strict)
            opens = self._decode_opens(open_blobs, layout, strict)
            tcons = self._decode_tcons(tcon_blobs, layout, config, strict) if tcon_blobs is not None else None
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
        connections = _connections(tcons, sessions) if tcons is not None and CONNECTIONS in parts else None
        shares = self._shares(config, tcons) if SHARES in parts else None
        handles = None
        if want_opens and opens is not None:
            modes, complete, locks = self._decode_locking(blobs[-2], blobs[-1], config)
            handles = self._open_records(sessions, opens, tcons, modes, complete, locks, config)
        return Snapshot(tuple(found), now, connections, shares, handles)

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
                    wire_id=session.session_wire_id,
                    dialect=SMB_DIALECTS.get(session.connection_dialect),
                    encrypted=_is_encrypted(session.encryption_flags),
                    signed=_is_signed(session.signing_flags),
                )
            )
        return out

    def _decode_locking(
        self, locking_blobs: list[bytes], brlock_blobs: list[bytes], config: SambaConfig
    ) -> tuple[list[records.ShareModeRecord], bool, list[records.ByteRangeLock] | None]:
        """The share-mode records that decode, whether that is all of them (if not, an open without
        one proves nothing), and the byte-range locks (None: some did not decode, no count is known)."""
        layout = records.locking_layout_for_version(config.samba_version)
        if layout is None:
            return [], False, None
        modes: list[records.ShareModeRecord] = []
        failures_modes = 0
        for value in locking_blobs:
            try:
                record = records.decode_share_modes(value, layout)
            except records.RecordFormatError as exc:
                failures_modes, last_error = failures_modes + 1, exc
                continue
            if record is not None:
                modes.append(record)
        if failures_modes:
            self._warn(
                f"{failures_modes} of {len(locking_blobs)} share-mode records (locking.tdb) of Samba {config.samba_version} "
                f"could not be decoded ({last_error}): the paths and access masks of their opens are unknown"
            )
        locks: list[records.ByteRangeLock] = []
        failures = 0
        for value in brlock_blobs:
            try:
                locks.extend(records.decode_brlocks(value, layout))
            except records.RecordFormatError as exc:
                failures, last_error = failures + 1, exc
        if failures:
            self._warn(
                f"{failures} of {len(brlock_blobs)} byte-range lock records (brlock.tdb) of Samba "
                f"{config.samba_version} could not be decoded ({last_error}): lock counts are unknown"
            )
        return modes, not failures_modes, None if failures else locks

    def _shares(self, config: SambaConfig, tcons: list[records.TconGlobalRecord] | None) -> tuple[ShareRecord, ...]:
        """smb.conf's services as smbd loads them, plus IPC$, plus the shares only tree connects
        name (a user's share made from [homes] on connect, a usershare or registry share, a share
        removed from smb.conf since): those with what [homes] says of them, or only their name."""
        out: list[ShareRecord] = []
        names: set[str] = set()
        homes: ShareConfig | None = None
        templated = []
        for share in config.shares or ():
            if not share.available:
                continue  # smbd refuses it (srvsvc leaves it out too)
            names.add(share.name.lower())
            if share.name.lower() == "homes":
                homes = share
            elif "%" in share.path:
                templated.append(share.name)
            out.append(_share_record(share, share.name, config.samba_version))
        if templated:
            self._warn(
                f"the path of {len(templated)} share(s) depends on the user or client (%-substitution), "
                f"shown as null: {', '.join(sorted(templated)[:10])}"
            )
        if IPC_SHARE.lower() not in names:
            names.add(IPC_SHARE.lower())
            remark = _substitute(config.server_string, config.samba_version)
            out.append(
                ShareRecord(
                    name=IPC_SHARE,
                    path=None,
                    share_type=STYPE_IPC | STYPE_SPECIAL,  # smbd's IPC$ is an administrative share
                    remark=None if remark is None else f"IPC Service ({remark})",
                    max_uses=None,
                )
            )
        for tcon in sorted(tcons or (), key=lambda t: t.share_name):
            if tcon.share_name.lower() in names:
                continue
            names.add(tcon.share_name.lower())
            if homes is not None:
                record = _share_record(homes, tcon.share_name, config.samba_version)
                out.append(ShareRecord(tcon.share_name, None, record.share_type, record.remark, record.max_uses))
            else:
                out.append(ShareRecord(tcon.share_name, None, None, None, None))
        return tuple(out)

    def _open_records(
        self,
        sessions: list[tuple[records.SessionGlobalRecord, Any]],
        opens: list[records.OpenGlobalRecord],
        tcons: list[records.TconGlobalRecord] | None,
        modes: list[records.ShareModeRecord],
        complete: bool,
        locks: list[records.ByteRangeLock] | None,
        config: SambaConfig,
    ) -> tuple[OpenRecord, ...]:
        """One OpenRecord per open handle of the sessions read (and per durable handle whose client
        is gone), each given to the session :func:`_open_counts` counts it for (DESIGN 2a: a session's
        OpenRecords are its ResourcesOpened). How each field is found: docs/samba.md."""
        layout = records.locking_layout_for_version(config.samba_version)
        by_id = layout is not None and layout.share_file_id_is_open_id
        ordered = sorted((s for s, _ in sessions), key=lambda s: s.session_global_id)
        sids = {s.session_global_id: _user_sid(info) for s, info in sessions}
        session_of = _OpenOwners(ordered, [sids[s.session_global_id] for s in ordered])
        entries: dict[tuple[int, int, int], list[tuple[records.ShareModeRecord, records.ShareModeEntry]]] = {}
        for mode in modes:
            for entry in mode.entries:
                key = entry.share_file_id if by_id else entry.open_nttime
                entries.setdefault((entry.server_pid, entry.server_unique_id, key), []).append((mode, entry))
        lock_count: dict[tuple[int, int, int], int] = defaultdict(int)
        lock_tids: dict[tuple[int, int, int], set[int]] = defaultdict(set)
        gone_locks: dict[int, int] = defaultdict(int)  # a disconnected handle's, by persistent id
        for lock in locks or ():
            if lock.server_pid == records.DISCONNECTED_PID:
                gone_locks[lock.smblctx] += 1
            else:
                lock_count[(lock.server_pid, lock.server_unique_id, lock.fnum)] += 1
                lock_tids[(lock.server_pid, lock.server_unique_id, lock.fnum)].add(lock.tid)
        tcon_by_id = {t.tcon_global_id: t for t in tcons or ()}
        tcons_of: dict[tuple[int, int, int], list[records.TconGlobalRecord]] = defaultdict(list)
        for tcon in sorted(tcons or (), key=lambda t: t.tcon_global_id):
            tcons_of[(tcon.session_global_id, tcon.server_pid, tcon.server_unique_id)].append(tcon)
        share_paths = {
            share.name.lower(): os.path.normpath(share.path)
            for share in config.shares or ()
            if share.path and "%" not in share.path and share.name.lower() != "homes"
        }
        out = []
        ambiguous = 0
        for op in sorted(opens, key=lambda o: o.open_global_id):
            session = session_of(op)
            if session is None and not op.disconnected:
                continue  # its session is not in the snapshot (being made or torn down)
            process = (op.server_pid, op.server_unique_id)
            found = entries.get((*process, op.open_global_id if by_id else op.open_nttime), [])
            if len({(m.servicepath, m.base_name, m.stream_name, e.access_mask) for m, e in found}) > 1:
                ambiguous += 1
                found = []
            mode, entry = found[0] if found else (None, None)
            if locks is None:
                count = None
            elif op.disconnected:
                count = gone_locks.get(op.open_global_id, 0)
            else:
                count = lock_count.get((*process, op.open_volatile_id), 0)
            share_name, tcon = None, None
            if session is not None and tcons is not None:
                if op.tcon_global_id is not None:  # 4.23+: the record names it
                    tcon = tcon_by_id.get(op.tcon_global_id)
                    if tcon is not None and tcon.session_global_id != session.session_global_id:
                        tcon = None
                    candidates = [] if tcon is None else [tcon]
                else:
                    candidates = _tcon_candidates(
                        tcons_of[(session.session_global_id, *process)],
                        mode,
                        lock_tids.get((*process, op.open_volatile_id)),
                        share_paths,
                        complete,
                    )
                if candidates and len({c.share_name for c in candidates}) == 1:
                    share_name = candidates[0].share_name
                if len(candidates) == 1:
                    tcon = candidates[0]
            flags = tcon if tcon is not None else session
            path, relative = _open_path(mode)
            out.append(
                OpenRecord(
                    file_id=op.open_global_id,
                    session_id=None if session is None else f"{session.session_wire_id:#x}",
                    connection_id=None if tcon is None else tcon.tcon_global_id,
                    share_name=share_name,
                    path=path,
                    share_relative_path=relative,
                    access_mask=None if entry is None else entry.access_mask,
                    locks=count,
                    durable=op.durable,
                    continuously_available=op.persistent,
                    encrypted=None if flags is None else _is_encrypted(flags.encryption_flags),
                    signed=None if flags is None else _is_signed(flags.signing_flags),
                )
            )
        if ambiguous:
            self._warn(
                f"{ambiguous} open(s) match several share-mode entries: their paths and access masks are unknown"
            )
        return tuple(out)


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


class _OpenOwners:
    """The session an open is counted for, by the rule of :func:`_open_counts`."""

    def __init__(self, sessions: list[records.SessionGlobalRecord], user_sids: list[str]) -> None:
        self.by_id = {s.session_global_id: s for s in sessions}
        self.owner: dict[tuple[int, int, str], records.SessionGlobalRecord] = {}
        self.first_on: dict[tuple[int, int], records.SessionGlobalRecord] = {}
        for session, sid in zip(sessions, user_sids, strict=True):  # in order of session id
            for ch in session.channels:
                connection = (ch.server_pid, ch.server_unique_id)
                self.first_on.setdefault(connection, session)
                self.owner.setdefault((*connection, sid), session)

    def __call__(self, op: records.OpenGlobalRecord) -> records.SessionGlobalRecord | None:
        if op.disconnected:
            return None
        if op.session_global_id is not None:
            return self.by_id.get(op.session_global_id)
        connection = (op.server_pid, op.server_unique_id)
        found = self.owner.get((*connection, op.owner_sid))
        return found if found is not None else self.first_on.get(connection)


def _tcon_candidates(
    tcons: list[records.TconGlobalRecord],
    mode: records.ShareModeRecord | None,
    lock_tids: set[int] | None,
    share_paths: dict[str, str],
    complete: bool,
) -> list[records.TconGlobalRecord]:
    """Before 4.23 an open does not name its tree connect: the tree connects of its session in its
    smbd process it can have been opened through. A locked open's locks name it (exact); a file's
    share path must be its share-mode record's ``servicepath`` (shares whose path is not known,
    such as a [homes] user's, stay in when none matches); an open without a share-mode record
    (none failed to decode) is a named pipe, opened through IPC$."""
    if lock_tids and len(lock_tids) == 1:
        exact = [t for t in tcons if t.tcon_global_id in lock_tids]
        if exact:
            return exact
    if mode is None:
        return [t for t in tcons if t.share_name.lower() == IPC_SHARE.lower()] if complete else []
    disk = [t for t in tcons if t.share_name.lower() != IPC_SHARE.lower()]
    where = os.path.normpath(mode.servicepath)
    same = [t for t in disk if share_paths.get(t.share_name.lower()) == where]
    return same or [t for t in disk if t.share_name.lower() not in share_paths]


def _open_path(mode: records.ShareModeRecord | None) -> tuple[str | None, str | None]:
    """(Path, ShareRelativePath) of a file from its share-mode record, '/'-separated as on the server."""
    if mode is None:
        return None, None
    relative = ("" if mode.base_name == "." else mode.base_name) + (mode.stream_name or "")
    if not relative:
        return mode.servicepath, ""
    return (mode.servicepath.rstrip("/") or "") + "/" + relative, relative


def _is_encrypted(flags: int) -> bool:
    """Samba's smbXsrv_is_encrypted: nothing unencrypted seen, and encryption seen, desired or required."""
    return not flags & PROCESSED_UNENCRYPTED and bool(
        flags & (PROCESSED_ENCRYPTED | ENCRYPTION_DESIRED | ENCRYPTION_REQUIRED)
    )


def _is_signed(flags: int) -> bool:
    """Samba's smbXsrv_is_signed: a signed request seen and no unsigned one."""
    return not flags & PROCESSED_UNSIGNED and bool(flags & PROCESSED_SIGNED)


def _user_sid(info: Any) -> str:
    token = info.security_token
    return str(token.sids[0]) if token is not None and token.sids else ""


def _share_record(share: ShareConfig, name: str, version: str) -> ShareRecord:
    """A service as Samba's srvsvc describes it (``get_share_type``: printable 1, ``fstype = IPC`` 3,
    either with ``administrative share`` | STYPE_SPECIAL; anything else a disk, 0)."""
    kind = STYPE_DISKTREE
    if share.printable:
        kind = STYPE_PRINTQ | (STYPE_SPECIAL if share.administrative else 0)
    if share.ipc:
        kind = STYPE_IPC | (STYPE_SPECIAL if share.administrative else 0)
    path = share.path if share.path and "%" not in share.path else None
    return ShareRecord(
        name=name,
        path=path,
        share_type=kind,
        remark=_substitute(share.comment, version),
        max_uses=share.max_connections or None,
    )


def _substitute(text: str, version: str) -> str | None:
    """smbd's substitutions in a comment that do not depend on the client: %v (Samba's version)
    and %h (this host's name up to its first dot); None if another one remains."""
    if "%" not in text:
        return text
    text = text.replace("%v", version).replace("%h", socket.gethostname().split(".")[0])
    return None if "%" in text else text


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
