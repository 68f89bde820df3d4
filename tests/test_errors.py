"""Every error path of ``list``: one clear line on stderr, the right exit code, never a traceback."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import threading
import time

import pytest

from conftest import run_cli
from serversession.errors import InvalidInput, SourceTimeout, SourceUnavailable
from serversession.sandbox import Sandbox
from serversession.sources import call_with_timeout, open_source, read_sessions

pytestmark = pytest.mark.samba


def assert_clean_failure(result: subprocess.CompletedProcess[str], code: int, *phrases: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) >= 1
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


def write_conf(directory, lock: str, pid: str) -> str:
    path = os.path.join(directory, "smb.conf")
    with open(path, "w") as handle:
        handle.write(f"[global]\n  lock directory = {lock}\n  pid directory = {pid}\n  state directory = {lock}\n")
    return path


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# --- configuration ------------------------------------------------------------------------


def test_missing_config(tmp_path) -> None:
    result = run_cli("list", "--smb-conf", str(tmp_path / "nope.conf"))
    assert_clean_failure(result, 1, "smb.conf not found", "nope.conf")


def test_config_is_a_directory(tmp_path) -> None:
    assert_clean_failure(run_cli("list", "--smb-conf", str(tmp_path)), 1, "is a directory")


def test_config_cannot_be_parsed(tmp_path) -> None:
    bad = tmp_path / "bad.conf"
    bad.write_text("[global\nthis is not samba\n")
    assert_clean_failure(run_cli("list", "--smb-conf", str(bad)), 1, "cannot be parsed", "testparm")


def test_config_from_environment(tmp_path) -> None:
    result = run_cli("list", env={"SERVERSESSION_SMB_CONF": str(tmp_path / "from-env.conf")})
    assert_clean_failure(result, 1, "from-env.conf")
    explicit = run_cli("list", "--smb-conf", str(tmp_path / "flag.conf"), env={"SERVERSESSION_SMB_CONF": "/x"})
    assert_clean_failure(explicit, 1, "flag.conf")  # the option wins over the environment


# --- smbd not running ---------------------------------------------------------------------


def test_smbd_not_running_no_pidfile(tmp_path) -> None:
    conf = write_conf(tmp_path, str(tmp_path), str(tmp_path))
    assert_clean_failure(run_cli("list", "--smb-conf", conf), 1, "smbd is not running", "smbd.pid")


def test_smbd_not_running_stale_pidfile(tmp_path) -> None:
    conf = write_conf(tmp_path, str(tmp_path), str(tmp_path))
    (tmp_path / "smbd.pid").write_text(f"{dead_pid()}\n")
    assert_clean_failure(run_cli("list", "--smb-conf", conf), 1, "smbd is not running", "is gone")
    (tmp_path / "smbd.pid").write_text(f"{os.getpid()}\n")  # alive, but not smbd
    assert_clean_failure(run_cli("list", "--smb-conf", conf), 1, "is gone")
    (tmp_path / "smbd.pid").write_text("")
    assert_clean_failure(run_cli("list", "--smb-conf", conf), 1, "is empty")


# --- a source that answers garbage --------------------------------------------------------


@pytest.fixture
def fake_lock_dir(tmp_path, sandbox: Sandbox):
    """A lock directory of our own making, next to the sandbox's real, running smbd."""
    lock = tmp_path / "lock"
    lock.mkdir()
    conf = write_conf(tmp_path, str(lock), os.path.join(sandbox.directory, "pid"))
    return lock, conf


def samba_tdb():
    """Samba's tdb module, found the way the source finds it (it lives with the system Python)."""
    from serversession.sources.samba import _import_bindings

    return _import_bindings()[0]


def make_tdb(path, records: dict[bytes, bytes]) -> None:
    tdb = samba_tdb()

    db = tdb.Tdb(str(path), 0, tdb.DEFAULT, os.O_CREAT | os.O_RDWR)
    for key, value in records.items():
        db.store(key, value)
    db.close()


def test_missing_tdb(fake_lock_dir) -> None:
    _, conf = fake_lock_dir
    assert_clean_failure(run_cli("list", "--smb-conf", conf), 1, "smbXsrv_session_global.tdb does not exist")


def test_file_that_is_not_a_tdb(fake_lock_dir) -> None:
    lock, conf = fake_lock_dir
    (lock / "smbXsrv_session_global.tdb").write_bytes(os.urandom(4096))
    assert_clean_failure(run_cli("list", "--smb-conf", conf), 1, "is not a TDB file")


def test_garbage_records(fake_lock_dir) -> None:
    lock, conf = fake_lock_dir
    make_tdb(lock / "smbXsrv_session_global.tdb", {b"k%d" % i: os.urandom(200) for i in range(5)})
    make_tdb(lock / "smbXsrv_open_global.tdb", {})
    assert_clean_failure(run_cli("list", "--smb-conf", conf), 1, "5 of 5 session records", "could not be decoded")


