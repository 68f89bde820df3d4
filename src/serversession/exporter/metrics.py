"""The exporter's metric families, computed from one snapshot of the source.

Everything here comes from the records of a :class:`~serversession.sources.base.Snapshot` and the
schema (SessionType's names are the MOF's ``Values``); nothing knows which server kind they were
read from. Labels are bounded: dialect, session type, encryption and signing take a few values
each; shares are capped per host (the rest are summed under ``*other*``); user series exist only
with ``per_user`` and are capped in all (the users with most sessions are kept, with a warning).
Values are made fit for a label: surrogates and control characters become U+FFFD, and a value
is cut at :data:`MAX_LABEL` characters.
"""

from __future__ import annotations

import bisect
import logging
import platform
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily, Metric

from .. import __version__
from ..model import SERVER_SESSION
from ..model.instances import session_type
from ..sources.base import OpenRecord, SessionRecord, Snapshot

log = logging.getLogger("serversession.exporter")

PREFIX = "serversession"
#: upper bounds of the idle and age histograms, in seconds: 10 s to 7 days
BUCKETS = (10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 604800)
MAX_LABEL = 128  # characters of a label value
MAX_SHARES = 500  # share series per host; more are summed under OTHER
MAX_VALUES = 16  # distinct dialects per host; more are counted as OTHER
MAX_USERS = 1000  # per-user series in all (--per-user)
OTHER = "*other*"  # Windows share names cannot hold '*'
NO_SHARE = "*unknown*"  # the share of a handle the source cannot place (srvsvc)
UNKNOWN = "unknown"
ANONYMOUS = "(anonymous)"  # the user label of null sessions, as `list` shows them
WARN_EVERY = 3600.0  # seconds between two warnings that a cap was reached


def label(text: str | None) -> str:
    """``text`` fit for a label value: control characters and surrogates as U+FFFD, bounded length."""
    if text is None:
        return UNKNOWN
    if not text.isprintable() or len(text) > MAX_LABEL:
        text = "".join(c if c.isprintable() and not 0xD800 <= ord(c) <= 0xDFFF else "\ufffd" for c in text[:MAX_LABEL])
    return text


def _flag(value: bool | None) -> str:
    return UNKNOWN if value is None else ("true" if value else "false")


def _session_type_names() -> dict[int | None, str]:
    """SessionType's values as the MOF names them (Guest, NoEncryption, Other), and None: unknown."""
    from ..model import load_schema

    qualifiers = load_schema().get(SERVER_SESSION).properties["SessionType"].qualifiers
    names: dict[int | None, str] = {
        int(v): n for v, n in zip(qualifiers["ValueMap"], qualifiers["Values"], strict=True)
    }
    names[None] = UNKNOWN
    return names


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, value)] += 1
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out


@dataclass
class _User:
    name: str
    sessions: int = 0
    handles: int | None = 0
    idle: float | None = None


@dataclass
class _Host:
    """What one host's records add up to."""

    sessions: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    users: set[str] = field(default_factory=set)
    clients: set[str] = field(default_factory=set)
    idle: _Histogram = field(default_factory=_Histogram)
    age: _Histogram = field(default_factory=_Histogram)
    shares: dict[str, str] = field(default_factory=dict)  # folded name -> spelling
    tree_connects: Counter[str] = field(default_factory=Counter)
    handles: Counter[str] = field(default_factory=Counter)
    locks: dict[str, int | None] = field(default_factory=dict)
    per_user: dict[str, _User] = field(default_factory=dict)
    overflow: bool = False  # more shares than MAX_SHARES


@dataclass
class Tally:
    """State kept across reads: label combinations seen (so a count that falls to 0 is a 0, not a
    vanished series), and when a cap was last warned about."""

    combinations: dict[str | None, set[tuple[str, str, str, str]]] = field(default_factory=lambda: defaultdict(set))
    dialects: dict[str | None, set[str]] = field(default_factory=lambda: defaultdict(set))
    warned: dict[str, float] = field(default_factory=dict)
    types: dict[int | None, str] = field(default_factory=_session_type_names)

    def warn(self, what: str, message: str) -> None:
        now = time.monotonic()
        if now - self.warned.get(what, -WARN_EVERY) >= WARN_EVERY:
            self.warned[what] = now
            log.warning("%s", message)


