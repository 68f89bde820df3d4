"""Benchmark: ``serversession list --source srvsvc`` against Samba's ``rpcclient``, and many hosts at once.

1. One sandbox Samba with N real sessions (smbprotocol, each with a tree connect to IPC$):
   ``serversession list --source srvsvc --format json`` against ``rpcclient -c netsessenum``
   (Samba's own MS-SRVS client; level 1, the level Samba answers) on the same server, R runs
   each, interleaved; median wall time. Goal: time ratio <= 1.5.
2. H sandboxes with M sessions each: one ``list`` of all H hosts against ``list`` of each host
   alone, after one unmeasured query that starts each Samba's RPC server (samba-dcerpcd).
   Goal: the H-host query at most 2x the slowest single host.

    python benchmarks/remote.py [--sessions 1000] [--hosts 8] [--per-host 125] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time

from list_vs_smbstatus import USERS, Run, measure, open_sessions, raise_file_limit
from serversession.sandbox import Sandbox, free_port
from serversession.sources import open_source, read_sessions

ADMIN_PASSWORD = "Bench-Adm1n-pw"


def start_sandboxes(count: int) -> list[Sandbox]:
    boxes = []
    for _ in range(count):
        box = Sandbox(tempfile.mkdtemp(prefix="serversession-bench-"), free_port(), users={"admin": ADMIN_PASSWORD})
        box.start(users=USERS)
        boxes.append(box)
    return boxes


def ours(*boxes: Sandbox) -> list[str]:
    hosts = [arg for box in boxes for arg in ("--host", f"127.0.0.1:{box.port}")]
    return [sys.executable, "-m", "serversession", "list", "--source", "srvsvc", *hosts, "--user", "admin"]


def median(runs: list[Run]) -> float:
    return statistics.median(r.seconds for r in runs)


def against_rpcclient(box: Sandbox, count: int, runs: int, per_connection: int, env: dict[str, str]) -> None:
    rpcclient = shutil.which("rpcclient") or "/usr/bin/rpcclient"
    auth = os.path.join(box.directory, "admin.auth")
    with open(auth, "w") as handle:
        handle.write(f"username = admin\npassword = {ADMIN_PASSWORD}\n")
    theirs = [rpcclient, "-p", str(box.port), "-A", auth, "127.0.0.1", "-c", "netsessenum"]
    mine = [*ours(box), "--format", "json"]
    connections = open_sessions(box, count, per_connection)
    try:
        source = open_source("srvsvc", hosts=[f"127.0.0.1:{box.port}"], user="admin", password=ADMIN_PASSWORD)
        seen = len(read_sessions(source, 60))
        answer = re.search(r"Received (\d+) entries", measure(theirs, env).stdout.decode())
        received = int(answer.group(1)) if answer else 0
        if seen < count or received < count:
            raise SystemExit(f"expected {count} sessions; serversession read {seen}, rpcclient {received}")
        results: dict[str, list[Run]] = {"serversession": [], "rpcclient": []}
        for _ in range(runs):  # interleaved, so drift on the machine hits both alike
            results["serversession"].append(measure(mine, env))
            results["rpcclient"].append(measure(theirs, env))
    finally:
        for connection in connections:
            connection.disconnect(close=True)
    our_s, their_s = median(results["serversession"]), median(results["rpcclient"])
    print(f"\n1. one host, {count} sessions ({seen} read over MS-SRVS); median of {runs} interleaved runs")
    print(f"   serversession list --source srvsvc --format json  {our_s:7.3f} s")
    print(f"   rpcclient -c netsessenum                          {their_s:7.3f} s")
    print(f"   time ratio {our_s / their_s:.2f} (goal <= 1.5)")


def many_hosts(boxes: list[Sandbox], per_host: int, runs: int, per_connection: int, env: dict[str, str]) -> None:
    connections = [c for box in boxes for c in open_sessions(box, per_host, per_connection)]
    try:
        measure([*ours(*boxes), "--format", "json"], env)  # starts every samba-dcerpcd
        together: list[Run] = []
        alone: dict[int, list[Run]] = {box.port: [] for box in boxes}
        for _ in range(runs):
            together.append(measure([*ours(*boxes), "--format", "json"], env))
            for box in boxes:
                alone[box.port].append(measure([*ours(box), "--format", "json"], env))
    finally:
        for connection in connections:
            connection.disconnect(close=True)
    all_s = median(together)
    singles = [median(runs_of) for runs_of in alone.values()]
    print(f"\n2. {len(boxes)} hosts with {per_host} sessions each; median of {runs} runs")
    print(f"   all {len(boxes)} hosts in one list       {all_s:7.3f} s")
    print(f"   each host alone: slowest {max(singles):.3f} s, fastest {min(singles):.3f} s, sum {sum(singles):.3f} s")
    print(
        f"   together / slowest single {all_s / max(singles):.2f} (goal <= 2), together / sum {all_s / sum(singles):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=8)
    parser.add_argument("--per-host", type=int, default=125)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--per-connection", type=int, default=100)
    args = parser.parse_args()

    raise_file_limit(8192)
    env = {**os.environ, "SERVERSESSION_PASSWORD": ADMIN_PASSWORD}
    boxes = start_sandboxes(args.hosts)
    try:
        against_rpcclient(boxes[0], args.sessions, args.runs, args.per_connection, env)
        time.sleep(1)  # let smbd drop the sessions of part 1
        many_hosts(boxes, args.per_host, args.runs, args.per_connection, env)
    finally:
        for box in boxes:
            box.stop()
            shutil.rmtree(box.directory, ignore_errors=True)
    startup = statistics.median(measure([sys.executable, "-c", "pass"], os.environ.copy()).seconds for _ in range(5))
    print(f"\npython: {sys.executable} {sys.version.split()[0]}, bare start-up {startup:.3f} s (included above)")


if __name__ == "__main__":
    main()
