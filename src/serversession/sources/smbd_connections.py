"""Cross-checks of smbd's databases against what the kernel shows smbd holding.

A session database that cannot be walked must never read as "no sessions": the kernel knows
every established TCP connection to smbd's ports (sock_diag, with the socket's inode) and
``/proc/PID/fd`` of smbd's processes tells which smbd child owns each one (smbd forks one child
per client connection) and which files of the shares it holds open. On Samba 4.17 every open
file and directory handle holds one file descriptor in its smbd process (a stat-only open an
``O_PATH`` one) and named pipes hold none; smbd holds no descriptor in a share otherwise, but
for moments (the share's root while it creates a file: never counted).

Sessions (:func:`check_sessions`). A connection counts if an smbd child older than MIN_AGE owns
it and no session (authenticated or still authenticating) has its client endpoint. A socket the
main smbd holds never counts: it has just accepted it and not yet handed it to the child it
forks, and its age is the daemon's. A client that logged off keeps its TCP connection (SMB2
LOGOFF ends the session, not the connection) and sends nothing more; measured on 4.17, smbd
closes such a connection (no tree connect left) at its next 60 s idle tick, 60-70 s after the
logoff. From outside it cannot be told from a connection whose session record was lost:
requiring data received in the last N seconds (``Connection.idle_ms``) was weighed and refused.
The logoff itself is the last data received, so a logged-off connection still counts for the
first N seconds (the false warning is shortened, not removed), while every idle client whose
record was lost (a mapped drive not in use: the usual case) would be missed; the reverse (only
connections idle for longer than smbd keeps a logged-off one) misses every Linux client, which
sends an SMB2 ECHO each 60 s. So every such connection counts, and the warning names the
harmless causes first and damage last.

Everything is bounded (processes, descriptors per process, time); a process that ends while it
is read is skipped; a caller who may not read smbd's descriptors (not root) gets None: the
check is skipped, it does not fail. A scan costs about 0.1 ms per smbd process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from . import tcp_idle

MAX_PROCESSES = 65536  # smbd processes read (one per client connection)
MAX_FDS = 65536  # descriptors read per process
SCAN_TIME = 2.0  # seconds the whole scan may take
MIN_AGE = 5.0  # seconds: a younger connection may still be negotiating or authenticating
SYSTEM_DIRECTORIES = ("/dev", "/proc", "/sys", "/run")
SAMPLES = 3  # connections or files named in a warning


@dataclass(frozen=True, slots=True)
class SmbdProcess:
    """One smbd process: its socket inodes and the files of the shares it holds open."""

    pid: int
    start: int  # start time in clock ticks after boot (/proc/PID/stat), to tell a reused pid
    age: float  # seconds since it started, when read
    sockets: frozenset[int]
    share_files: frozenset[tuple[int, str]]  # (fd, path)


@dataclass(frozen=True, slots=True)
class Connection:
    """An established TCP connection to smbd's ports and the smbd process that owns it."""

    local: tcp_idle.Endpoint
    remote: tcp_idle.Endpoint
    pid: int
    age: float  # seconds since the owning smbd process started (about the connection's age)
    idle_ms: int | None  # milliseconds since the client last sent data


class _Denied(Exception):
    """A process's descriptors may not be read."""


def share_paths(lp: Any) -> list[str]:
    """The paths of the disk shares of a loaded smb.conf (``samba.param.LoadParm``), printers left out."""
    return [path for name in lp.services() if not lp.get("printable", name) and (path := lp.get("path", name))]


def own_directories(lp: Any) -> list[str]:
    """Samba's own directories in a loaded smb.conf: smbd's files there are never a client's."""
    names = ("lock directory", "state directory", "cache directory", "private dir", "pid directory", "ncalrpc dir")
    found = [lp.get(name) for name in names]
    log = lp.get("log file")
    return [d for d in (*found, os.path.dirname(log) if log else None) if d]


