"""Prometheus' web configuration file (``--web-config-file``), read as the official exporters read
it (prometheus/exporter-toolkit): TLS (``tls_server_config``), basic auth with bcrypt hashes
(``basic_auth_users``) and response headers (``http_server_config.headers``).

File names in it are relative to the file's directory. Unknown keys are an error, as in the
toolkit, and so are the toolkit's settings Python's TLS stack cannot honour (``cipher_suites``,
``curve_preferences``, inline ``cert``/``key``, client certificates asked for but not verified,
``rate_limit``): refused rather than ignored. The file and the files it names are read again
when one of them changes (certificates can be rotated, users added); a changed file that is
invalid makes every request fail (500) until it is fixed, as the toolkit does.

YAML: the file is parsed by :func:`parse_yaml`, a strict reader of the part of YAML these files
use (block mappings and lists, ``[a, b]`` lists, plain and quoted scalars, comments); anchors,
tags and multi-line scalars are refused with the line they are on.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import ssl
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidInput, ServerSessionError
from ..files import MAX_CONFIG_BYTES, MAX_SECRET_BYTES, check_regular_file, read_text

log = logging.getLogger(__name__)

MAX_COST = 17  # highest bcrypt cost accepted (as serve's htpasswd): each step doubles a check
CACHE_SIZE = 1024  # successful (user, password) checks remembered, so a scraper costs one bcrypt check
MAX_DEPTH = 32  # levels of nested mappings in the web config file
_BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
CLIENT_AUTH = {
    "": ssl.CERT_NONE,
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
HEADERS = (
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "X-XSS-Protection",
    "Content-Security-Policy",
)
KEYS: dict[str, tuple[str, ...]] = {
    "": ("tls_server_config", "http_server_config", "basic_auth_users", "rate_limit"),
    "tls_server_config": (
        "cert_file",
        "key_file",
        "cert",
        "key",
        "client_auth_type",
        "client_ca_file",
        "client_ca",
        "client_allowed_sans",
        "cipher_suites",
        "curve_preferences",
        "min_version",
        "max_version",
        "prefer_server_cipher_suites",
    ),
    "http_server_config": ("http2", "headers"),
}
UNSUPPORTED = {
    "rate_limit": "limit scrapers in Prometheus instead",
    "tls_server_config.cert": "give cert_file",
    "tls_server_config.key": "give key_file",
    "tls_server_config.client_ca": "give client_ca_file",
    "tls_server_config.cipher_suites": "Python's TLS names ciphers its own way; leave the defaults",
    "tls_server_config.curve_preferences": "leave the defaults",
}


# --- YAML ---------------------------------------------------------------------------------------


class YamlError(ValueError):
    """The text is not YAML this reader understands; the message names the line."""


def parse_yaml(text: str) -> Any:
    """The value of a YAML document made of block mappings, block lists of scalars, one-line
    ``[...]`` lists and ``{}``, and scalars (plain, ``'single'``, ``"double"`` with JSON's
    escapes), mappings nested at most :data:`MAX_DEPTH` deep. Plain scalars stay text (``~``, ``null`` and nothing are None); the caller reads
    booleans. Raises :class:`YamlError` for anything else."""
    lines: list[tuple[int, int, str]] = []  # (line number, indentation, text without comment)
    text = text.removeprefix("\ufeff")  # a byte order mark, as editors on Windows write
    for number, raw in enumerate(text.splitlines(), 1):
        content = _uncommented(raw, number).rstrip()
        if not content.strip() or (not lines and content == "---") or content == "...":
            continue
        body = content.lstrip(" ")
        if body.startswith("\t"):
            raise YamlError(f"line {number}: a tab in the indentation")
        lines.append((number, len(content) - len(body), body))
    if not lines:
        return None
    value, end = _block(lines, 0)
    if end < len(lines):
        raise YamlError(f"line {lines[end][0]}: unexpected {'indentation' if lines[end][1] else 'content'}")
    return value


def _uncommented(raw: str, number: int) -> str:
    """``raw`` without its comment (``#`` at the start or after a blank, outside quotes)."""
    quote, escaped = "", False
    for index, char in enumerate(raw):
        before = raw[index - 1] if index else " "
        if quote == '"':
            quote = "" if char == '"' and not escaped else quote
            escaped = char == "\\" and not escaped
        elif quote:
            quote = "" if char == "'" else quote
        elif char in "'\"" and (before in " \t:[,-" or before == char == "'"):
            quote = char
        elif char == "#" and (index == 0 or raw[index - 1] in " \t"):
            return raw[:index]
    return raw


def _item(text: str) -> bool:
    return text == "-" or text.startswith("- ")


def _block(lines: list[tuple[int, int, str]], start: int, depth: int = 1) -> tuple[Any, int]:
    """The mapping or list whose first line is ``lines[start]``, and the index after it."""
    if depth > MAX_DEPTH:
        raise YamlError(f"line {lines[start][0]}: mappings nested more than {MAX_DEPTH} levels deep")
    indent = lines[start][1]
    if _item(lines[start][2]):
        items, pos = [], start
        while pos < len(lines) and lines[pos][1] == indent and _item(lines[pos][2]):
            number, _, text = lines[pos]
            rest = text[1:].strip()
            if not rest or _key(rest, number, required=False) is not None:
                raise YamlError(f"line {number}: only scalars are supported in a list")
            items.append(_scalar(rest, number))
            pos += 1
        return items, pos
    mapping: dict[str, Any] = {}
    pos = start
    while pos < len(lines) and lines[pos][1] == indent and not _item(lines[pos][2]):
        number, _, text = lines[pos]
        key, rest = _key(text, number)  # type: ignore[misc]
        if key in mapping:
            raise YamlError(f"line {number}: key {key!r} appears twice")
        pos += 1
        if rest:
            mapping[key] = _scalar(rest, number)
        elif pos < len(lines) and (lines[pos][1] > indent or (lines[pos][1] == indent and _item(lines[pos][2]))):
            mapping[key], pos = _block(lines, pos, depth + 1)
        else:
            mapping[key] = None
    if pos < len(lines) and lines[pos][1] > indent:
        raise YamlError(f"line {lines[pos][0]}: unexpected indentation")
    return mapping, pos


def _key(text: str, number: int, required: bool = True) -> tuple[str, str] | None:
    """(key, the rest) of ``key: value``; None (or YamlError if ``required``) when it is not one."""
    if text[:1] in "'\"":
        end = _closing(text, number)
        key, rest = _scalar(text[: end + 1], number), text[end + 1 :]
        if not rest.startswith(":"):
            return _not_key(text, number, required)
        return str(key), rest[1:].strip()
    match = re.match(r"([^:]*?):(?:\s+|$)(.*)", text)
    if match is None or not match.group(1).strip() or text[:1] in "[{":
        return _not_key(text, number, required)
    return match.group(1).strip(), match.group(2).strip()


def _not_key(text: str, number: int, required: bool) -> None:
    if required:
        raise YamlError(f"line {number}: expected 'key: value', not {text[:40]!r}")
    return None


def _closing(text: str, number: int) -> int:
    """The index of the quote that closes the one ``text`` starts with."""
    quote, index = text[0], 1
    while index < len(text):
        if text[index] == "\\" and quote == '"':
            index += 2
            continue
        if text[index] == quote:
            if quote == "'" and text[index + 1 : index + 2] == "'":
                index += 2
                continue
            return index
        index += 1
    raise YamlError(f"line {number}: unterminated quoted text")


def _scalar(text: str, number: int) -> Any:
    """A scalar, a ``[...]`` list of scalars or ``{}``."""
    if text[0] in "'\"":
        end = _closing(text, number)
        if text[end + 1 :].strip():
            raise YamlError(f"line {number}: text after the closing quote")
        if text[0] == "'":
            return text[1:end].replace("''", "'")
        try:
            return json.loads(text[: end + 1])
        except ValueError:
            raise YamlError(f"line {number}: an escape this reader does not know (JSON's are supported)") from None
    if text.startswith("["):
        if not text.endswith("]"):
            raise YamlError(f"line {number}: a [list] must end on its line")
        inner = text[1:-1].strip()
        return [_scalar(part.strip(), number) for part in _split_commas(inner, number)] if inner else []
    if text == "{}":
        return {}
    if text[0] in "{|>&*!%@`":
        raise YamlError(
            f"line {number}: {text[0]!r} (YAML's flow mappings, block scalars, anchors, tags) is not supported"
        )
    return None if text in ("~", "null", "Null", "NULL") else text


def _split_commas(text: str, number: int) -> list[str]:
    parts, start, index = [], 0, 0
    while index < len(text):
        if text[index] in "'\"" and text[start:index].strip() == "":
            index = _closing(text[index:], number) + index
        elif text[index] == ",":
            parts.append(text[start:index])
            start = index + 1
        index += 1
    parts.append(text[start:])
    return parts


# --- the web configuration -----------------------------------------------------------------------


@dataclass(frozen=True)
class WebConfig:
    """One reading of the web configuration file."""

    tls: ssl.SSLContext | None = None
    allowed_sans: tuple[str, ...] = ()  # client certificates must name one of these (empty: any)
    users: dict[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    headers: tuple[tuple[str, str], ...] = ()
    files: tuple[str, ...] = ()  # the files it names (their changes make it be read again)
    dummy: bytes = b""  # a bcrypt hash at the highest cost in ``users``, checked for unknown users

    @property
    def description(self) -> str:
        return (
            ", ".join(part for part, on in (("TLS", self.tls is not None), ("basic auth", bool(self.users))) if on)
            or "neither TLS nor basic auth"
        )


def load_web_config(path: str) -> WebConfig:
    """Read and check the web configuration at ``path``. InvalidInput names what is wrong (exit 2);
    a file that cannot be read is SourceUnavailable (exit 1)."""
    text = read_text(path, "web config file", MAX_CONFIG_BYTES)
    where = f"web config file {path}"
    try:
        data = parse_yaml(text)
    except YamlError as exc:
        raise InvalidInput(f"{where}: {exc}") from None
    data = {} if data is None else data
    _check_keys(data, "", where)
    directory = os.path.dirname(os.path.abspath(path))
    files: list[str] = []

    def file_name(value: Any, name: str) -> str:
        text = _text(value, name, where)
        full = os.path.join(directory, text)
        check_regular_file(full, f"{name} of {where}", MAX_SECRET_BYTES)
        files.append(full)
        return full

    tls_section = data.get("tls_server_config")
    tls, sans = None, ()
    if tls_section is not None:
        _check_keys(tls_section, "tls_server_config", where)
        tls, sans = _tls_context(tls_section, file_name, where)
    http = data.get("http_server_config") or {}
    _check_keys(http, "http_server_config", where)
    if "http2" in http:
        _boolean(http["http2"], "http_server_config.http2", where)  # accepted; HTTP/1.1 is served
    headers = _mapping(http.get("headers") or {}, "http_server_config.headers", where)
    for name, value in headers.items():
        if name not in HEADERS:
            raise InvalidInput(f"{where}: header {name!r} cannot be set (only {', '.join(HEADERS)})")
        if not isinstance(value, str) or not value.isprintable():
            raise InvalidInput(f"{where}: header {name} must be one line of text")
    users = _users(data.get("basic_auth_users") or {}, where)
    dummy = b""
    if users:
        import bcrypt

        cost = max(int(hashed[4:6]) for hashed in users.values())
        dummy = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=cost))
    return WebConfig(tls, sans, users, tuple(headers.items()), tuple(files), dummy)


