"""ASSOCIATORS OF and REFERENCES OF (wql/associations.py, the WQL layer, the API and ``query``).

Most tests build the instances from snapshots made by hand with the sources' own record types
(what a source returns), so every filter and every direction can be checked with known data;
the last ones ask the sandbox's real smbd, through the command and the API.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
import xml.etree.ElementTree as ET

import pytest

import serversession
from conftest import run_cli, wait_for
from serversession.errors import InvalidInput, NotFound
from serversession.model.objectpath import ObjectPath
from serversession.model.providers import build
from serversession.sources.base import ConnectionRecord, SessionRecord, ShareRecord, Snapshot
from serversession.wql import ClassDefsResult, NotSupported, QueryResult, WQLError, compile_query, compile_wql
from serversession.wql.associations import (
    association_classes,
    associators,
    references,
    result_classes,
    schema_associators,
    schema_references,
)
from serversession.wql.lookup import resolve_path
from serversession.wql.parser import MAX_LENGTH

NOW = 1_800_000_000.0
FAMILY = (
    "Win32_ServerSession",
    "Win32_ServerConnection",
    "Win32_Share",
    "Win32_SessionConnection",
    "Win32_ConnectionShare",
)
ALICE = 'Win32_ServerSession.ComputerName="10.0.0.7",UserName="alice"'
ALICE_DOCS = 'Win32_ServerConnection.ComputerName="10.0.0.7",ShareName="docs",UserName="alice"'
BOB_DOCS = 'Win32_ServerConnection.ComputerName="10.0.0.8",ShareName="docs",UserName="bob"'
DOCS = 'Win32_Share.Name="docs"'


def session(sid: str, computer: str, user: str, *, age: float = 100, server: str | None = None) -> SessionRecord:
    return SessionRecord(
        session_id=sid,
        computer_name=computer,
        user_name=user,
        established=NOW - age,
        last_request=NOW - 5,
        opens=0,
        user_flags=0,
        client_type="SMB3_11",
        transport="tcp",
        server=server,
    )


def family_snapshot(server: str | None = None) -> Snapshot:
    """alice (two sessions from one client, merged) connected to `data` and `docs`; bob to
    `docs`; carol to a share gone from the configuration; IPC$ with no connection."""
    sessions = (
        session("0x1", "10.0.0.7", "alice", age=300, server=server),
        session("0x2", "10.0.0.7", "alice", age=50, server=server),
        session("0x3", "10.0.0.8", "bob", server=server),
        session("0x4", "10.0.0.9", "carol", server=server),
    )
    connections = (
        ConnectionRecord("0x1", "data", 11, NOW - 290, server=server),
        ConnectionRecord("0x2", "data", 12, NOW - 40, server=server),
        ConnectionRecord("0x1", "docs", 13, NOW - 200, server=server),
        ConnectionRecord("0x3", "docs", 14, NOW - 10, server=server),
        ConnectionRecord("0x4", "gone", 15, NOW - 10, server=server),
    )
    shares = (
        ShareRecord("data", "/srv/data", 0, "Data", None, server=server),
        ShareRecord("docs", "/srv/docs", 0, None, 10, server=server),
        ShareRecord("IPC$", None, 3 | 0x80000000, "IPC Service", None, server=server),
    )
    return Snapshot(sessions, NOW, connections, shares, ())


@pytest.fixture(scope="module")
def rows() -> list:
    return build(FAMILY, family_snapshot())


def ask(query: str, instances: list) -> QueryResult | ClassDefsResult:
    compiled = compile_wql(query)
    assert set(compiled.classes) <= set(FAMILY)
    return compiled.run([o for o in instances if o.classname in compiled.classes])


def paths(result: list) -> list[str]:
    return [o.path for o in result]


# --- the two directions -------------------------------------------------------------------------


def test_session_to_its_connections(rows) -> None:
    result = ask(f"ASSOCIATORS OF {{{ALICE}}}", rows)
    assert paths(result) == [
        'Win32_ServerConnection.ComputerName="10.0.0.7",ShareName="data",UserName="alice"',
        ALICE_DOCS,
    ]  # the two tree connects to `data` are one instance
    assert result.classname == "Win32_ServerConnection"
    assert "NumberOfFiles" in result.properties and "ShareName" in result.properties


def test_share_to_connections_to_sessions(rows) -> None:
    connections = ask(f"associators of {{{DOCS}}}", rows)
    assert paths(connections) == [ALICE_DOCS, BOB_DOCS]
    sessions = [
        path
        for connection in connections
        for path in paths(ask(f"ASSOCIATORS OF {{{connection.path}}} WHERE ResultClass = Win32_ServerSession", rows))
    ]
    assert sessions == [ALICE, 'Win32_ServerSession.ComputerName="10.0.0.8",UserName="bob"']


def test_connection_to_its_session_and_share(rows) -> None:
    result = ask(f"ASSOCIATORS OF {{{ALICE_DOCS}}}", rows)
    assert paths(result) == [ALICE, DOCS]  # in the order of the instances: class by class
    assert result.classname == "CIM_LogicalElement"  # their nearest common superclass
    assert {"ResourcesOpened", "Path"} <= set(result.properties)  # the union of both classes'


def test_a_connection_to_a_share_no_longer_configured_has_only_its_session(rows) -> None:
    gone = 'Win32_ServerConnection.ComputerName="10.0.0.9",ShareName="gone",UserName="carol"'
    assert paths(ask(f"ASSOCIATORS OF {{{gone}}}", rows)) == [
        'Win32_ServerSession.ComputerName="10.0.0.9",UserName="carol"'
    ]
    assert ask('ASSOCIATORS OF {Win32_Share.Name="IPC$"}', rows) == []


def test_the_shorthand_path_and_case_of_names_and_values(rows) -> None:
    assert paths(ask('ASSOCIATORS OF {win32_share="DOCS"} WHERE resultclass=win32_serverconnection', rows)) == [
        ALICE_DOCS,
        BOB_DOCS,
    ]
    shouted = 'Win32_ServerSession.computername="10.0.0.7",USERNAME="ALICE"'
    assert len(ask(f"ASSOCIATORS OF {{{shouted}}}", rows)) == 2


# --- the WHERE keywords -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("AssocClass = Win32_SessionConnection", [ALICE]),
        ("AssocClass = win32_connectionshare", [DOCS]),
        ("AssocClass = CIM_Dependency", [ALICE, DOCS]),  # a superclass of both
        ("ResultClass = Win32_Share", [DOCS]),
        ("ResultClass = CIM_LogicalElement", [ALICE, DOCS]),
        ("ResultClass = Win32_ServerConnection", []),
        ("Role = Dependent", [ALICE, DOCS]),  # the connection is the Dependent of both
        ("Role = dependent", [ALICE, DOCS]),
        ("Role = Antecedent", []),
        ("Role = NoSuchRole", []),  # no reference property of the association: no match (DSP0200)
        ("ResultRole = Antecedent", [ALICE, DOCS]),
        ("ResultRole = Dependent", []),
        ("AssocClass = Win32_ConnectionShare ResultRole = Antecedent Role = Dependent", [DOCS]),
        ("AssocClass = Win32_ConnectionShare ResultClass = Win32_ServerSession", []),
        ("RequiredQualifier = UUID", [DOCS]),  # Win32_Share's own qualifier
        ("RequiredQualifier = Dynamic", [ALICE, DOCS]),
        ("RequiredQualifier = NoSuchQualifier", []),
        ("RequiredAssocQualifier = Association", [ALICE, DOCS]),
        ("RequiredAssocQualifier = Abstract", []),  # CIM_Dependency's, not inherited (restricted)
        ("RequiredAssocQualifier = description", [ALICE, DOCS]),
    ],
)
def test_associators_filters(rows, where: str, expected: list[str]) -> None:
    assert paths(ask(f"ASSOCIATORS OF {{{ALICE_DOCS}}} WHERE {where}", rows)) == expected


def test_keys_only(rows) -> None:
    result = ask(f"ASSOCIATORS OF {{{ALICE_DOCS}}} WHERE KeysOnly", rows)
    assert paths(result) == [ALICE, DOCS]
    assert result.properties == ("ComputerName", "UserName", "Name")
    session_, share = result
    assert (session_.UserName, session_.ComputerName, share.Name) == ("alice", "10.0.0.7", "docs")
    assert session_.IdleTime is None and session_.Name is None and share.Path is None  # Name: a key of Win32_Share only
    only = ask(f"ASSOCIATORS OF {{{ALICE}}} WHERE KeysOnly", rows)
    assert only.properties == ("ComputerName", "ShareName", "UserName")
    assert all(c.NumberOfFiles is None for c in only)


def test_class_defs_only(rows) -> None:
    result = ask(f"ASSOCIATORS OF {{{ALICE_DOCS}}} WHERE ClassDefsOnly", rows)
    assert isinstance(result, ClassDefsResult)
    assert result.names == ["Win32_ServerSession", "Win32_Share"]
    assert ask(f"ASSOCIATORS OF {{{ALICE}}} WHERE ClassDefsOnly", rows).names == ["Win32_ServerConnection"]
    assert ask(f"REFERENCES OF {{{ALICE_DOCS}}} WHERE ClassDefsOnly", rows).names == [
        "Win32_SessionConnection",
        "Win32_ConnectionShare",
    ]
    assert ask('REFERENCES OF {Win32_Share.Name="IPC$"} WHERE ClassDefsOnly', rows).names == []  # none present


def test_references(rows) -> None:
    both = ask(f"REFERENCES OF {{{ALICE_DOCS}}}", rows)
    assert [o.classname for o in both] == ["Win32_SessionConnection", "Win32_ConnectionShare"]
    assert both.classname == "CIM_Dependency" and both.properties == ("Antecedent", "Dependent")
    link = both[0]
    assert link.Antecedent == resolve_path(ALICE) and link.Dependent == resolve_path(ALICE_DOCS)
    assert [
        o.classname for o in ask(f"REFERENCES OF {{{ALICE_DOCS}}} WHERE ResultClass = Win32_ConnectionShare", rows)
    ] == ["Win32_ConnectionShare"]
    assert len(ask(f"REFERENCES OF {{{ALICE_DOCS}}} WHERE Role = Dependent", rows)) == 2
    assert ask(f"REFERENCES OF {{{ALICE_DOCS}}} WHERE Role = Antecedent", rows) == []
    assert ask(f"REFERENCES OF {{{ALICE_DOCS}}} WHERE Role = Bogus", rows) == []
    sessions_ = ask(f"REFERENCES OF {{{ALICE}}} WHERE ResultClass = CIM_Dependency Role = ANTECEDENT", rows)
    assert [o.Dependent.key_dict["ShareName"] for o in sessions_] == ["data", "docs"]
    assert len(ask(f"REFERENCES OF {{{DOCS}}} WHERE RequiredQualifier = Association", rows)) == 2
    assert ask(f"REFERENCES OF {{{DOCS}}} WHERE RequiredQualifier = Abstract", rows) == []
    keys = ask(f"REFERENCES OF {{{DOCS}}} WHERE KeysOnly", rows)
    assert keys.properties == ("Antecedent", "Dependent") and len(keys) == 2


def test_schema_only(rows) -> None:
    """SchemaOnly: a question about classes, answered from the schema (no instances needed)."""
    compiled = compile_wql("ASSOCIATORS OF {Win32_ServerConnection} WHERE SchemaOnly")
    assert compiled.classes == ()
    result = compiled.run([])
    assert result.names == ["CIM_ManagedSystemElement", "Win32_ServerSession", "Win32_Share"]  # CIM_Dependency's too
    assert ask(
        "ASSOCIATORS OF {Win32_ServerConnection} WHERE AssocClass = Win32_ConnectionShare SchemaOnly", []
    ).names == ["Win32_Share"]
    assert ask("REFERENCES OF {Win32_Share} WHERE SchemaOnly", []).names == ["CIM_Dependency", "Win32_ConnectionShare"]
    assert ask("REFERENCES OF {Win32_Share} WHERE SchemaOnly RequiredQualifier = Dynamic", []).names == [
        "Win32_ConnectionShare"
    ]
    assert schema_references("Win32_ServerSession", role="Dependent") == ["CIM_Dependency"]
    assert schema_associators("Win32_ServerSession", result_role="Dependent", assoc_qualifier="Dynamic") == [
        "Win32_ServerConnection"
    ]


# --- errors -------------------------------------------------------------------------------------


def test_a_path_naming_no_instance_is_not_found(rows) -> None:
    with pytest.raises(NotFound, match="no instance"):
        ask('ASSOCIATORS OF {Win32_Share.Name="nosuch"}', rows)
    with pytest.raises(NotFound):
        ask('REFERENCES OF {Win32_ServerSession.ComputerName="10.0.0.7",UserName="mallory"}', rows)


@pytest.mark.parametrize(
    ("query", "position", "message"),
    [
        ('ASSOCIATORS OF {Win32_Share.Name="x"} WHERE', 44, "expected an ASSOCIATORS/REFERENCES keyword"),
        ('ASSOCIATORS OF {Win32_Share.Name="x"} WHERE ResultClass', 56, "expected ="),
        ('ASSOCIATORS OF {Win32_Share.Name="x"} WHERE ResultClass =', 58, "expected a class name"),
        ("ASSOCIATORS OF {Win32_Share.Name=\"x\"} WHERE ResultClass = 'Win32_Share'", 59, "expected a class name"),
        ('ASSOCIATORS OF {Win32_Share.Name="x"} WHERE ResultClass = Bogus', 59, "unknown class 'Bogus'"),
        ('ASSOCIATORS OF {Win32_Share.Name="x"} WHERE AssocClass = Win32_Share', 58, "not an association class"),
        ('REFERENCES OF {Win32_Share.Name="x"} WHERE ResultClass = Win32_Share', 58, "not an association class"),
        ('REFERENCES OF {Win32_Share.Name="x"} WHERE AssocClass = CIM_Dependency', 44, "takes no AssocClass"),
        ('REFERENCES OF {Win32_Share.Name="x"} WHERE ResultRole = Dependent', 44, "takes no ResultRole"),
        ('ASSOCIATORS OF {Win32_Share.Name="x"} WHERE KeysOnly KeysOnly', 54, "KeysOnly is given twice"),
        ('ASSOCIATORS OF {Win32_Share.Name="x"} WHERE Role = A ROLE = B', 54, "Role is given twice"),
        ('ASSOCIATORS OF {Win32_Share.Name="x"} WHERE KeysOnly AND Role = A', 54, "separated by spaces, not AND"),
        ('ASSOCIATORS OF {Win32_Share.Name="x"} WHERE ClassDefsOnly KeysOnly', 59, "exclude each other"),
        ('ASSOCIATORS OF {Win32_Share.Name="x"} WHERE SchemaOnly', 45, "SchemaOnly asks about a class"),
        ('ASSOCIATORS OF {Win32_Share.Name="x"} garbage', 39, "expected WHERE or the end"),
        ('ASSOCIATORS OF {Win32_Share.Name="x"} WHERE Bogus = y', 45, "such as ResultClass or KeysOnly"),
        ('ASSOCIATORS OF {Bogus.Name="x"}', 17, "unknown class 'Bogus'"),
        ('ASSOCIATORS OF {  root\\cimv2:Bogus.Name="x"}', 30, "unknown class 'Bogus'"),
        ("ASSOCIATORS OF {Win32_Share}", 17, "names a class: name an instance with its keys (Name)"),
        ('ASSOCIATORS OF {Win32_Share.Nme="x"}', 17, "in the object path: Nme is not a key of Win32_Share"),
        ("ASSOCIATORS OF {Win32_Share.Name=1}", 17, "key Name is a string"),
        ('REFERENCES OF {Win32_ServerSession.UserName="a"}', 16, "lacks key ComputerName"),
        ('ASSOCIATORS OF {Win32_Share.Name="x}', 16, "not closed with }"),
        ("ASSOCIATORS {Win32_Share.Name='x'}", 13, "expected OF"),
        (f"ASSOCIATORS OF {{{ALICE_DOCS}}} WHERE Role = Dependent OR Role = Antecedent", 122, "not OR"),
    ],
)
def test_malformed_queries_name_the_position(query: str, position: int, message: str) -> None:
    with pytest.raises(WQLError, match=re.escape(message)) as caught:
        compile_wql(query)
    assert caught.value.position == position, str(caught.value)
    assert isinstance(caught.value, InvalidInput)  # exit code 2


def test_a_namespace_not_served_is_not_found() -> None:
    with pytest.raises(NotFound, match="no namespace"):
        compile_wql('ASSOCIATORS OF {\\\\.\\root\\nowhere:Win32_Share.Name="x"}')
    with pytest.raises(NotFound, match="no class Win32_Share in root"):
        compile_wql('ASSOCIATORS OF {root/Microsoft/Windows/SMB:Win32_Share.Name="x"}')


def test_compile_query_answers_only_data_queries() -> None:
    """A SELECT's compiler (used where only one class's instances are at hand) checks an
    association query whole, then says where it is answered."""
    with pytest.raises(NotSupported, match="not a data query"):
        compile_query(f"ASSOCIATORS OF {{{ALICE}}}")
    with pytest.raises(WQLError):
        compile_query("ASSOCIATORS OF {Bogus.Name='x'}")


# --- hostile input ------------------------------------------------------------------------------


def bounded(action, seconds: float = 2.0):
    start = time.monotonic()
    try:
        return action()
    finally:
        assert time.monotonic() - start < seconds


def test_hostile_queries_fail_cleanly_and_fast(rows) -> None:
    long_value = "x" * 5000
    cases = [
        f'ASSOCIATORS OF {{Win32_Share.Name="{long_value}"}}',  # longer than a path may be
        "ASSOCIATORS OF {" + "Win32_Share.Name='x'" + "}" + " WHERE" + " KeysOnly" * 2000,
        "ASSOCIATORS OF {Win32_Share.Name='x'} WHERE " + " ".join(f"Role = R{n}" for n in range(3000)),
        "ASSOCIATORS OF {" * 2000,
        "REFERENCES OF {" + "{" * (MAX_LENGTH - 20) + "}",
        "ASSOCIATORS OF {Win32_Share.Name='x'} WHERE ResultClass = " + "A" * (MAX_LENGTH - 60),
        "ASSOCIATORS OF {Win32_SessionConnection.Antecedent='Win32_SessionConnection.Antecedent=\"x\"'}",
    ]
    for query in cases:
        with pytest.raises(WQLError) as caught:
            bounded(lambda query=query: compile_wql(query))
        assert "\n" not in str(caught.value) and len(str(caught.value)) < 600


def test_hostile_key_values_are_data(rows) -> None:
    """A key value with quotes, braces, backslashes and control characters names no instance:
    a one-line NotFound, no path injection."""
    value = 'a"}\\\\ WHERE KeysOnly\x1b[2J\u202e'
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    with pytest.raises(NotFound) as caught:
        ask(f'ASSOCIATORS OF {{Win32_Share.Name="{escaped}"}}', rows)
    assert "\n" not in str(caught.value) and "\x1b" not in str(caught.value)


def test_navigation_costs_in_proportion_to_the_instances() -> None:
    """20000 connections to one share: the share's associators in one or two passes, not one per
    connection (quadratic work would take minutes)."""
    count = 20000
    sessions = tuple(session(str(n), f"10.1.{n // 250}.{n % 250}", f"user{n}") for n in range(count))
    connections = tuple(ConnectionRecord(str(n), "big", n, NOW - 10) for n in range(count))
    snapshot = Snapshot(sessions, NOW, connections, (ShareRecord("big", "/srv/big", 0, None, None),), ())
    instances = build(("Win32_Share", "Win32_ConnectionShare", "Win32_ServerConnection"), snapshot)
    target = resolve_path('Win32_Share.Name="big"')
    start = time.monotonic()
    found = associators(target, instances)
    assert len(found) == count
    assert len(references(target, instances)) == count
    one = resolve_path(found[123].path)
    assert associators(one, instances) == [instances[0]]
    assert time.monotonic() - start < 10


# --- associations.py's interface (used by the WBEM server) ------------------------------------


def test_the_classes_each_navigation_needs() -> None:
    assert association_classes("Win32_ServerSession") == ("Win32_SessionConnection",)
    assert association_classes("win32_serverconnection") == ("Win32_SessionConnection", "Win32_ConnectionShare")
    assert association_classes("MSFT_SmbSession") == ()
    assert result_classes("Win32_ServerConnection") == ("Win32_ServerSession", "Win32_Share")
    assert result_classes("Win32_ServerConnection", "Win32_ConnectionShare") == ("Win32_Share",)
    assert result_classes("Win32_Share") == ("Win32_ServerConnection",)
    with pytest.raises(InvalidInput, match="unknown class"):
        association_classes("Bogus")
    with pytest.raises(InvalidInput, match="unknown association class"):
        result_classes("Win32_Share", "Bogus")


def test_functions_filter_and_refuse_unknown_classes(rows) -> None:
    target = resolve_path(ALICE_DOCS)
    assert paths(associators(target, rows, result_class="win32_share")) == [DOCS]
    assert paths(associators(target, rows, role="DEPENDENT", result_role="antecedent")) == [ALICE, DOCS]
    assert paths(associators(target, rows, assoc_class="Win32_SessionConnection")) == [ALICE]
    assert [o.classname for o in references(target, rows, role="dependent")] == [
        "Win32_SessionConnection",
        "Win32_ConnectionShare",
    ]
    assert references(target, rows, role="Antecedent") == []
    with pytest.raises(InvalidInput):
        associators(target, rows, result_class="NoSuchClass")
    with pytest.raises(InvalidInput):
        references(target, rows, result_class="NoSuchClass")
    with pytest.raises(InvalidInput):
        references(ALICE_DOCS, rows)  # type: ignore[arg-type]  # a path must be resolved first


def test_paths_with_a_host_name_only_that_servers_instances() -> None:
    """Two servers with the same share and users: a path with a host names one server's
    instance; the associations never cross servers."""
    instances = build(FAMILY, family_snapshot("fs1")) + build(FAMILY, family_snapshot("fs2"))
    docs_fs2 = resolve_path(f"\\\\FS2\\root\\cimv2:{DOCS}")
    found = associators(docs_fs2, instances)
    assert [(o.server, o.UserName) for o in found] == [("fs2", "alice"), ("fs2", "bob")]
    assert {o.server for o in associators(resolve_path(DOCS), instances)} == {"fs1", "fs2"}  # relative: any server
    result = ask(f"ASSOCIATORS OF {{\\\\fs1\\root\\cimv2:{ALICE_DOCS}}}", instances)
    assert [(o.server, o.path) for o in result] == [
        ("fs1", f"\\\\fs1\\root\\cimv2:{ALICE}"),
        ("fs1", f"\\\\fs1\\root\\cimv2:{DOCS}"),
    ]
    assert associators(resolve_path(f"\\\\fs3\\root\\cimv2:{DOCS}"), instances) == []
    local = build(FAMILY, family_snapshot())
    assert len(associators(resolve_path(f"\\\\.\\root\\cimv2:{DOCS}"), local)) == 2
    assert associators(resolve_path(f"\\\\.\\root\\cimv2:{DOCS}"), instances) == []


def test_a_target_path_object_equals_the_instances_reference(rows) -> None:
    link = ask(f"REFERENCES OF {{{ALICE}}}", rows)[0]
    assert isinstance(link.Antecedent, ObjectPath)
    assert paths(associators(link.Antecedent, rows)) == paths(ask(f"ASSOCIATORS OF {{{ALICE}}}", rows))


# --- the real smbd: the command and the API -----------------------------------------------------


@pytest.fixture
def alice_on_share(sandbox, connect):
    alice = connect("alice")
    alice.open_files(["assoc.txt"])
    conf = sandbox.conf_path
    wait_for(
        lambda: any(
            c.UserName == "alice" and c.ShareName == "share"
            for c in serversession.instances("Win32_ServerConnection", smb_conf=conf)
        )
    )
    return sandbox


SANDBOX_ALICE = 'Win32_ServerSession.ComputerName="127.0.0.1",UserName="alice"'
SANDBOX_CONNECTION = 'Win32_ServerConnection.ComputerName="127.0.0.1",ShareName="share",UserName="alice"'


def test_cli_associators_of_a_session(alice_on_share) -> None:
    conf = alice_on_share.conf_path
    result = run_cli("query", f"ASSOCIATORS OF {{{SANDBOX_ALICE}}}", "--format", "json", "--smb-conf", conf)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {r["__CLASS"] for r in rows} == {"Win32_ServerConnection"}
    assert ("alice", "share") in {(r["UserName"], r["ShareName"]) for r in rows}
    share_row = next(r for r in rows if r["ShareName"] == "share")
    assert share_row["NumberOfFiles"] >= 1 and share_row["__RELPATH"] == SANDBOX_CONNECTION
    table = run_cli("query", f"ASSOCIATORS OF {{{SANDBOX_ALICE}}}", "--smb-conf", conf)
    assert table.returncode == 0, table.stderr
    assert "share" in table.stdout and re.search(r"^\d+ connections?$", table.stdout, re.MULTILINE)


def test_cli_associators_of_a_connection_in_every_format(alice_on_share) -> None:
    """A connection's session and share: several classes, as each format shows them."""
    conf = alice_on_share.conf_path
    query = f"ASSOCIATORS OF {{{SANDBOX_CONNECTION}}}"

    def run(fmt: str) -> str:
        result = run_cli("query", query, "--format", fmt, "--smb-conf", conf)
        assert result.returncode == 0, result.stderr
        return result.stdout

    rows = json.loads(run("json"))
    assert [r["__CLASS"] for r in rows] == ["Win32_ServerSession", "Win32_Share"]
    # each object holds its own class's properties: null means unknown, never "not of this class"
    assert rows[0]["UserName"] == "alice" and "Path" not in rows[0] and "IdleTime" in rows[0]
    assert rows[1]["Name"] == "share" and "UserName" not in rows[1] and "Path" in rows[1]
    assert [r["__CLASS"] for r in csv.DictReader(io.StringIO(run("csv")))] == ["Win32_ServerSession", "Win32_Share"]
    mof = run("mof")
    assert "instance of Win32_ServerSession" in mof and "instance of Win32_Share" in mof
    document = ET.fromstring(run("xml"))
    assert [i.get("CLASSNAME") for i in document.iter("INSTANCE")] == ["Win32_ServerSession", "Win32_Share"]
    table = run("table")
    assert re.search(r"^1 session$", table, re.MULTILINE) and re.search(r"^1 share$", table, re.MULTILINE)
    keys = json.loads(run_cli("query", query + " WHERE KeysOnly", "--format", "json", "--smb-conf", conf).stdout)
    # each row its own class's keys, set
    assert [{k: v is not None for k, v in r.items() if not k.startswith("__")} for r in keys] == [
        {"ComputerName": True, "UserName": True},
        {"Name": True},
    ]
    # mof, xml and the tables give each instance its own class's keys: no Name = NULL in a session
    keys_mof = run_cli("query", query + " WHERE KeysOnly", "--format", "mof", "--smb-conf", conf).stdout
    assert keys_mof.count("instance of") == 2 and "NULL" not in keys_mof
    keys_xml = ET.fromstring(run_cli("query", query + " WHERE KeysOnly", "--format", "xml", "--smb-conf", conf).stdout)
    assert [[p.get("NAME") for p in i.iter("PROPERTY")] for i in keys_xml.iter("INSTANCE")] == [
        ["ComputerName", "UserName"],
        ["Name"],
    ]


