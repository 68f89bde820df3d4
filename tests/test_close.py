"""close-session and close-file against a real smbd: exactly what was named ends, nothing else.

Clients are smbprotocol's (several sessions on one TCP connection, open handles, byte-range
locks) and smbclient's (SMB1). Each effect is checked from the client's side (its next request
fails, another still works, a lock can be taken) and from Samba's (``smbstatus --json``).
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from typing import Any

import click
import pytest
from smbprotocol.connection import Connection, Dialects
from smbprotocol.exceptions import FileClosed, SMBResponseException, UserSessionDeleted
from smbprotocol.header import NtStatus
from smbprotocol.open import (
    CreateDisposition,
    CreateOptions,
    FileAttributes,
    FilePipePrinterAccessMask,
    ImpersonationLevel,
    LockFlags,
    Open,
    ShareAccess,
    SMB2LockElement,
)
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

import serversession
from conftest import REPO, wait_for
from serversession.sandbox import Sandbox, free_port

pytestmark = pytest.mark.samba

TIMEOUT = 60  # seconds any one command may take
CLIENT_TIMEOUT = 10


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    """A sandbox of this module's own (sessions are ended here), SMB1 allowed for smbclient."""
    directory = tempfile.mkdtemp(prefix="serversession-close-")
    sandbox = Sandbox(directory, free_port(), options={"server min protocol": "NT1"})
    sandbox.start(users=("alice", "bob", "carol"))
    yield sandbox
    sandbox.stop()
    shutil.rmtree(directory, ignore_errors=True)


class Clients:
    """smbprotocol connections and smbclient processes of one test, all ended when it ends."""

    def __init__(self, box: Sandbox) -> None:
        self.box = box
        self.connections: list[Connection] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    def connect(self) -> Connection:
        connection = Connection(uuid.uuid4(), "127.0.0.1", self.box.port, require_signing=True)
        connection.connect(Dialects.SMB_3_1_1, timeout=CLIENT_TIMEOUT)
        self.connections.append(connection)
        return connection

    def login(self, connection: Connection, user: str) -> TreeConnect:
        """A signed, unencrypted session of ``user`` on ``connection``, connected to the share.

        Unencrypted: a request of an encrypted session smbd no longer has ends the whole
        connection (smbd cannot answer it), which is not what these tests look at.
        """
        session = Session(connection, user, self.box.users[user], require_encryption=False)
        session.connect()
        tree = TreeConnect(session, "\\\\127.0.0.1\\share")
        tree.connect()
        return tree

    def smbclient_nt1(self, user: str) -> subprocess.Popen[bytes]:
        """An SMB1 session of smbclient, held until the test ends."""
        proc = subprocess.Popen(
            ["smbclient", "//127.0.0.1/share", "-p", str(self.box.port), "-U", f"{user}%{self.box.users[user]}",
             "-m", "NT1", "--option=client min protocol=NT1"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.processes.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.processes:
            proc.kill()
            proc.wait(timeout=CLIENT_TIMEOUT)
        for connection in self.connections:
            with contextlib.suppress(Exception):
                connection.disconnect(close=False)  # the socket: smbd ends what it carried


@pytest.fixture
def clients(box: Sandbox) -> Iterator[Clients]:
    held = Clients(box)
    yield held
    held.close()
    wait_for(lambda: not session_users(box), timeout=15)  # the next test starts with no session


def open_file(tree: TreeConnect, name: str, write: bool = True, create: bool = True) -> Open:
    handle = Open(tree, name)
    access = FilePipePrinterAccessMask.GENERIC_READ | (FilePipePrinterAccessMask.GENERIC_WRITE if write else 0)
    handle.create(
        ImpersonationLevel.Impersonation,
        access,
        FileAttributes.FILE_ATTRIBUTE_NORMAL,
        ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE,
        CreateDisposition.FILE_OVERWRITE_IF if create else CreateDisposition.FILE_OPEN,
        CreateOptions.FILE_NON_DIRECTORY_FILE,
    )
    return handle


def lock(handle: Open, offset: int, length: int) -> None:
    element = SMB2LockElement()
    element["offset"] = offset
    element["length"] = length
    element["flags"] = LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK | LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY
    handle.lock([element])


def file_id(handle: Open) -> int:
    """MSFT_SmbOpenFile.FileId: the persistent half of the SMB2 FileId the client holds."""
    return int.from_bytes(bytes(handle.file_id)[:8], "little")


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}.txt"


def close_cli(box: Sandbox, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``serversession ARGS --smb-conf BOX`` with no terminal on stdin."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SERVERSESSION_")}
    return subprocess.run(
        [sys.executable, "-m", "serversession", *args, "--smb-conf", box.conf_path],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**environment, **(env or {})},
        check=False,
    )


