"""``serversession top`` as a person uses it: in a terminal (tmux: send-keys, capture-pane), with
real SMB clients of the sandbox Samba; and with stdout a pipe."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import HOSTILE_NAME, run_cli
from serversession.formats import visible
from serversession.sandbox import Sandbox

# Not marked samba: what it tests (the front end) does not change with the Samba release, and the
# matrix's chroots carry only what the Samba-dependent tests need (as for test_server.py).

ROW = re.compile(r"^[+-]?\s*127\.0\.0\.1\s+(\S+)\s", re.MULTILINE)  # a session's row: its user
EXIT = re.compile(r"^exit=(\d+)$", re.MULTILINE)  # what the command line typed prints when top ends
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  ", re.MULTILINE)  # the plain mode's timestamp line


def _sgr(code: str) -> re.Pattern[str]:
    """An SGR escape (as capture-pane -e writes them) that holds ``code`` among its parameters."""
    return re.compile(rf"\x1b\[(?:\d+;)*{code}(?:;\d+)*m")


BOLD, DIM, RED, GREEN = _sgr("1"), _sgr("2"), _sgr("31"), _sgr("32")


class Pane:
    """A detached tmux session of its own (its own server socket) running an interactive bash."""

    def __init__(self, width: int = 160, height: int = 40) -> None:
        tmux = shutil.which("tmux")
        if tmux is None:
            pytest.fail("tmux is not installed; run the README's test command, which installs it")
        # a server of its own, its socket in a directory of its own (kill-server leaves the socket)
        self.directory = tempfile.mkdtemp(prefix="serversession-top-")
        self.base = [tmux, "-S", os.path.join(self.directory, "socket"), "-f", "/dev/null", "-u"]
        env = {k: v for k, v in os.environ.items() if k not in ("SERVERSESSION_SMB_CONF", "TMUX", "COLUMNS", "LINES")}
        env.update(HISTFILE="/dev/null", LC_ALL="C.UTF-8")
        try:  # the server started by this command inherits env, and so does the shell in its pane
            size = ["-x", str(width), "-y", str(height)]
            subprocess.run(
                [*self.base, "new-session", "-d", "-s", "top", *size, "bash --norc --noprofile"],
                env=env,
                check=True,
                timeout=10,
            )
            self.wait(lambda screen: screen.rstrip().endswith(("$", "#")), what="the shell's prompt")
        except BaseException:
            self.close()
            raise

    def tmux(self, *args: str) -> str:
        return subprocess.run([*self.base, *args], capture_output=True, text=True, check=True, timeout=10).stdout

    def type(self, line: str) -> None:
        """Type a command line and press Enter."""
        self.tmux("send-keys", "-t", "top", "-l", line)
        self.tmux("send-keys", "-t", "top", "Enter")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "top", *keys)

    def screen(self, escapes: bool = False) -> str:
        return self.tmux("capture-pane", "-p", "-t", "top", *(["-e"] if escapes else []))

    def option(self, name: str) -> str:
        return self.tmux("display-message", "-p", "-t", "top", f"#{{{name}}}").strip()

    def resize(self, width: int, height: int) -> None:
        self.tmux("resize-window", "-t", "top", "-x", str(width), "-y", str(height))

    def wait(self, condition: Callable[[str], object], what: str, timeout: float = 20.0, escapes: bool = False) -> str:
        """The screen once ``condition(screen)`` holds; the test fails, showing the screen, if it
        does not within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen(escapes)
            if condition(screen):
                return screen
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: not on the screen within {timeout} s; the screen:\n{screen}")
            time.sleep(0.05)

    def close(self) -> None:
        try:  # the pane's processes get SIGHUP: top, if still running, restores the terminal and ends
            subprocess.run([*self.base, "kill-server"], capture_output=True, timeout=10, check=False)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def pane() -> Iterator[Pane]:
    terminal = Pane()
    try:
        yield terminal
    finally:
        terminal.close()


def top(conf: str, *options: str) -> str:
    """The command line of ``top`` as typed at the prompt, then its exit status."""
    command = [sys.executable, "-m", "serversession", "top", "--smb-conf", conf, *options]
    return f"{shlex.join(command)}; echo exit=$?"


def order(screen: str, users: set[str]) -> list[str]:
    """The users of ``users`` whose rows are on the screen, top to bottom."""
    return [m.group(1) for m in ROW.finditer(screen) if m.group(1) in users]


