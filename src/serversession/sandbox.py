"""A self-contained Samba on 127.0.0.1 for demos, tests and benchmarks.

Everything lives in one directory: smb.conf, users (tdbsam), a passwd and group file served
to smbd through nss_wrapper (so no system account is created), logs, locks and the share.
As root smbd runs for real; as another user it runs under uid_wrapper, which makes smbd
believe it is root (Debian packages libnss-wrapper and libuid-wrapper).

smbd runs the configuration written in the directory, as root when root starts it: a
directory another user could change (``/tmp/serversession-sandbox`` made in advance by someone
else, a symbolic link of theirs, a parent they can write to without the sticky bit) is refused,
and files are written without following symbolic links and only over regular files. Its
name cannot hold what smb.conf cannot (control characters, ``%``, which Samba substitutes,
``\\``, which continues a line).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass, field

from .errors import InvalidInput, ServerSessionError, SourceUnavailable
from .files import read_bytes, read_text
from .sources.smbd_connections import descendants_by_scan

DEFAULT_PORT = 4445
DEFAULT_USERS = ("alice", "bob")
DEFAULT_ADMINS = ("admin",)  # members of BUILTIN\\Administrators: they may list sessions over MS-SRVS
ADMINISTRATORS_SID = "S-1-5-32-544"
LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
START_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
MAX_STATE_BYTES = 1 << 20  # sandbox.json

SMB_CONF = """\
# serversession sandbox: a Samba reachable only on 127.0.0.1:{port}
[global]
  netbios name = SSSANDBOX
  workgroup = SANDBOX
  server role = standalone server
  interfaces = 127.0.0.1
  bind interfaces only = yes
  smb ports = {port}
  disable netbios = yes
  private dir = {d}/private
  lock directory = {d}/lock
  state directory = {d}/state
  cache directory = {d}/cache
  pid directory = {d}/pid
  ncalrpc dir = {d}/ncalrpc
  binddns dir = {d}/bind-dns
  log file = {d}/log/log.%m
  max log size = 1000
  passdb backend = tdbsam:{d}/private/passdb.tdb
  map to guest = bad user
  guest account = {guest}
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
  max connections = 0
{options}
[share]
  path = {d}/share
  read only = no
  guest ok = yes
