"""ForceClose over CIM-XML (issue 14 part 4, DESIGN.md 2c): ``MSFT_SmbSession.ForceClose()`` and
``MSFT_SmbOpenFile.ForceClose()`` invoked on a real ``serve`` in front of a sandbox smbd of this
module's own (sessions and files are closed here), with pywbem and pywbemcli.

``serve`` runs with ``--max-age 30``: a read is kept that long, so the tests also show that a
close drops it (the closed session is gone from the very next answer) and that an id not in the
current read is looked up in a new one before it is CIM_ERR_NOT_FOUND. Effects are checked from
the client's side (its next request fails, another still works) and from Samba's
(``smbstatus -L --json``); each close from the access log.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
import pywbem
from smbprotocol.exceptions import FileClosed, UserSessionDeleted
from smbprotocol.open import (
    CreateDisposition,
    FileAttributes,
    FilePipePrinterAccessMask,
    ImpersonationLevel,
    Open,
    ShareAccess,
)
from smbprotocol.tree import TreeConnect

from conftest import run_cli, wait_for
from serversession.sandbox import Sandbox, free_port
from test_close import Clients, file_id, open_file, open_names, session_users, tolerate_deleted_session, unique
from test_server import start_server, stop, wait_listening

OPERATOR, READER = "closer", "monitor"
PASSWORDS = {OPERATOR: "cl0se-Pa55", READER: "re4d-Pa55"}
SMB = "root/Microsoft/Windows/SMB"
TIMEOUT = 60  # seconds any one command or request may take


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    directory = tempfile.mkdtemp(prefix="serversession-forceclose-")
    sandbox = Sandbox(directory, free_port())
    sandbox.start(users=("alice", "bob"))  # and "admin", of BUILTIN\Administrators (srvsvc)
    yield sandbox
    sandbox.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def workdir() -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix="serversession-forceclose-serve-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def htpasswd(workdir: str) -> str:
    tool = shutil.which("htpasswd")
    if tool is None:
        pytest.fail("htpasswd (apache2-utils) is needed; run the README's test command")
    path = os.path.join(workdir, "htpasswd")
    for number, (user, password) in enumerate(PASSWORDS.items()):
        flags = ["-B", "-b", *(["-c"] if number == 0 else [])]
        subprocess.run([tool, *flags, path, user, password], check=True, capture_output=True, timeout=TIMEOUT)
    return path


def serve(workdir: str, name: str, args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    port = free_port()
    log = os.path.join(workdir, f"{name}.log")
    proc = start_server(
        ["--port", str(port), "--operator", OPERATOR, "--access-log", log, "--max-age", "30", *args], env=env
    )
    wait_listening(port, proc)
    return {"url": f"http://127.0.0.1:{port}", "proc": proc, "log": log}


@pytest.fixture(scope="module")
def server(box: Sandbox, workdir: str, htpasswd: str) -> Iterator[dict[str, Any]]:
    info = serve(workdir, "local", ["--htpasswd", htpasswd, "--smb-conf", box.conf_path])
    yield info
    err = stop(info["proc"])
    assert "Traceback" not in err and "internal error" not in err, err[-3000:]


@pytest.fixture
def clients(box: Sandbox) -> Iterator[Clients]:
    held = Clients(box)
    yield held
    held.close()
    wait_for(lambda: not session_users(box), timeout=15)  # the next test starts with no session


def connection(server: dict[str, Any], user: str = OPERATOR) -> pywbem.WBEMConnection:
    return pywbem.WBEMConnection(server["url"], (user, PASSWORDS[user]), default_namespace=SMB, timeout=TIMEOUT)


def session_path(sid: int) -> pywbem.CIMInstanceName:
    return pywbem.CIMInstanceName("MSFT_SmbSession", {"SessionId": pywbem.Uint64(sid)}, namespace=SMB)


def file_path(fid: int) -> pywbem.CIMInstanceName:
    return pywbem.CIMInstanceName("MSFT_SmbOpenFile", {"FileId": pywbem.Uint64(fid)}, namespace=SMB)


def log_lines(server: dict[str, Any]) -> list[dict[str, Any]]:
    with open(server["log"], encoding="utf-8") as log:
        return [json.loads(line) for line in log]


def close_line(server: dict[str, Any], key: str, value: int) -> dict[str, Any]:
    """The access log's line of the close of ``key`` ``value`` (written by the log's own thread)."""
    found = wait_for(lambda: [r for r in log_lines(server) if r.get("event") == "close" and r.get(key) == value])
    assert isinstance(found, list) and len(found) == 1, found
    return found[0]


def cim_status(call: Any) -> int:
    with pytest.raises(pywbem.CIMError) as caught:
        call()
    return int(caught.value.status_code)


# --- closing --------------------------------------------------------------------------------------


def test_operator_closes_that_session_and_the_other_on_its_connection_keeps_working(box, server, clients):
    shared = clients.connect()
    alice, bob = clients.login(shared, "alice"), clients.login(shared, "bob")
    mine, yours = open_file(alice, unique("alice")), open_file(bob, unique("bob"))
    sid = alice.session.session_id
    tolerate_deleted_session(shared, sid)
    conn = connection(server)

    result = conn.InvokeMethod("ForceClose", session_path(sid))

    assert result[0] == 0 and isinstance(result[0], pywbem.Uint32) and not result[1]
    yours.write(b"bob's session, on the same connection, works", 0)
    with pytest.raises(UserSessionDeleted):
        mine.write(b"gone", 0)
    assert session_users(box) == ["bob"]
    assert mine.file_name not in open_names(box) and yours.file_name in open_names(box)
    listed = {p["SessionId"] for p in conn.EnumerateInstanceNames("MSFT_SmbSession")}
    assert sid not in listed and bob.session.session_id in listed  # the 30 s read was dropped
    line = close_line(server, "SessionId", sid)
    assert (line["user"], line["client"], line["class"]) == (OPERATOR, "127.0.0.1", "MSFT_SmbSession")
    assert line["what"] == f"session {sid} (alice@127.0.0.1)"
    assert (line["return_value"], line["closed"], line["also"]) == (0, True, [])


def test_operator_closes_that_file_alone(box, server, clients):
    alice = clients.login(clients.connect(), "alice")
    closing, staying = open_file(alice, unique("closing")), open_file(alice, unique("staying"))
    fid = file_id(closing)

    assert connection(server).InvokeMethod("ForceClose", file_path(fid))[0] == 0

    names = open_names(box)
    assert closing.file_name not in names and staying.file_name in names
    with pytest.raises(FileClosed):
        closing.write(b"x", 0)
    staying.write(b"the other handle and the session work", 0)
    line = close_line(server, "FileId", fid)
    assert line["user"] == OPERATOR and line["return_value"] == 0
    assert line["what"] == f"file {fid} ({box.share_path}/{closing.file_name})"


def test_pywbemcli_instance_invokemethod(box, server, clients):
    alice = clients.login(clients.connect(), "alice")
    handle = open_file(alice, unique("cli"))
    tool = shutil.which("pywbemcli", path=os.path.dirname(sys.executable)) or shutil.which("pywbemcli")
    assert tool, "pywbemcli (pywbemtools) is needed; run the README's test command"

    result = subprocess.run(
        [tool, "-s", server["url"], "-u", OPERATOR, "-p", PASSWORDS[OPERATOR], "-d", SMB,
         "instance", "invokemethod", f"MSFT_SmbOpenFile.FileId={file_id(handle)}", "ForceClose"],
        capture_output=True, text=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "ReturnValue=0" in result.stdout
    assert handle.file_name not in open_names(box)
    assert close_line(server, "FileId", file_id(handle))["return_value"] == 0


def test_a_close_smbd_cannot_do_returns_its_win32_code(box, server, clients):
    """A named pipe has no share-mode entry: smbd closes it only with its session (docs/close.md)."""
    alice = clients.login(clients.connect(), "alice")
    ipc = TreeConnect(alice.session, "\\\\127.0.0.1\\IPC$")
    ipc.connect()
    pipe = Open(ipc, "srvsvc")
    access = FilePipePrinterAccessMask.GENERIC_READ | FilePipePrinterAccessMask.GENERIC_WRITE
    share = ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE
    pipe.create(ImpersonationLevel.Impersonation, access, FileAttributes.FILE_ATTRIBUTE_NORMAL, share,
                CreateDisposition.FILE_OPEN, 0)  # fmt: skip
    fid = file_id(pipe)

    assert connection(server).InvokeMethod("ForceClose", file_path(fid))[0] == 50  # ERROR_NOT_SUPPORTED

    line = close_line(server, "FileId", fid)
    assert line["return_value"] == 50 and line["closed"] is False and "named pipe" in line["reason"]
    assert session_users(box) == ["alice"]


# --- refusals -------------------------------------------------------------------------------------


def test_non_operator_is_denied_and_nothing_is_closed(box, server, clients):
    alice = clients.login(clients.connect(), "alice")
    handle = open_file(alice, unique("kept"))
    reader = connection(server, READER)
    paths = (session_path(alice.session.session_id), file_path(file_id(handle)))

    for path in paths:
        assert cim_status(lambda p=path: reader.InvokeMethod("ForceClose", p)) == 2  # CIM_ERR_ACCESS_DENIED

    handle.write(b"still open", 0)
    assert handle.file_name in open_names(box) and session_users(box) == ["alice"]
    assert [p["FileId"] for p in reader.EnumerateInstanceNames("MSFT_SmbOpenFile")] == [file_id(handle)]
    refused = wait_for(
        lambda: [r for r in log_lines(server) if r.get("operation") == "ForceClose" and r.get("user") == READER]
    )
    assert [r.get("cim_status") for r in refused] == [2, 2] and not any("event" in r for r in refused)


def test_unknown_instance_is_not_found(server):
    conn = connection(server)
    before = len(log_lines(server))
    for path in (session_path(0xDEAD), file_path(0xBEEF)):
        assert cim_status(lambda p=path: conn.InvokeMethod("ForceClose", p)) == 6  # CIM_ERR_NOT_FOUND
    wait_for(lambda: len(log_lines(server)) >= before + 2)
    assert not [r for r in log_lines(server)[before:] if r.get("event") == "close"]  # nothing was closed


def test_other_methods_parameters_and_classes_are_refused(box, server, clients):
    alice = clients.login(clients.connect(), "alice")
    handle = open_file(alice, unique("untouched"))
    conn, path = connection(server), session_path(alice.session.session_id)
    calls = [
        (lambda: conn.InvokeMethod("Terminate", path), 17),  # CIM_ERR_METHOD_NOT_FOUND
        (lambda: conn.InvokeMethod("ForceClose", path, Params=[("Force", True)]), 4),  # CIM_ERR_INVALID_PARAMETER
        (lambda: conn.InvokeMethod("ForceClose", pywbem.CIMClassName("MSFT_SmbSession", namespace=SMB)), 4),
        (lambda: conn.InvokeMethod("ForceClose", pywbem.CIMInstanceName("MSFT_SmbSession", {"FileId": 1})), 4),
        (lambda: conn.InvokeMethod("ForceClose", pywbem.CIMInstanceName("MSFT_Nope", {"Id": 1})), 5),
        (lambda: conn.InvokeMethod("ForceClose", pywbem.CIMInstanceName(
            "Win32_ServerSession", {"ComputerName": "127.0.0.1", "UserName": "alice"}, namespace="root/cimv2")), 7),
    ]  # fmt: skip
    assert [cim_status(call) for call, _ in calls] == [status for _, status in calls]
    handle.write(b"nothing was closed", 0)
    assert session_users(box) == ["alice"] and handle.file_name in open_names(box)


def test_operator_needs_an_access_log_and_named_users(htpasswd):
    for args, words in (
        (["--operator", OPERATOR, "--htpasswd", htpasswd], "--operator needs --access-log"),
        (["--operator", OPERATOR, "--no-auth", "--access-log", "-"], "--operator names users"),
    ):
        result = run_cli("serve", "--port", str(free_port()), *args, timeout=TIMEOUT)
        assert result.returncode == 2 and words in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1


# --- srvsvc ------------------------------------------------------------------------------------------


def remote_serve(box: Sandbox, workdir: str, htpasswd: str, name: str, hosts: list[str]) -> dict[str, Any]:
    """serve over srvsvc as admin (BUILTIN\\Administrators: every privilege, NetrFileClose included)."""
    args = ["--htpasswd", htpasswd, "--user", "admin", *(f"--host={host}" for host in hosts)]
    return serve(workdir, name, args, env={"SERVERSESSION_PASSWORD": box.users["admin"]})


def test_over_srvsvc_an_open_file_is_closed_and_there_are_no_sessions_to_close(box, workdir, htpasswd, clients):
    alice = clients.login(clients.connect(), "alice")
    handle = open_file(alice, unique("remote"))
    remote = remote_serve(box, workdir, htpasswd, "remote", [f"127.0.0.1:{box.port}"])
    try:
        conn = connection(remote)
        (listed,) = [f for f in conn.EnumerateInstances("MSFT_SmbOpenFile") if f["Path"].endswith(handle.file_name)]
        assert cim_status(lambda: conn.InvokeMethod("ForceClose", session_path(alice.session.session_id))) == 6

        assert conn.InvokeMethod("ForceClose", listed.path)[0] == 0

        assert handle.file_name not in open_names(box)
        with pytest.raises(FileClosed):
            handle.write(b"x", 0)
        line = close_line(remote, "FileId", listed["FileId"])
        assert line["host"] == f"127.0.0.1@{box.port}" and line["return_value"] == 0
    finally:
        err = stop(remote["proc"])
    assert "Traceback" not in err, err[-3000:]


def test_an_instance_name_of_several_hosts_closes_nothing(box, workdir, htpasswd, clients):
    """An instance name carries no host: one that two served hosts have is refused, never guessed."""
    handle = open_file(clients.login(clients.connect(), "alice"), unique("twice"))
    remote = remote_serve(box, workdir, htpasswd, "twice", [f"127.0.0.1:{box.port}", f"localhost:{box.port}"])
    try:
        conn = connection(remote)
        paths = [f.path for f in conn.EnumerateInstances("MSFT_SmbOpenFile") if f["Path"].endswith(handle.file_name)]
        assert len(paths) == 2 and paths[0] == paths[1]  # the same server, under two names

        with pytest.raises(pywbem.CIMError, match="exists on several hosts") as caught:
            conn.InvokeMethod("ForceClose", paths[0])
        assert caught.value.status_code == 4  # CIM_ERR_INVALID_PARAMETER

        handle.write(b"still open", 0)
    finally:
        err = stop(remote["proc"])
    assert "Traceback" not in err, err[-3000:]


def test_the_host_of_a_label_is_found_among_the_served_ones():
    from serversession.server.methods import _host

    options = {"hosts": ("fs1", "FS2:4445", "[fd00::1]:4446"), "smb_port": 445}
    assert [_host(options, label) for label in ("fs1", "fs2@4445", "fd00::1@4446")] == [
        "fs1:445",
        "FS2:4445",
        "[fd00::1]:4446",
    ]
    with pytest.raises(Exception, match="no longer one of the hosts"):
        _host(options, "fs3")