def test_cli_references_and_class_defs(alice_on_share) -> None:
    conf = alice_on_share.conf_path
    refs = run_cli(
        "query", f"REFERENCES OF {{{SANDBOX_ALICE}}} WHERE Role = Antecedent", "--format", "json", "--smb-conf", conf
    )
    assert refs.returncode == 0, refs.stderr
    links = json.loads(refs.stdout)
    assert {r["__CLASS"] for r in links} == {"Win32_SessionConnection"}
    assert SANDBOX_CONNECTION in {r["Dependent"] for r in links}
    classes = run_cli("query", f"ASSOCIATORS OF {{{SANDBOX_ALICE}}} WHERE ClassDefsOnly", "--smb-conf", conf)
    assert classes.returncode == 0, classes.stderr
    assert classes.stdout.split("\n")[2].split() == ["Win32_ServerConnection", "CIM_LogicalElement", "root\\cimv2"]
    as_json = run_cli(
        "query", f"REFERENCES OF {{{SANDBOX_ALICE}}} WHERE ClassDefsOnly", "--format", "json", "--smb-conf", conf
    )
    assert [(c["__CLASS"], c["__GENUS"]) for c in json.loads(as_json.stdout)] == [("Win32_SessionConnection", 1)]
    mof = run_cli("query", "REFERENCES OF {Win32_Share} WHERE SchemaOnly", "--format", "mof", "--smb-conf", conf)
    assert mof.returncode == 0 and "class Win32_ConnectionShare : CIM_Dependency" in mof.stdout
    xml = run_cli("query", "REFERENCES OF {Win32_Share} WHERE SchemaOnly", "--format", "xml")
    assert [c.get("NAME") for c in ET.fromstring(xml.stdout).iter("CLASS")] == [
        "CIM_Dependency",
        "Win32_ConnectionShare",
    ]