def smbd_processes(
    main_pid: int, shares: Iterable[str] = (), exclude: Iterable[str] = (), time_limit: float = SCAN_TIME
) -> dict[int, SmbdProcess] | None:
    """The main smbd and its descendants, by pid; None if their descriptors cannot be read or time runs out.

    A descriptor counts as a share file if its path is in one of ``shares`` (:func:`share_paths`;
    resolved; paths with ``%`` substitutions are left out) and not under ``exclude``
    (:func:`own_directories`), SYSTEM_DIRECTORIES, or a path the main smbd holds open.
    """
    deadline = time.monotonic() + time_limit
    roots = tuple({_directory(os.path.realpath(p)) for p in shares if p.startswith("/") and "%" not in p})
    skip = tuple(_directory(p) for p in (*SYSTEM_DIRECTORIES, *exclude))
    clock, uptime = _clock()
    found: dict[int, SmbdProcess] = {}
    try:
        main = _read(main_pid, ("/",), (), clock, uptime)
        if main is None:
            return None
        daemon_files = frozenset(path for _, path in main.share_files)  # smbd's own: never a client's
        found[main_pid] = SmbdProcess(main_pid, main.start, main.age, main.sockets, frozenset())
        for pid in _descendants(main_pid):
            if len(found) >= MAX_PROCESSES or time.monotonic() > deadline:
                return None
            process = _read(pid, roots, skip, clock, uptime)
            if process is not None:
                files = frozenset(item for item in process.share_files if item[1] not in daemon_files)
                found[pid] = SmbdProcess(pid, process.start, process.age, process.sockets, files)
    except _Denied:
        return None
    return found


def smbd_client_connections(
    main_pid: int,
    ports: set[int] | None = None,
    processes: Mapping[int, SmbdProcess] | None = None,
    sockets: Mapping[tcp_idle.ConnectionKey, tcp_idle.SocketInfo] | None = None,
) -> list[Connection] | None:
    """Established connections to smbd's ``ports`` owned by ``main_pid`` or its descendants.

    ``ports`` default to the ports the main smbd listens on. ``processes`` (from
    :func:`smbd_processes`) and ``sockets`` (from :func:`tcp_idle.tcp_sockets` of those ports) may
    be passed to reuse a scan. None if smbd's descriptors cannot be read (the check is skipped).
    """
    if processes is None:
        processes = smbd_processes(main_pid)
    if processes is None or main_pid not in processes:
        return None
    if ports is None:
        ports = listening_ports(processes[main_pid])
    if sockets is None:
        sockets = tcp_idle.tcp_sockets(ports) if ports else {}
    # A socket the main smbd holds is one it has just accepted and not yet handed to a child
    # (or a listening one): no session can be on it yet, whatever the daemon's age.
    owner = {inode: process for process in processes.values() if process.pid != main_pid for inode in process.sockets}
    out = []
    for (local, remote), (idle_ms, inode, state) in sockets.items():
        process = owner.get(inode)
        if process is not None and state == tcp_idle.TCP_ESTABLISHED and local[1] in ports:
            out.append(Connection(local, remote, process.pid, process.age, idle_ms))
    return sorted(out, key=lambda c: (c.pid, c.remote))


def listening_ports(main: SmbdProcess) -> set[int]:
    """The TCP ports the main smbd listens on (its listening sockets' inodes, matched in sock_diag)."""
    listening = tcp_idle.tcp_sockets(None, states=tcp_idle.LISTENING, info=False)
    return {local[1] for (local, _), (_, inode, _) in listening.items() if inode in main.sockets}


def check_sessions(
    connections: Iterable[Connection] | None,
    session_endpoints: Iterable[tcp_idle.ConnectionKey | tcp_idle.Endpoint],
    min_age: float = MIN_AGE,
    *,
    authenticating: Iterable[tcp_idle.ConnectionKey | tcp_idle.Endpoint] = (),
) -> str | None:
    """A warning if connections older than ``min_age`` s have no session in the session database.

    ``session_endpoints`` are the channels of the sessions, ``authenticating`` those of the
    records still authenticating (a logon in progress: a password prompt can take minutes), each
    as a (local, remote) pair (local may be None) or a client endpoint: a connection has a
    session when its client endpoint is among them (the client's address and port tell one
    connection to smbd from another). None if all have one, or if ``connections`` is None.
    The warning names the harmless causes first (module docstring: they cannot be told apart).
    """
    if connections is None:
        return None
    known = {_remote(item) for item in (*session_endpoints, *authenticating)}
    old = [c for c in connections if c.age >= min_age]
    missing = [c for c in old if c.remote not in known]
    if not missing:
        return None
    named = ", ".join(f"{tcp_idle.format_endpoint(c.remote)} (smbd pid {c.pid})" for c in missing[:SAMPLES])
    more = f" and {len(missing) - SAMPLES} more" if len(missing) > SAMPLES else ""
    have = "has" if len(missing) == 1 else "have"
    return (
        f"{len(missing)} of {_plural(len(old), 'connection')} to smbd {have} no session: logged off (clients keep "
        f"connections for reuse), never logged on, or lost from the session database (damaged?): {named}{more}"
    )