def _share(host: _Host, name: str | None) -> str:
    """The share's label on ``host`` (case-blind; the first spelling seen)."""
    if name is None:
        return NO_SHARE
    folded = name.lower()
    if folded not in host.shares:
        if len(host.shares) >= MAX_SHARES:
            host.overflow = True
            return OTHER
        host.shares[folded] = label(name)
    return host.shares[folded]


def _add_sessions(
    hosts: dict[str | None, _Host], records: Iterable[SessionRecord], taken: float, tally: Tally, per_user: bool
) -> None:
    types = tally.types
    for record in records:
        host = hosts[record.server]
        dialect, known = label(record.dialect), tally.dialects[record.server]
        if dialect not in known:
            if len(known) >= MAX_VALUES:
                dialect = OTHER
            known.add(dialect)
        # sessions' encryption and signing: read where a source gives them on its records
        key = (
            dialect,
            types.get(session_type(record.user_flags), UNKNOWN),
            _flag(getattr(record, "encrypted", None)),
            _flag(getattr(record, "signed", None)),
        )
        host.sessions[key] += 1
        tally.combinations[record.server].add(key)
        if record.user_name:
            host.users.add(record.user_name.lower())
        host.clients.add((record.computer_name or "").lower())
        age = idle = None
        if record.established is not None:
            age = max(0.0, taken - record.established)
            host.age.observe(age)
        if record.last_request is not None:
            idle = max(0.0, taken - record.last_request)
            idle = idle if age is None else min(idle, age)
            host.idle.observe(idle)
        if per_user:
            user = host.per_user.setdefault(
                (record.user_name or "").lower(), _User(label(record.user_name or ANONYMOUS))
            )
            user.sessions += 1
            user.handles = None if user.handles is None or record.opens is None else user.handles + record.opens
            if idle is not None:
                user.idle = idle if user.idle is None else min(user.idle, idle)


def _add_opens(hosts: dict[str | None, _Host], opens: Sequence[OpenRecord]) -> None:
    for record in opens:
        host = hosts[record.server]
        share = _share(host, record.share_name)
        host.handles[share] += 1
        known = host.locks.get(share, 0)
        host.locks[share] = None if known is None or record.locks is None else known + record.locks