def row(screen: str, user: str) -> str | None:
    """The line (escapes and all) of ``user``'s session, if it is on the screen."""
    plain = re.compile(r"\x1b\[[0-9;]*m")
    for line in screen.splitlines():
        found = ROW.match(plain.sub("", line))
        if found and found.group(1) == user:
            return line
    return None


def quit_top(pane: Pane, key: str = "q") -> str:
    pane.keys(key)
    screen = pane.wait(EXIT.search, what="top's exit status")
    return EXIT.findall(screen)[-1]


def assert_terminal_restored(pane: Pane) -> None:
    assert pane.option("alternate_on") == "0", "the pane is still in the alternate screen"
    assert pane.option("cursor_flag") == "1", "the cursor is still hidden"
    pane.type("stty -a; echo stty-done")
    screen = pane.wait(lambda s: re.search(r"^stty-done$", s, re.MULTILINE), "stty's output")
    settings = re.split(r"[\s;]+", screen.split("stty -a; echo stty-done")[-1])
    for flag in ("icanon", "echo", "isig"):
        assert flag in settings and f"-{flag}" not in settings, screen


def test_sessions_appear_new_ones_highlighted_ended_ones_shown_once(sandbox: Sandbox, connect, pane: Pane) -> None:
    alice = connect("alice")
    alice.open_files(["top-alice.txt"])
    pane.type(top(sandbox.conf_path, "--interval", "1"))
    screen = pane.wait(lambda s: row(s, "alice"), "alice's session")
    assert screen.splitlines()[0].startswith("serversession top")
    assert re.search(r"127\.0\.0\.1\s+alice\s+SMB3_11\s+1\s+\d\d:\d\d:\d\d\s+\d\d:\d\d:\d\d\s+Other\s+OK", screen)
    assert "sort: idle, least idle first" in screen

    bob = connect("bob")  # a new session: bold green, marked +, for one refresh
    screen = pane.wait(lambda s: row(s, "bob") and GREEN.search(row(s, "bob") or ""), "bob highlighted", escapes=True)
    line = row(screen, "bob") or ""
    assert BOLD.search(line) and re.sub(r"\x1b\[[0-9;]*m", "", line).startswith("+"), repr(line)
    assert not GREEN.search(row(screen, "alice") or ""), "a session that was there before is not new"
    pane.wait(lambda s: row(s, "bob") and not GREEN.search(row(s, "bob") or ""), "bob, no longer new", escapes=True)

    bob.close()  # ended: shown once more, dim red, marked ended; then gone
    screen = pane.wait(lambda s: "ended" in (row(s, "bob") or ""), "bob's session ended", escapes=True)
    line = row(screen, "bob") or ""
    assert RED.search(line) and DIM.search(line), repr(line)
    assert "ended" not in (row(screen, "alice") or "")
    screen = pane.wait(lambda s: not row(s, "bob"), "bob's session gone")
    assert row(screen, "alice"), "alice's session stays"
    assert quit_top(pane) == "0"


def test_keys_sort_and_reverse_at_once(sandbox: Sandbox, connect, pane: Pane) -> None:
    for user, files in (("alice", 3), ("bob", 1), ("carol", 2)):
        connect(user).open_files([f"top-{user}-{i}.txt" for i in range(files)])
    users = {"alice", "bob", "carol"}
    # an hour between reads: what changes on the screen changes because of a key
    pane.type(top(sandbox.conf_path, "--interval", "3600"))
    pane.wait(lambda s: len(order(s, users)) == 3, "the three sessions")
    expected = [
        ("o", "sort: opens, most open files first", ["alice", "carol", "bob"]),
        ("r", "sort: opens, fewest open files first", ["bob", "carol", "alice"]),
        ("u", "sort: user, A to Z", ["alice", "bob", "carol"]),
        ("r", "sort: user, Z to A", ["carol", "bob", "alice"]),
        ("c", "sort: computer, A to Z", None),
        ("a", "sort: active, newest first", None),
    ]
    for key, header, rows in expected:
        pane.keys(key)
        screen = pane.wait(lambda s, header=header: header in s, f"{header!r} after {key}", timeout=5)
        if rows is not None:
            assert order(screen, users) == rows, screen
    assert quit_top(pane) == "0"


