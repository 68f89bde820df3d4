"""Running without root: a clear permission error, and the sandbox under uid_wrapper.

These run the package as user nobody with the distribution's python3 (which has Samba's
bindings; the source and sandbox layers need nothing else; the CLI needs click, which is copied
beside the package), via util-linux's setpriv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import textwrap
from collections.abc import Iterator

import click
import pytest

from conftest import REPO
from serversession.sandbox import free_port

pytestmark = pytest.mark.samba

SYSTEM_PYTHON = "/usr/bin/python3"
NOBODY = 65534


@pytest.fixture(scope="module")
def package_copy() -> Iterator[str]:
    """The package, and click for its CLI, copied where user nobody can read them (the clone
    and its virtual environment may live in root's home; click is pure Python)."""
    directory = tempfile.mkdtemp(prefix="serversession-src-")
    os.chmod(directory, 0o755)
    shutil.copytree(os.path.join(REPO, "src", "serversession"), os.path.join(directory, "serversession"))
    shutil.copytree(os.path.dirname(click.__file__), os.path.join(directory, "click"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def as_nobody(
    package: str, code: str, timeout: float = 60, args: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    if os.geteuid() != 0:
        pytest.fail("these tests switch to user nobody and must run as root (the CI does)")
    if not (shutil.which("setpriv") and os.path.exists(SYSTEM_PYTHON)):
        pytest.fail("setpriv (util-linux) and /usr/bin/python3 are needed")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/tmp", "PYTHONPATH": package}
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", SYSTEM_PYTHON, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def test_reading_roots_smbd_as_another_user_says_run_as_root(sandbox, package_copy):
    result = as_nobody(
        package_copy,
        textwrap.dedent(f"""
        from serversession.errors import SourceUnavailable
        from serversession.sources import open_source, read_sessions
        try:
            read_sessions(open_source("samba", smb_conf={sandbox.conf_path!r}))
        except SourceUnavailable as exc:
            print(exc)
        """),
    )
    assert result.returncode == 0, result.stderr
    assert "permission denied" in result.stdout and "run as root" in result.stdout


def test_sandbox_runs_without_root_under_uid_wrapper(package_copy):
    directory = tempfile.mkdtemp(prefix="serversession-nonroot-")
    os.chown(directory, NOBODY, NOBODY)
    port = free_port()
    try:
        result = as_nobody(
            package_copy,
            textwrap.dedent(f"""
            import subprocess
            from serversession.sandbox import Sandbox
            from serversession.sources import open_source, read_sessions
            box = Sandbox({directory!r}, {port})
            box.start(users=("dave",))
            try:
                client = subprocess.Popen(
                    ["smbclient", "//127.0.0.1/share", "-p", "{port}", "-U", "dave%" + box.users["dave"]],
                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                import time
                for _ in range(100):
                    records = read_sessions(open_source("samba", smb_conf=box.conf_path))
                    if records:
                        break
                    time.sleep(0.1)
                client.kill()
                print([(r.user_name, r.computer_name) for r in records])
            finally:
                box.stop()
            """),
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "[('dave', '127.0.0.1')]"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_unreadable_config_says_permission_denied(package_copy):
    directory = tempfile.mkdtemp(prefix="serversession-conf-")
    try:
        os.chmod(directory, 0o755)
        conf = os.path.join(directory, "smb.conf")
        with open(conf, "w") as handle:
            handle.write("[global]\n")
        os.chmod(conf, 0o600)
        private = os.path.join(directory, "private")
        os.makedirs(os.path.join(private, "sub"))
        os.chmod(private, 0o700)
        code = textwrap.dedent("""
            import sys
            from serversession.cli import run
            sys.argv = ["serversession", "list", "--smb-conf", sys.argv[1]]
            run()
        """)
        for path in (conf, os.path.join(private, "sub", "smb.conf")):  # file mode; a closed parent directory
            result = as_nobody(package_copy, code, args=(path,))
            assert result.returncode == 1, result.stderr
            assert "permission denied" in result.stderr and path in result.stderr
            assert "Traceback" not in result.stderr
    finally:
        shutil.rmtree(directory, ignore_errors=True)
