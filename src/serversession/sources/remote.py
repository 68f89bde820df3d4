"""What a remote source needs to know: which hosts, on which port, as whom.

Host names, ports, host files, user names and passwords are checked here, before any
connection is made, so a mistake is reported once and not once per host.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import InvalidInput, SourceUnavailable
from ..files import MAX_CONFIG_BYTES, MAX_SECRET_BYTES, read_text

SMB_PORT = 445
PASSWORD_ENV = "SERVERSESSION_PASSWORD"
MAX_HOST_LENGTH = 300  # characters of HOST[:PORT]: a DNS name has at most 253
MAX_HOSTS = 4096  # distinct hosts in one read (each may take the whole time-out, 32 at a time)
MAX_USER_LENGTH = 1024  # characters of DOMAIN\USER (a UPN has at most 1024)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One SMB server: host name or address, and TCP port."""

    host: str
    port: int = SMB_PORT

    @property
    def label(self) -> str:
        """The server's name in results and messages: ``HOST``, or ``HOST@PORT`` off port 445.

        ``@PORT`` is the form Windows UNC paths use for a port (``\\\\host@8080\\...``), so the
        label is also a valid host in a WMI object path, which has no room for ``:PORT``.
        """
        return self.host if self.port == SMB_PORT else f"{self.host}@{self.port}"


@dataclass(frozen=True, slots=True)
class Credentials:
    """An account for NTLM authentication; empty user and password: an anonymous session."""

    user: str = ""
    domain: str = ""
    password: str = ""

    @property
    def account(self) -> str:
        return f"{self.domain}\\{self.user}" if self.domain else self.user or "(anonymous)"


def parse_host(text: str, default_port: int = SMB_PORT) -> Endpoint:
    """``host``, ``host:port``, ``[v6-address]:port`` or a bare IPv6 address."""
    text = text.strip()
    if len(text) > MAX_HOST_LENGTH:
        raise InvalidInput(f"host {text[:60]!r}... is longer than {MAX_HOST_LENGTH} characters")
    if not text.isprintable():
        raise InvalidInput(f"host {text!r} holds a control character")
    host, port = text, default_port
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise InvalidInput(f"host {text!r} is not HOST, HOST:PORT or [IPV6]:PORT")
        if rest:
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, _, number = text.partition(":")
        port = _port(number, text)
    if not host or any(c.isspace() or c in "\\/" for c in host):
        raise InvalidInput(f"host {text!r} is not HOST, HOST:PORT or [IPV6]:PORT")
    return Endpoint(host, port)


def _port(text: str, where: str) -> int:
    """A TCP port written in ASCII digits (``str.isdigit`` also accepts ``²`` and ``٣``)."""
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise InvalidInput(f"{where!r}: {text!r} is not a TCP port (1-65535)")
    return int(text)


def read_hosts_file(path: str) -> list[str]:
    """Hosts listed one per line; blank lines and ``#`` comments are skipped."""
    text = _read(path, "hosts file", MAX_CONFIG_BYTES)
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


def endpoints(hosts: list[str] | tuple[str, ...], hosts_file: str | None, port: int = SMB_PORT) -> list[Endpoint]:
    """The distinct servers named by ``hosts`` and the lines of ``hosts_file``, in order."""
    if not 1 <= port <= 65535:
        raise InvalidInput(f"port {port} is not a TCP port (1-65535)")
    names = [*hosts, *(read_hosts_file(hosts_file) if hosts_file else [])]
    if hosts_file and not names:
        raise InvalidInput(f"hosts file {hosts_file} names no host")
    found: dict[str, Endpoint] = {}
    for name in names:
        endpoint = parse_host(name, port)
        found.setdefault(endpoint.label.lower(), endpoint)
        if len(found) > MAX_HOSTS:
            raise InvalidInput(f"more than {MAX_HOSTS} hosts to ask; split them into several runs")
    return list(found.values())


def credentials(user: str | None, password: str | None = None, password_file: str | None = None) -> Credentials:
    """Credentials from ``DOMAIN\\user`` (or ``user``, ``user@realm``) and a password.

    The password comes from ``password``, else the first line of ``password_file``, else the
    environment variable ``SERVERSESSION_PASSWORD``; never from a command line.
    """
    if password is None and password_file and user:
        password = _read(password_file, "password file", MAX_SECRET_BYTES).split("\n", 1)[0].rstrip("\r")
        if not password:
            raise InvalidInput(f"password file {password_file} is empty")
    if not user:
        if password_file:
            raise InvalidInput("a password file needs a user name")
        return Credentials()
    if password is None:
        password = os.environ.get(PASSWORD_ENV) or None  # set but empty: not set
    if len(user) > MAX_USER_LENGTH or not user.isprintable():
        raise InvalidInput(f"user {user[:60]!r} is not USER, DOMAIN\\USER or USER@DOMAIN")
    domain, backslash, name = user.rpartition("\\")
    if not name or (backslash and not domain):
        raise InvalidInput(f"user {user!r} is not USER, DOMAIN\\USER or USER@DOMAIN")
    if password is None:
        raise InvalidInput(f"no password for {user}: give a password file or set {PASSWORD_ENV}")
    return Credentials(name, domain, password)


def _read(path: str, what: str, max_bytes: int) -> str:
    """The text of a file the user named, checked first (files.py: a FIFO, a device or a huge
    file is one clear error, never a hang)."""
    try:
        return read_text(path, what, max_bytes)
    except SourceUnavailable:
        if not os.path.lexists(path):  # said as it always was
            raise SourceUnavailable(f"{what} {path} not found") from None
        raise