@pytest.mark.parametrize("how", ["q", "C-c", "SIGTERM", "--count"])
def test_quitting_restores_the_terminal(sandbox: Sandbox, connect, pane: Pane, how: str) -> None:
    connect("alice")
    pane.type(top(sandbox.conf_path, "--interval", "1", *(["--count", "3"] if how == "--count" else [])))
    pane.wait(lambda s: row(s, "alice"), "alice's session")
    assert pane.option("alternate_on") == "1", "top runs in the alternate screen"
    if how == "SIGTERM":
        shell = int(pane.option("pane_pid"))
        children = Path(f"/proc/{shell}/task/{shell}/children").read_text().split()
        assert len(children) == 1, children
        os.kill(int(children[0]), signal.SIGTERM)
        screen = pane.wait(EXIT.search, "top's exit status")
        assert EXIT.findall(screen) == ["143"] and "serversession: terminated (SIGTERM)" in screen, screen
    elif how == "--count":  # three reads, two intervals: ends by itself
        screen = pane.wait(EXIT.search, "top's exit status after three refreshes", timeout=15)
        assert EXIT.findall(screen) == ["0"], screen
    else:
        assert quit_top(pane, how) == "0"
    assert_terminal_restored(pane)


def test_hostile_names_and_a_resized_window(hostile_session: Sandbox, connect, pane: Pane) -> None:
    connect("alice")
    connect("bob")
    escaped = visible(HOSTILE_NAME)
    pane.type(top(hostile_session.conf_path, "--interval", "3600"))
    screen = pane.wait(lambda s: escaped in s and row(s, "alice") and row(s, "bob"), "the three sessions")
    assert screen.splitlines()[0].startswith("serversession top"), "the screen was not cleared by a client's name"
    # smaller than the sessions need: cut, with "... N more", each line within the width, at once
    pane.resize(60, 5)
    screen = pane.wait(lambda s: re.search(r"^… \d+ more", s, re.M), "the cut rows' line", timeout=5)
    lines = screen.rstrip("\n").split("\n")
    assert len(lines) <= 5 and all(len(line) <= 60 for line in lines), screen
    assert int(re.findall(r"^… (\d+) more", screen, re.M)[0]) >= 2
    assert len(ROW.findall(screen)) == 1, screen
    pane.resize(160, 40)
    screen = pane.wait(lambda s: "more" not in s and row(s, "alice") and row(s, "bob"), "every row again", timeout=5)
    assert escaped in screen
    assert quit_top(pane) == "0"


def test_a_failing_read_is_shown_and_the_view_goes_on(sandbox: Sandbox, connect, pane: Pane, tmp_path: Path) -> None:
    conf = tmp_path / "smb.conf"
    shutil.copy(sandbox.conf_path, conf)
    connect("alice")
    pane.type(top(str(conf), "--interval", "1"))
    pane.wait(lambda s: row(s, "alice"), "alice's session")
    conf.rename(tmp_path / "away.conf")
    screen = pane.wait(lambda s: "read failed" in s, "the failed read")
    assert "smb.conf not found" in screen and row(screen, "alice"), "the last table stays"
    (tmp_path / "away.conf").rename(conf)
    screen = pane.wait(lambda s: "read failed" not in s, "the view after the source is back")
    assert row(screen, "alice")
    assert quit_top(pane) == "0"


def test_not_a_terminal_prints_plain_tables(sandbox: Sandbox, connect) -> None:
    connect("alice").open_files(["top-plain.txt"])
    done = run_cli("top", "--smb-conf", sandbox.conf_path, "--count", "2", "--interval", "0.5")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert len(STAMP.findall(done.stdout)) == 2, done.stdout
    assert len(re.findall(r"127\.0\.0\.1\s+alice\s+SMB3_11\s+1\s", done.stdout)) == 2, done.stdout
    assert "\x1b" not in done.stdout
    assert all(len(line) <= 200 for line in done.stdout.splitlines())


def test_a_bad_smb_conf_is_one_line_and_the_terminal_untouched(pane: Pane, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.conf")
    done = run_cli("top", "--smb-conf", missing)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [f"serversession: error: smb.conf not found: {missing}"], done.stderr
    pane.type(top(missing))
    screen = pane.wait(EXIT.search, "top's exit status", timeout=30)
    assert EXIT.findall(screen) == ["1"]
    assert screen.count("serversession: error:") == 1, screen
    assert_terminal_restored(pane)
