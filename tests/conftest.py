"""Fixtures: a real smbd on 127.0.0.1 (the package's sandbox) and real SMB clients."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

import pytest

from serversession.demo import Client
from serversession.sandbox import Sandbox, free_port

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """One sandbox Samba for the whole test run, with users alice, bob and carol."""
    if shutil.which("smbd") is None and not os.path.exists("/usr/sbin/smbd"):
        pytest.fail("smbd is not installed; run the README's test command, which installs Samba")
    # Not under pytest's tmp_path: its parent is private (0700) and smbd serves the share as each user.
    directory = tempfile.mkdtemp(prefix="serversession-test-")
    box = Sandbox(directory, free_port())
    box.start(users=("alice", "bob", "carol"))
    yield box
    box.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def connect(sandbox: Sandbox) -> Iterator[Callable[..., Client]]:
    """Open SMB sessions with smbprotocol; all are closed when the test ends."""
    clients: list[Client] = []

    def open_session(user: str, password: str | None = None, guest: bool = False) -> Client:
        client = Client(sandbox.port, user, sandbox.users.get(user, "") if password is None else password, guest=guest)
        clients.append(client)
        return client

    yield open_session
    for client in clients:
        client.close()
    wait_for(lambda: not _sessions_of(sandbox, {c.session.username for c in clients}), timeout=10)


@pytest.fixture
def anonymous(sandbox: Sandbox) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Start an anonymous null session with smbclient (smbprotocol cannot make one)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        smbclient = shutil.which("smbclient")
        if smbclient is None:
            pytest.fail("smbclient is not installed; run the README's test command")
        proc = subprocess.Popen(
            [smbclient, "-N", "-U%", "-p", str(sandbox.port), "//127.0.0.1/IPC$"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def _sessions_of(sandbox: Sandbox, users: set[str]) -> list[object]:
    import serversession

    return [s for s in serversession.sessions(smb_conf=sandbox.conf_path) if s.UserName in users]


def wait_for(condition: Callable[[], object], timeout: float = 10.0, interval: float = 0.1) -> object:
    """Poll ``condition`` until it is truthy; return its value, or fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(interval)


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the real ``serversession`` command (``python -m serversession``)."""
    full_env = dict(os.environ)
    full_env.pop("SERVERSESSION_SMB_CONF", None)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "serversession", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        check=False,
    )
