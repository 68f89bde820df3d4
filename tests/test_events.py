"""Event queries (wql/events.py) and the event engine (events.py), from snapshots made by hand.

The snapshots are test input built from the sources' own record types, as in test_family.py;
tests/test_watch.py runs the same engine against a real smbd and real clients.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from serversession.events import Hub, diff, poll
from serversession.formats import event_json, event_line
from serversession.sources.base import SessionRecord, Snapshot
from serversession.wql import NotSupported, WQLError, compile_wql
from serversession.wql.events import (
    CREATION,
    DELETION,
    MODIFICATION,
    REGISTRATION_TOO_PRECISE,
    compile_event,
    filetime,
    unix_time,
)

NOW = 1_800_000_000.0
SESSIONS = "TargetInstance ISA 'Win32_ServerSession'"


def session(sid: str, user: str, opens: int = 0, computer: str = "10.0.0.7", idle: float = 5.0) -> SessionRecord:
    return SessionRecord(
        session_id=sid,
        computer_name=computer,
        user_name=user,
        established=NOW - 100,
        last_request=NOW - idle,
        opens=opens,
        user_flags=0,
        client_type="SMB3_11",
        transport="tcp",
    )


def snap(*sessions: SessionRecord, taken: float = NOW) -> Snapshot:
    return Snapshot(tuple(sessions), taken, (), (), ())


def instances(snapshot: Snapshot) -> dict:
    reader = lambda parts: snapshot  # noqa: E731 - the snapshot is the source's answer
    return poll(reader, frozenset({"Win32_ServerSession"}))[0]["Win32_ServerSession"]


def events_between(before: Snapshot, after: Snapshot) -> list:
    return diff(instances(before), instances(after), after.taken)


@pytest.mark.parametrize(
    ("query", "error", "message"),
    [
        (f"SELECT * FROM __InstanceCreationEvent WHERE {SESSIONS}", WQLError, f"{REGISTRATION_TOO_PRECISE:#x}"),
        ("SELECT * FROM __InstanceCreationEvent WITHIN 5", WQLError, "TargetInstance ISA"),
        (f"SELECT * FROM __InstanceCreationEvent WITHIN 5 WHERE {SESSIONS} OR __CLASS = 'x'", WQLError, "ISA"),
        ("SELECT * FROM __InstanceCreationEvent WITHIN 5 WHERE TargetInstance ISA 'Nope'", WQLError, "unknown class"),
        (f"SELECT * FROM __InstanceCreationEvent WITHIN 0.1 WHERE {SESSIONS}", WQLError, "WITHIN must be"),
        (f"SELECT * FROM __InstanceCreationEvent WITHIN 1e300 WHERE {SESSIONS}", WQLError, "WITHIN must be"),
        (f"SELECT * FROM __InstanceCreationEvent WITHIN 5 WHERE {SESSIONS} AND TargetInstance.Nope = 1",
         WQLError, "no property"),
        (f"SELECT * FROM __InstanceCreationEvent WITHIN 5 WHERE {SESSIONS} AND UserName = 'a'",
         WQLError, "TargetInstance.Property"),
        (f"SELECT * FROM __InstanceCreationEvent WITHIN 5 WHERE {SESSIONS} "
         "AND TargetInstance.UserName = PreviousInstance.ResourcesOpened", WQLError, "is string"),
        (f"SELECT * FROM __InstanceCreationEvent WITHIN 5 WHERE {SESSIONS} AND TargetInstance.UserName = 5",
         WQLError, "string"),
        (f"SELECT Foo FROM __InstanceCreationEvent WITHIN 5 WHERE {SESSIONS}", WQLError, "no property"),
        ("SELECT * FROM Win32_ServerSession WITHIN 5", WQLError, "not an event class"),
        (f"SELECT * FROM __InstanceCreationEvent WITHIN 5 WHERE {SESSIONS} GROUP WITHIN 60", NotSupported, "aggregate"),
        ("SELECT * FROM __TimerEvent WITHIN 5", NotSupported, "not supported"),
        ("SELECT * FROM Win32_ServerSession", WQLError, "not an event query"),
    ],
)  # fmt: skip
def test_invalid_event_queries_are_refused_with_a_reason(query: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        compile_event(query)


def test_an_event_query_is_refused_by_query_with_a_pointer_to_watch() -> None:
    with pytest.raises(NotSupported, match="serversession watch"):
        compile_wql(f"SELECT * FROM __InstanceCreationEvent WITHIN 5 WHERE {SESSIONS}")
    with pytest.raises(WQLError):  # an invalid one is invalid, not "not supported"
        compile_wql(f"SELECT * FROM __InstanceCreationEvent WITHIN 5 WHERE {SESSIONS} AND TargetInstance.X = 1")


def test_diff_makes_creations_modifications_and_deletions() -> None:
    before = snap(session("0x1", "alice", 1), session("0x2", "bob", 1))
    after = snap(session("0x1", "alice", 2), session("0x3", "carol"), taken=NOW + 5)
    events = events_between(before, after)
    assert [(e.classname, e.target.UserName) for e in events] == [
        (MODIFICATION, "alice"),
        (CREATION, "carol"),
        (DELETION, "bob"),
    ]
    alice = events[0]
    assert (alice.previous.ResourcesOpened, alice.target.ResourcesOpened) == (1, 2)
    assert events[2].target.ResourcesOpened == 1  # a deletion carries the instance as last seen
    assert unix_time(alice.time_created) == pytest.approx(NOW + 5) and alice.time_created == filetime(NOW + 5)
    assert events_between(before, before) == []  # nothing changed, nothing to say


def test_keys_match_across_polls_without_regard_to_case() -> None:
    """WMI matches instances by their keys, which compare case-blind: no delete-and-create."""
    before = snap(session("0x1", "alice", 1, computer="WS1"))
    after = snap(session("0x1", "alice", 1, computer="ws1", idle=1))
    assert [e.classname for e in events_between(before, after)] == [MODIFICATION]


def test_conditions_on_target_and_previous_instance() -> None:
    before = snap(session("0x1", "alice", 1), session("0x2", "bob", 1))
    after = snap(session("0x1", "alice", 2), session("0x2", "bob", 1, idle=0), session("0x3", "carol"))
    events = events_between(before, after)

    def wanted(query: str) -> list[tuple[str, str]]:
        return [(e.classname, e.target.UserName) for e in compile_event(query).select(events)]

    opened = (
        f"SELECT * FROM __InstanceModificationEvent WITHIN 1 WHERE {SESSIONS} "
        "AND TargetInstance.ResourcesOpened <> PreviousInstance.ResourcesOpened"
    )
    assert wanted(opened) == [(MODIFICATION, "alice")]  # bob's changed, but not his open files
    more = (
        f"SELECT * FROM __InstanceModificationEvent WITHIN 1 WHERE {SESSIONS} "
        "AND PreviousInstance.ResourcesOpened < TargetInstance.ResourcesOpened"
    )
    assert wanted(more) == [(MODIFICATION, "alice")]
    assert wanted(f"SELECT * FROM __InstanceCreationEvent WITHIN 1 WHERE {SESSIONS}") == [(CREATION, "carol")]
    every = f"SELECT * FROM __InstanceOperationEvent WITHIN 1 WHERE {SESSIONS}"
    assert len(wanted(every)) == 3
    # PreviousInstance is null for a creation: every test of it is false, NOT of one true
    assert wanted(every + " AND PreviousInstance.UserName = 'carol'") == []
    assert wanted(every + " AND PreviousInstance IS NULL") == [(CREATION, "carol")]
    assert wanted(every + " AND __CLASS = '__InstanceCreationEvent'") == [(CREATION, "carol")]
    assert wanted(every + " AND __THIS ISA '__InstanceModificationEvent'") == [(MODIFICATION, "alice"),
                                                                               (MODIFICATION, "bob")]  # fmt: skip
    assert wanted(every + " AND TargetInstance.UserName LIKE 'B%'") == [(MODIFICATION, "bob")]
    assert wanted(every + " AND TIME_CREATED > 0 AND TargetInstance.UserName = 'CAROL'") == [(CREATION, "carol")]
    superclass = "SELECT * FROM __InstanceCreationEvent WITHIN 1 WHERE TargetInstance ISA 'CIM_LogicalElement'"
    assert wanted(superclass) == [(CREATION, "carol")]


def test_events_in_json_lines_and_for_people() -> None:
    hostile = "x\x1b[2J\nnew line"
    events = events_between(snap(session("0x1", "alice", 1)), snap(session("0x1", "alice", 3), session("0x2", hostile)))
    modified, created = events
    row = json.loads(event_json(modified))
    assert row["__CLASS"] == MODIFICATION and row["TIME_CREATED"] == modified.time_created
    assert row["TargetInstance"]["ResourcesOpened"] == 3 and row["PreviousInstance"]["ResourcesOpened"] == 1
    assert row["TargetInstance"]["__CLASS"] == "Win32_ServerSession" and "__PATH" in row["TargetInstance"]
    line = event_json(created)
    assert "\n" not in line and "\x1b" not in line and json.loads(line)["TargetInstance"]["UserName"] == hostile
    assert "PreviousInstance" not in json.loads(line)
    selected = json.loads(event_json(modified, ("TargetInstance",)))
    assert set(selected) == {"__CLASS", "TargetInstance"}
    text = event_line(modified)
    assert "modified" in text and "ResourcesOpened 1->3" in text and 'UserName="alice"' in text
    people = event_line(created)
    assert "\x1b" not in people and "\n" not in people and "created" in people


class Source:
    """Snapshots handed out one per read: what a source would answer, poll after poll."""

    def __init__(self, *snapshots: Snapshot) -> None:
        self.snapshots = list(snapshots)
        self.reads = 0
        self.fail = False

    def __call__(self, parts: frozenset[str]) -> Snapshot:
        from serversession.errors import SourceUnavailable

        self.reads += 1
        if self.fail:
            raise SourceUnavailable("the source is down")
        return self.snapshots[min(self.reads - 1, len(self.snapshots) - 1)]


def test_subscriptions_with_the_same_within_share_one_poll(caplog) -> None:
    source = Source(
        snap(session("0x1", "alice")),
        snap(session("0x1", "alice"), session("0x2", "bob")),
        snap(session("0x2", "bob"), session("0x3", "carol")),
    )
    hub = Hub(source)
    created: list[str] = []
    deleted: list[str] = []
    lock = threading.Lock()

    def into(found: list[str]):
        def deliver(event) -> None:
            with lock:
                found.append(event.target.UserName)

        return deliver

    try:
        hub.subscribe(f"SELECT * FROM __InstanceCreationEvent WITHIN 0.5 WHERE {SESSIONS}", into(created))
        hub.subscribe(f"SELECT * FROM __InstanceDeletionEvent WITHIN 0.5 WHERE {SESSIONS}", into(deleted))
        assert list(hub.loops()) == [0.5] and source.reads == 1  # one baseline for both
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (len(created) < 2 or not deleted):
            time.sleep(0.05)
        loop = hub.loops()[0.5]
        assert created == ["bob", "carol"] and deleted == ["alice"]
        assert source.reads == 1 + loop.polls  # each poll read the source once for both subscriptions
        source.fail = True  # a failing source: a warning, and the watch goes on
        polls, failures = loop.polls, loop.failures
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and loop.failures == failures:
            time.sleep(0.05)
        assert loop.failures > failures and loop.polls == polls
        assert "the watch goes on" in caplog.text
        source.fail = False
        source.snapshots.append(snap(session("0x4", "dave")))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "dave" not in created:
            time.sleep(0.05)
        assert created[-1] == "dave" and set(deleted) == {"alice", "bob", "carol"}  # from the last good poll
        hub.subscribe(f"SELECT * FROM __InstanceCreationEvent WITHIN 1 WHERE {SESSIONS}", into([]))
        assert sorted(hub.loops()) == [0.5, 1.0]  # another interval, another poll
        for step in range(50):  # WITHIN 1.00 ... 1.49 and 5.0 ... 5.49: polled every 1 and 5 s, not 100 polls
            for base in (1.0, 5.0):
                hub.subscribe(f"SELECT * FROM __InstanceCreationEvent WITHIN {base + step / 100:.2f} WHERE {SESSIONS}",
                              into([]))  # fmt: skip
        assert sorted(hub.loops()) == [0.5, 1.0, 5.0]
    finally:
        hub.close()
    time.sleep(0.6)
    reads = source.reads
    time.sleep(1.2)
    assert source.reads == reads  # closed: no poll reads any more


def test_a_source_that_cannot_be_read_at_the_start_is_the_callers_error() -> None:
    from serversession.errors import SourceUnavailable

    source = Source(snap())
    source.fail = True
    hub = Hub(source)
    with pytest.raises(SourceUnavailable):
        hub.subscribe(f"SELECT * FROM __InstanceCreationEvent WITHIN 1 WHERE {SESSIONS}", lambda e: None)
    hub.close()
