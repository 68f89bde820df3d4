"""The class family's providers (model/family.py) and their output, from snapshots made by hand.

The snapshots are test input built from the sources' own record types (what a source returns),
so each rule of DESIGN.md section 2a can be put to the test with values chosen to break it;
tests/test_samba_family.py and tests/test_srvsvc.py check the same classes against real servers.
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from conftest import HOSTILE_NAME, compile_package_mof, xml_kept
from serversession.formats import render
from serversession.model import load_schema
from serversession.model.objectpath import ObjectPath, format_path
from serversession.model.providers import NEEDS, PROVIDERS, build, needs, provided
from serversession.sources.base import (
    CONNECTIONS,
    OPENS,
    SHARES,
    ConnectionRecord,
    OpenRecord,
    SessionRecord,
    ShareRecord,
    Snapshot,
)
from serversession.wql.lookup import find_instance

NOW = 1_800_000_000.0


def session(
    sid: str, computer: str, user: str, *, wire: int, opens: int, age: float = 100, idle: float = 5, server=None
):
    return SessionRecord(
        session_id=sid,
        computer_name=computer,
        user_name=user,
        established=NOW - age,
        last_request=NOW - idle,
        opens=opens,
        user_flags=0,
        client_type="SMB3_11",
        transport="tcp:127.0.0.1:445",
        server=server,
        wire_id=wire,
        dialect="3.1.1",
    )


def open_file(fid: int, sid: str | None, tcon: int | None, share: str, name: str, *, locks: int = 0, server=None):
    return OpenRecord(
        file_id=fid,
        session_id=sid,
        connection_id=tcon,
        share_name=share,
        path=f"/srv/{share}/{name}",
        share_relative_path=name,
        access_mask=0x12019F,
        locks=locks,
        durable=False,
        continuously_available=False,
        encrypted=False,
        signed=True,
        server=server,
    )


@pytest.fixture
def snapshot() -> Snapshot:
    """alice: two sessions from one client (merged by Win32_ServerSession), two tree connects to
    `data` (merged by Win32_ServerConnection) and one to `docs`; bob: one to `docs`; a tree connect
    to a share gone from the configuration; a durable handle whose client is gone."""
    sessions = (
        session("0x1", "10.0.0.7", "alice", wire=1, opens=2, age=300),
        session("0x2", "10.0.0.7", "alice", wire=2, opens=1, age=50, idle=1),
        session("0x3", "10.0.0.8", "bob", wire=3, opens=1),
        session("0x4", "10.0.0.9", "carol", wire=4, opens=0),
    )
    connections = (
        ConnectionRecord("0x1", "data", 11, NOW - 290),
        ConnectionRecord("0x2", "data", 12, NOW - 40),
        ConnectionRecord("0x1", "docs", 13, NOW - 200),
        ConnectionRecord("0x3", "docs", 14, NOW - 10),
        ConnectionRecord("0x4", "gone", 15, NOW - 10),
    )
    shares = (
        ShareRecord("data", "/srv/data", 0, "Data", None),
        ShareRecord("docs", "/srv/docs", 0, None, 10),
        ShareRecord("IPC$", None, 3 | 0x80000000, "IPC Service", None),
    )
    opens = (
        open_file(101, "0x1", 11, "data", "a.txt", locks=2),
        open_file(102, "0x1", 13, "docs", "b.txt"),
        open_file(103, "0x2", 12, "data", "c.txt"),
        open_file(104, "0x3", 14, "docs", "b.txt"),
        open_file(105, None, None, "data", "durable.txt"),
    )
    return Snapshot(sessions, NOW, connections, shares, opens)


def by_class(classname: str, snap: Snapshot) -> list:
    return build(provided(classname), snap)


def test_every_class_of_the_design_has_a_provider_and_says_what_it_needs() -> None:
    schema = load_schema()
    concrete = {c.name for c in schema.classes.values() if c.keys and not c.is_abstract}
    assert set(PROVIDERS) == concrete == set(NEEDS)
    assert needs("Win32_ServerSession") == frozenset()
    assert needs("win32_serverconnection") == {CONNECTIONS, OPENS}
    assert needs("CIM_Dependency") == {CONNECTIONS, SHARES}  # both associations
    assert needs("CIM_LogicalElement") == {CONNECTIONS, OPENS, SHARES}


def test_server_connections_merge_as_sessions_do(snapshot) -> None:
    found = {(c.UserName, c.ShareName): c for c in by_class("Win32_ServerConnection", snapshot)}
    assert set(found) == {("alice", "data"), ("alice", "docs"), ("bob", "docs"), ("carol", "gone")}
    data = found[("alice", "data")]
    assert data.ConnectionID == 11 and data.ActiveTime == 290  # of the oldest tree connect
    assert data.NumberOfFiles == 2  # summed over both tree connects (101 and 103)
    assert data.InstallDate == datetime.fromtimestamp(NOW - 290).astimezone()
    assert found[("alice", "docs")].NumberOfFiles == 1 and found[("carol", "gone")].NumberOfFiles == 0
    assert data.NumberOfUsers == 1 and data.ComputerName == "10.0.0.7" and data.Status == "OK"


def test_one_snapshot_agrees_with_itself(snapshot) -> None:
    """DESIGN 2a: a session's connections' NumberOfFiles sum to its ResourcesOpened; associations
    never dangle; every open of a session is counted once."""
    sessions = {(s.ComputerName, s.UserName): s for s in by_class("Win32_ServerSession", snapshot)}
    files: dict[tuple[str, str], int] = {}
    for c in by_class("Win32_ServerConnection", snapshot):
        files[(c.ComputerName, c.UserName)] = files.get((c.ComputerName, c.UserName), 0) + c.NumberOfFiles
    assert {k: s.ResourcesOpened for k, s in sessions.items()} == {**files}
    everything = build(provided("CIM_ManagedSystemElement"), snapshot)
    for association in by_class("CIM_Dependency", snapshot):
        for end in (association.Antecedent, association.Dependent):
            assert find_instance(end, everything).path == format_path(end)


def test_associations_link_the_right_ends(snapshot) -> None:
    links = {
        (a.Antecedent.key_dict["UserName"], a.Dependent.key_dict["ShareName"])
        for a in by_class("Win32_SessionConnection", snapshot)
    }
    assert links == {("alice", "data"), ("alice", "docs"), ("bob", "docs"), ("carol", "gone")}
    shares = {
        (a.Antecedent.key_dict["Name"], a.Dependent.key_dict["UserName"])
        for a in by_class("Win32_ConnectionShare", snapshot)
    }
    assert shares == {("data", "alice"), ("docs", "alice"), ("docs", "bob")}  # none to the share that is gone
    one = by_class("Win32_SessionConnection", snapshot)[0]
    assert one.path.startswith("Win32_SessionConnection.Antecedent=")
    assert find_instance(one.path, by_class("Win32_SessionConnection", snapshot)) == one  # a path with reference keys


def test_shares_as_windows_reports_them(snapshot) -> None:
    found = {s.Name: s for s in by_class("Win32_Share", snapshot)}
    assert found["docs"].MaximumAllowed == 10 and found["docs"].AllowMaximum is False
    assert found["data"].MaximumAllowed is None and found["data"].AllowMaximum is True
    assert found["IPC$"].Type == 2147483651 and found["IPC$"].Path is None
    unknown = Snapshot((), NOW, shares=(ShareRecord("x", None, 0, None, None, limit_known=False),))
    assert [(s.MaximumAllowed, s.AllowMaximum) for s in by_class("Win32_Share", unknown)] == [(None, None)]
    assert found["data"].Description == "Data" and all(s.AccessMask is None for s in found.values())


def test_smb_sessions_are_not_merged(snapshot) -> None:
    found = {s.SessionId: s for s in by_class("MSFT_SmbSession", snapshot)}
    assert set(found) == {1, 2, 3, 4}
    one = found[1]
    assert (one.ClientComputerName, one.ClientUserName, one.NumOpens, one.Dialect) == ("10.0.0.7", "alice", 2, "3.1.1")
    assert (one.SecondsExists, one.SecondsIdle, one.ScopeName, one.SmbInstance) == (300, 5, "*", 0)
    assert one.path == "MSFT_SmbSession.SessionId=1"
    assert one.system_properties()["__NAMESPACE"] == "root\\Microsoft\\Windows\\SMB"


def test_open_files_carry_their_session(snapshot) -> None:
    found = {f.FileId: f for f in by_class("MSFT_SmbOpenFile", snapshot)}
    assert set(found) == {101, 102, 103, 104, 105}
    assert (found[101].SessionId, found[101].ClientUserName, found[101].Locks) == (1, "alice", 2)
    assert found[101].Path == "/srv/data/a.txt" and found[101].ShareRelativePath == "a.txt"
    assert found[105].SessionId is None and found[105].ClientUserName is None  # its client is gone


def test_remote_instances_keep_their_server_and_unknowns_stay_null() -> None:
    """srvsvc-like records: no session ids; connections and opens name their user themselves."""
    snap = Snapshot(
        (session("fs1#0", "10.0.0.7", "alice", wire=None, opens=1, server="fs1"),),  # type: ignore[arg-type]
        NOW,
        (ConnectionRecord(None, "data", 3, NOW - 10, "fs1", "10.0.0.7", "alice", opens=4, users=1),),
        (ShareRecord("data", "C:\\data", 0, None, None, "fs1"),),
        (OpenRecord(7, None, None, None, "C:\\data\\x", None, None, None, None, None, None, None, "fs1", "alice"),),
    )
    [connection] = by_class("Win32_ServerConnection", snap)
    assert (connection.server, connection.NumberOfFiles, connection.UserName) == ("fs1", 4, "alice")
    assert by_class("MSFT_SmbSession", snap) == []  # srvsvc carries no session id
    assert by_class("Win32_SessionConnection", snap) == []  # nor which session a connection belongs to
    [share_link] = by_class("Win32_ConnectionShare", snap)
    assert share_link.Antecedent.host == "fs1"
    [handle] = by_class("MSFT_SmbOpenFile", snap)
    assert (handle.ClientUserName, handle.Permissions, handle.ScopeName, handle.SmbInstance) == (
        "alice",
        None,
        None,
        None,
    )
    assert handle.path == "\\\\fs1\\root\\Microsoft\\Windows\\SMB:MSFT_SmbOpenFile.FileId=7"


def test_file_ids_given_twice_are_left_out(snapshot, caplog) -> None:
    twice = Snapshot(
        snapshot.sessions, NOW, (), (), (open_file(9, "0x1", 11, "data", "x"), open_file(9, "0x3", 14, "docs", "y"))
    )
    assert by_class("MSFT_SmbOpenFile", twice) == []
    assert "more than one open handle" in caplog.text


@pytest.mark.parametrize("fmt", ["table", "json", "csv", "mof", "xml"])
@pytest.mark.parametrize("classname", sorted(PROVIDERS))
def test_every_class_in_every_format(snapshot, classname, fmt) -> None:
    found = by_class(classname, snapshot)
    cls = load_schema().get(classname)
    text = render(found, cls, fmt, 200)
    assert found
    if fmt == "json":
        rows = json.loads(text)
        assert len(rows) == len(found) and set(rows[0]) == set(cls.properties)
        for ref in cls.references:
            assert all(parse(row[ref.name]).classname == ref.reference_class for row in rows)
    elif fmt == "table":
        lines = text.splitlines()
        assert lines[-1].startswith(f"{len(found)} ")
        assert len(lines) == len(found) + 3  # heading, rule, rows, count
    elif fmt == "xml":
        from defusedxml import ElementTree as etree

        root = etree.fromstring(text.encode())
        assert len(root.findall(".//INSTANCE")) == len(found)
        if cls.references:
            assert root.findall(".//PROPERTY.REFERENCE/VALUE.REFERENCE")
    elif fmt == "mof":
        import pywbem

        conn = pywbem.MOFWBEMConnection()
        compiler = pywbem.MOFCompiler(conn, verbose=False, log_func=lambda _m: None)
        compile_package_mof(compiler, cls.namespace)
        compiler.compile_string(text, cls.namespace, filename="list.mof")
        assert len(conn.instances[cls.namespace]) == len(found)


def parse(text: str) -> ObjectPath:
    from serversession.model.objectpath import parse_path

    return parse_path(text)


def test_hostile_names_in_references_survive_every_format() -> None:
    snap = Snapshot(
        (session("0x1", HOSTILE_NAME, HOSTILE_NAME, wire=1, opens=0),),
        NOW,
        (ConnectionRecord("0x1", "data", 11, NOW - 5),),
        (ShareRecord("data", "/srv/data", 0, HOSTILE_NAME, None),),
        (),
    )
    [link] = by_class("Win32_SessionConnection", snap)
    assert link.Antecedent.key_dict["UserName"] == HOSTILE_NAME
    cls = load_schema().get("Win32_SessionConnection")
    [row] = json.loads(render([link], cls, "json"))
    assert parse(row["Antecedent"]).key_dict["ComputerName"] == HOSTILE_NAME
    from defusedxml import ElementTree

    root = ElementTree.fromstring(render([link], cls, "xml").encode())
    assert xml_kept(HOSTILE_NAME) in {k.text for k in root.iter("KEYVALUE")}  # inside the references
    table = render([link], cls, "table", 400)
    assert "\x1b" not in table and "\r" not in table


def test_association_answers_from_the_narrowed_snapshot_are_the_whole_ones(snapshot) -> None:
    """build(near=PATH) builds only what PATH's associations reach, and it as the whole snapshot has it."""
    from serversession.wql import associations

    everything = build(provided("CIM_ManagedSystemElement") + provided("CIM_Dependency"), snapshot)
    targets = [i for i in everything if i.classname in ("Win32_ServerSession", "Win32_ServerConnection", "Win32_Share")]
    assert len(targets) == 3 + 4 + 3  # alice, bob, carol; four connections; three shares
    for target in targets:
        path = target.object_path
        classes = (*associations.association_classes(path.classname), *associations.result_classes(path.classname))
        near = build(tuple(c for name in classes for c in provided(name)), snapshot, near=path)
        assert len(near) < len(everything)
        whole = {i.path: i for i in everything}
        for found in associations.associators(path, near) + associations.references(path, near):
            assert whole[found.path] == found, found.path  # every value as the whole snapshot gives it
        expected = {i.path for i in associations.associators(path, everything)}
        assert {i.path for i in associations.associators(path, near)} == expected
        expected = {i.path for i in associations.references(path, everything)}
        assert {i.path for i in associations.references(path, near)} == expected


