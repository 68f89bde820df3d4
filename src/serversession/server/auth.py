"""HTTP Basic authentication for ``serversession serve``: an Apache htpasswd file (bcrypt) or PAM.

Checks are blocking (bcrypt, PAM conversations); the server runs them in a small pool of their
own (:class:`LoginGate`), with a cap on the checks waiting, so that a flood of wrong passwords
costs a bounded amount of work and never delays requests of users already logged in. Passwords
are never logged, and kept only as an HMAC under a per-process key while a success is cached.

Every htpasswd check costs the same bcrypt work whoever the user is: an unknown user is checked
against a dummy hash at the file's highest cost, and a user whose hash has a lower cost pays the
difference in dummy checks (costs c, c+1, ... max-1 add up to 2**max - 2**c), so timing tells
neither whether a user exists nor which cost their entry has.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import errno
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..errors import InvalidInput, ServerSessionError, SourceUnavailable
from ..files import read_bytes
from .work import Busy, Tally

log = logging.getLogger(__name__)

MAX_HEADER = 4096  # bytes of an Authorization header worth looking at
MAX_FILE = 16 * 1024 * 1024  # an htpasswd file larger than this is a mistake
MAX_COST = 17  # the highest bcrypt cost Apache's htpasswd makes (-C 4 to 17); each step doubles a check
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
    max_cost: int  # the highest cost in the file: every check costs one check at it
    dummies: dict[int, bytes]  # cost -> a bcrypt hash of a random password, for the costs in the file and up


def _cost(hashed: bytes) -> int:
    return int(hashed[4:6])


def _dummies(low: int, high: int) -> dict[int, bytes]:
    """Dummy hashes at costs ``low`` to ``high``: making them costs about two checks at ``high``."""
    import bcrypt

    return {cost: bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=cost)) for cost in range(low, high + 1)}


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
            if int(match.group(1)) > MAX_COST:
                raise InvalidInput(
                    f"{where}: user {user} has bcrypt cost {int(match.group(1))}; at most {MAX_COST} "
                    f"(as htpasswd -C allows): every login would take too long"
                )
            costs[int(match.group(1))] += 1
        else:
            raise InvalidInput(
                f"{where}: user {user} has {_scheme(hashed)} entry; only bcrypt is accepted: htpasswd -B {path} {user}"
            )
        users[user] = hashed.encode("ascii")
        first_line[user] = number
    if not users:
        raise InvalidInput(f"htpasswd file {path} has no users: add one with htpasswd -B {path} USER")
    return _Table(users, max(costs), _dummies(min(costs), max(costs)))


def _signature(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class HtpasswdAuth:
    """Passwords from an Apache htpasswd file with bcrypt entries (``htpasswd -B``).

    The file is read at start (errors raise InvalidInput) and again whenever it changes (checked
    on each check and by :meth:`refresh`), always through :func:`serversession.files.read_bytes`:
    a FIFO, a device or an oversized file is refused, never read. If a changed file cannot be
    read or parsed, every check fails (and a warning is logged) until it is fixed. ``generation``
    changes whenever the entries do (a cache of successful checks keyed on it forgets them).
    """

    def __init__(self, path: str) -> None:
        try:
            import bcrypt  # noqa: F401
        except ImportError:
            raise ServerSessionError("--htpasswd needs bcrypt: pip install 'serversession[server]'") from None
        self.path = os.path.abspath(path)
        self.description = f"htpasswd file {self.path}"
        self.generation = 0
        self._lock = threading.Lock()
        self._signature: tuple[int, ...] | None = None
        self._digest = b""
        self._racy = False
        self._table: _Table | None = self._load()
        # kept for the checks made while a changed file is invalid: they cost what they cost before
        self._max_cost, self._dummy = self._table.max_cost, self._table.dummies[self._table.max_cost]
        log.info("%s: %d users", self.description, len(self._table.users))

    def _read(self) -> tuple[tuple[int, ...], bytes]:
        """The file's signature and contents; InvalidInput when it cannot be read."""
        try:
            st = os.stat(self.path)
            data = read_bytes(self.path, "htpasswd file", MAX_FILE)
        except OSError as exc:
            raise InvalidInput(f"htpasswd file {self.path}: cannot read: {exc.strerror or exc}") from None
        except SourceUnavailable as exc:
            raise InvalidInput(_unreadable(self.path, exc)) from None
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
                    self._table, self._max_cost = table, table.max_cost
                    self._dummy = table.dummies[table.max_cost]
                    self.generation += 1
                    log.info("%s changed: %d users", self.description, len(table.users))
                self._signature, self._digest = signature, digest
            except InvalidInput as exc:
                if self._table is not None or signature != self._signature:
                    log.warning("%s; refusing every login until it is fixed", exc)
                if self._table is not None:
                    self.generation += 1
                self._table, self._signature, self._digest = None, signature, b""
            return self._table

    def refresh(self) -> None:
        """Notice a change of the file now (``generation``), without checking a password."""
        self._current()

    def check(self, user: str, password: str) -> bool:
        """True when the file has a bcrypt entry for ``user`` that ``password`` matches.

        Costs one bcrypt check at the file's highest cost, whoever ``user`` is.
        """
        import bcrypt

        table = self._current()
        known = table.users.get(user) if table is not None else None
        secret = password.encode("utf-8", "surrogatepass")[:BCRYPT_MAX]
        target = known if known is not None else self._dummy
        try:
            matched = bcrypt.checkpw(secret, target)
        except ValueError:
            matched = False
        if table is not None:
            for cost in range(_cost(target), table.max_cost):  # pad to the cost of the dearest entry
                bcrypt.checkpw(secret, table.dummies[cost])
        return matched and known is not None


