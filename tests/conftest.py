"""Fixtures: a real smbd on 127.0.0.1 (the package's sandbox) and real SMB clients."""

from __future__ import annotations

import ctypes.util
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

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


def pam_wrapper_env(directory: Path, service: str, passdb: str) -> dict[str, str]:
    """Environment for a child process whose PAM is Debian's pam_wrapper with pam_matrix.

    ``passdb`` holds ``user:password:service`` lines. python-pam loads libpam with ctypes
    (dlopen + dlsym on that handle), which LD_PRELOAD does not interpose: a directory on
    LD_LIBRARY_PATH names pam_wrapper as libpam, so python-pam's pam_start is pam_wrapper's,
    which runs the real libpam with the service files of PAM_WRAPPER_SERVICE_DIR.
    """
    wrapper = _find_library("/usr/lib*/**/libpam_wrapper.so*")
    matrix = _find_library("/usr/lib*/**/pam_wrapper/pam_matrix.so")
    libpam = ctypes.util.find_library("pam")
    if not libpam:
        pytest.fail("libpam is not installed")
    (directory / "passdb").write_text(passdb)
    services = directory / "services"
    services.mkdir()
    (services / service).write_text(
        f"auth required {matrix} passdb={directory / 'passdb'}\naccount required {matrix} passdb={directory / 'passdb'}\n"
    )
    shim = directory / "lib"
    shim.mkdir()
    (shim / libpam).symlink_to(wrapper)
    return {
        **os.environ,
        "LD_PRELOAD": wrapper,
        "LD_LIBRARY_PATH": str(shim),
        "PAM_WRAPPER": "1",
        "PAM_WRAPPER_SERVICE_DIR": str(services),
        "PYTHONPATH": os.pathsep.join(filter(None, [os.path.join(REPO, "src"), os.environ.get("PYTHONPATH")])),
    }


def _find_library(pattern: str) -> str:
    found = sorted(glob.glob(pattern))
    if not found:
        pytest.fail(f"{pattern} not found: install libpam-wrapper (scripts/dev test does)")
    return found[0]


# A real session whose client name is hostile. Samba keeps only [A-Za-z0-9.-_] of the NetBIOS
# name a client sends (alpha_strcpy); the name is then changed in smbd's session database to
# one of the same length, so the record stays intact.
NETBIOS_NAME = "HOSTILE12345678"
HOSTILE_NAME = "[b]x[/]\x1b[2J\x07\r\x85"  # 15 bytes in UTF-8, as the name it replaces


def _netbios_name(name: str, suffix: int) -> bytes:
    raw = name.encode("ascii").ljust(15)[:15] + bytes([suffix])
    return bytes([32]) + bytes(b for c in raw for b in (0x41 + (c >> 4), 0x41 + (c & 0x0F))) + b"\x00"


@pytest.fixture
def hostile_session(sandbox: Sandbox, connect, monkeypatch) -> Iterator[Sandbox]:
    import smbprotocol.connection
    from smbprotocol.transport import Tcp

    from serversession.sources.samba import _import_bindings

    class NetbiosTcp(Tcp):
        def connect(self) -> None:
            super().connect()
            body = _netbios_name("*SMBSERVER", 0x20) + _netbios_name(NETBIOS_NAME, 0x00)
            self._sock.sendall(bytes([0x81, 0]) + len(body).to_bytes(2, "big") + body)
            self._sock.settimeout(10)
            assert self._sock.recv(4)[:1] == b"\x82"  # POSITIVE SESSION RESPONSE
            self._sock.settimeout(None)

    monkeypatch.setattr(smbprotocol.connection, "Tcp", NetbiosTcp)
    connect("carol")
    monkeypatch.undo()
    tdb = _import_bindings()[0]
    db = tdb.Tdb(os.path.join(sandbox.directory, "lock", "smbXsrv_session_global.tdb"), 0, 0x1000, os.O_RDWR)
    needle = NETBIOS_NAME.lower().encode() + b"\0"
    hostile_bytes = HOSTILE_NAME.encode() + b"\0"
    assert len(hostile_bytes) == len(needle)
    try:
        (key,) = [k for k in db if needle in (db.get(k) or b"")]
        db.store(key, db.get(key).replace(needle, hostile_bytes), tdb.REPLACE)
    finally:
        db.close()
    yield sandbox


def xml_kept(text: str) -> str:
    """What XML keeps of a text (formats.py): U+FFFD for what XML 1.0 cannot hold."""
    return "".join(
        "\ufffd" if (ord(c) < 0x20 and c not in "\t\n\r") or 0xD800 <= ord(c) <= 0xDFFF or c in "\ufffe\uffff" else c
        for c in text
    )


def compile_package_mof(compiler: object, namespace: str | None = None) -> None:
    """Compile the package's MOF of ``namespace`` (default root/cimv2) with a pywbem MOFCompiler."""
    from serversession.model.schema import NAMESPACE, _mof_sources

    for (space, name), text in _mof_sources().items():
        if space == (namespace or NAMESPACE):
            compiler.compile_string(text, space, filename=name)  # type: ignore[attr-defined]