def test_cli_errors_and_exit_codes(alice_on_share) -> None:
    conf = alice_on_share.conf_path
    missing = run_cli("query", 'ASSOCIATORS OF {Win32_ServerSession.ComputerName="x",UserName="y"}', "--smb-conf", conf)
    assert missing.returncode == 1 and missing.stdout == ""
    assert len(missing.stderr.strip().splitlines()) == 1 and "no instance" in missing.stderr
    query = f"ASSOCIATORS OF {{{SANDBOX_ALICE}}} WHERE ResultClass = Nope"
    wrong = run_cli("query", query, "--smb-conf", conf)
    assert wrong.returncode == 2 and f"at {len(query) - 3}:" in wrong.stderr and "unknown class" in wrong.stderr


def test_api_associators_and_references(alice_on_share) -> None:
    conf = alice_on_share.conf_path
    connections = serversession.associators(SANDBOX_ALICE, smb_conf=conf)
    assert ("alice", "share") in {(c.UserName, c.ShareName) for c in connections}
    assert all(c.classname == "Win32_ServerConnection" for c in connections)
    ends = serversession.associators(SANDBOX_CONNECTION, smb_conf=conf)
    assert [o.classname for o in ends] == ["Win32_ServerSession", "Win32_Share"]
    assert ends[1].Name == "share" and ends[1].Path == alice_on_share.share_path
    assert serversession.associators(SANDBOX_CONNECTION, result_class="Win32_Share", keys_only=True, smb_conf=conf)[
        0
    ].to_dict() == {name: ("share" if name == "Name" else None) for name in ends[1].to_dict()}
    assert serversession.associators(SANDBOX_CONNECTION, role="Antecedent", smb_conf=conf) == []
    links = serversession.references(SANDBOX_CONNECTION, smb_conf=conf)
    assert [o.classname for o in links] == ["Win32_SessionConnection", "Win32_ConnectionShare"]
    assert serversession.references(SANDBOX_CONNECTION, result_class="win32_connectionshare", smb_conf=conf)[
        0
    ].Antecedent == resolve_path('Win32_Share.Name="share"')
    via_query = serversession.query(f"ASSOCIATORS OF {{{SANDBOX_CONNECTION}}}", smb_conf=conf)
    assert [o.path for o in via_query] == [o.path for o in ends]
    with pytest.raises(NotFound):
        serversession.associators('Win32_Share.Name="no such share"', smb_conf=conf)
    with pytest.raises(InvalidInput):
        serversession.associators(SANDBOX_ALICE, assoc_class="Win32_Share", smb_conf=conf)
    with pytest.raises(InvalidInput):
        serversession.references(SANDBOX_ALICE, result_class="Bogus", smb_conf=conf)


