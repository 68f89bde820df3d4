"""``query`` and ``get`` end to end: the real command against the Samba sandbox with real sessions."""

from __future__ import annotations

import csv
import io
import json

import pytest

import serversession
from conftest import run_cli, wait_for
from serversession.errors import NotFound
from serversession.wql import WQLError

pytestmark = pytest.mark.samba


@pytest.fixture
def busy_and_idle(sandbox, connect):
    alice = connect("alice")
    alice.open_files(["q1.txt", "q2.txt"])
    connect("bob")
    wait_for(lambda: {"alice", "bob"} <= {s.UserName for s in serversession.sessions(smb_conf=sandbox.conf_path)})
    return sandbox


def test_query_where_and_projection(busy_and_idle) -> None:
    conf = busy_and_idle.conf_path
    wql = "SELECT UserName, ResourcesOpened FROM Win32_ServerSession WHERE ResourcesOpened > 0"
    result = run_cli("query", wql, "--format", "json", "--smb-conf", conf)
    assert result.returncode == 0, result.stderr
    [row] = json.loads(result.stdout)
    assert row["UserName"] == "alice" and row["ResourcesOpened"] == 2
    assert row["ComputerName"] == "127.0.0.1"  # keys come along
    assert "IdleTime" not in row  # not selected
    assert row["__CLASS"] == "Win32_ServerSession"
    assert row["__RELPATH"] == 'Win32_ServerSession.ComputerName="127.0.0.1",UserName="alice"'
    assert row["__PATH"].endswith(row["__RELPATH"])


def test_query_like_case_insensitive_table_and_csv(busy_and_idle) -> None:
    conf = busy_and_idle.conf_path
    table = run_cli("query", "select username from WIN32_SERVERSESSION where USERNAME like 'B%'", "--smb-conf", conf)
    assert table.returncode == 0, table.stderr
    assert "bob" in table.stdout and "alice" not in table.stdout
    assert table.stdout.splitlines()[-1] == "1 session"
    rows = list(csv.DictReader(io.StringIO(run_cli("query", "SELECT * FROM CIM_LogicalElement", "--format", "csv",
                                                   "--smb-conf", conf).stdout)))  # fmt: skip
    sessions = [r for r in rows if r["__CLASS"] == "Win32_ServerSession"]
    assert {"alice", "bob"} <= {r["UserName"] for r in sessions}
    # every subclass's instances, each with its own properties (CSV: empty where a class lacks one)
    assert {r["__CLASS"] for r in rows} >= {"Win32_ServerSession", "Win32_ServerConnection"}
    assert all(r["ShareName"] == "" for r in sessions)
    assert {r["ShareName"] for r in rows if r["__CLASS"] == "Win32_ServerConnection"} >= {"share"}


def test_query_mof_and_xml(busy_and_idle) -> None:
    conf = busy_and_idle.conf_path
    mof = run_cli("query", "SELECT IdleTime FROM Win32_ServerSession WHERE UserName = 'alice'", "--format", "mof",
                  "--smb-conf", conf)  # fmt: skip
    assert mof.returncode == 0 and "IdleTime = " in mof.stdout and "ActiveTime" not in mof.stdout
    xml = run_cli("query", "SELECT * FROM Win32_ServerSession WHERE UserName = 'bob'", "--format", "xml",
                  "--smb-conf", conf)  # fmt: skip
    assert xml.returncode == 0 and xml.stdout.count("<VALUE.OBJECTWITHLOCALPATH>") == 1


def test_query_errors(sandbox) -> None:
    bad = run_cli("query", "SELECT * FROM Win32_ServerSession WHERE UserName = ", "--smb-conf", sandbox.conf_path)
    assert bad.returncode == 2
    assert "WQL error at 52: expected a property name or a constant" in bad.stderr
    assert "Traceback" not in bad.stderr
    # the query is checked before the source is read: a broken config does not hide a syntax error
    early = run_cli("query", "SELECT", "--smb-conf", "/nonexistent/smb.conf")
    assert early.returncode == 2 and "WQL error at 7" in early.stderr
    events = run_cli(
        "query",
        "SELECT * FROM __InstanceCreationEvent WITHIN 5 WHERE TargetInstance ISA 'Win32_ServerSession'",
        "--smb-conf",
        sandbox.conf_path,
    )
    assert events.returncode == 1 and "serversession watch" in events.stderr
    source = run_cli("query", "SELECT * FROM Win32_ServerSession", "--smb-conf", "/nonexistent/smb.conf")
    assert source.returncode == 1 and "smb.conf not found" in source.stderr