def _check_keys(section: Any, name: str, where: str) -> None:
    section = _mapping(section, name or "the file", where)
    for key in section:
        full = f"{name}.{key}" if name else key
        if key not in KEYS[name]:
            raise InvalidInput(f"{where}: unknown setting {full} (known: {', '.join(KEYS[name])})")
        if full in UNSUPPORTED and section[key] not in (None, "", [], {}):
            raise InvalidInput(f"{where}: {full} is not supported by serversession's exporter; {UNSUPPORTED[full]}")


def _mapping(value: Any, name: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(f"{where}: {name} must be a mapping")
    return value


def _text(value: Any, name: str, where: str) -> str:
    if not isinstance(value, str) or not value or "\0" in value:
        raise InvalidInput(f"{where}: {name} must be non-empty text")
    return value


def _boolean(value: Any, name: str, where: str) -> bool:
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "false", "no", "off"):
        return value.lower() in ("true", "yes", "on")
    raise InvalidInput(f"{where}: {name} must be true or false")


def _tls_context(section: dict[str, Any], file_name: Any, where: str) -> tuple[ssl.SSLContext, tuple[str, ...]]:
    """The server's TLS context from ``tls_server_config`` (the toolkit's defaults: TLS 1.2 to 1.3)."""
    for key in ("cert_file", "key_file"):
        if not section.get(key):
            raise InvalidInput(f"{where}: tls_server_config needs {key}")
    auth = section.get("client_auth_type") or ""
    if auth not in CLIENT_AUTH:
        supported = ", ".join(name for name in CLIENT_AUTH if name)
        raise InvalidInput(f"{where}: client_auth_type {auth!r} is not supported (supported: {supported})")
    ca = section.get("client_ca_file")
    if CLIENT_AUTH[auth] != ssl.CERT_NONE and not ca:
        raise InvalidInput(f"{where}: client_auth_type {auth} needs client_ca_file")
    if ca and CLIENT_AUTH[auth] == ssl.CERT_NONE:
        raise InvalidInput(f"{where}: client_ca_file is set but client_auth_type does not ask for certificates")
    sans = section.get("client_allowed_sans") or []
    if not isinstance(sans, list) or not all(isinstance(s, str) and s for s in sans):
        raise InvalidInput(f"{where}: client_allowed_sans must be a list of names")
    if sans and CLIENT_AUTH[auth] != ssl.CERT_REQUIRED:
        raise InvalidInput(f"{where}: client_allowed_sans needs client_auth_type RequireAndVerifyClientCert")
    versions = []
    for key, default in (("min_version", "TLS12"), ("max_version", "TLS13")):
        name = section.get(key) or default
        if name not in TLS_VERSIONS:
            raise InvalidInput(f"{where}: {key} {name!r} is not one of {', '.join(TLS_VERSIONS)}")
        versions.append(TLS_VERSIONS[name])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.minimum_version, context.maximum_version = versions
        context.load_cert_chain(
            file_name(section["cert_file"], "cert_file"), file_name(section["key_file"], "key_file")
        )
        if ca:
            context.load_verify_locations(cafile=file_name(ca, "client_ca_file"))
    except (ssl.SSLError, ValueError) as exc:
        raise InvalidInput(f"{where}: the TLS settings cannot be used: {exc}") from None
    context.verify_mode = CLIENT_AUTH[auth]
    if _boolean(section.get("prefer_server_cipher_suites") or "true", "prefer_server_cipher_suites", where):
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    return context, tuple(sans)