def test_some_garbage_records_warn_and_list_the_rest(fake_lock_dir, sandbox: Sandbox, connect) -> None:
    tdb = samba_tdb()

    lock, conf = fake_lock_dir
    connect("carol")
    real = tdb.Tdb(os.path.join(sandbox.directory, "lock", "smbXsrv_session_global.tdb"), 0, 0x1000, os.O_RDWR)
    good = {key: real.get(key) for key in real}
    real.close()
    assert good
    make_tdb(lock / "smbXsrv_session_global.tdb", {**good, b"junk": b"\0\0\0\0" + os.urandom(100)})
    make_tdb(lock / "smbXsrv_open_global.tdb", {b"junk": os.urandom(64)})
    result = run_cli("list", "--format", "csv", "--smb-conf", conf)
    assert result.returncode == 0, result.stderr
    [row] = [r for r in csv.DictReader(io.StringIO(result.stdout)) if r["UserName"] == "carol"]
    assert row["ResourcesOpened"] == ""  # unknown, not a made-up 0
    assert "warning: " in result.stderr and f"1 of {len(good) + 1} session records" in result.stderr
    assert "1 of 1 open-file records could not be decoded (ResourcesOpened unknown)" in result.stderr


# --- time-outs ----------------------------------------------------------------------------


class FakeHangingSource:
    """A named fake: a source that never answers (a real one would be stuck in the kernel)."""

    description = "fake hanging source"

    def __init__(self) -> None:
        self.release = threading.Event()

    def sessions(self, timeout: float = 30) -> list:
        self.release.wait(60)  # ignores its time limit, as a broken source would
        return []


def test_hanging_source_times_out() -> None:
    source = FakeHangingSource()
    start = time.monotonic()
    with pytest.raises(SourceTimeout, match=r"fake hanging source did not answer within 0\.5 s"):
        read_sessions(source, timeout=0.5)
    assert time.monotonic() - start < 5  # the guard thread's grace is 1 s
    source.release.set()


def test_errors_of_the_worker_reach_the_caller() -> None:
    def fail() -> None:
        raise SourceUnavailable("boom")

    with pytest.raises(SourceUnavailable, match="boom"):
        call_with_timeout(fail, 5, "x")


def test_locked_database_times_out(sandbox: Sandbox) -> None:
    """A real hang: another process holds smbd's session database locked."""
    tdb = samba_tdb()

    path = os.path.join(sandbox.directory, "lock", "smbXsrv_session_global.tdb")
    locker = tdb.Tdb(path, 0, 0x1000 | tdb.INCOMPATIBLE_HASH, os.O_RDWR)
    locker.lock_all()
    try:
        start = time.monotonic()
        result = run_cli("list", "--timeout", "1", "--smb-conf", sandbox.conf_path, timeout=30)
        elapsed = time.monotonic() - start
    finally:
        locker.unlock_all()
        locker.close()
    assert_clean_failure(result, 1, "did not answer within 1 s")
    assert elapsed < 15


# --- invalid input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("list", "--source", "nosuch"),
        ("list", "--format", "yaml"),
        ("list", "--timeout", "0"),
        ("list", "--timeout", "soon"),
        ("nosuchcommand",),
        ("sandbox", "start", "--port", "70000"),
    ],
)
def test_invalid_input_exits_2(args) -> None:
    result = run_cli(*args)
    assert_clean_failure(result, 2)


def test_unknown_source_in_the_api() -> None:
    with pytest.raises(InvalidInput, match="unknown source 'nosuch'"):
        open_source("nosuch")


def test_sandbox_status_of_nothing(tmp_path) -> None:
    assert_clean_failure(run_cli("sandbox", "status", "--dir", str(tmp_path)), 1, "no sandbox in")


# --- Samba's Python bindings absent -------------------------------------------------------


def test_samba_bindings_absent(tmp_path) -> None:
    shadow = tmp_path / "shadow"
    (shadow / "samba").mkdir(parents=True)
    for module in (shadow / "tdb.py", shadow / "samba" / "__init__.py"):
        module.write_text("raise ImportError('hidden for this test')\n")
    conf = write_conf(tmp_path, str(tmp_path), str(tmp_path))
    result = run_cli("list", "--smb-conf", conf, env={"PYTHONPATH": str(shadow)})
    assert_clean_failure(result, 1, "Samba's Python bindings", "apt-get install samba python3-samba")


def test_samba_not_installed_for_sandbox(tmp_path, monkeypatch) -> None:
    """Samba cannot be uninstalled here: the search paths are pointed at an empty directory."""
    from serversession import sandbox as sandbox_module

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sandbox_module, "SBIN_DIRS", (str(tmp_path),))
    monkeypatch.setattr(sandbox_module, "LIBRARY_DIRS", (str(tmp_path),))
    with pytest.raises(SourceUnavailable) as caught:
        Sandbox(str(tmp_path / "box"), 4445).check_requirements()
    message = str(caught.value)
    assert "apt-get install samba" in message and "libnss-wrapper" in message
