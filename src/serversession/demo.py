"""``serversession demo``: a sandbox Samba, real SMB client sessions, and ``list`` over them."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from .errors import ServerSessionError, SourceUnavailable
from .sandbox import Sandbox, free_port


def _smbprotocol() -> Any:
    try:
        import smbprotocol.connection
        import smbprotocol.open
        import smbprotocol.session
        import smbprotocol.tree
    except ImportError:
        raise SourceUnavailable("the demo's SMB clients need smbprotocol: pip install 'serversession[demo]'") from None
    return smbprotocol


class Client:
    """One SMB connection with one session, held open until closed (smbprotocol)."""

    def __init__(self, port: int, user: str, password: str, guest: bool = False) -> None:
        smb = _smbprotocol()
        self.connection = smb.connection.Connection(uuid.uuid4(), "127.0.0.1", port, require_signing=not guest)
        self.connection.connect(timeout=10)
        self.session = smb.session.Session(self.connection, user, password, require_encryption=False)
        self.session.connect()
        self.tree: Any = None
        self.files: list[Any] = []

    def open_files(self, names: list[str]) -> None:
        """Create and keep open each of ``names`` in the share."""
        smb = _smbprotocol()
        o = smb.open
        if self.tree is None:
            self.tree = smb.tree.TreeConnect(self.session, "\\\\127.0.0.1\\share")
            self.tree.connect()
        for name in names:
            handle = o.Open(self.tree, name)
            handle.create(
                o.ImpersonationLevel.Impersonation,
                o.FilePipePrinterAccessMask.GENERIC_READ | o.FilePipePrinterAccessMask.GENERIC_WRITE,
                o.FileAttributes.FILE_ATTRIBUTE_NORMAL,
                o.ShareAccess.FILE_SHARE_READ | o.ShareAccess.FILE_SHARE_WRITE,
                o.CreateDisposition.FILE_OVERWRITE_IF,
                o.CreateOptions.FILE_NON_DIRECTORY_FILE,
            )
            self.files.append(handle)

    def touch(self) -> None:
        """One request in the session (reads the first open file's attributes)."""
        self.files[0].write(b"x", 0)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.disconnect(close=True)


def run_demo(hold: float, fmt: str, echo: Callable[[str], Any], encoding: str = "utf-8") -> None:
    """Start a sandbox in a temporary directory, open sessions, print ``list``, clean up.

    ``encoding``: the output's (for the table). Clean-up runs however the demo ends: an error,
    Ctrl-C, or SIGTERM (cli.py raises it as an exception).
    """
    from .api import sessions
    from .formats import render
    from .model import SERVER_SESSION, load_schema

    _smbprotocol()
    directory = tempfile.mkdtemp(prefix="serversession-demo-")
    sandbox = Sandbox(directory, free_port())
    clients: list[Client] = []
    anonymous: subprocess.Popen[bytes] | None = None
    stop = threading.Event()
    try:
        echo(f"starting a sandbox Samba on 127.0.0.1:{sandbox.port} in {directory}")
        sandbox.start()
        alice = Client(sandbox.port, "alice", sandbox.users["alice"])
        clients.append(alice)
        alice.open_files(["report.txt", "notes.txt"])
        clients.append(Client(sandbox.port, "bob", sandbox.users["bob"]))
        clients.append(Client(sandbox.port, "visitor", "any-password", guest=True))
        smbclient = shutil.which("smbclient")
        if smbclient:  # an anonymous null session; smbprotocol cannot make one
            anonymous = subprocess.Popen(
                [smbclient, "-N", "-U%", "-p", str(sandbox.port), "//127.0.0.1/IPC$"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        echo(
            "sessions: alice (2 files open, busy), bob (idle), a guest, an anonymous user"
            f"; waiting {hold:g} s so idle times differ"
        )

        def keep_busy() -> None:
            while not stop.wait(0.5):
                alice.touch()

        busy = threading.Thread(target=keep_busy, daemon=True)
        busy.start()
        time.sleep(hold)
        echo("")
        echo(f"$ serversession list --smb-conf {sandbox.conf_path}")
        instances = sessions(source="samba", smb_conf=sandbox.conf_path)
        echo(render(instances, load_schema().get(SERVER_SESSION), fmt, encoding=encoding).rstrip("\n"))
    except ServerSessionError:
        raise
    except Exception as exc:  # smbprotocol and OS errors from the clients
        raise ServerSessionError(f"demo failed: {type(exc).__name__}: {exc}") from exc
    finally:
        stop.set()
        for client in clients:
            client.close()
        if anonymous is not None:
            anonymous.kill()
            anonymous.wait()
        sandbox.stop()
        shutil.rmtree(directory, ignore_errors=True)
        echo("sandbox stopped and removed")
