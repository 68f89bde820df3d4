"""The Python API: ``serversession.sessions()``, in the spirit of the ``wmi`` and ``psutil`` modules."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .errors import InvalidInput
from .model import SERVER_SESSION, CIMObject
from .sources import DEFAULT_TIMEOUT, open_source, read_snapshot
from .sources.remote import SMB_PORT

if TYPE_CHECKING:
    from .close import CloseReport, Confirm
    from .model.objectpath import ObjectPath
    from .sources.base import Snapshot
    from .sources.closing import Closer
    from .sources.multi import HostFailure
    from .wql import ClassDefsResult, QueryResult
    from .wql.events import Event

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
    read = snapshot_reader(
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
    # the parts before the read and the schema after it: the default class needs no schema to be
    # read, so a source that cannot be read says so even where the schema cannot be loaded
    snapshot = read(needs(classname))
    return build(provided(classname), snapshot)


def snapshot_reader(
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
) -> Callable[[frozenset[str]], Snapshot]:
    """A reader of the source: a function of the snapshot parts wanted besides the sessions
    (``sources.base``: CONNECTIONS, OPENS, SHARES; ``model.providers.needs(CLASS)`` says which a
    class needs) that reads one :class:`~serversession.sources.base.Snapshot` holding them, each
    call a new read. Every class's provider builds its instances from a snapshot
    (``model.providers.build``), so that instances of several classes agree (DESIGN.md 2a).

    The source options are those of :func:`sessions`, checked now, once, as :func:`instances`
    checks them (InvalidInput), and the source is opened now (srvsvc: the hosts and the
    credentials are read once); ``failures``, if a list, gets the hosts that failed in each read.
    The server (``serversession serve``) reads through one.
    """
    _check(
        timeout,
        smb_port,
        {"smb_conf": smb_conf, "hosts_file": hosts_file, "password_file": password_file, "user": user},
    )
    _check_password(password)
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

    def read(parts: frozenset[str]) -> Snapshot:
        try:
            return read_snapshot(reader, timeout, frozenset(parts))
        finally:
            if failures is not None:
                failures.extend(getattr(reader, "failures", ()))

    return read


def _read(classnames: Sequence[str], near: ObjectPath | None = None, **source_options: Any) -> list[CIMObject]:
    """The instances of ``classnames`` (each with a provider), built from one snapshot that holds
    the parts all of them need (DESIGN.md 2a: one read is one snapshot); with ``near``, only
    those an association query of that path can reach (``model.providers.build``)."""
    from .model.providers import build, needs

    read = snapshot_reader(**source_options)
    parts = frozenset().union(*(needs(name) for name in classnames))  # before the read
    return build(tuple(classnames), read(parts), near)


def query(wql: str, **source_options: Any) -> QueryResult | ClassDefsResult:
    """Answer a WQL query, e.g. ``query("SELECT * FROM Win32_ServerSession WHERE IdleTime > 600")``.

    The result is a list of instances with ``.properties``, the names selected (keys included),
    and ``.classname``. ``source_options`` are those of :func:`sessions`. The query is checked
    before the source is read: :class:`~serversession.wql.WQLError` (invalid input) names the
    position of an error.

    ``ASSOCIATORS OF {path} [WHERE ...]`` and ``REFERENCES OF {path} [WHERE ...]`` are answered
    as :func:`associators` and :func:`references` answer them, with WMI's keywords (AssocClass,
    ResultClass, Role, ResultRole, RequiredQualifier, RequiredAssocQualifier, KeysOnly,
    ClassDefsOnly, SchemaOnly). With several classes in the result, ``.classname`` is their
    nearest common superclass and ``.properties`` the union of theirs. ``ClassDefsOnly`` (the
    classes of the results) and ``SchemaOnly`` (``{Class}``: the classes the schema associates
    with it; the source is not read) give a :class:`~serversession.wql.ClassDefsResult`, a list
    of the schema's class definitions. NotFound if the path names no instance.
    """
    from .wql import CompiledAssociation, compile_wql

    compiled = compile_wql(wql)
    if isinstance(compiled, CompiledAssociation):
        if compiled.schema_only:
            return compiled.run([])
        return compiled.run(_read(compiled.classes, compiled.target, **source_options))
    return compiled.run(instances(compiled.classname, **source_options))


def associators(
    path: str,
    *,
    assoc_class: str | None = None,
    result_class: str | None = None,
    role: str | None = None,
    result_role: str | None = None,
    keys_only: bool = False,
    **source_options: Any,
) -> QueryResult:
    """The instances associated with the one ``path`` names, as ``ASSOCIATORS OF`` and WMI's
    ``Get-CimAssociatedInstance`` give them, e.g.
    ``associators('Win32_ServerSession.ComputerName="10.0.0.7",UserName="alice"')`` gives her
    Win32_ServerConnection instances; those of a Win32_ServerConnection are its session and share.

    Filters (DSP0200 Associators): ``assoc_class`` (through associations of that class or a
    subclass), ``result_class`` (results of that class or a subclass), ``role`` (the
    association's property that names the target: ``Antecedent`` or ``Dependent``),
    ``result_role`` (the one that names the result). Class and role names are case-blind; a
    role no association has gives nothing. ``keys_only``: only the key properties are set.

    One read: the target's class, the associations and the result classes are built from the
    same snapshot. The result is a list (:class:`~serversession.wql.QueryResult`), in the order
    the providers give (class by class), each instance once. ``source_options`` are those of
    :func:`sessions`.

    :raises serversession.errors.NotFound: the path names no instance.
    :raises serversession.errors.InvalidInput: a malformed path (PathError), wrong keys, a
        class name the schema does not have, ``assoc_class`` that is no association class.
    """
    return _navigate("ASSOCIATORS", path, assoc_class, result_class, role, result_role, keys_only, source_options)


def references(
    path: str,
    *,
    result_class: str | None = None,
    role: str | None = None,
    keys_only: bool = False,
    **source_options: Any,
) -> QueryResult:
    """The association instances that name the instance ``path`` names, as ``REFERENCES OF``
    gives them, e.g. the Win32_SessionConnection instances of a session.

    ``result_class``: associations of that class or a subclass; ``role``: those that name the
    target through that property (``Antecedent`` or ``Dependent``). The rest as in
    :func:`associators`.
    """
    return _navigate("REFERENCES", path, None, result_class, role, None, keys_only, source_options)


def _navigate(
    kind: str,
    path: str,
    assoc_class: str | None,
    result_class: str | None,
    role: str | None,
    result_role: str | None,
    keys_only: bool,
    source_options: dict[str, Any],
) -> QueryResult:
    from .errors import NotFound
    from .model import load_schema
    from .wql import CompiledAssociation, QueryResult
    from .wql.lookup import resolve_path

    target = resolve_path(path)

    def known(name: str | None, what: str, association: bool) -> str | None:
        if name is None:
            return None
        if not isinstance(name, str):
            raise InvalidInput(f"{what} must be a class name (text)")
        try:
            cls = load_schema().get(name)
        except NotFound:
            raise InvalidInput(f"{what}: unknown class {name[:100]!r}") from None
        if association and not cls.is_association:
            raise InvalidInput(f"{what}: {cls.name} is not an association class")
        return cls.name

    for value, what in ((role, "role"), (result_role, "result_role")):
        if value is not None and not isinstance(value, str):
            raise InvalidInput(f"{what} must be a property name (text)")
    if not isinstance(keys_only, bool):
        raise InvalidInput("keys_only must be True or False")
    compiled = CompiledAssociation(
        text="",
        kind=kind,
        target=target,
        assoc_class=known(assoc_class, "assoc_class", True),
        result_class=known(result_class, "result_class", kind == "REFERENCES"),
        role=role,
        result_role=result_role,
        keys_only=keys_only,
    )
    result = compiled.run(_read(compiled.classes, target, **source_options))
    assert isinstance(result, QueryResult)  # no ClassDefsOnly here
    return result


def watch(wql: str, **source_options: Any) -> Iterator[Event]:
    """The events a WQL event query wants, as they happen, e.g. every logon of alice::

        for event in serversession.watch(
            "SELECT * FROM __InstanceCreationEvent WITHIN 5 "
            "WHERE TargetInstance ISA 'Win32_ServerSession' AND TargetInstance.UserName = 'alice'"
        ):
            print(event.TargetInstance.ComputerName)

    Each :class:`~serversession.wql.events.Event` has ``classname`` (``__InstanceCreationEvent``,
    ``__InstanceDeletionEvent``, ``__InstanceModificationEvent``), ``TIME_CREATED`` (100 ns since
    1601, UTC), ``TargetInstance`` and, for a modification, ``PreviousInstance``. The source is
    polled every WITHIN seconds and each poll compared with the one before (DESIGN.md 2b); what
    exists at the start makes no event, and what appears and ends between two polls is missed,
    as in WMI. The iterator runs until it is closed (``break``, ``close()``).

    The query and the source options (those of :func:`sessions`) are checked now
    (:class:`~serversession.wql.WQLError`, InvalidInput); a source that cannot be read at the
    start raises at the first ``next()``; one that fails later is a warning and the watch goes on.
    """
    from .events import watch as run
    from .wql.events import compile_event

    compiled = compile_event(wql)  # before the source is opened
    return run(compiled, snapshot_reader(**source_options))


def get(path: str, **source_options: Any) -> CIMObject:
    """The instance an object path names, e.g. ``get('Win32_ServerSession.ComputerName="10.0.0.7",UserName="alice"')``.

    Raises :class:`~serversession.errors.NotFound` if there is none, and
    :class:`~serversession.wql.PathError` (invalid input) if the path is malformed.
    """
    from .wql import find_instance
    from .wql.lookup import resolve_path

    wanted = resolve_path(path)
    return find_instance(wanted, instances(wanted.classname, **source_options))


def close_session(
    session_id: int | str | Sequence[int | str] | None = None,
    *,
    client_computer: str | None = None,
    client_user: str | None = None,
    what_if: bool = False,
    confirm: Confirm | None = None,
    **source_options: Any,
) -> CloseReport:
    """End the sessions named by id (``MSFT_SmbSession.SessionId``: an int, decimal or ``0x``
    text, or a list of them), ``client_computer`` and ``client_user`` (all given must match;
    ids are alternatives), e.g. ``close_session(client_user="alice")``. DESIGN.md 2c.

    The local Samba ends each session alone (smbd's session-close message; root only); srvsvc
    calls ``NetrSessionDel`` per (computer, user) and has no session ids. ``what_if``: only
    find what matches. ``confirm(matched)`` is asked before anything is closed (False: nothing
    is). The :class:`~serversession.close.CloseReport` has ``matched`` (MSFT_SmbSession, or
    Win32_ServerSession over srvsvc), one ``Outcome`` per close (``closed``, ``code``, ``reason``,
    ``also``: sessions that ended with it unasked) and ``code``: 0 when all that matched was
    closed, 1168 (ERROR_NOT_FOUND) when nothing matched, else a Win32 error code: what
    ``MSFT_SmbSession.ForceClose()`` returns. ``source_options`` are those of :func:`sessions`
    (``user`` is the srvsvc account, not a selector).

    :raises serversession.errors.InvalidInput: no selector, a malformed id, bad source options.
    :raises serversession.errors.AccessDenied: closing on the local Samba without root.
    :raises serversession.errors.ServerSessionError: the source cannot be read.
    """
    from .close import Selection, close_sessions

    selection = Selection.sessions(session_id, client_computer, client_user)
    closer, timeout = _closer(**source_options)
    return close_sessions(closer, selection, timeout, _flag(what_if, "what_if"), confirm)


def close_file(
    file_id: int | str | Sequence[int | str] | None = None,
    *,
    path: str | None = None,
    session_id: int | str | None = None,
    client_computer: str | None = None,
    client_user: str | None = None,
    what_if: bool = False,
    confirm: Confirm | None = None,
    **source_options: Any,
) -> CloseReport:
    """Close the open handles named by id (``MSFT_SmbOpenFile.FileId``, one or a list), ``path``
    (a glob on the server path), ``session_id``, ``client_computer`` and ``client_user``, e.g.
    ``close_file(path="/srv/data/*.xlsx")``. The local Samba closes each handle with smbd's
    close-file message (root only); srvsvc calls ``NetrFileClose``. The rest as :func:`close_session`;
    ``code`` is what ``MSFT_SmbOpenFile.ForceClose()`` returns.
    """
    from .close import Selection, close_files

    selection = Selection.files(file_id, path, session_id, client_computer, client_user)
    closer, timeout = _closer(**source_options)
    return close_files(closer, selection, timeout, _flag(what_if, "what_if"), confirm)


def _closer(
    source: str = "auto",
    smb_conf: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    hosts: Sequence[str] = (),
    hosts_file: str | None = None,
    smb_port: int = SMB_PORT,
    user: str | None = None,
    password: str | None = None,
    password_file: str | None = None,
) -> tuple[Closer, float]:
    """The closer of the source the options name, checked as :func:`snapshot_reader` checks them."""
    from .sources.closing import open_closer

    texts = {"smb_conf": smb_conf, "hosts_file": hosts_file, "password_file": password_file, "user": user}
    _check(timeout, smb_port, texts)
    _check_password(password)
    closer = open_closer(
        source,
        smb_conf=smb_conf,
        hosts=_host_list(hosts),
        hosts_file=hosts_file,
        smb_port=smb_port,
        user=user,
        password=password,
        password_file=password_file,
    )
    return closer, float(timeout)


def _flag(value: bool, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be True or False")
    return value