def _remote(item: tcp_idle.ConnectionKey | tcp_idle.Endpoint | tuple[None, tcp_idle.Endpoint]) -> tcp_idle.Endpoint:
    """The client endpoint of a (local, remote) pair, or the endpoint itself."""
    return item[1] if isinstance(item[1], tuple) else item  # type: ignore[return-value]


def _read(pid: int, roots: tuple[str, ...], skip: tuple[str, ...], clock: int, uptime: float) -> SmbdProcess | None:
    """One process's sockets and share files; None if it is gone (or a zombie)."""
    start = _start_ticks(pid)
    if start is None:
        return None
    sockets: set[int] = set()
    files = frozenset(_files(pid, roots, skip, sockets))
    return SmbdProcess(pid, start, max(0.0, uptime - start / clock), frozenset(sockets), files)


def _files(
    pid: int, roots: tuple[str, ...], skip: tuple[str, ...] = (), sockets: set[int] | None = None
) -> list[tuple[int, str]]:
    """(fd, path) of the descriptors of ``pid`` under ``roots``; socket inodes go to ``sockets``."""
    try:
        directory = os.open(f"/proc/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY)
    except PermissionError:
        raise _Denied from None
    except OSError:
        return []  # gone
    out = []
    try:
        with os.scandir(directory) as entries:
            for number, entry in enumerate(entries):
                if number >= MAX_FDS:
                    break
                try:
                    target = os.readlink(entry.name, dir_fd=directory)
                except PermissionError:
                    raise _Denied from None
                except OSError:
                    continue  # closed meanwhile, or the process ended
                if target.startswith("socket:["):
                    if sockets is not None and target[8:-1].isdigit():
                        sockets.add(int(target[8:-1]))
                elif (
                    target.startswith("/")
                    and _under(target, roots)
                    and target + "/" not in roots  # a share's root: smbd holds it briefly itself
                    and not _under(target, skip)
                ):
                    out.append((int(entry.name), target))
    except PermissionError:
        raise _Denied from None
    except OSError:
        return out
    finally:
        os.close(directory)
    return out


def _under(path: str, directories: tuple[str, ...]) -> bool:
    return any(directory == "/" or path == directory[:-1] or path.startswith(directory) for directory in directories)


def _directory(path: str) -> str:
    """``path`` with one trailing slash, as a prefix of what is inside it."""
    return path.rstrip("/") + "/"


def _descendants(pid: int) -> list[int]:
    """Every descendant of ``pid``: from /proc/PID/task/TID/children, else from every process's parent."""
    if not _has_children_files():
        return descendants_by_scan(pid)
    out: list[int] = []
    todo = [pid]
    while todo and len(out) < MAX_PROCESSES:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children", "rb") as handle:
                    children = [int(child) for child in handle.read().split()]
            except (OSError, ValueError):
                continue
            out.extend(children)
            todo.extend(children)
    return out


def descendants_by_scan(pid: int) -> list[int]:
    """Every descendant of ``pid``, from the parent pids of all processes in /proc (bounded)."""
    parents: dict[int, list[int]] = {}
    for number, entry in enumerate(os.listdir("/proc")):
        if number > 4 * MAX_PROCESSES:
            break
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    ppid = int(stat.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo and len(out) < MAX_PROCESSES:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@lru_cache(maxsize=1)
def _has_children_files() -> bool:
    """Whether the kernel has CONFIG_PROC_CHILDREN (Debian's and most distributions' kernels do)."""
    return os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def _start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time, clock ticks after boot); None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        if len(fields) < 20 or fields[0] in (b"Z", b"X"):
            return None
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _clock() -> tuple[int, float]:
    """(clock ticks per second, seconds since boot)."""
    with open("/proc/uptime", "rb") as handle:
        uptime = float(handle.read().split()[0])
    return os.sysconf("SC_CLK_TCK"), uptime


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else many or one + 's'}"
