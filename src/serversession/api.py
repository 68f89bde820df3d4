"""The Python API: ``serversession.sessions()``, in the spirit of the ``wmi`` and ``psutil`` modules."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .errors import InvalidInput
from .model import SERVER_SESSION, CIMObject
from .sources import DEFAULT_TIMEOUT, open_source, read_snapshot
from .sources.remote import SMB_PORT

if TYPE_CHECKING:
    from .sources.multi import HostFailure
    from .wql import QueryResult

MAX_TIMEOUT = 86400.0  # seconds: a day


def _check(timeout: float, smb_port: int, texts: dict[str, str | None]) -> None:
    """InvalidInput for what the command's options refuse: a time-out that is not a number of
    seconds in (0, MAX_TIMEOUT], a port outside 1-65535, and a file name or user name that is
    not text, is blank or holds a NUL character (the OS would refuse it deep inside)."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise InvalidInput(f"timeout {timeout!r} is not a number of seconds")
    if not math.isfinite(timeout) or not 0 < timeout <= MAX_TIMEOUT:
        raise InvalidInput(f"timeout {timeout!r} is not a number of seconds above 0 and at most {MAX_TIMEOUT:g}")
    if isinstance(smb_port, bool) or not isinstance(smb_port, int) or not 1 <= smb_port <= 65535:
        raise InvalidInput(f"smb_port {smb_port!r} is not a TCP port (1-65535)")
    for name, text in texts.items():
        if text is None:
            continue
        if not isinstance(text, str):
            raise InvalidInput(f"{name} must be text, not {type(text).__name__}")
        if not text.strip():
            raise InvalidInput(f"{name} must not be empty")
        if "\0" in text:
            raise InvalidInput(f"{name} {text!r} holds a NUL character")


def _host_list(hosts: Iterable[str] | None) -> tuple[str, ...]:
    """``hosts`` as a tuple of strings; InvalidInput for one string (each of its characters
    would be asked as a host) or anything else than strings."""
    if isinstance(hosts, (str, bytes)) or not isinstance(hosts, Iterable | None):
        raise InvalidInput(f"hosts must be a list of host names, not {type(hosts).__name__}")
    found = tuple(hosts or ())
    if not all(isinstance(host, str) for host in found):
        raise InvalidInput("hosts must be a list of host names (text)")
    return found


def _check_password(password: str | None) -> None:
    if password is not None and (not isinstance(password, str) or not password):
        raise InvalidInput("password must be non-empty text")


def sessions(
    source: str = "auto",
    smb_conf: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    hosts: Sequence[str] = (),
    hosts_file: str | None = None,
    smb_port: int = SMB_PORT,
    user: str | None = None,
    password: str | None = None,
    password_file: str | None = None,
    failures: list[HostFailure] | None = None,
) -> list[CIMObject]:
    """The Win32_ServerSession instances of a source, one per (server, ComputerName, UserName).

    The same as ``instances("Win32_ServerSession", ...)``.

    Each object has the CIM property names as attributes (``s.UserName``, ``s.IdleTime``),
    ``server`` (the host it was read from; None for this machine), ``to_dict()``, ``path`` and
    ``to_cim_instance()``.

    :param source: ``auto`` (srvsvc when ``hosts`` are given, else samba), ``samba`` or ``srvsvc``.
    :param smb_conf: Samba configuration file (default: env ``SERVERSESSION_SMB_CONF``,
        then Samba's own default).
    :param timeout: seconds to wait for the source (for each host) before ``SourceTimeout``.
    :param hosts: srvsvc: servers to ask, ``HOST`` or ``HOST:PORT`` (``smb_port`` by default);
        ``hosts_file`` lists more, one per line.
    :param user: srvsvc account, ``DOMAIN\\user``; the password is ``password``, else the first
        line of ``password_file``, else env ``SERVERSESSION_PASSWORD``.
    :param failures: if a list, the hosts that failed are appended to it. A failing host is
        also logged (logger ``serversession``, level ERROR); the others' sessions are returned.
    :raises serversession.errors.ServerSessionError: the source cannot be read (with several
        hosts: none of them could); InvalidInput for what the command's options refuse: a
        time-out that is not a number of seconds above 0 and at most a day (86400), a port
        outside 1-65535, ``hosts`` given as one string, a file or user name that is not text,
        is blank or holds a NUL character, a password that is not text or is empty.
    """
    return instances(
        SERVER_SESSION,
        source=source,
        smb_conf=smb_conf,
        timeout=timeout,
        hosts=hosts,
        hosts_file=hosts_file,
        smb_port=smb_port,
        user=user,
        password=password,
        password_file=password_file,
        failures=failures,
    )


def instances(
    classname: str = SERVER_SESSION,
    *,
    source: str = "auto",
    smb_conf: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    hosts: Sequence[str] = (),
    hosts_file: str | None = None,
    smb_port: int = SMB_PORT,
    user: str | None = None,
    password: str | None = None,
    password_file: str | None = None,
    failures: list[HostFailure] | None = None,
) -> list[CIMObject]:
    """The instances of the class called ``classname`` (and its subclasses), from one read.

    The source options are those of :func:`sessions`, checked as the command's options are.
    NotFound if the schema has no such class or it has no instances of its own
    (``CIM_LogicalElement`` gives its subclasses' instances).
    """
    from .model.providers import build, needs, provided

    if not isinstance(classname, str):
        raise InvalidInput("classname must be text")
    _check(
        timeout,
        smb_port,
        {"smb_conf": smb_conf, "hosts_file": hosts_file, "password_file": password_file, "user": user},
    )
    _check_password(password)
    parts = needs(classname)  # before the read: what the class's providers need from it
    reader = open_source(
        source,
        smb_conf=smb_conf,
        hosts=_host_list(hosts),
        hosts_file=hosts_file,
        smb_port=smb_port,
        user=user,
        password=password,
        password_file=password_file,
    )
    try:
        snapshot = read_snapshot(reader, timeout, parts)
    finally:
        if failures is not None:
            failures.extend(getattr(reader, "failures", ()))
    return build(provided(classname), snapshot)


def query(wql: str, **source_options: Any) -> QueryResult:
    """Answer a WQL query, e.g. ``query("SELECT * FROM Win32_ServerSession WHERE IdleTime > 600")``.

    The result is a list of instances with ``.properties``, the names selected (keys included).
    ``source_options`` are those of :func:`sessions`. The query is checked before the source is
    read: :class:`~serversession.wql.WQLError` (invalid input) names the position of an error.
    """
    from .wql import compile_query

    compiled = compile_query(wql)
    return compiled.run(instances(compiled.classname, **source_options))


def get(path: str, **source_options: Any) -> CIMObject:
    """The instance an object path names, e.g. ``get('Win32_ServerSession.ComputerName="10.0.0.7",UserName="alice"')``.

    Raises :class:`~serversession.errors.NotFound` if there is none, and
    :class:`~serversession.wql.PathError` (invalid input) if the path is malformed.
    """
    from .wql import find_instance
    from .wql.lookup import resolve_path

    wanted = resolve_path(path)
    return find_instance(wanted, instances(wanted.classname, **source_options))
