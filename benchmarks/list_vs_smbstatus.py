"""Benchmark: ``serversession list --format json`` against ``smbstatus --json`` on the same server.

Starts the sandbox Samba on 127.0.0.1, opens N real SMB sessions with smbprotocol (many sessions
per connection keeps the client side cheap), checks that both tools see all N, then runs each
command R times, interleaved, and prints the median wall time, the peak RSS of each child and the
ratios ``serversession / smbstatus`` (goal: <= 1.0 for both).

    python benchmarks/list_vs_smbstatus.py [--sessions 1000 5000] [--runs 5] [--per-connection 100]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass

from serversession.sandbox import Sandbox, free_port
from serversession.sources import open_source, read_sessions

USERS = ("alice", "bob", "carol")


@dataclass
class Run:
    seconds: float
    peak_rss_mb: float
    stdout: bytes


def measure(argv: list[str], env: dict[str, str]) -> Run:
    """Run ``argv`` once; wall time and the child's own peak RSS (``wait4``, not the parent's)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            message = err.read().decode(errors="replace")[-500:]
            raise SystemExit(f"{argv[0]} failed ({proc.returncode}): {message}")
        out.seek(0)
        return Run(seconds, usage.ru_maxrss / 1024, out.read())


def open_sessions(sandbox: Sandbox, count: int, per_connection: int) -> list[object]:
    """Open ``count`` authenticated sessions, each with a tree connect to IPC$, over ceil(count / per_connection) connections."""
    from smbprotocol.connection import Connection
    from smbprotocol.session import Session
    from smbprotocol.tree import TreeConnect

    connections = []
    opened = 0
    while opened < count:
        connection = Connection(uuid.uuid4(), "127.0.0.1", sandbox.port, require_signing=True)
        connection.connect(timeout=30)
        connections.append(connection)
        for _ in range(min(per_connection, count - opened)):
            user = USERS[opened % len(USERS)]
            session = Session(connection, user, sandbox.users[user], require_encryption=False)
            session.connect()
            # Like every real client, connect a share: smbd drops connections that have no
            # tree connect after 60 s without requests (IDLE_CLOSED_TIMEOUT).
            TreeConnect(session, "\\\\127.0.0.1\\IPC$").connect()
            opened += 1
        print(f"\r  opened {opened}/{count} sessions", end="", flush=True)
    print()
    return connections


def raise_file_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def bench(sandbox: Sandbox, count: int, runs: int, per_connection: int, smbstatus: str) -> dict[str, float]:
    connections = open_sessions(sandbox, count, per_connection)
    try:
        env = sandbox.environment()
        ours = [sys.executable, "-m", "serversession", "list", "--format", "json", "--smb-conf", sandbox.conf_path]
        theirs = [smbstatus, "--json", "-s", sandbox.conf_path]

        seen = len(read_sessions(open_source("samba", smb_conf=sandbox.conf_path), 60))
        reported = len(json.loads(measure(theirs, env).stdout)["sessions"])
        if seen < count or reported < count:
            raise SystemExit(f"expected {count} sessions; serversession read {seen}, smbstatus {reported}")

        results: dict[str, list[Run]] = {"serversession": [], "smbstatus": []}
        for _ in range(runs):  # interleaved, so drift on the machine hits both alike
            results["serversession"].append(measure(ours, env))
            results["smbstatus"].append(measure(theirs, env))
        instances = json.loads(results["serversession"][-1].stdout)
        if sum(1 for _ in instances) != len({(u, "127.0.0.1") for u in USERS}):
            raise SystemExit(f"unexpected instance count from serversession: {len(instances)}")
    finally:
        for connection in connections:
            connection.disconnect(close=True)

    row = {"sessions": float(count)}
    for name, items in results.items():
        row[f"{name}_s"] = statistics.median(r.seconds for r in items)
        row[f"{name}_mb"] = statistics.median(r.peak_rss_mb for r in items)
    row["time_ratio"] = row["serversession_s"] / row["smbstatus_s"]
    row["memory_ratio"] = row["serversession_mb"] / row["smbstatus_mb"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--per-connection", type=int, default=100)
    args = parser.parse_args()

    smbstatus = shutil.which("smbstatus") or "/usr/bin/smbstatus"
    raise_file_limit(4096)
    directory = tempfile.mkdtemp(prefix="serversession-bench-")
    sandbox = Sandbox(directory, free_port())
    rows = []
    try:
        sandbox.start(users=USERS)
        for count in args.sessions:
            print(f"N = {count}")
            rows.append(bench(sandbox, count, args.runs, args.per_connection, smbstatus))
            time.sleep(1)  # let smbd drop the previous sessions
    finally:
        sandbox.stop()
        shutil.rmtree(directory, ignore_errors=True)

    startup = statistics.median(measure([sys.executable, "-c", "pass"], os.environ.copy()).seconds for _ in range(5))
    print()
    print(f"median of {args.runs} interleaved runs; peak RSS of each child process")
    print(f"python: {sys.executable} {sys.version.split()[0]}, bare start-up {startup:.3f} s (included above)")
    header = (
        f"{'sessions':>8}  {'serversession':>20}  {'smbstatus --json':>20}  {'time ratio':>10}  {'memory ratio':>12}"
    )
    print(header)
    for r in rows:
        print(
            f"{int(r['sessions']):>8}  "
            f"{r['serversession_s']:>8.3f} s {r['serversession_mb']:>7.1f} MB  "
            f"{r['smbstatus_s']:>8.3f} s {r['smbstatus_mb']:>7.1f} MB  "
            f"{r['time_ratio']:>10.2f}  {r['memory_ratio']:>12.2f}"
        )


if __name__ == "__main__":
    main()