def families(
    snapshot: Snapshot | None,
    hosts: Sequence[str] | None,
    failed: set[str],
    tally: Tally,
    per_user: bool = False,
    user_limit: int = MAX_USERS,
) -> list[Metric]:
    """The metric families of one read: ``snapshot`` (None: the read failed), ``hosts`` (the host
    labels of a remote source; None: this machine, no host label), ``failed`` (hosts whose read
    failed). A host that failed has only ``serversession_up`` 0."""
    names: list[str | None] = list(hosts) if hosts is not None else [None]
    up_hosts = [] if snapshot is None else [h for h in names if h not in failed]
    hosts_data: dict[str | None, _Host] = {name: _Host() for name in up_hosts}
    by_host: dict[str | None, _Host] = defaultdict(_Host, hosts_data)
    if snapshot is not None:
        for share in snapshot.shares or ():
            _share(by_host[share.server], share.name)
        _add_sessions(by_host, snapshot.sessions, snapshot.taken, tally, per_user)
        for connection in snapshot.connections or ():
            by_host[connection.server].tree_connects[_share(by_host[connection.server], connection.share_name)] += 1
        _add_opens(by_host, snapshot.opens or ())
    for name, data in by_host.items():
        if data.overflow:
            tally.warn(
                f"shares {name}",
                f'{name or "this server"}: more than {MAX_SHARES} shares; the others are counted under share="{OTHER}"',
            )
    host_label = [] if hosts is None else ["host"]

    def values(host: str | None, *rest: str) -> list[str]:
        return [*([] if hosts is None else [label(host)]), *rest]

    def gauge(name: str, text: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
        family = GaugeMetricFamily(f"{PREFIX}_{name}", text, labels=[*host_label, *labels])
        out.append(family)
        return family

    out: list[Metric] = []
    up = gauge("up", "1 if the last read of the host's sessions succeeded, else 0.")
    for name in names:
        up.add_metric(values(name), 1.0 if name in hosts_data else 0.0)
    sessions = gauge(
        "sessions",
        "SMB sessions now, by dialect, session type (Win32_ServerSession.SessionType), encryption and signing.",
        ["dialect", "session_type", "encryption", "signing"],
    )
    users = gauge("users", "Distinct user accounts with a session (anonymous sessions not counted).")
    clients = gauge("clients", "Distinct client computers with a session.")
    idle = GaugeHistogramMetricFamily(
        f"{PREFIX}_session_idle_seconds",
        "Sessions by seconds since the client's last request in the session.",
        labels=host_label,
    )
    age = GaugeHistogramMetricFamily(
        f"{PREFIX}_session_age_seconds", "Sessions by seconds since they were established.", labels=host_label
    )
    out += [idle, age]
    shares = gauge("tree_connects", "Tree connects (sessions' connections to a share) now, per share.", ["share"])
    handles = gauge("open_handles", "Open handles (files, directories, pipes) now, per share.", ["share"])
    locks = gauge("byte_range_locks", "Byte-range locks held now, per share.", ["share"])
    for name in hosts_data:
        data = by_host[name]
        for key in sorted(tally.combinations[name]):
            sessions.add_metric(values(name, *key), float(data.sessions.get(key, 0)))
        users.add_metric(values(name), float(len(data.users)))
        clients.add_metric(values(name), float(len(data.clients)))
        idle.add_metric(values(name), data.idle.buckets(), data.idle.total)
        age.add_metric(values(name), data.age.buckets(), data.age.total)
        every = sorted({*data.shares.values(), *data.tree_connects, *data.handles}, key=str.lower)
        for share in every:
            if snapshot is not None and snapshot.connections is not None:
                shares.add_metric(values(name, share), float(data.tree_connects.get(share, 0)))
            if snapshot is not None and snapshot.opens is not None:
                handles.add_metric(values(name, share), float(data.handles.get(share, 0)))
                if data.locks.get(share, 0) is not None:  # no handles: no locks
                    locks.add_metric(values(name, share), float(data.locks.get(share) or 0))
    if per_user:
        out += _per_user(hosts_data, by_host, hosts is not None, tally, user_limit)
    return out


def _per_user(
    hosts_data: dict[str | None, _Host], by_host: dict[str | None, _Host], labelled: bool, tally: Tally, limit: int
) -> list[Metric]:
    """The per-user families (``--per-user``): the ``limit`` users with most sessions, in all hosts."""
    everyone = [(host, user) for host in hosts_data for user in by_host[host].per_user.values()]
    everyone.sort(key=lambda pair: (-pair[1].sessions, pair[0] or "", pair[1].name))
    kept, dropped = everyone[:limit], len(everyone) - min(limit, len(everyone))
    if dropped:
        tally.warn(
            "users",
            f"--per-user: {len(everyone)} users, series kept for the {limit} with most sessions "
            f"({dropped} left out; serversession_user_series_dropped says how many now)",
        )
    labels = ["host", "user"] if labelled else ["user"]
    sessions = GaugeMetricFamily(f"{PREFIX}_user_sessions", "Sessions of the user now (--per-user).", labels=labels)
    handles = GaugeMetricFamily(
        f"{PREFIX}_user_open_handles", "Handles the user's sessions hold open now (--per-user).", labels=labels
    )
    idle = GaugeMetricFamily(
        f"{PREFIX}_user_idle_seconds",
        "Seconds since the user's last request in any of their sessions (--per-user).",
        labels=labels,
    )
    for host, user in kept:
        key = [label(host), user.name] if labelled else [user.name]
        sessions.add_metric(key, float(user.sessions))
        if user.handles is not None:
            handles.add_metric(key, float(user.handles))
        if user.idle is not None:
            idle.add_metric(key, user.idle)
    left_out = GaugeMetricFamily(
        f"{PREFIX}_user_series_dropped",
        f"Users whose per-user series were left out by the cap of {limit} (--per-user).",
        value=float(dropped),
    )
    return [sessions, handles, idle, left_out]


def exporter_families(duration: float | None, finished: float | None, reads: int) -> list[Metric]:
    """The exporter's own families: build info, and the last read's duration and time."""
    info = GaugeMetricFamily(
        f"{PREFIX}_build_info", "serversession's version and Python's; always 1.", labels=["version", "python_version"]
    )
    info.add_metric([__version__, platform.python_version()], 1.0)
    out: list[Metric] = [info]
    if duration is not None:
        out.append(
            GaugeMetricFamily(
                f"{PREFIX}_read_duration_seconds",
                "Seconds the last read of the source took (all hosts at once).",
                value=duration,
            )
        )
    if finished is not None:
        out.append(
            GaugeMetricFamily(
                f"{PREFIX}_read_timestamp_seconds",
                "Unix time when the read these series come from ended.",
                value=finished,
            )
        )
    out.append(CounterMetricFamily(f"{PREFIX}_reads", "Reads of the source since the exporter started.", value=reads))
    return out
