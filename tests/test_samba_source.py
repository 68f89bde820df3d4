"""The Samba source against a real smbd with real SMB clients (smbprotocol, smbclient)."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime

import pytest

import serversession
from conftest import run_cli, wait_for
from serversession.sources import open_source, read_sessions

pytestmark = pytest.mark.samba


def by_user(sandbox, user):
    return [s for s in serversession.sessions(smb_conf=sandbox.conf_path) if s.UserName == user]


def one(sandbox, user):
    found = by_user(sandbox, user)
    assert len(found) == 1, found
    return found[0]


def test_authenticated_session_has_true_values(sandbox, connect):
    before = time.time()
    connect("alice")
    after = time.time()
    time.sleep(1.2)
    s = one(sandbox, "alice")
    now = time.time()
    assert s.ComputerName == "127.0.0.1"
    assert s.ClientType == "SMB3_11"  # smbprotocol negotiates SMB 3.1.1 with Samba 4.17
    assert s.TransportName == f"tcp:127.0.0.1:{sandbox.port}"
    assert s.SessionType == 2  # neither guest nor plain-text password
    assert s.Status == "OK"
    assert s.Caption == s.Name == "alice@127.0.0.1"
    assert "alice" in s.Description and "SMB3_11" in s.Description
    assert int(now - after) - 1 <= s.ActiveTime <= int(now - before) + 1
    assert isinstance(s.InstallDate, datetime) and s.InstallDate.utcoffset() is not None
    assert before - 1 <= s.InstallDate.timestamp() <= after + 1
    assert s.ResourcesOpened == 0
    assert s.IdleTime is not None and s.IdleTime <= s.ActiveTime


def test_guest_session_is_guest_type(sandbox, connect):
    connect("nosuchuser", "whatever", guest=True)  # "map to guest = bad user"
    s = wait_for(lambda: by_user(sandbox, "nobody"))[0]
    assert s.SessionType == 0
    assert s.UserName == "nobody"  # Samba's guest account, as its own NetSessEnum reports it


def test_anonymous_session_has_empty_user(sandbox, anonymous):
    anonymous()
    s = wait_for(lambda: by_user(sandbox, ""), timeout=15)[0]
    assert s.SessionType == 0
    assert s.Caption == "anonymous@127.0.0.1"
    assert s.ClientType.startswith("SMB")


def test_files_opened_and_closed(sandbox, connect):
    client = connect("bob")
    client.open_files(["one.txt", "two.txt", "three.txt"])
    assert one(sandbox, "bob").ResourcesOpened == 3
    for handle in client.files[:2]:
        handle.close()
    assert one(sandbox, "bob").ResourcesOpened == 1


def test_idle_session_next_to_busy_one(sandbox, connect):
    busy = connect("alice")
    busy.open_files(["busy.txt"])
    connect("carol")
    for _ in range(12):  # 3 s in which only alice makes requests
        busy.touch()
        time.sleep(0.25)
    sessions = {s.UserName: s for s in serversession.sessions(smb_conf=sandbox.conf_path)}
    assert sessions["alice"].IdleTime <= 1
    assert 1 <= sessions["carol"].IdleTime <= 5  # idle for 3 s, +-2 s


def test_several_sessions_of_one_user_merge(sandbox, connect):
    first = connect("carol")
    time.sleep(2.1)
    second = connect("carol")
    second.open_files(["a.txt", "b.txt"])
    first.open_files(["c.txt"])
    third = connect("carol")
    time.sleep(1.1)
    third.open_files(["d.txt"])  # the most recent request of the three
    raw = [r for r in read_sessions(open_source("samba", smb_conf=sandbox.conf_path)) if r.user_name == "carol"]
    assert len(raw) == 3
    s = one(sandbox, "carol")
    oldest = min(r.established for r in raw)
    assert abs(s.ActiveTime - (time.time() - oldest)) <= 1
    assert s.ActiveTime >= 3
    assert s.ResourcesOpened == 4
    assert s.IdleTime <= 1  # the least idle of the three


def test_session_that_ends_disappears(sandbox, connect):
    client = connect("bob")
    assert len(by_user(sandbox, "bob")) == 1
    client.close()
    wait_for(lambda: not by_user(sandbox, "bob"))


def test_list_json_agrees_with_smbstatus(sandbox, connect):
    connect("alice").open_files(["x.txt"])
    connect("bob")
    result = run_cli("list", "--format", "json", "--smb-conf", sandbox.conf_path)
    assert result.returncode == 0, result.stderr
    ours = json.loads(result.stdout)
    status = subprocess.run(
        ["smbstatus", "--json", "-s", sandbox.conf_path],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env=sandbox.environment(),  # smbstatus resolves user names through the sandbox's nss_wrapper
    )
    theirs = json.loads(status.stdout)
    assert sorted(s["UserName"] for s in ours) == sorted(t["username"] for t in theirs["sessions"].values())
    assert {s["ComputerName"] for s in ours} == {t["remote_machine"] for t in theirs["sessions"].values()}
    files = theirs.get("open_files", {}).values()
    assert sum(s["ResourcesOpened"] for s in ours) >= sum(len(f["opens"]) for f in files) == 1


def test_list_table_through_the_command(sandbox, connect):
    connect("alice")
    result = run_cli("list", "--smb-conf", sandbox.conf_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["Computer", "User"]
    row = next(line for line in lines if " alice " in line)
    assert row.split()[0] == "127.0.0.1"
    assert lines[-1] == "1 session"


@pytest.mark.parametrize("fmt", ["csv", "mof", "xml"])
def test_list_machine_formats_through_the_command(sandbox, connect, fmt):
    connect("alice")
    result = run_cli("list", "--format", fmt, "--smb-conf", sandbox.conf_path)
    assert result.returncode == 0, result.stderr
    assert "alice" in result.stdout
    assert result.stderr == ""


def _smbstatus(sandbox, *options: str) -> dict:
    status = subprocess.run(
        ["smbstatus", *options, "--json", "-s", sandbox.conf_path],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env=sandbox.environment(),
    )
    return json.loads(status.stdout)


def test_tree_connects_agree_with_smbstatus(sandbox, connect):
    """Tree connects in the snapshot: share, id, time to the microsecond, and the session they belong to."""
    from smbprotocol.tree import TreeConnect

    from serversession.sources import read_snapshot
    from serversession.sources.base import CONNECTIONS

    alice = connect("alice")
    alice.open_files(["tc1.txt"])  # a tree connect to share
    TreeConnect(alice.session, "\\\\127.0.0.1\\IPC$").connect()  # and one to IPC$, on the same session
    connect("bob").open_files(["tc2.txt"])
    source = open_source("samba", smb_conf=sandbox.conf_path)

    def both():
        snapshot = read_snapshot(source, 30, frozenset({CONNECTIONS}))
        tcons = _smbstatus(sandbox, "-S").get("tcons", {})  # -S gives only the tree connects
        ours = {(c.connection_id, c.share_name): c.established for c in snapshot.connections}
        theirs = {
            (int(t["tcon_id"]), t["service"]): datetime.fromisoformat(t["connected_at"]).timestamp()
            for t in tcons.values()
        }
        # the same tree connects, made at the same moment: smbstatus prints whole microseconds of
        # the 100 ns NTTIME, seen up to 1.6 us below it (trixie); a float of Unix seconds holds 0.2 us
        same = ours.keys() == theirs.keys() and all(abs(ours[k] - theirs[k]) <= 3e-6 for k in ours)
        seen.append((ours, theirs))
        return (snapshot, tcons) if same else None

    seen: list[tuple[dict, dict]] = []
    try:
        snapshot, tcons = wait_for(both, timeout=15)
    except BaseException:
        print("last read, ours then smbstatus's:", *seen[-1], sep="\n")
        raise
    users = {s.session_id: s.user_name for s in snapshot.sessions}
    shares = sorted((users[c.session_id], c.share_name) for c in snapshot.connections if users[c.session_id] != "")
    assert ("alice", "IPC$") in shares and ("alice", "share") in shares and ("bob", "share") in shares
    sessions = _smbstatus(sandbox)["sessions"]
    for connection in snapshot.connections:  # each belongs to the session smbstatus names
        tcon = tcons[str(connection.connection_id)]
        assert users[connection.session_id] == sessions[tcon["session_id"]]["username"]
    assert read_snapshot(source, 30).connections is None  # not asked for: not read


def test_wire_id_and_dialect_also_through_the_smbstatus_fallback(sandbox, connect, monkeypatch):
    """MSFT_SmbSession's SessionId and Dialect: from the session record, and the same when an
    unverified release's records send the read to smbstatus --json (4.19: a layout not run here)."""
    client = connect("alice")
    client.open_files(["dialect.txt"])  # an open record: what 4.19's layout reads differently
    direct = [r for r in open_source("samba", smb_conf=sandbox.conf_path).sessions() if r.user_name == "alice"]
    assert [(r.wire_id, r.dialect) for r in direct] == [(client.session.session_id, "3.1.1")]
    import samba

    from serversession.sources.samba import _import_bindings

    _import_bindings()
    monkeypatch.setattr(samba, "version", "4.19.0")
    for name, value in sandbox.environment().items():
        if name.startswith(("NSS_WRAPPER", "UID_WRAPPER")) or name == "LD_PRELOAD":
            monkeypatch.setenv(name, value)
    source = open_source("samba", smb_conf=sandbox.conf_path)
    fallen = [r for r in source.sessions() if r.user_name == "alice"]
    assert any("smbstatus" in w for w in source.warnings), source.warnings
    assert [(r.wire_id, r.dialect, r.session_id) for r in fallen] == [
        (client.session.session_id, "3.1.1", f"{client.session.session_id:#x}")
    ]