@pytest.mark.parametrize(
    "path, message",
    [
        ("MSFT_SmbSession.SessionId=TRUE", "give a number"),  # a boolean is no uint64
        ('Win32_Share.Name="a",name="b"', "twice"),
    ],
)
def test_paths_with_wrong_key_values_are_invalid_not_missing(path: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        resolve_path(path)


def test_a_path_built_in_code_with_a_key_twice_is_invalid() -> None:
    with pytest.raises(InvalidInput, match="twice"):
        resolve_path(ObjectPath("Win32_Share", (("Name", "share"), ("name", "x"))))


def test_cli_list_of_each_class(alice_on_share) -> None:
    """``list CLASS``: the class's own columns and noun in a table, its properties in JSON; an
    unknown or empty class name is exit 1 before anything is read."""
    conf = alice_on_share.conf_path

    def listed(*args: str) -> str:
        result = run_cli("list", *args, "--smb-conf", conf)
        assert result.returncode == 0, result.stderr
        return result.stdout

    table = listed("Win32_ServerConnection")
    assert table.splitlines()[0].split()[:5] == ["Computer", "User", "Share", "Id", "Files"]
    assert re.search(r"^127\.0\.0\.1\s+alice\s+share\s+\d+\s+1\s", table, re.MULTILINE), table
    files = json.loads(listed("MSFT_SmbOpenFile", "--format", "json"))
    (mine,) = [f for f in files if (f["Path"] or "").endswith("/assoc.txt")]
    assert mine["ClientUserName"] == "alice" and mine["ShareRelativePath"] == "assoc.txt" and mine["Locks"] == 0
    assert mine["ScopeName"] == "*" and mine["SmbInstance"] == 0 and mine["SessionId"] > 0
    sessions = json.loads(listed("msft_smbsession", "--format", "json"))  # class names are case-blind
    assert mine["SessionId"] in {s["SessionId"] for s in sessions}
    shares = listed("Win32_Share")
    assert re.search(r"^share\s+Disk Drive\s+/", shares, re.MULTILINE) and re.search(
        r"^\d+ shares$", shares, re.MULTILINE
    )
    for name in ("", "Win32_NoSuchClass"):
        result = run_cli("list", name, "--smb-conf", conf)
        assert result.returncode == 1 and "no class" in result.stderr and "Traceback" not in result.stderr