def _users(section: Any, where: str) -> dict[str, bytes]:
    users = {}
    for user, hashed in _mapping(section, "basic_auth_users", where).items():
        match = _BCRYPT.fullmatch(hashed) if isinstance(hashed, str) else None
        if match is None:
            raise InvalidInput(f"{where}: the password of {user} is not a bcrypt hash ($2y$...; htpasswd -nBC 10 USER)")
        if not 4 <= int(match.group(1)) <= MAX_COST:
            raise InvalidInput(f"{where}: the bcrypt cost of {user} is not between 4 and {MAX_COST}")
        users[str(user)] = hashed.encode("ascii")
    if users:
        try:
            import bcrypt  # noqa: F401
        except ImportError:
            raise ServerSessionError("basic_auth_users needs bcrypt: pip install 'serversession[exporter]'") from None
    return users


def peer_allowed(sock: ssl.SSLSocket, allowed: tuple[str, ...]) -> bool:
    """Whether the verified client certificate on ``sock`` names one of ``allowed`` (any SAN)."""
    cert = sock.getpeercert() or {}
    names = {value for _, value in cert.get("subjectAltName", ())}
    return bool(names & set(allowed))


# --- reading it again when it changes, and checking passwords ----------------------------------


class WebSettings:
    """The web configuration as it is now: read again when the file or a file it names changes.

    ``current()`` gives the settings (or raises ServerSessionError while a changed file is
    invalid: requests then fail with 500). ``authorized(user, password)`` checks basic auth as the
    toolkit does: one bcrypt check at a time, an unknown user checked against a dummy hash, and
    successes remembered (under a keyed hash, never the password; the :data:`CACHE_SIZE` most
    recently used) so a scraper pays once. Failures are not remembered: wrong guesses, however
    many, cannot push a scraper's success out.
    """

    def __init__(self, path: str | None) -> None:
        self.path = None if path is None else os.path.abspath(path)
        self._lock = threading.Lock()
        self._bcrypt = threading.Lock()
        self._key = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, None] = OrderedDict()  # successes, least recently used first
        self._cache_lock = threading.Lock()
        self._config = WebConfig() if self.path is None else load_web_config(self.path)
        self._stamp = self._signature(self._config)
        self._error: str | None = None

    def _signature(self, config: WebConfig) -> tuple[Any, ...]:
        if self.path is None:
            return ()
        stamps = []
        for name in (self.path, *config.files):
            try:
                st = os.stat(name)
                stamps.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                stamps.append(None)
        return tuple(stamps)

    def last_good(self) -> WebConfig:
        """The settings last read without error (what a connection's TLS uses while a changed
        file is invalid: its requests are then answered 500)."""
        with contextlib.suppress(ServerSessionError):
            self.current()
        return self._config

    def current(self) -> WebConfig:
        """The settings now; ServerSessionError while the changed file cannot be used."""
        if self.path is None:
            return self._config
        with self._lock:
            stamp = self._signature(self._config)
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._config, self._error = load_web_config(self.path), None
                    with self._cache_lock:
                        self._cache.clear()
                    log.warning("web config file %s read again: %s", self.path, self._config.description)
                except ServerSessionError as exc:
                    self._error = str(exc)
                    log.error("%s; requests fail until it is fixed", exc)
            if self._error is not None:
                raise ServerSessionError(self._error)
            return self._config

    def authorized(self, config: WebConfig, user: str, password: str) -> bool:
        import bcrypt

        hashed = config.users.get(user)
        target = hashed if hashed is not None else config.dummy
        key = hmac.new(self._key, b"\0".join((user.encode(), target, password.encode())), hashlib.sha256).digest()
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return True
        with self._bcrypt:  # one check at a time: a flood of guesses costs one CPU, not all of them
            matches = bcrypt.checkpw(password.encode()[:72], target)
        if not (matches and hashed is not None):
            return False
        with self._cache_lock:
            self._cache[key] = None
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return True
