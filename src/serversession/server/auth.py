"""HTTP Basic authentication for ``serversession serve``: an Apache htpasswd file (bcrypt) or PAM.

Checks are blocking (bcrypt, PAM conversations); the server runs them in a thread. Passwords are
never logged, kept or compared outside bcrypt and PAM.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import secrets
import stat
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..errors import InvalidInput, ServerSessionError

log = logging.getLogger(__name__)

MAX_HEADER = 4096  # bytes of an Authorization header worth looking at
MAX_FILE = 16 * 1024 * 1024  # an htpasswd file larger than this is a mistake
BCRYPT_MAX = 72  # bcrypt (and Apache's htpasswd -B) use the first 72 bytes of a password
RACY_NS = 2_000_000_000  # a file changed this recently may change again within the same timestamp tick

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """The user and password of an ``Authorization: Basic ...`` header (RFC 7617).

    None when the header is absent, of another scheme, oversize, not strict base64, not UTF-8,
    without a colon, or holds control characters (which RFC 7617 forbids). Never raises.
    """
    if not header or len(header) > MAX_HEADER:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "basic" or not token:
        return None
    try:
        text = base64.b64decode(token, validate=True).decode("utf-8")
    except (ValueError, binascii.Error):  # bad base64, non-ASCII header, or not UTF-8
        return None
    user, colon, password = text.partition(":")
    if not colon or _CONTROL.search(text):
        return None
    return user, password


@runtime_checkable
class Authenticator(Protocol):
    """Checks a user's password; ``description`` says against what (for the start-up message)."""

    description: str

    def check(self, user: str, password: str) -> bool:
        """True when ``password`` is the user's. Blocking; never raises for bad input."""
        ...


@dataclass(frozen=True)
class _Table:
    users: dict[str, bytes]  # user -> bcrypt hash
    dummy: bytes  # a bcrypt hash of a random password, at the file's usual cost


_OTHER_SCHEMES = (
    ("$apr1$", "an MD5 ($apr1$)"),
    ("$1$", "an MD5-crypt ($1$)"),
    ("$5$", "a SHA-256-crypt ($5$)"),
    ("$6$", "a SHA-512-crypt ($6$)"),
    ("{SHA}", "a SHA-1 ({SHA})"),
)


def _scheme(hashed: str) -> str:
    for prefix, name in _OTHER_SCHEMES:
        if hashed.startswith(prefix):
            return name
    if len(hashed) == 13 and re.fullmatch(r"[./A-Za-z0-9]{13}", hashed):
        return "a crypt"
    return "a plain-text or unknown"


def _parse_htpasswd(path: str, data: bytes) -> _Table:
    """The bcrypt entries of an htpasswd file; InvalidInput naming the file and line otherwise."""
    users: dict[str, bytes] = {}
    first_line: dict[str, int] = {}
    costs: Counter[int] = Counter()
    for number, raw in enumerate(data.split(b"\n"), start=1):
        where = f"htpasswd file {path}, line {number}"
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise InvalidInput(f"{where}: not UTF-8 text") from None
        if not line or line.startswith("#"):
            continue
        user, colon, rest = line.partition(":")
        hashed = rest.split(":", 1)[0].strip()  # Apache ignores fields after the hash
        if not colon or not user or not hashed:
            raise InvalidInput(f"{where}: expected USER:HASH (make the file with htpasswd -B)")
        if user in first_line:
            raise InvalidInput(f"{where}: user {user} appears again (first on line {first_line[user]})")
        if hashed.startswith(("$2y$", "$2b$", "$2a$")):
            match = _BCRYPT.fullmatch(hashed)
            if match is None or not 4 <= int(match.group(1)) <= 31:
                raise InvalidInput(f"{where}: user {user} has a damaged bcrypt entry")
            costs[int(match.group(1))] += 1
        else:
            raise InvalidInput(
                f"{where}: user {user} has {_scheme(hashed)} entry; only bcrypt is accepted: htpasswd -B {path} {user}"
            )
        users[user] = hashed.encode("ascii")
        first_line[user] = number
    if not users:
        raise InvalidInput(f"htpasswd file {path} has no users: add one with htpasswd -B {path} USER")
    import bcrypt

    cost = costs.most_common(1)[0][0]
    dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=cost))
    return _Table(users, dummy)