def smbstatus(box: Sandbox, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        ["smbstatus", "--json", "-s", box.conf_path, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env=box.environment(),
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def open_names(box: Sandbox) -> set[str]:
    """The names of the files smbd has open (``smbstatus -L``)."""
    return {f["filename"] for f in smbstatus(box, "-L").get("open_files", {}).values()}


def locked_names(box: Sandbox) -> set[str]:
    return {f["file_name"] for f in (smbstatus(box, "-B").get("byte_range_locks") or {}).values()}


def session_users(box: Sandbox) -> list[str]:
    return sorted(s.ClientUserName for s in serversession.instances("MSFT_SmbSession", smb_conf=box.conf_path))


def tolerate_deleted_session(connection: Connection, session_id: int) -> None:
    """Let the client read smbd's STATUS_USER_SESSION_DELETED answer to a closed session.

    smbd signs that answer though the session's key is gone; smbprotocol would take the bad
    signature as an attack and drop the whole connection, the other sessions with it.
    """
    verify = connection.verify_signature

    def checked(header: Any, sid: int, force: bool = False) -> None:
        if sid == session_id and header["status"].get_value() == NtStatus.STATUS_USER_SESSION_DELETED:
            return
        verify(header, sid, force)

    connection.verify_signature = checked  # type: ignore[method-assign]


# --- close-session --------------------------------------------------------------------------------


def test_two_sessions_on_one_connection_one_is_closed_the_other_keeps_working(box, clients):
    connection = clients.connect()
    alice, bob = clients.login(connection, "alice"), clients.login(connection, "bob")
    mine, yours = open_file(alice, unique("alice")), open_file(bob, unique("bob"))
    sid = alice.session.session_id
    tolerate_deleted_session(connection, sid)
    assert session_users(box) == ["alice", "bob"]
    assert open_names(box) == {mine.file_name, yours.file_name}

    result = close_cli(box, "close-session", "--session-id", hex(sid), "--force")

    assert result.returncode == 0, result.stderr
    assert f"closed session {sid} (alice@127.0.0.1)" in result.stdout
    assert "also ended" not in result.stdout
    yours.write(b"still here", 0)  # bob's session, on the same connection, works
    with pytest.raises(UserSessionDeleted):
        mine.write(b"gone", 0)
    yours.write(b"and still", 0)  # alice's refused request did not end the connection either
    assert session_users(box) == ["bob"]
    assert open_names(box) == {yours.file_name}  # alice's handle went with her session


def test_user_selector_closes_every_session_of_that_user_and_no_other(box, clients):
    one, two = clients.connect(), clients.connect()
    trees = [clients.login(one, "alice"), clients.login(two, "alice"), clients.login(two, "carol")]
    for tree in trees:
        tolerate_deleted_session(tree.session.connection, tree.session.session_id)
    files = [open_file(tree, unique("u")) for tree in trees]

    result = close_cli(box, "close-session", "--user", "ALICE", "--computer", "\\\\127.0.0.1", "--force")

    assert result.returncode == 0, result.stderr
    assert result.stdout.count("closed session") == 2
    assert session_users(box) == ["carol"]
    files[2].write(b"carol works", 0)
    for handle in files[:2]:
        with pytest.raises(UserSessionDeleted):
            handle.write(b"x", 0)


def test_smb1_session_is_closed_alone(box, clients):
    for user in ("alice", "bob"):
        clients.smbclient_nt1(user)
    wait_for(lambda: session_users(box) == ["alice", "bob"], timeout=15)
    (alice,) = [
        s for s in serversession.instances("MSFT_SmbSession", smb_conf=box.conf_path) if s.ClientUserName == "alice"
    ]
    assert alice.Dialect == "1.5"

    result = close_cli(box, "close-session", "--session-id", str(alice.SessionId), "--force")

    assert result.returncode == 0, result.stderr
    assert session_users(box) == ["bob"]


def test_closing_a_session_closes_its_handles(box, clients):
    connection = clients.connect()
    alice = clients.login(connection, "alice")
    names = [unique("a"), unique("b")]
    handles = [open_file(alice, name) for name in names]
    lock(handles[0], 0, 10)
    assert set(names) <= open_names(box) and names[0] in locked_names(box)

    report = serversession.close_session(alice.session.session_id, smb_conf=box.conf_path)

    assert report.code == 0 and [o.closed for o in report.outcomes] == [True]
    assert report.matched[0].NumOpens == 2
    assert not set(names) & open_names(box)
    assert not set(names) & locked_names(box)


# --- close-file ---------------------------------------------------------------------------------


def test_close_file_closes_that_handle_and_the_next_request_on_it_fails(box, clients):
    alice = clients.login(clients.connect(), "alice")
    closing, staying = open_file(alice, unique("closing")), open_file(alice, unique("staying"))

    result = close_cli(box, "close-file", "--file-id", str(file_id(closing)), "--force")

    assert result.returncode == 0, result.stderr
    assert f"closed file {file_id(closing)} ({box.share_path}/{closing.file_name})" in result.stdout
    names = open_names(box)
    assert closing.file_name not in names and staying.file_name in names
    with pytest.raises(FileClosed):
        closing.write(b"x", 0)
    staying.write(b"the other handle and the session work", 0)
    assert session_users(box) == ["alice"]


def test_close_file_releases_its_byte_range_lock(box, clients):
    name = unique("locked")
    holder = open_file(clients.login(clients.connect(), "alice"), name)
    lock(holder, 0, 100)
    other = open_file(clients.login(clients.connect(), "bob"), name, write=False, create=False)
    with pytest.raises(SMBResponseException):  # STATUS_LOCK_NOT_GRANTED
        lock(other, 10, 10)
    assert name in locked_names(box)

    result = close_cli(box, "close-file", "--path", f"{box.share_path}/locked-*", "--user", "alice", "--force")

    assert result.returncode == 0, result.stderr
    assert result.stdout.count("closed file") == 1  # bob's handle of the same file is not alice's
    lock(other, 10, 10)
    assert name in open_names(box)  # bob's handle, still open


def test_path_glob_is_matched_case_sensitively_on_the_whole_path(box, clients):
    alice = clients.login(clients.connect(), "alice")
    handle = open_file(alice, unique("Report"))
    for pattern in ("report-*", "*/report-*", f"{box.share_path}/REPORT-*"):
        result = close_cli(box, "close-file", "--path", pattern, "--force")
        assert result.returncode == 1 and "no open file matches" in result.stderr, pattern
    assert close_cli(box, "close-file", "--path", "*/Report-*.txt", "--what-if").returncode == 0
    handle.write(b"untouched", 0)


# --- what-if, refusals, input ----------------------------------------------------------------------


def test_what_if_shows_what_matches_and_changes_nothing(box, clients):
    alice = clients.login(clients.connect(), "alice")
    handle = open_file(alice, unique("whatif"))
    sid = alice.session.session_id

    for args in (("close-session", "--session-id", str(sid)), ("close-file", "--file-id", str(file_id(handle)))):
        result = close_cli(box, *args, "--what-if")
        assert result.returncode == 0, result.stderr
        assert "What if: would close 1" in result.stdout and "nothing was changed" in result.stdout
        assert str(sid) in result.stdout and not re.search("^closed ", result.stdout, re.MULTILINE)

    handle.write(b"still open", 0)
    assert handle.file_name in open_names(box) and session_users(box) == ["alice"]
    report = serversession.close_file(file_id(handle), smb_conf=box.conf_path, what_if=True)
    assert report.code == 0 and report.outcomes == () and [f.FileId for f in report.matched] == [file_id(handle)]


def test_no_terminal_without_force_nothing_matching_and_bad_input(box, clients):
    alice = clients.login(clients.connect(), "alice")
    sid = alice.session.session_id

    refused = close_cli(box, "close-session", "--session-id", str(sid))
    assert refused.returncode == 2 and "use --force" in refused.stderr
    nothing = close_cli(box, "close-session", "--user", "nobody-here", "--force")
    assert nothing.returncode == 1 and "no session matches user 'nobody-here'" in nothing.stderr
    for args in (("close-session", "--force"), ("close-file", "--force"), ("close-session", "--session-id", "0xZZ")):
        bad = close_cli(box, *args)
        assert bad.returncode == 2, (args, bad.stderr)
        assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert session_users(box) == ["alice"]
    assert serversession.close_session(12345, smb_conf=box.conf_path).code == 1168  # ERROR_NOT_FOUND


def test_on_a_terminal_it_asks_and_no_closes_nothing(box, clients):
    alice = clients.login(clients.connect(), "alice")
    handle = open_file(alice, unique("asked"))
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SERVERSESSION_")}
    answers = {}
    for answer in ("n", "y"):
        terminal, typist = pty.openpty()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "serversession", "close-file", "--user", "alice", "--smb-conf", box.conf_path],
                stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment,
            )  # fmt: skip
            os.write(typist, f"{answer}\n".encode())  # the terminal keeps it until the question is asked
            answers[answer] = (*proc.communicate(timeout=TIMEOUT), proc.returncode)
        finally:
            os.close(terminal)
            os.close(typist)
        if answer == "n":
            handle.write(b"still open after no", 0)
    (out_no, _, code_no), (out_yes, err_yes, code_yes) = answers["n"], answers["y"]
    assert code_no == 1 and "Close 1 open file? [y/N]" in out_no and "nothing was closed" in out_no
    assert code_yes == 0, err_yes
    assert f"closed file {file_id(handle)}" in out_yes
    with pytest.raises(FileClosed):
        handle.write(b"x", 0)


