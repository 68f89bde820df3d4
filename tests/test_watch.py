"""`serversession watch` and serversession.watch() against a real smbd: real sessions opened and
closed while the watch runs (DESIGN.md 2b)."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

import pytest

import serversession
from conftest import REPO, run_cli, wait_for
from serversession.demo import Client

pytestmark = pytest.mark.samba

WITHIN = 1
CAROL = "TargetInstance ISA 'Win32_ServerSession' AND TargetInstance.UserName = 'carol'"


class Watch:
    """`serversession watch` as a user runs it, its output lines collected as they come."""

    def __init__(self, sandbox, query: str, *args: str, conf: str | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": os.path.join(REPO, "src"), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serversession", "watch", query, "--smb-conf", conf or sandbox.conf_path, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[tuple[float, str]] = queue.Queue()
        self.errors: list[str] = []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines.put), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.errors.append), daemon=True).start()

    @staticmethod
    def _read(stream, put) -> None:
        for line in stream:
            put((time.monotonic(), line) if put.__name__ == "put" else line)

    def next(self, timeout: float) -> tuple[float, dict]:
        """(when it came, the event) of the next line; fails after ``timeout`` seconds."""
        try:
            when, line = self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no event within {timeout} s; stderr: {''.join(self.errors)[-2000:]}")
        return when, json.loads(line)

    def until(self, predicate, timeout: float) -> tuple[float, dict]:
        deadline = time.monotonic() + timeout
        while True:
            when, event = self.next(max(0.01, deadline - time.monotonic()))
            if predicate(event):
                return when, event

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        time.sleep(0.1)
        return code, "".join(self.errors)


@pytest.fixture
def watches(sandbox) -> Iterator[list[Watch]]:
    started: list[Watch] = []
    yield started
    for watch in started:
        watch.stop()


def started(watches: list[Watch], sandbox, query: str, *args: str, conf: str | None = None) -> Watch:
    watch = Watch(sandbox, query, "--format", "json", *args, conf=conf)
    watches.append(watch)
    time.sleep(2.5)  # its first poll, the baseline, is taken: what exists now makes no event
    assert watch.proc.poll() is None, watch.errors
    return watch


def test_logon_file_opens_and_logoff_of_a_real_client(sandbox, watches) -> None:
    every = started(watches, sandbox, f"SELECT * FROM __InstanceOperationEvent WITHIN {WITHIN} WHERE {CAROL}")
    opened = started(
        watches,
        sandbox,
        f"SELECT * FROM __InstanceModificationEvent WITHIN {WITHIN} WHERE {CAROL} "
        "AND TargetInstance.ResourcesOpened <> PreviousInstance.ResourcesOpened",
    )
    logged_on = time.monotonic()
    client = Client(sandbox.port, "carol", sandbox.users["carol"])
    try:
        when, event = every.next(timeout=WITHIN + 5)
        assert event["__CLASS"] == "__InstanceCreationEvent", event
        assert when - logged_on <= WITHIN + 1  # within WITHIN + 1 s of the logon
        target = event["TargetInstance"]
        assert target["UserName"] == "carol" and target["ComputerName"] == "127.0.0.1"
        assert target["__RELPATH"] == 'Win32_ServerSession.ComputerName="127.0.0.1",UserName="carol"'
        assert abs(event["TIME_CREATED"] / 1e7 - 11644473600 - time.time()) < 30  # 100 ns since 1601
        time.sleep(WITHIN + 0.5)  # the other watch has seen carol with no file open: a modification is next
        client.open_files(["watched-1.txt", "watched-2.txt"])
        _, change = opened.next(timeout=WITHIN + 5)
        assert change["__CLASS"] == "__InstanceModificationEvent"
        assert change["PreviousInstance"]["ResourcesOpened"] == 0
        assert change["TargetInstance"]["ResourcesOpened"] in (1, 2)  # both opens may fall in one poll
        if change["TargetInstance"]["ResourcesOpened"] == 1:
            _, change = opened.next(timeout=WITHIN + 5)
        assert change["TargetInstance"]["ResourcesOpened"] == 2
    finally:
        client.close()
    gone = time.monotonic()
    when, event = every.until(lambda e: e["__CLASS"] != "__InstanceModificationEvent", timeout=WITHIN + 5)
    assert event["__CLASS"] == "__InstanceDeletionEvent" and event["TargetInstance"]["UserName"] == "carol"
    # as the last poll saw it: 2, or 0 when a poll fell while smbd was tearing down (files first)
    assert event["TargetInstance"]["ResourcesOpened"] in (0, 2)
    assert when - gone <= WITHIN + 1
    for watch in (every, opened):
        code, errors = watch.stop()
        assert code == 0 and "Traceback" not in errors and "interrupted" not in errors  # Ctrl-C: a clean end


def test_count_ends_the_watch_and_table_lines_say_what_happened(sandbox, watches) -> None:
    query = f"SELECT * FROM __InstanceCreationEvent WITHIN {WITHIN} WHERE {CAROL}"
    env = {**os.environ, "PYTHONPATH": os.path.join(REPO, "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "serversession", "watch", query, "--count", "1", "--smb-conf", sandbox.conf_path],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        time.sleep(2.5)
        client = Client(sandbox.port, "carol", sandbox.users["carol"])
        try:
            out, err = proc.communicate(timeout=WITHIN + 10)
        finally:
            client.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    (line,) = out.splitlines()  # one event, then the end
    assert "created" in line and 'UserName="carol"' in line


def test_the_api_yields_events_of_several_classes(sandbox) -> None:
    query = (
        f"SELECT * FROM __InstanceCreationEvent WITHIN {WITHIN} WHERE TargetInstance ISA 'CIM_LogicalElement' "
        "AND TargetInstance.Name LIKE 'carol@%'"  # a property of the ISA class (the subclasses' are not)
    )
    with pytest.raises(serversession.InvalidInput):  # invalid: at once, before any read
        serversession.watch(query + " AND TargetInstance.Nope = 1", smb_conf=sandbox.conf_path)
    events = serversession.watch(query, smb_conf=sandbox.conf_path)
    found: list = []
    done = threading.Event()

    def consume() -> None:
        for event in events:
            found.append(event)
            if {e.TargetInstance.classname for e in found} >= {"Win32_ServerSession", "Win32_ServerConnection"}:
                break
        done.set()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    time.sleep(2.5)
    client = Client(sandbox.port, "carol", sandbox.users["carol"])
    try:
        client.open_files(["api-watch.txt"])
        assert done.wait(WITHIN + 10), [e.TargetInstance.path for e in found]
    finally:
        client.close()
        events.close()
    session = next(e for e in found if e.TargetInstance.classname == "Win32_ServerSession")
    connection = next(e for e in found if e.TargetInstance.classname == "Win32_ServerConnection")
    assert session.classname == "__InstanceCreationEvent" and session.PreviousInstance is None
    assert (connection.TargetInstance.UserName, connection.TargetInstance.ShareName) == ("carol", "share")


def test_a_source_that_fails_during_the_watch_is_a_warning_and_the_watch_goes_on(sandbox, watches) -> None:
    directory = tempfile.mkdtemp(prefix="serversession-watch-")
    try:
        conf = os.path.join(directory, "smb.conf")
        shutil.copy(sandbox.conf_path, conf)
        watch = started(
            watches, sandbox, f"SELECT * FROM __InstanceCreationEvent WITHIN {WITHIN} WHERE {CAROL}", conf=conf
        )
        os.rename(conf, conf + ".away")
        wait_for(lambda: "the watch goes on" in "".join(watch.errors), timeout=WITHIN + 10)
        os.rename(conf + ".away", conf)
        assert watch.proc.poll() is None
        client = Client(sandbox.port, "carol", sandbox.users["carol"])
        try:
            _, event = watch.next(timeout=WITHIN + 5)
            assert event["TargetInstance"]["UserName"] == "carol"
        finally:
            client.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_watch_errors_are_one_line_and_the_right_exit_code(sandbox) -> None:
    no_within = run_cli(
        "watch", "SELECT * FROM __InstanceCreationEvent WHERE " + CAROL, "--smb-conf", sandbox.conf_path
    )
    assert no_within.returncode == 2 and "0x80042002" in no_within.stderr and "WITHIN" in no_within.stderr
    missing = run_cli("watch", f"SELECT * FROM __InstanceCreationEvent WITHIN 1 WHERE {CAROL}", "--smb-conf",
                      "/nonexistent/smb.conf", timeout=30)  # fmt: skip
    assert missing.returncode == 1 and "/nonexistent/smb.conf" in missing.stderr
    as_query = run_cli("query", f"SELECT * FROM __InstanceCreationEvent WITHIN 1 WHERE {CAROL}")
    assert as_query.returncode == 1 and "serversession watch" in as_query.stderr
    grouped = run_cli("watch", f"SELECT * FROM __InstanceCreationEvent WITHIN 1 WHERE {CAROL} GROUP WITHIN 10")
    assert grouped.returncode == 1 and "aggregate" in grouped.stderr
    for result in (no_within, missing, as_query, grouped):
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