def _signature(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class HtpasswdAuth:
    """Passwords from an Apache htpasswd file with bcrypt entries (``htpasswd -B``).

    The file is read at start (errors raise InvalidInput) and again whenever it changes. If a
    changed file cannot be read or parsed, every check fails (and a warning is logged) until it is
    fixed. Unknown users pay the same bcrypt check as known ones.
    """

    def __init__(self, path: str) -> None:
        try:
            import bcrypt  # noqa: F401
        except ImportError:
            raise ServerSessionError("--htpasswd needs bcrypt: pip install 'serversession[server]'") from None
        self.path = os.path.abspath(path)
        self.description = f"htpasswd file {self.path}"
        self._lock = threading.Lock()
        self._signature: tuple[int, ...] | None = None
        self._digest = b""
        self._racy = False
        self._table: _Table | None = self._load()
        self._dummy = self._table.dummy  # kept for the checks made while a changed file is invalid
        log.info("%s: %d users", self.description, len(self._table.users))

    def _read(self) -> tuple[tuple[int, ...], bytes]:
        """The file's signature and contents; InvalidInput when it cannot be read."""
        try:
            with open(self.path, "rb") as file:
                st = os.fstat(file.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise InvalidInput(f"htpasswd file {self.path} is not a regular file")
                if st.st_size > MAX_FILE:
                    raise InvalidInput(f"htpasswd file {self.path} is larger than {MAX_FILE // 2**20} MiB")
                data = file.read(MAX_FILE + 1)
        except OSError as exc:
            raise InvalidInput(f"htpasswd file {self.path}: cannot read: {exc.strerror or exc}") from None
        self._racy = time.time_ns() - st.st_mtime_ns < RACY_NS
        return _signature(st), data

    def _load(self) -> _Table:
        signature, data = self._read()
        table = _parse_htpasswd(self.path, data)
        self._signature, self._digest = signature, hashlib.sha256(data).digest()
        return table

    def _current(self) -> _Table | None:
        """The entries of the file as it is now; None while it is unreadable or invalid."""
        try:
            signature: tuple[int, ...] | None = _signature(os.stat(self.path))
        except OSError:
            signature = None
        with self._lock:
            if signature == self._signature and signature is not None and not self._racy:
                return self._table
            try:
                signature, data = self._read()
                digest = hashlib.sha256(data).digest()
                if digest != self._digest or self._table is None:
                    table = _parse_htpasswd(self.path, data)
                    self._table, self._dummy = table, table.dummy
                    log.info("%s changed: %d users", self.description, len(table.users))
                self._signature, self._digest = signature, digest
            except InvalidInput as exc:
                if self._table is not None or signature != self._signature:
                    log.warning("%s; refusing every login until it is fixed", exc)
                self._table, self._signature, self._digest = None, signature, b""
            return self._table

    def check(self, user: str, password: str) -> bool:
        """True when the file has a bcrypt entry for ``user`` that ``password`` matches."""
        import bcrypt

        table = self._current()
        known = table.users.get(user) if table is not None else None
        secret = password.encode("utf-8", "surrogatepass")[:BCRYPT_MAX]
        try:
            matched = bcrypt.checkpw(secret, known if known is not None else self._dummy)
        except ValueError:
            matched = False
        return matched and known is not None


class PamAuth:
    """Passwords checked by PAM (authentication, then account management) for a service name.

    The service is ``/etc/pam.d/SERVICE`` (``login`` by default). Checking other users' passwords
    with pam_unix needs root; credentials are not established (no pam_setcred).
    """

    def __init__(self, service: str = "login") -> None:
        if not service or "/" in service or _CONTROL.search(service):
            raise InvalidInput(f"invalid PAM service name {service!r}")
        try:
            import pam

            pam.PamAuthenticator()  # loads libpam
        except ImportError:
            raise ServerSessionError("--pam needs python-pam: pip install 'serversession[server]'") from None
        except (OSError, AttributeError, TypeError):
            raise ServerSessionError("--pam needs the PAM library libpam (Debian: libpam0g)") from None
        self.service = service
        self.description = f"PAM service {service}"

    def check(self, user: str, password: str) -> bool:
        """True when PAM authenticates ``user`` with ``password`` and lets the account in."""
        import pam

        if not user or _CONTROL.search(user) or "\x00" in password:
            return False
        handle = pam.PamAuthenticator()  # one per call: an instance is not thread-safe
        try:
            ok = handle.authenticate(user, password, service=self.service, resetcreds=False)
        except (ValueError, UnicodeEncodeError):
            return False
        if not ok:
            log.debug("PAM %s refused %r: %s", self.service, user, handle.reason)
        return bool(ok)


def make_authenticator(htpasswd: str | None, pam: bool, pam_service: str = "login") -> Authenticator:
    """The authenticator the options ask for: ``--htpasswd FILE`` or ``--pam`` (exactly one)."""
    if htpasswd and pam:
        raise InvalidInput("--htpasswd and --pam exclude each other")
    if htpasswd:
        return HtpasswdAuth(htpasswd)
    if pam:
        return PamAuth(pam_service)
    raise InvalidInput("choose how clients authenticate: --htpasswd FILE or --pam")
