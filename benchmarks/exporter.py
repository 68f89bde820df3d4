"""Benchmark: a scrape of ``serversession exporter`` against ``smbstatus --json`` on the same server.

Starts the sandbox Samba on 127.0.0.1 and opens N real SMB sessions (list_vs_smbstatus.py's
helpers: each with a tree connect to IPC$, 100 per connection). For each size a fresh exporter
(``--max-age 0``: every scrape reads the source: sessions, tree connects, open handles and
shares) is started and scraped R times, interleaved with R runs of ``smbstatus --json`` (through
list_vs_smbstatus.py's launcher: wall time and peak RSS, time and memory limits). Printed: the
median scrape time (the whole HTTP request, read included), the exporter's peak RSS over its
life at that size (VmHWM), smbstatus's, and the ratios (goal: <= 0.5 of smbstatus).

Then the cost of 10 concurrent scrapers: 10 scrapes at once, with ``--max-age 0`` and with the
default 10 s, against one scrape alone: wall time until all have answered, the exporter's CPU
seconds and the reads made (``serversession_reads_total``).

    python benchmarks/exporter.py [--sessions 1000 5000 20000] [--runs 5] [--time-limit 120]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from list_vs_smbstatus import (
    Limits,
    Run,
    available_memory_mb,
    compile_package,
    measure,
    open_sessions,
    raise_file_limit,
)
from serversession.sandbox import Sandbox, free_port

DEFAULT_SESSIONS = (1000, 5000, 20000)
SCRAPERS = 10


@dataclass
class Exporter:
    proc: subprocess.Popen[bytes]
    port: int

    def scrape(self) -> tuple[float, bytes]:
        """Seconds for one whole GET /metrics, and the body."""
        started = time.perf_counter()
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        connection.request("GET", "/metrics")
        answer = connection.getresponse()
        body = answer.read()
        connection.close()
        if answer.status != 200:
            raise SystemExit(f"the exporter answered {answer.status}: {body[:200]!r}")
        return time.perf_counter() - started, body

    def status(self, field: str) -> float:
        """A line of /proc/PID/status in MB (VmHWM: peak RSS since exec; VmRSS: now)."""
        with open(f"/proc/{self.proc.pid}/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        raise SystemExit(f"no {field} for the exporter")

    def cpu(self) -> float:
        """CPU seconds (user + system) the exporter and its waited-for children used so far."""
        with open(f"/proc/{self.proc.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_exporter(sandbox: Sandbox, max_age: float) -> Exporter:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "serversession",
        "exporter",
        "--smb-conf",
        sandbox.conf_path,
        "--port",
        str(port),
        "--max-age",
        str(max_age),
        "--timeout",
        "300",
    ]
    proc = subprocess.Popen(argv, env=sandbox.environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    exporter = Exporter(proc, port)
    deadline = time.monotonic() + 60
    while True:
        try:
            exporter.scrape()  # also the first read: Samba's bindings and the source's modules loaded
            return exporter
        except (OSError, http.client.HTTPException):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the exporter did not start") from None
            time.sleep(0.2)


def reads(body: bytes) -> float:
    for line in body.decode().splitlines():
        if line.startswith("serversession_reads_total "):
            return float(line.split()[1])
    raise SystemExit("no serversession_reads_total in the scrape")


def sessions_in(body: bytes) -> float:
    return sum(
        float(line.split()[-1]) for line in body.decode().splitlines() if line.startswith("serversession_sessions{")
    )


def bench(sandbox: Sandbox, count: int, runs: int, smbstatus: str, limits: Limits) -> dict[str, object]:
    exporter = start_exporter(sandbox, 0)
    try:
        seen = sessions_in(exporter.scrape()[1])
        if seen < count:
            raise SystemExit(f"expected {count} sessions; the exporter saw {seen:g}")
        ours: list[float] = []
        theirs: list[Run] = []
        for number in range(1, runs + 1):  # interleaved
            ours.append(exporter.scrape()[0])
            if not theirs or _answered(theirs[-1]):
                theirs.append(
                    measure(
                        [smbstatus, "--json", "-s", sandbox.conf_path],
                        sandbox.environment(),
                        limits.time,
                        limits.memory_mb,
                        allow_failure=True,
                    )
                )
            print(f"  run {number}/{runs}", flush=True)
        row: dict[str, object] = {
            "sessions": count,
            "ours_s": statistics.median(ours),
            "ours_mb": exporter.status("VmHWM"),
            "ours_rss_mb": exporter.status("VmRSS"),
        }
        done = [r for r in theirs if _answered(r)]
        row["theirs_s"] = statistics.median(r.seconds for r in done) if done else max(r.seconds for r in theirs)
        row["theirs_mb"] = (
            statistics.median(r.peak_rss_mb for r in done) if done else max(r.peak_rss_mb for r in theirs)
        )
        row["theirs_done"] = bool(done)
        row["concurrent"] = concurrency(exporter)
    finally:
        exporter.stop()
    relaxed = start_exporter(sandbox, 10)  # the default --max-age
    try:
        relaxed.scrape()
        row["concurrent_cached"] = concurrency(relaxed, fresh=False)
    finally:
        relaxed.stop()
    return row


def concurrency(exporter: Exporter, fresh: bool = True) -> dict[str, float]:
    """One scrape alone, then SCRAPERS at once: wall time, exporter CPU seconds, reads made."""
    before = reads(exporter.scrape()[1])
    cpu = exporter.cpu()
    started = time.perf_counter()
    alone_body = exporter.scrape()[1]
    alone = time.perf_counter() - started
    alone_cpu, alone_reads = exporter.cpu() - cpu, reads(alone_body) - before
    cpu = exporter.cpu()
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(SCRAPERS) as pool:
        bodies = [body for _, body in pool.map(lambda _: exporter.scrape(), range(SCRAPERS))]
    wall = time.perf_counter() - started
    return {
        "alone_s": alone,
        "alone_cpu": alone_cpu,
        "alone_reads": alone_reads,
        "all_s": wall,
        "all_cpu": exporter.cpu() - cpu,
        "all_reads": max(reads(b) for b in bodies) - reads(alone_body),
    }


def _answered(run: Run) -> bool:
    return not run.late and run.failed is None


def print_tables(rows: list[dict[str, object]], limits: Limits) -> None:
    print(
        f"{'sessions':>8}  {'scrape':>9} {'exporter RSS':>13}  {'smbstatus --json':>24}  {'time ratio':>10}  "
        f"{'memory ratio':>12}"
    )
    for r in rows:
        done = r["theirs_done"]
        theirs_s = f"{r['theirs_s']:.3f} s" if done else f"> {r['theirs_s']:.1f} s"
        theirs_mb = f"{r['theirs_mb']:,.0f} MB" if done else f">= {r['theirs_mb']:,.0f} MB"
        bound = "" if done else "< "
        print(
            f"{r['sessions']:>8,}  {r['ours_s']:>7.3f} s {r['ours_mb']:>10,.1f} MB  {theirs_s:>12} {theirs_mb:>11}  "
            f"{bound + format(r['ours_s'] / r['theirs_s'], '.3f'):>10}  "  # type: ignore[operator]
            f"{bound + format(r['ours_mb'] / r['theirs_mb'], '.3f'):>12}"  # type: ignore[operator]
        )
    print()
    print(f"{SCRAPERS} concurrent scrapers against one alone: wall time, exporter CPU seconds, reads made")
    for r in rows:
        for key, title in (("concurrent", "--max-age 0"), ("concurrent_cached", "--max-age 10")):
            c: dict[str, float] = r[key]  # type: ignore[assignment]
            print(
                f"{r['sessions']:>8,}  {title:<12}  one: {c['alone_s']:.3f} s, {c['alone_cpu']:.2f} CPU s, "
                f"{c['alone_reads']:g} read   {SCRAPERS} at once: {c['all_s']:.3f} s ({c['all_s'] / c['alone_s']:.2f}x), "
                f"{c['all_cpu']:.2f} CPU s, {c['all_reads']:g} read(s)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=list(DEFAULT_SESSIONS))
    parser.add_argument("--runs", type=int, default=5, help="interleaved scrapes and smbstatus runs per size")
    parser.add_argument("--per-connection", type=int, default=100, help="sessions per TCP connection")
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds a smbstatus run may take")
    parser.add_argument(
        "--memory-limit",
        type=float,
        default=round(available_memory_mb() * 0.6),
        metavar="MB",
        help="address space smbstatus may use (default: 60%% of the available memory)",
    )
    args = parser.parse_args()
    counts = sorted(set(args.sessions))
    limits = Limits(args.time_limit, args.memory_limit)
    smbstatus = shutil.which("smbstatus") or "/usr/bin/smbstatus"
    compile_package()
    raise_file_limit(max(4096, -(-counts[-1] // args.per_connection) + 1024))
    directory = tempfile.mkdtemp(prefix="serversession-bench-exporter-")
    sandbox = Sandbox(directory, free_port())
    rows = []
    connections: list[object] = []
    try:
        sandbox.start(users=("alice", "bob", "carol"))
        opened = 0
        for count in counts:
            print(f"N = {count}")
            connections += open_sessions(sandbox, count - opened, args.per_connection)
            opened = count
            rows.append(bench(sandbox, count, args.runs, smbstatus, limits))
    finally:
        for connection in connections:
            connection.disconnect(close=False)  # type: ignore[attr-defined]
        sandbox.stop()
        shutil.rmtree(directory, ignore_errors=True)
    print()
    print(f"median of {args.runs} scrapes (--max-age 0: each one reads) and of smbstatus runs, interleaved;")
    print("exporter RSS: its peak over its life at that size (VmHWM); smbstatus: its peak RSS")
    print(f"python {sys.version.split()[0]}; smbstatus limits: {limits.time:g} s, {limits.memory_mb:,.0f} MB")
    print_tables(rows, limits)


if __name__ == "__main__":
    main()