def _unreadable(path: str, exc: SourceUnavailable) -> str:
    """files.py's verdict on the htpasswd file, as one line naming it."""
    cause = exc.__context__
    if isinstance(cause, OSError) and cause.strerror:
        return f"htpasswd file {path}: cannot read: {cause.strerror}"
    if str(exc).endswith("is a directory, not a file"):
        return f"htpasswd file {path}: cannot read: {os.strerror(errno.EISDIR)}"
    return str(exc)


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


class LoginGate:
    """Password checks for the server: a small pool of their own, a cap, and a cache of successes.

    - At most ``workers`` checks run at once and at most ``max_pending`` wait or run; a client
      address may hold half of those. Past that, :meth:`check` raises :class:`Busy` at once (no
      bcrypt): a flood of wrong passwords costs a bounded amount of work.
    - A successful check is remembered for ``cache_seconds`` under an HMAC (per-process random
      key) of user and password, and forgotten as soon as the authenticator's ``generation``
      changes (the htpasswd file changed): a logged-in client's next requests cost no bcrypt,
      and a removed user or changed password stops working at once.
    """

    MAX_CACHED = 4096

    def __init__(
        self, authenticator: Authenticator, workers: int = 2, max_pending: int = 32, cache_seconds: float = 60.0
    ) -> None:
        self.authenticator = authenticator
        self.max_pending = max(1, max_pending)
        self.per_client = max(1, self.max_pending // 2)
        self.cache_seconds = cache_seconds
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="serversession-login"
        )
        self._pending = Tally()
        self._key = secrets.token_bytes(32)
        self._cache: dict[bytes, tuple[str, float, int]] = {}

    def _generation(self) -> int:
        return int(getattr(self.authenticator, "generation", 0))

    async def check(self, user: str, password: str, client: str) -> bool:
        """True when ``password`` is ``user``'s; :class:`Busy` when too many checks are waiting."""
        key = hmac.new(self._key, f"{user}\0{password}".encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
        generation = self._generation()
        cached = self._cache.get(key)
        if cached is not None:
            if cached[1] > time.monotonic() and cached[2] == generation:
                return True
            del self._cache[key]
        if self._pending.total >= self.max_pending:
            raise Busy(f"{self._pending.total} password checks are waiting already")
        if self._pending.by[client] >= self.per_client:
            raise Busy(f"{self._pending.by[client]} password checks from {client} are waiting already")
        future = self._executor.submit(self.authenticator.check, user, password)
        self._pending.hold(client, future)  # until it ends: a caller that goes away leaves it to finish
        if not await asyncio.wrap_future(future):  # a caller that goes away leaves the check to finish
            return False
        if len(self._cache) >= self.MAX_CACHED:
            now = time.monotonic()
            for stale in [k for k, v in self._cache.items() if v[1] <= now or v[2] != generation]:
                del self._cache[stale]
            if len(self._cache) >= self.MAX_CACHED:
                self._cache.clear()
        self._cache[key] = (user, time.monotonic() + self.cache_seconds, generation)
        return True

    async def refresh(self) -> None:
        """Let the authenticator notice a changed file (invalidating cached successes)."""
        refresh = getattr(self.authenticator, "refresh", None)
        if refresh is not None:
            await asyncio.get_running_loop().run_in_executor(None, refresh)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