def test_get(busy_and_idle) -> None:
    conf = busy_and_idle.conf_path
    path = 'Win32_ServerSession.UserName="ALICE",ComputerName="127.0.0.1"'
    result = run_cli("get", path, "--format", "json", "--smb-conf", conf)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["UserName"] == "alice" and data["ResourcesOpened"] == 2
    assert data["__PATH"].endswith('Win32_ServerSession.ComputerName="127.0.0.1",UserName="alice"')
    table = run_cli("get", path, "--smb-conf", conf)
    assert table.returncode == 0 and "alice" in table.stdout
    missing = run_cli("get", 'Win32_ServerSession.ComputerName="127.0.0.1",UserName="nobody-here"', "--smb-conf", conf)
    assert missing.returncode == 1 and "no instance" in missing.stderr
    malformed = run_cli("get", "Win32_ServerSession.ComputerName=", "--smb-conf", conf)
    assert malformed.returncode == 2 and "object path error at 34" in malformed.stderr
    assert "Traceback" not in missing.stderr + malformed.stderr


def test_api(busy_and_idle) -> None:
    conf = busy_and_idle.conf_path
    result = serversession.query("SELECT * FROM Win32_ServerSession WHERE ResourcesOpened >= 2", smb_conf=conf)
    assert [s.UserName for s in result] == ["alice"]
    alice = serversession.get('Win32_ServerSession.ComputerName="127.0.0.1",UserName="alice"', smb_conf=conf)
    assert alice.ResourcesOpened == 2 and alice.to_cim_instance()["UserName"] == "alice"
    with pytest.raises(NotFound):
        serversession.get('Win32_ServerSession.ComputerName="127.0.0.1",UserName="zed"', smb_conf=conf)
    with pytest.raises(WQLError):
        serversession.query("SELECT * FROM", smb_conf=conf)


def test_instances_of_a_class_and_its_superclasses(busy_and_idle) -> None:
    """``instances(CLASS)``: the providers of CLASS and its subclasses, built from one read."""
    conf = busy_and_idle.conf_path
    own = serversession.instances("win32_serversession", smb_conf=conf)  # names are case-blind
    assert {"alice", "bob"} <= {s.UserName for s in own}
    assert all(type(s).classname == "Win32_ServerSession" for s in own)
    inherited = serversession.instances("CIM_LogicalElement", smb_conf=conf)
    by_class: dict[str, list] = {}
    for instance in inherited:
        by_class.setdefault(instance.classname, []).append(instance)
    assert [s.path for s in by_class["Win32_ServerSession"]] == [s.path for s in serversession.sessions(smb_conf=conf)]
    assert {(c.UserName, c.ShareName) for c in by_class["Win32_ServerConnection"]} >= {("alice", "share")}
    assert set(by_class) == {"Win32_ServerSession", "Win32_ServerConnection", "Win32_Share"}  # no associations
    alice = next(s for s in by_class["Win32_ServerSession"] if s.UserName == "alice")
    assert alice.ResourcesOpened == 2
    result = serversession.query("SELECT * FROM CIM_ManagedSystemElement", smb_conf=conf)
    assert {"alice", "bob"} <= {s.UserName for s in result if s.classname == "Win32_ServerSession"}
    assert {s.Name for s in result if s.classname == "Win32_Share"} >= {"share", "IPC$"}
    with pytest.raises(NotFound, match="no class"):
        serversession.instances("Win32_NoSuchClass", smb_conf=conf)
    with pytest.raises(serversession.InvalidInput):
        serversession.instances(5, smb_conf=conf)  # type: ignore[arg-type]
