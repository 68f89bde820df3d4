"""close-session and close-file over MS-SRVS against the sandbox's own Samba, on loopback.

Samba's rules (srv_srvsvc_nt.c): NetrSessionDel needs root or Domain Admins (RID 512), and ends a
session by ending its smbd process (every session on that connection goes); NetrFileClose needs
root or SeDiskOperatorPrivilege. The sandbox here has two administrators (BUILTIN\\Administrators,
which listing needs): ``admin``, who has neither right, and ``boss``, a member of a group mapped to
Domain Admins who was granted SeDiskOperatorPrivilege (revoked from BUILTIN\\Administrators, which
Samba gives every privilege by default).

Not marked ``samba``, like tests/test_srvsvc.py: the version matrix's chroots do not install
impacket (the ``matrix`` extra).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator

import pytest
from smbprotocol.connection import Connection, Dialects
from smbprotocol.exceptions import FileClosed, SMBConnectionClosed, SMBException
from smbprotocol.session import Session
from smbprotocol.tree import TreeConnect

import serversession
from conftest import wait_for
from serversession.sandbox import Sandbox, free_port
from test_close import open_file, open_names, unique

TIMEOUT = 60
DOMAIN_ADMINS_GROUP = "sbdomadm:x:10200:boss"


def net(box: Sandbox, *args: str) -> None:
    result = subprocess.run(
        ["net", "-s", box.conf_path, *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=box.environment(),
        check=False,
    )
    assert result.returncode == 0, f"net {' '.join(args)}: {result.stdout}{result.stderr}"


class RightsSandbox(Sandbox):
    """The package's sandbox, with ``boss`` in Domain Admins and the only holder of SeDiskOperatorPrivilege.

    Written before smbd starts: nss_wrapper notices a changed group file by its modification
    time in whole seconds, so a line added in the second smbd first read it would go unseen.
    """

    def _write_files(self, users: tuple[str, ...], admins: tuple[str, ...]) -> None:
        super()._write_files(users, admins)
        with open(os.path.join(self.directory, "group"), "a", encoding="utf-8") as group:
            group.write(DOMAIN_ADMINS_GROUP + "\n")
        net(self, "groupmap", "add", "rid=512", "unixgroup=sbdomadm", "type=domain", "ntgroup=Domain Admins")
        net(self, "sam", "rights", "revoke", "BUILTIN\\Administrators", "SeDiskOperatorPrivilege")
        net(self, "sam", "rights", "grant", "SSSANDBOX\\boss", "SeDiskOperatorPrivilege")


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    directory = tempfile.mkdtemp(prefix="serversession-close-remote-")
    sandbox = RightsSandbox(directory, free_port())
    sandbox.start(users=("alice", "bob", "carol"), admins=("admin", "boss"))
    yield sandbox
    sandbox.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def connections(box: Sandbox) -> Iterator[list[Connection]]:
    held: list[Connection] = []
    yield held
    for connection in held:
        with contextlib.suppress(Exception):
            connection.disconnect(close=False)
    wait_for(lambda: not {"alice", "bob", "carol"} & set(users(box)), timeout=15)


def login(box: Sandbox, connection: Connection, user: str) -> TreeConnect:
    session = Session(connection, user, box.users[user], require_encryption=False)
    session.connect()
    tree = TreeConnect(session, "\\\\127.0.0.1\\share")
    tree.connect()
    return tree


def connect(box: Sandbox, held: list[Connection]) -> Connection:
    connection = Connection(uuid.uuid4(), "127.0.0.1", box.port, require_signing=True)
    connection.connect(Dialects.SMB_3_1_1, timeout=10)
    held.append(connection)
    return connection


def users(box: Sandbox) -> list[str]:
    return sorted(s.ClientUserName for s in serversession.instances("MSFT_SmbSession", smb_conf=box.conf_path))


def remote(box: Sandbox, account: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A close command over srvsvc as ``account`` (its password in the environment)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVERSESSION_")}
    env["SERVERSESSION_PASSWORD"] = box.users[account]
    return subprocess.run(
        [sys.executable, "-m", "serversession", *args, "--host", f"127.0.0.1:{box.port}", "--account", account],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        check=False,
    )


def test_session_close_needs_domain_admins_and_ends_the_whole_connection(box, connections):
    shared = connect(box, connections)
    alice, carol = login(box, shared, "alice"), login(box, shared, "carol")
    bob = login(box, connect(box, connections), "bob")
    handle = open_file(alice, unique("remote"))

    denied = remote(box, "admin", "close-session", "--user", "alice", "--force")

    assert denied.returncode == 1, denied.stderr
    assert "access denied to admin" in denied.stderr and "Domain Admins (RID 512)" in denied.stderr
    assert users(box) == ["alice", "bob", "carol"]

    done = remote(box, "boss", "close-session", "--user", "alice", "--computer", "127.0.0.1", "--force")

    assert done.returncode == 0, done.stderr
    assert "alice@127.0.0.1" in done.stdout and "closed alice@127.0.0.1" in done.stdout
    assert "also ended, not asked for: carol@127.0.0.1" in done.stdout  # Samba ends her connection
    wait_for(lambda: users(box) == ["bob"], timeout=15)
    with pytest.raises((SMBConnectionClosed, SMBException, OSError)):
        handle.write(b"x", 0)
    del carol
    open_file(bob, unique("bob")).write(b"bob's connection is another one", 0)


def test_file_close_needs_the_disk_operator_privilege(box, connections):
    alice = login(box, connect(box, connections), "alice")
    handle = open_file(alice, unique("remotefile"))
    source = {"hosts": [f"127.0.0.1:{box.port}"], "user": "boss", "password": box.users["boss"]}
    (listed,) = [f for f in serversession.instances("MSFT_SmbOpenFile", **source) if f.Path.endswith(handle.file_name)]

    denied = remote(box, "admin", "close-file", "--file-id", str(listed.FileId), "--force")

    assert denied.returncode == 1, denied.stderr
    assert "access denied to admin" in denied.stderr and "SeDiskOperatorPrivilege" in denied.stderr
    handle.write(b"still open", 0)

    done = remote(box, "boss", "close-file", "--path", "*/remotefile-*", "--user", "alice", "--force")

    assert done.returncode == 0, done.stderr
    assert f"closed file {listed.FileId} ({listed.Path})" in done.stdout
    assert handle.file_name not in open_names(box)
    with pytest.raises(FileClosed):
        handle.write(b"x", 0)
    assert users(box) == ["alice"]  # her session stays


def test_what_srvsvc_cannot_select_is_invalid_input(box):
    for args, words in (
        (("close-session", "--session-id", "1"), "has no session ids"),
        (("close-file", "--session-id", "1"), "does not say which session or computer"),
        (("close-file", "--computer", "127.0.0.1"), "does not say which session or computer"),
        (("close-session", "--user", "alice", "--host", "127.0.0.2"), "one server at a time"),
    ):
        result = remote(box, "boss", *args, "--force")
        assert result.returncode == 2 and words in result.stderr, (args, result.stderr)