"""


def _find(names: tuple[str, ...], dirs: tuple[str, ...]) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
        for directory in dirs:
            path = os.path.join(directory, name)
            if os.access(path, os.X_OK):
                return path
    return None


def _library(name: str) -> str | None:
    for directory in LIBRARY_DIRS:
        matches = sorted(glob.glob(os.path.join(directory, f"lib{name}.so*")))
        if matches:
            return matches[0]
    return None


def free_port() -> int:
    """An unprivileged TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Sandbox:
    """A sandbox Samba rooted at ``directory``."""

    directory: str
    port: int = DEFAULT_PORT
    users: dict[str, str] = field(default_factory=dict)
    #: extra [global] parameters of smb.conf, e.g. {"rpc start on demand helpers": "no"}
    options: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.directory = os.path.abspath(self.directory)

    @property
    def conf_path(self) -> str:
        return os.path.join(self.directory, "smb.conf")

    @property
    def share_path(self) -> str:
        return os.path.join(self.directory, "share")

    @property
    def _state_path(self) -> str:
        return os.path.join(self.directory, "sandbox.json")

    @classmethod
    def load(cls, directory: str) -> Sandbox:
        """The sandbox created earlier in ``directory`` (its port and users)."""
        sandbox = cls(directory)
        if not os.path.lexists(sandbox._state_path):
            raise ServerSessionError(f"no sandbox in {sandbox.directory}")
        sandbox.check_directory(writing=False)
        try:
            state = json.loads(read_text(sandbox._state_path, "sandbox state", MAX_STATE_BYTES))
            sandbox.port = int(state["port"])
            sandbox.users = {str(user): str(password) for user, password in dict(state["users"]).items()}
        except (ValueError, KeyError, TypeError) as exc:
            raise ServerSessionError(f"sandbox state {sandbox._state_path} is unusable: {exc}") from exc
        if not 1 <= sandbox.port <= 65535:
            raise ServerSessionError(f"sandbox state {sandbox._state_path} is unusable: port {sandbox.port}")
        return sandbox

    def check_directory(self, writing: bool = True) -> None:
        """Refuse a directory smb.conf cannot name, or that a user other than this one (or root)
        could change: smbd would run what they put there (as root, when root starts it).

        Every symbolic link on the way must be this user's or root's; every directory above the
        real one root's or this user's, and writable by others only with the sticky bit (/tmp);
        the directory itself, if it exists, this user's (or root's, to read it) and writable by
        no one else.
        """
        path = self.directory
        if not path.isprintable() or any(char in path for char in "%\\"):
            raise InvalidInput(
                f"the sandbox directory {path!r} holds a character smb.conf cannot: '%', a backslash or a control"
            )
        trusted = {0, os.geteuid()}
        current = "/"
        for part in path.strip("/").split("/"):
            current = os.path.join(current, part)
            try:
                info = os.lstat(current)
            except FileNotFoundError:
                break
            if stat.S_ISLNK(info.st_mode) and info.st_uid not in trusted:
                raise InvalidInput(f"{current} is a symbolic link of user {info.st_uid}: refusing it for the sandbox")
        real = os.path.realpath(path)
        above = os.path.dirname(real)
        while True:
            try:
                info = os.stat(above)
            except FileNotFoundError:
                info = None
            if info is not None and (
                info.st_uid not in trusted or (info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX)
            ):
                raise InvalidInput(
                    f"{above} can be changed by another user (owner {info.st_uid}, mode {info.st_mode & 0o7777:o}): "
                    "choose another --dir for the sandbox"
                )
            if above == os.path.dirname(above):
                break
            above = os.path.dirname(above)
        try:
            info = os.stat(real)
        except FileNotFoundError:
            return
        owners = {os.geteuid()} if writing else trusted
        if not stat.S_ISDIR(info.st_mode):
            raise InvalidInput(f"the sandbox directory {path} is not a directory")
        if info.st_uid not in owners:
            raise InvalidInput(f"the sandbox directory {path} belongs to user {info.st_uid}, not you: refusing it")
        if info.st_mode & 0o022:
            raise InvalidInput(
                f"others may write to the sandbox directory {path} (mode {info.st_mode & 0o7777:o}): refusing it"
            )

    def environment(self) -> dict[str, str]:
        """Environment for Samba's programs: nss_wrapper always, uid_wrapper unless root."""
        nss = _library("nss_wrapper")
        preload = [nss] if nss else []
        env = dict(os.environ)
        env.update(
            NSS_WRAPPER_PASSWD=os.path.join(self.directory, "passwd"),
            NSS_WRAPPER_GROUP=os.path.join(self.directory, "group"),
        )
        if os.geteuid() != 0:
            uid = _library("uid_wrapper")
            if uid:
                preload.insert(0, uid)
            env.update(UID_WRAPPER="1", UID_WRAPPER_ROOT="1")
        env["LD_PRELOAD"] = ":".join(preload)
        return env

    def check_requirements(self) -> None:
        """Raise a clear error naming what is missing to run the sandbox."""
        missing = []
        if not _find(("smbd",), SBIN_DIRS):
            missing.append("smbd (Debian: apt-get install samba)")
        for tool in ("smbpasswd", "net"):
            if not _find((tool,), SBIN_DIRS):
                missing.append(f"{tool} (Debian: apt-get install samba-common-bin)")
        if not _library("nss_wrapper"):
            missing.append("nss_wrapper (Debian: apt-get install libnss-wrapper)")
        if os.geteuid() != 0 and not _library("uid_wrapper"):
            missing.append(
                "uid_wrapper to run smbd without root (Debian: apt-get install libuid-wrapper), or run as root"
            )
        if missing:
            raise SourceUnavailable("the sandbox needs " + "; ".join(missing))
        if not 1 <= self.port <= 65535:
            raise InvalidInput(f"port {self.port} is not a TCP port")
        if self.port < 1024 and os.geteuid() != 0:
            raise InvalidInput(f"port {self.port} needs root; choose one above 1023")

    def pid(self) -> int | None:
        """The pid of the sandbox's smbd, or None if it is not running."""
        return self._daemon_pid("smbd")

    def _daemon_pid(self, name: str) -> int | None:
        """The pid in ``pid/NAME.pid`` if that process is this sandbox's ``name``."""
        try:
            pid = int(read_bytes(os.path.join(self.directory, "pid", f"{name}.pid"), "pid file", 64).split()[0])
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                argv = cmdline.read().split(b"\0")
        except (OSError, ServerSessionError, ValueError, IndexError):
            return None
        if os.path.basename(argv[0]) != name.encode() or not any(self.conf_path.encode() in a for a in argv):
            return None
        return pid

    def start(self, users: tuple[str, ...] = DEFAULT_USERS, admins: tuple[str, ...] = DEFAULT_ADMINS) -> None:
        """Write the configuration, create ``users`` and ``admins`` with random passwords and start smbd.

        ``admins`` are members of a group mapped to BUILTIN\\Administrators, which Samba requires
        of whoever lists sessions over MS-SRVS (``--source srvsvc``).
        """
        self.check_requirements()
        self.check_directory()
        if self.pid() is not None:
            raise ServerSessionError(f"the sandbox in {self.directory} is already running (pid {self.pid()})")
        if _port_open(self.port):
            raise ServerSessionError(f"port {self.port} on 127.0.0.1 is already in use; choose another with --port")
        try:
            self._write_files(users, admins)
        except OSError as exc:
            raise ServerSessionError(f"cannot write the sandbox in {self.directory}: {exc.strerror or exc}") from None
        smbd = _find(("smbd",), SBIN_DIRS)
        with open(os.path.join(self.directory, "log", "smbd.stderr"), "ab") as log:
            result = subprocess.run(
                [smbd, "-D", "-s", self.conf_path],  # type: ignore[list-item]
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                timeout=START_TIMEOUT,
                check=False,
            )
        if result.returncode != 0:
            raise ServerSessionError(f"smbd did not start (exit {result.returncode}); see {self.directory}/log")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.pid() is not None and _port_open(self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise ServerSessionError(
            f"smbd did not listen on 127.0.0.1:{self.port} within {START_TIMEOUT:g} s; see {self.directory}/log"
        )

    def _check_reachable(self) -> None:
        """smbd serves the share as each user: every parent directory must be searchable by others."""
        path = os.path.dirname(self.directory)
        while True:
            if os.path.isdir(path) and not os.stat(path).st_mode & 0o001:
                raise InvalidInput(
                    f"the sandbox users cannot reach {self.directory}: {path} is not searchable by others; "
                    "choose another --dir (for example under /tmp) or chmod o+x it"
                )
            if path == os.path.dirname(path):
                return
            path = os.path.dirname(path)

    def _write_files(self, users: tuple[str, ...], admins: tuple[str, ...]) -> None:
        d = self.directory
        self._check_reachable()
        os.makedirs(d, mode=0o700, exist_ok=True)
        self.check_directory()  # what was made is still ours (no one swapped it in between)
        os.chmod(d, 0o755)  # the users' smbd processes must reach the share
        for sub in ("private", "lock", "state", "cache", "pid", "ncalrpc", "bind-dns", "log", "share"):
            os.makedirs(os.path.join(d, sub), mode=0o755, exist_ok=True)
            if not stat.S_ISDIR(os.lstat(os.path.join(d, sub)).st_mode):
                raise ServerSessionError(f"{os.path.join(d, sub)} is not a directory (a symbolic link?)")
        os.chmod(os.path.join(d, "share"), 0o1777)
        for stale in glob.glob(os.path.join(d, "lock", "*.tdb")):
            os.remove(stale)  # volatile databases of an earlier run
        guest = "nobody"
        passwd = ["root:x:0:0:root:/root:/bin/false", f"{guest}:x:65534:65534:nobody:/nonexistent:/bin/false"]
        group = [
            "root:x:0:",
            "nogroup:x:65534:",
            "sandbox:x:10000:" + ",".join(users),
            "sbadmins:x:10100:" + ",".join(admins),
        ]
        self.users = dict(self.users)
        accounts = [(user, 10000) for user in users] + [(admin, 10100) for admin in admins]
        for number, (user, gid) in enumerate(accounts, start=10001):
            passwd.append(f"{user}:x:{number}:{gid}:{user}:{d}/share:/bin/false")
            self.users.setdefault(user, secrets.token_urlsafe(12))
        _write(os.path.join(d, "passwd"), "\n".join(passwd) + "\n")
        _write(os.path.join(d, "group"), "\n".join(group) + "\n")
        options = "".join(f"  {key} = {value}\n" for key, value in self.options.items())
        _write(self.conf_path, SMB_CONF.format(d=d, port=self.port, guest=guest, options=options))
        for user, _ in accounts:
            self._samba_tool("smbpasswd", ["-c", self.conf_path, "-s", "-a", user], f"{self.users[user]}\n" * 2)
        if admins:
            self._samba_tool(
                "net",
                [
                    "-s",
                    self.conf_path,
                    "groupmap",
                    "add",
                    f"sid={ADMINISTRATORS_SID}",
                    "unixgroup=sbadmins",
                    "type=builtin",
                ],
                already="already mapped",
            )
        state = {"port": self.port, "users": self.users}
        _write(self._state_path, json.dumps(state, indent=2) + "\n", mode=0o600)

    def _samba_tool(self, name: str, args: list[str], stdin: str = "", already: str | None = None) -> None:
        """Run one of Samba's tools on the sandbox's configuration; an error says what failed."""
        result = subprocess.run(
            [_find((name,), SBIN_DIRS) or name, *args],
            input=stdin,
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        message = result.stderr.strip() or result.stdout.strip()
        if result.returncode != 0 and not (already and already in message):
            raise ServerSessionError(f"sandbox: {name} {' '.join(args[2:])} failed: {message}")

    def stop(self) -> bool:
        """Stop smbd, the samba-dcerpcd it started on demand, and their children; True if smbd was running."""
        pid = self.pid()
        daemons = [p for p in (pid, self._daemon_pid("samba-dcerpcd")) if p is not None]
        if not daemons:
            return False
        group = [member for daemon in daemons for member in (daemon, *descendants_by_scan(daemon))]
        for member in group:
            _signal(member, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and any(_alive(p) for p in group):
            time.sleep(0.05)
        for member in group:
            _signal(member, signal.SIGKILL)
        return pid is not None

    def status(self) -> dict[str, object]:
        """What a person or a script needs to use the sandbox."""
        pid = self.pid()
        return {
            "directory": self.directory,
            "running": pid is not None,
            "pid": pid,
            "address": f"127.0.0.1:{self.port}",
            "smb_conf": self.conf_path,
            "share": "//127.0.0.1/share",
            "users": sorted(self.users),
            "credentials": self._state_path,
        }


def _write(path: str, text: str, mode: int = 0o644) -> None:
    """Write ``path`` anew: never through a symbolic link, never into a FIFO or device."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise ServerSessionError(f"cannot write {path}: {exc.strerror} (a symbolic link, FIFO or socket?)") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ServerSessionError(f"cannot write {path}: it is not a regular file")
        os.set_blocking(fd, True)
        handle.truncate(0)
        handle.write(text)
        os.fchmod(fd, mode)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)