@pytest.fixture(scope="module")
def package_copy() -> Iterator[str]:
    """The package and click where user nobody can read them (as tests/test_nonroot.py does)."""
    directory = tempfile.mkdtemp(prefix="serversession-src-")
    os.chmod(directory, 0o755)
    shutil.copytree(os.path.join(REPO, "src", "serversession"), os.path.join(directory, "serversession"))
    shutil.copytree(os.path.dirname(click.__file__), os.path.join(directory, "click"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_closing_without_root_is_refused(box, clients, package_copy):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.fail("this test switches to user nobody: it needs root and setpriv (util-linux)")
    alice = clients.login(clients.connect(), "alice")
    sid = alice.session.session_id
    code = textwrap.dedent(f"""
        import sys
        from serversession.cli import run
        sys.argv = ["serversession", "close-session", "--session-id", "{sid}", "--force", "--smb-conf", {box.conf_path!r}]
        run()
    """)
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", code],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/tmp", "PYTHONPATH": package_copy},
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert "needs root" in result.stderr and "Traceback" not in result.stderr
    open_file(alice, unique("after")).write(b"nothing was closed", 0)
    assert session_users(box) == ["alice"]


def test_selectors_ignore_case_but_never_fold_other_names_together() -> None:
    from serversession.close.select import path_matches, same_computer, same_user

    assert same_user("ALICE", "alice") and same_computer("\\\\WS1", "ws1")
    assert not same_user("strasse", "straße") and not same_user("sam", "\u017fam")  # long s
    assert not same_computer("ﬁleserver", "fileserver")
    assert path_matches("/SRV/*", "/srv/x", case_sensitive=False) and not path_matches("/SRV/*", "/srv/x", True)