def test_a_handle_known_by_its_session_and_share_counts_for_that_connection() -> None:
    """One session with two tree connects to one share (one Win32_ServerConnection): a handle whose
    tree connect the source could not tell (before Samba 4.23) but whose share it could is counted."""
    snap = Snapshot(
        (session("0x1", "ws1", "alice", wire=1, opens=3),),
        NOW,
        (ConnectionRecord("0x1", "data", 11, NOW - 90), ConnectionRecord("0x1", "DATA", 12, NOW - 80)),
        (ShareRecord("data", "/srv/data", 0, None, None),),
        (
            open_file(101, "0x1", None, "data", "a.txt"),
            open_file(102, "0x1", None, "Data", "b.txt"),
            open_file(103, "0x1", 12, "data", "c.txt"),
        ),
    )
    (connection,) = by_class("Win32_ServerConnection", snap)
    (merged,) = by_class("Win32_ServerSession", snap)
    assert connection.NumberOfFiles == merged.ResourcesOpened == 3


def test_names_that_differ_in_case_only_make_one_instance() -> None:
    """Keys compare case-blind (WMI, object paths): WS1/alice and ws1/ALICE are one session, one
    connection per share, and each association names exactly it."""
    from serversession.wql import associations

    snap = Snapshot(
        (
            session("0x1", "WS1", "alice", wire=1, opens=1, age=300),
            session("0x2", "ws1", "ALICE", wire=2, opens=1, age=50),
        ),
        NOW,
        (ConnectionRecord("0x1", "data", 11, NOW - 290), ConnectionRecord("0x2", "data", 12, NOW - 40)),
        (ShareRecord("data", "/srv/data", 0, None, None),),
        (open_file(101, "0x1", 11, "data", "a.txt"), open_file(102, "0x2", 12, "data", "b.txt")),
    )
    (merged,) = by_class("Win32_ServerSession", snap)
    assert (merged.ComputerName, merged.UserName, merged.ResourcesOpened) == ("WS1", "alice", 2)  # the oldest's
    (connection,) = by_class("Win32_ServerConnection", snap)
    assert connection.NumberOfFiles == 2
    (link,) = by_class("Win32_SessionConnection", snap)
    assert link.Antecedent == merged.object_path and link.Dependent == connection.object_path
    everything = build(provided("CIM_ManagedSystemElement") + provided("CIM_Dependency"), snap)
    assert [i.path for i in associations.associators(merged.object_path, everything)] == [connection.path]


def test_a_share_with_an_empty_name_is_reached_from_the_narrowed_snapshot() -> None:
    from serversession.wql import associations

    snap = Snapshot(
        (session("0x1", "ws1", "alice", wire=1, opens=0),),
        NOW,
        (ConnectionRecord("0x1", "", 11, NOW - 90),),
        (ShareRecord("", "/srv/x", 0, None, None),),
        (),
    )
    path = ObjectPath("Win32_Share", (("Name", ""),))
    classes = (*associations.association_classes("Win32_Share"), *associations.result_classes("Win32_Share"))
    near = build(tuple(c for name in classes for c in provided(name)), snap, near=path)
    assert [i.classname for i in associations.associators(path, near)] == ["Win32_ServerConnection"]
