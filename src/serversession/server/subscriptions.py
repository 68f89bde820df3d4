"""The indication subscriptions of ``serve`` (DSP1054): filters, listener destinations and the
subscriptions between them, checked, kept in the state file, and fed by the event engine.

A subscription is active when the engine (:class:`serversession.events.Hub`, one poll per WITHIN
for all subscriptions) delivers its filter's events into its destination's :class:`.Outbox`.
Creating one reads the source for the baseline (an unreadable source is the client's
CIM_ERR_FAILED); restoring one at start does it in the background, again and again until the
source can be read. Every change is written to the state file before it is answered; a change
that cannot be written is undone and answered CIM_ERR_FAILED.

Who may change them: an authenticated user (with ``--no-auth``, nobody, unless
``--no-auth-subscriptions``), one of ``--subscriber`` when that is given; a user deletes only what
they created, and subscribes only their own filters to their own destinations. A destination is
an ``http`` or ``https`` URL without credentials, on a loopback address unless the host is one
of ``--allow-destination``.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..errors import ServerSessionError
from ..events import Hub
from ..events import Subscription as HubSubscription
from ..wql.events import Event
from .cimxml import (
    CIM_ERR_ACCESS_DENIED,
    CIM_ERR_FAILED,
    CIM_ERR_INVALID_PARAMETER,
    CIM_ERR_NOT_SUPPORTED,
    CIM_ERR_SERVER_LIMITS_EXCEEDED,
    CIMError,
)
from .delivery import MAX_QUEUE, Budget, Outbox
from .filters import FilterQuery, compile_filter
from .indications import export_request, indication
from .persist import entry_json
from .state import StateFile

log = logging.getLogger("serversession.server")
CIM_ERR_ALREADY_EXISTS = 11
MAX_URL = 2048  # characters of a destination URL
MAX_NAME = 256  # the Name keys' MaxLen in DMTF's classes
MAX_ENTRY = 16 << 10  # characters of one instance in the state file (all of them fit in its 16 MiB)
FILTER, DESTINATION, SUBSCRIPTION = (
    "CIM_IndicationFilter",
    "CIM_ListenerDestinationCIMXML",
    "CIM_IndicationSubscription",
)
SECTION = {FILTER: "filters", DESTINATION: "destinations", SUBSCRIPTION: "subscriptions"}
RETRY_ACTIVATION = 10.0  # seconds between tries to start restored subscriptions whose source failed


@dataclass(frozen=True)
class Policy:
    """What ``serve``'s options allow (see the module's documentation)."""

    poll_interval: float = 5.0  # WITHIN of DMTF-style filters
    allowed_hosts: tuple[str, ...] = ()  # --allow-destination
    subscribers: tuple[str, ...] | None = None  # --subscriber; None: every authenticated user
    authenticated: bool = True  # the server checks passwords (not --no-auth)
    unauthenticated: bool = False  # --no-auth-subscriptions
    max_filters: int = 100  # each; a user may hold half
    max_destinations: int = 100
    max_subscriptions: int = 200
    max_queue: int = MAX_QUEUE  # indications waiting for one listener


@dataclass
class Entry:
    """A filter, destination or subscription: its instance (path and properties) and its owner."""

    instance: Any  # pywbem.CIMInstance, path without host and namespace
    owner: str
    created: float
    query: FilterQuery | None = None  # a filter's
    outbox: Outbox | None = None  # a destination's
    filter: Entry | None = None  # a subscription's ends
    handler: Entry | None = None
    active: HubSubscription | None = None  # a subscription the engine delivers
    saved: dict[str, Any] = field(default_factory=dict)  # what the state file holds

    @property
    def name(self) -> str:
        return str(self.instance.get("Name") or "")


def check_destination(url: Any, allowed: tuple[str, ...]) -> str:
    """The listener URL ``url``, checked: http or https, no credentials, a host on loopback or
    named by --allow-destination (CIM_ERR_ACCESS_DENIED otherwise)."""
    if not isinstance(url, str) or not url:
        raise CIMError(CIM_ERR_INVALID_PARAMETER, "the destination has no Destination (the listener's URL)")
    if len(url) > MAX_URL or not url.isascii() or not url.isprintable() or " " in url:
        raise CIMError(
            CIM_ERR_INVALID_PARAMETER, f"Destination must be a URL of at most {MAX_URL} printable ASCII characters"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CIMError(CIM_ERR_INVALID_PARAMETER, f"Destination {url[:200]!r} is not a URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise CIMError(
            CIM_ERR_INVALID_PARAMETER, f"Destination {url[:200]!r}: the listener's URL must be http:// or https://"
        )
    if "@" in parts.netloc:
        raise CIMError(
            CIM_ERR_INVALID_PARAMETER,
            "Destination must not hold a user name or password (nothing is sent to listeners but indications)",
        )
    if not parts.hostname or port == 0:
        raise CIMError(CIM_ERR_INVALID_PARAMETER, f"Destination {url[:200]!r} names no host and port")
    if parts.query or parts.fragment:
        raise CIMError(CIM_ERR_INVALID_PARAMETER, f"Destination {url[:200]!r}: a listener URL has no query or fragment")
    host = _host(parts.hostname)
    if not (_loopback(host) or host in {_host(a) for a in allowed}):
        raise CIMError(
            CIM_ERR_ACCESS_DENIED,
            f"Destination host {parts.hostname[:200]!r} is not a loopback address: the server sends "
            "indications elsewhere only to hosts its administrator names (serve --allow-destination HOST)",
        )
    return url


def _host(text: str) -> str:
    """A host to compare: an address in its canonical form, a name in lower case as written (a
    trailing dot kept: ``localhost.`` is not ``localhost``, it is looked up in the DNS)."""
    text = text.strip("[]").lower()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def _loopback(host: str) -> bool:
    """Whether ``host`` is certainly on loopback: a literal loopback address (127.0.0.0/8, ::1) or
    exactly ``localhost``; any other name could resolve anywhere."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Store:
    """Filters, destinations and subscriptions, under one lock, kept in ``state``."""

    def __init__(self, policy: Policy, hub: Hub | None, state: StateFile | None, system_name: str) -> None:
        self.policy = policy
        self.hub = hub
        self.state = state
        self.system_name = system_name
        self.entries: dict[str, list[Entry]] = {FILTER: [], DESTINATION: [], SUBSCRIPTION: []}
        self.aside: dict[str, list[Any]] = {name: [] for name in SECTION.values()}  # kept, not served
        self.budget = Budget()  # bytes queued for all listeners
        self.boot = uuid.uuid4().hex[:12]  # SequenceContext differs after a restart (numbers start again)
        self._lock = threading.RLock()
        self._loop: Any = None
        self._session: Any = None

    # --- who may change what ----------------------------------------------------------------

    def check_user(self, user: str) -> None:
        """CIM_ERR_ACCESS_DENIED unless ``user`` may create and delete subscriptions."""
        if not self.policy.authenticated and not self.policy.unauthenticated:
            raise CIMError(
                CIM_ERR_ACCESS_DENIED,
                "this server runs with --no-auth: subscriptions are only for authenticated users "
                "(serve --no-auth-subscriptions allows them anyway)",
            )
        if self.policy.authenticated and self.policy.subscribers is not None and user not in self.policy.subscribers:
            raise CIMError(
                CIM_ERR_ACCESS_DENIED, f"user {user[:100]} may not change subscriptions (serve --subscriber)"
            )
        if self.hub is None:
            raise CIMError(CIM_ERR_NOT_SUPPORTED, "this server's source has no events to subscribe to")

    def _room(self, classname: str, user: str) -> None:
        limit = {FILTER: self.policy.max_filters, DESTINATION: self.policy.max_destinations,
                 SUBSCRIPTION: self.policy.max_subscriptions}[classname]  # fmt: skip
        entries = self.entries[classname]
        if len(entries) >= limit:
            raise CIMError(
                CIM_ERR_SERVER_LIMITS_EXCEEDED, f"this server holds at most {limit} instances of {classname}"
            )
        if sum(e.owner == user for e in entries) >= max(1, limit // 2):
            raise CIMError(
                CIM_ERR_SERVER_LIMITS_EXCEEDED, f"a user may hold at most {max(1, limit // 2)} instances of {classname}"
            )

    # --- creating ---------------------------------------------------------------------------

    def keys(self, classname: str, name: str) -> dict[str, Any]:
        return {"SystemCreationClassName": "CIM_ComputerSystem", "SystemName": self.system_name,
                "CreationClassName": classname, "Name": name}  # fmt: skip

    def create(self, instance: Any, user: str, restoring: bool = False) -> Entry:
        """Check and add ``instance`` (a CIMInstance with checked properties, of one of the three
        classes), activate it, keep it; the entry. CIMError for what is refused."""
        with self._lock:
            if not restoring:
                self._room(instance.classname, user)
            make = {FILTER: self._filter, DESTINATION: self._destination, SUBSCRIPTION: self._subscription}
            entry = make[instance.classname](instance, user)
            entry.created = entry.created or time.time()
            if len(json.dumps(entry_json(entry))) > MAX_ENTRY:  # the state file must stay readable
                raise CIMError(
                    CIM_ERR_INVALID_PARAMETER, f"the {instance.classname} is larger than {MAX_ENTRY} characters"
                )
            if any(_same(e.instance.path, entry.instance.path) for e in self.entries[instance.classname]):
                raise CIMError(
                    CIM_ERR_ALREADY_EXISTS, f"{instance.classname} {entry.name or 'of these two'} exists already"
                )
            if instance.classname == SUBSCRIPTION and not restoring:
                self.activate(entry)  # the source read for the baseline: its failure is the client's error
            self.entries[instance.classname].append(entry)
            if instance.classname == DESTINATION:
                self._start(entry)
            if not restoring:
                try:
                    self.save()
                except OSError as exc:
                    self._remove(entry)
                    raise CIMError(
                        CIM_ERR_FAILED, f"cannot keep the {instance.classname}: {exc.strerror or exc}"
                    ) from None
            return entry

    def _named(self, instance: Any, classname: str) -> None:
        name = instance.get("Name")
        if name is None:
            name = f"serversession:{uuid.uuid4()}"
        if not isinstance(name, str) or not name or len(name) > MAX_NAME or not name.isprintable():
            raise CIMError(CIM_ERR_INVALID_PARAMETER, f"Name must be printable text of 1 to {MAX_NAME} characters")
        given = instance.get("CreationClassName")
        if given is not None and str(given).lower() != classname.lower():
            raise CIMError(CIM_ERR_INVALID_PARAMETER, f"CreationClassName {str(given)[:100]!r} is not {classname}")
        for key, value in self.keys(classname, name).items():
            _set(instance, key, value)
        import pywbem

        instance.path = pywbem.CIMInstanceName(classname, keybindings=self.keys(classname, name))

    def _filter(self, instance: Any, user: str) -> Entry:
        if instance.get("TemplateVariable"):
            raise CIMError(CIM_ERR_NOT_SUPPORTED, "filter templates (TemplateVariable) are not supported")
        spaces = instance.get("SourceNamespaces") or (
            [instance["SourceNamespace"]] if instance.get("SourceNamespace") else None
        )
        query = compile_filter(instance.get("Query"), instance.get("QueryLanguage"), self.policy.poll_interval, spaces)
        _set(instance, "QueryLanguage", query.language)
        self._named(instance, FILTER)
        return Entry(instance, user, 0.0, query=query)

    def _destination(self, instance: Any, user: str) -> Entry:
        check_destination(instance.get("Destination"), self.policy.allowed_hosts)
        if instance.get("Protocol") not in (None, 2):
            raise CIMError(CIM_ERR_NOT_SUPPORTED, "Protocol: this server delivers CIM-XML (2) only")
        if instance.get("PersistenceType") not in (None, 1, 2, 3):
            raise CIMError(CIM_ERR_INVALID_PARAMETER, "PersistenceType is 1 (Other), 2 (Permanent) or 3 (Transient)")
        import pywbem

        _set(instance, "Protocol", pywbem.Uint16(2))
        if instance.get("PersistenceType") is None:
            _set(instance, "PersistenceType", pywbem.Uint16(2))
        self._named(instance, DESTINATION)
        outbox = Outbox(instance["Destination"], instance["Name"], max_queue=self.policy.max_queue, budget=self.budget)
        outbox.context = f"serversession:{self.boot}:{instance['Name']}"
        return Entry(instance, user, 0.0, outbox=outbox)

    def _subscription(self, instance: Any, user: str) -> Entry:
        import pywbem

        found = {}
        for role, classname in (("Filter", FILTER), ("Handler", DESTINATION)):
            path = instance.get(role)
            entry = self.find(path) if isinstance(path, pywbem.CIMInstanceName) else None
            if entry is None or entry.instance.classname != classname:
                raise CIMError(
                    CIM_ERR_INVALID_PARAMETER, f"the subscription's {role} names no {classname} of this server"
                )
            if entry.owner != user:
                raise CIMError(CIM_ERR_ACCESS_DENIED, f"the subscription's {role} belongs to another user")
            found[role] = entry
        for name, allowed in (("SubscriptionState", (None, 2)), ("OnFatalErrorPolicy", (None, 2)),
                              ("RepeatNotificationPolicy", (None, 2)), ("SubscriptionDuration", (None,))):  # fmt: skip
            if instance.get(name) not in allowed:
                raise CIMError(
                    CIM_ERR_NOT_SUPPORTED, f"{name} {instance.get(name)}: this server supports only {allowed[-1]}"
                )
        now = pywbem.CIMDateTime.now()
        _set(instance, "SubscriptionState", pywbem.Uint16(2))  # Enabled
        _set(instance, "OnFatalErrorPolicy", pywbem.Uint16(2))  # Ignore: a failing listener gets what is queued later
        if instance.get("SubscriptionStartTime") is None:
            _set(instance, "SubscriptionStartTime", now)
        _set(instance, "TimeOfLastStateChange", instance["SubscriptionStartTime"])
        ends = {role: entry.instance.path.copy() for role, entry in found.items()}
        for path in ends.values():
            path.namespace = "root/interop"  # no host: the paths pywbem's subscription manager compares with
        _set(instance, "Filter", ends["Filter"])
        _set(instance, "Handler", ends["Handler"])
        instance.path = pywbem.CIMInstanceName(SUBSCRIPTION, keybindings=ends)
        return Entry(instance, user, 0.0, filter=found["Filter"], handler=found["Handler"])

    # --- the engine and the listeners --------------------------------------------------------

    def activate(self, entry: Entry) -> None:
        """Have the engine deliver ``entry``'s events (reads the source for the baseline)."""
        assert self.hub is not None and entry.filter is not None and entry.filter.query is not None
        query = entry.filter.query
        outbox, name = entry.handler.outbox if entry.handler else None, entry.filter.name
        assert outbox is not None

        def deliver(event: Event) -> None:  # in the engine's poll thread: never blocks, never raises
            try:
                outbox.export(lambda context, number: export_request(
                    indication(event, name, context, number, query.properties), str(number)))  # fmt: skip
            except Exception as exc:
                log.warning("an indication for %s could not be made: %s: %s", name, type(exc).__name__, exc)

        try:
            entry.active = self.hub.subscribe(query.compiled, deliver)
        except ServerSessionError as exc:
            raise CIMError(CIM_ERR_FAILED, f"the subscription cannot start: reading the source failed: {exc}") from None

    def activate_pending(self) -> int:
        """Start the restored subscriptions whose source could not be read yet; how many wait."""
        waiting = 0
        with self._lock:  # a subscription deleted meanwhile must not start
            pending = [entry for entry in self.entries[SUBSCRIPTION] if entry.active is None]
        for entry in pending:
            with self._lock:
                if entry not in self.entries[SUBSCRIPTION] or entry.active is not None:
                    continue
                try:
                    self.activate(entry)
                except CIMError as exc:
                    waiting += 1
                    log.warning("subscription of %s to %s waits: %s", entry.filter.name if entry.filter else "?",
                                entry.handler.name if entry.handler else "?", exc.description)  # fmt: skip
        return waiting

    def attach(self, loop: Any, session: Any) -> None:
        """Start every listener's sender on ``loop`` (the server's), with aiohttp ``session``."""
        with self._lock:
            self._loop, self._session = loop, session
            for entry in self.entries[DESTINATION]:
                self._start(entry)

    def _start(self, entry: Entry) -> None:
        if self._loop is not None and entry.outbox is not None:
            self._loop.call_soon_threadsafe(entry.outbox.start, self._session)

    async def detach(self) -> None:
        """Stop the engine's polls and every sender."""
        if self.hub is not None:
            self.hub.close()
        with self._lock:
            outboxes = [e.outbox for e in self.entries[DESTINATION] if e.outbox is not None]
        for outbox in outboxes:
            await outbox.stop()

    # --- finding and deleting ----------------------------------------------------------------

    def find(self, path: Any) -> Entry | None:
        """The filter, destination or subscription ``path`` names (keys matched, see :func:`_same`)."""
        with self._lock:
            for entries in self.entries.values():
                for entry in entries:
                    if _same(path, entry.instance.path):
                        return entry
        return None

    def delete(self, path: Any, user: str) -> None:
        with self._lock:
            entry = self.find(path)
            if entry is None:
                raise CIMError(6, f"no {path.classname} of this name")  # CIM_ERR_NOT_FOUND
            if entry.owner != user:
                raise CIMError(CIM_ERR_ACCESS_DENIED, f"this {entry.instance.classname} belongs to another user")
            users = [s for s in self.entries[SUBSCRIPTION] if entry in (s.filter, s.handler)]
            if users:  # DSP1054: referenced filters and destinations cannot be deleted
                raise CIMError(
                    CIM_ERR_FAILED,
                    f"this {entry.instance.classname} is used by {len(users)} subscriptions; delete them first",
                )
            self._remove(entry)
            try:
                self.save()
            except OSError as exc:
                self.entries[entry.instance.classname].append(entry)
                if entry.instance.classname == SUBSCRIPTION:
                    self.activate(entry)
                raise CIMError(CIM_ERR_FAILED, f"cannot keep the change: {exc.strerror or exc}") from None

    def _remove(self, entry: Entry) -> None:
        entries = self.entries[entry.instance.classname]
        if entry in entries:
            entries.remove(entry)
        if entry.active is not None and self.hub is not None:
            self.hub.unsubscribe(entry.active)
            entry.active = None
        if entry.outbox is not None and self._loop is not None:
            import asyncio

            asyncio.run_coroutine_threadsafe(entry.outbox.stop(), self._loop)

    def references(self, entry: Entry) -> list[Entry]:
        """The subscriptions that name ``entry`` as their Filter or Handler."""
        with self._lock:
            return [s for s in self.entries[SUBSCRIPTION] if entry in (s.filter, s.handler)]

    def all(self) -> list[Entry]:
        with self._lock:
            return [e for entries in self.entries.values() for e in entries]

    # --- the state file ----------------------------------------------------------------------

    def save(self) -> None:
        """Write every entry (and those set aside) to the state file."""
        if self.state is None:
            return
        sections = {SECTION[c]: [entry_json(e) for e in entries] for c, entries in self.entries.items()}
        for section, kept in self.aside.items():
            sections[section] = sections[section] + kept
        self.state.save(sections)

    def restore(self) -> None:
        """Add the entries of the state file; one that cannot be used now (its query no longer
        compiles, its destination is no longer allowed, its filter is gone) is set aside with a
        warning and kept in the file. Subscriptions are activated later (:meth:`activate_pending`)."""
        if self.state is None:
            return
        from .interop import new_instance, resolved
        from .persist import entry_instance

        sections = self.state.load()
        for classname in (DESTINATION, FILTER, SUBSCRIPTION):
            for raw in sections[SECTION[classname]]:
                try:
                    instance, owner, created = entry_instance(raw, classname, resolved)
                    entry = self.create(new_instance(classname, dict(instance.properties)), owner, restoring=True)
                    entry.created = created
                except (CIMError, ValueError, TypeError, KeyError, ArithmeticError) as exc:
                    reason = exc.description if isinstance(exc, CIMError) else f"{type(exc).__name__}: {exc}"
                    log.warning("a saved %s is not used (%s); it stays in the state file", classname, reason[:300])
                    self.aside[SECTION[classname]].append(raw)


def _set(instance: Any, name: str, value: Any) -> None:
    """Set a property the (complete) instance has, keeping its declared type."""
    instance.properties[name].value = value


def _same(path: Any, other: Any) -> bool:
    """Whether the instance paths ``path`` (a client's) and ``other`` (an entry's) name the same
    instance: the same class (``path``'s may be a superclass) and keys; names of classes and
    systems without regard to case; references matched the same way; host and namespace ignored
    (the namespace was checked when the request was read)."""
    from .interop import is_subclass

    if path is None or not hasattr(path, "keybindings") or not is_subclass(other.classname, path.classname):
        return False
    mine = {k.lower(): v for k, v in path.keybindings.items()}
    theirs = {k.lower(): v for k, v in other.keybindings.items()}
    if mine.keys() != theirs.keys():
        return False
    for key, value in theirs.items():
        given = mine[key]
        if hasattr(value, "keybindings"):
            if not _same(given, value):
                return False
        elif key.endswith("classname") or key == "systemname":
            if not isinstance(given, str) or given.lower() != str(value).lower():
                return False
        elif given != value:
            return False
    return True
