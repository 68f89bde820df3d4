"""Benchmark: ``serversession list --format json`` against ``smbstatus --json`` on the same server.

Starts the sandbox Samba on 127.0.0.1, opens N real SMB sessions with smbprotocol (each with a
tree connect to IPC$, many sessions per connection keeps the client side cheap), checks that both
tools see all N, then runs each command R times, interleaved, and prints the median wall time,
the peak RSS of each child and the ratios ``serversession / smbstatus`` (goal: <= 1.0 for both).
The sizes are measured in increasing order on one server: each adds sessions to those already
open (about 250 a second here, one smbd process per 100). The package's bytecode is compiled
first, as installing it does.

Each command is started by a small launcher process (``python -I -S``, about 5 MB), which times it
and reads its peak RSS with ``wait4``. Linux carries a process's peak RSS over ``exec`` from the
process it was forked from, so a child of this script (hundreds of MB once it holds thousands of
sessions) would report at least this script's size. A command that runs longer than
``--time-limit`` is killed and reported as ``> limit`` (smbstatus grows worse than linearly with
sessions); one whose address space would pass ``--memory-limit`` fails and is reported as such,
so that smbstatus cannot exhaust the machine's memory. Once smbstatus has given no answer at a
size (too late, or out of memory), its remaining runs at that size are skipped.

    python benchmarks/list_vs_smbstatus.py [--sessions 1000 5000] [--runs 5] [--per-connection 100]
        [--time-limit 120] [--memory-limit MB]
    python benchmarks/list_vs_smbstatus.py --sessions 1000 5000 20000   # about 4 minutes
"""

from __future__ import annotations

import argparse
import compileall
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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from serversession.sandbox import Sandbox, free_port
from serversession.sources import open_source, read_sessions

USERS = ("alice", "bob", "carol")
DEFAULT_SESSIONS = (1000, 5000)

# Runs one command: times it, enforces the limits, and prints "seconds maxrss_kb late exit_code".
# Kept to builtin modules so that its own RSS, which its child starts from, stays small.
LAUNCHER = r"""
import os, resource, signal, sys, time
time_limit, memory_limit, out, err = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
argv = sys.argv[5:]
out_fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
err_fd = os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
late = []
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        if memory_limit:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
def kill(*_):
    late.append(True)
    os.kill(pid, signal.SIGKILL)
if time_limit > 0:
    signal.signal(signal.SIGALRM, kill)
    signal.setitimer(signal.ITIMER_REAL, time_limit)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
signal.setitimer(signal.ITIMER_REAL, 0)
print(seconds, usage.ru_maxrss, int(bool(late)), os.waitstatus_to_exitcode(status))
"""


@dataclass
class Run:
    seconds: float
    peak_rss_mb: float
    stdout: bytes
    late: bool = False  # killed at the time limit: ``seconds`` and ``peak_rss_mb`` are lower bounds
    failed: str | None = None  # why a run that was allowed to fail gave no answer (e.g. out of memory)
    stderr: str = ""  # its last lines


def measure(
    argv: list[str],
    env: dict[str, str],
    time_limit: float | None = None,
    memory_limit_mb: float | None = None,
    allow_failure: bool = False,
) -> Run:
    """Run ``argv`` once through the launcher: wall time and the child's own peak RSS (``wait4``).

    A run killed at ``time_limit`` comes back with ``late`` set; any other failure ends the
    benchmark, unless ``allow_failure``: then the run comes back with ``failed`` set.
    """
    with tempfile.TemporaryDirectory(prefix="serversession-bench-run-") as directory:
        out, err = os.path.join(directory, "stdout"), os.path.join(directory, "stderr")
        limits = [str(time_limit or 0), str(int((memory_limit_mb or 0) * 2**20))]
        answer = subprocess.run(
            [sys.executable, "-I", "-S", "-c", LAUNCHER, *limits, out, err, *argv],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            seconds, rss_kb, late, code = answer.stdout.split()
        except ValueError:
            raise SystemExit(f"the launcher failed: {answer.stderr.strip()[-500:]}") from None
        with open(err, "rb") as handle:  # its last lines (smbstatus repeats one per failed record first)
            message = " / ".join(handle.read().decode(errors="replace").strip().splitlines()[-2:])[-300:]
        failed = None
        if int(code) != 0 and late == "0":
            limit = f" (address space limited to {memory_limit_mb:,.0f} MB)" if memory_limit_mb else ""
            failed = f"{os.path.basename(argv[0])} failed ({code}){limit}: {message}"
            if not allow_failure:
                raise SystemExit(failed)
        with open(out, "rb") as handle:
            stdout = handle.read()
    return Run(float(seconds), int(rss_kb) / 1024, stdout, late == "1", failed, message)


def compile_package() -> None:
    """Write the package's bytecode, as installing it does. An editable checkout gets it on first
    import, except where PYTHONDONTWRITEBYTECODE is set (as in some containers): then every run
    would compile the modules it imports again (about 20 ms), and that is not what users run."""
    import serversession

    compileall.compile_dir(os.path.dirname(os.path.abspath(serversession.__file__)), quiet=1)


def connect_ipc(session: Any, number: int) -> None:
    """Like every real client, connect a share: smbd drops connections that have no tree
    connect after 60 s without requests (IDLE_CLOSED_TIMEOUT)."""
    from smbprotocol.tree import TreeConnect

    TreeConnect(session, "\\\\127.0.0.1\\IPC$").connect()


def open_sessions(
    sandbox: Sandbox, count: int, per_connection: int, each: Callable[[Any, int], None] = connect_ipc
) -> list[object]:
    """Open ``count`` authenticated sessions over ceil(count / per_connection) connections, calling
    ``each(session, number)`` on each (by default: a tree connect to IPC$)."""
    from smbprotocol.connection import Connection
    from smbprotocol.session import Session

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
            each(session, opened)
            opened += 1
        print(f"\r  opened {opened}/{count} sessions", end="", flush=True)
    print()
    return connections


def raise_file_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            try:  # root may raise the hard limit too
                resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
                return
            except (ValueError, OSError):
                pass
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        print(f"warning: open files limited to {soft}, {wanted} wanted", file=sys.stderr)


def available_memory_mb() -> float:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 8192.0


@dataclass
class Limits:
    time: float
    memory_mb: float


def bench(sandbox: Sandbox, count: int, runs: int, smbstatus: str, limits: Limits) -> dict[str, object]:
    """Measure both tools on the ``count`` sessions that are open now."""
    env = sandbox.environment()
    ours = [sys.executable, "-m", "serversession", "list", "--format", "json", "--smb-conf", sandbox.conf_path]
    theirs = [smbstatus, "--json", "-s", sandbox.conf_path]

    seen = len(read_sessions(open_source("samba", smb_conf=sandbox.conf_path), 60))  # also warms the page cache
    if seen < count:
        raise SystemExit(f"expected {count} sessions; serversession read {seen}")

    results: dict[str, list[Run]] = {"serversession": [], "smbstatus": []}
    for number in range(1, runs + 1):  # interleaved, so drift on the machine hits both alike
        results["serversession"].append(measure(ours, env, limits.time))
        if not results["smbstatus"] or _answered(results["smbstatus"][-1]):  # else it would fail again
            run = measure(theirs, env, limits.time, limits.memory_mb, allow_failure=True)
            results["smbstatus"].append(run)
            if _answered(run):
                try:
                    reported = len(json.loads(run.stdout)["sessions"])
                except (ValueError, KeyError, TypeError):  # smbstatus prints nothing when talloc fails
                    run.failed = f"smbstatus gave no JSON ({len(run.stdout)} bytes): {run.stderr or 'no message'}"
                else:
                    if reported < count:
                        raise SystemExit(f"expected {count} sessions; smbstatus reported {reported}")
            if not _answered(run):
                print(f"  smbstatus: {run.failed or f'killed at the time limit, {limits.time:g} s'}", flush=True)
        print(f"  run {number}/{runs}", flush=True)
    if not all(_answered(r) for r in results["serversession"]):
        raise SystemExit(f"serversession took longer than {limits.time:g} s")
    instances = json.loads(results["serversession"][-1].stdout)
    if len(instances) != len({(u, "127.0.0.1") for u in USERS}):
        raise SystemExit(f"unexpected instance count from serversession: {len(instances)}")

    row: dict[str, object] = {"sessions": count}
    for name, items in results.items():
        done = [r for r in items if _answered(r)]
        if done:
            row[f"{name}_s"] = statistics.median(r.seconds for r in done)
            row[f"{name}_mb"] = statistics.median(r.peak_rss_mb for r in done)
        else:  # lower bounds: killed at the time limit, or out of memory before it answered
            row[f"{name}_s"] = max(r.seconds for r in items)
            row[f"{name}_mb"] = max(r.peak_rss_mb for r in items)
            row[f"{name}_unfinished"] = "late" if items[-1].late else "out of memory"
    return row


def _answered(run: Run) -> bool:
    return not run.late and run.failed is None


def _cells(row: dict[str, object], name: str, limits: Limits) -> tuple[str, str]:
    seconds, mb = row[f"{name}_s"], row[f"{name}_mb"]
    unfinished = row.get(f"{name}_unfinished")
    if unfinished == "late":
        return f"> {limits.time:g} s", f">= {mb:,.0f} MB"
    if unfinished:  # its peak is at the limit; it had run this long without an answer
        return f"> {seconds:.1f} s*", f"> {limits.memory_mb:,.0f} MB*"
    return f"{seconds:.3f} s", f"{mb:,.1f} MB"


def _ratio(row: dict[str, object], unit: str, limits: Limits) -> str:
    ours, theirs = row[f"serversession_{unit}"], row[f"smbstatus_{unit}"]
    unfinished = row.get("smbstatus_unfinished")
    if unfinished and unit == "s" and unfinished == "late":
        theirs = limits.time
    elif unfinished and unit == "mb" and unfinished != "late":
        theirs = limits.memory_mb
    ratio = ours / theirs  # type: ignore[operator]
    return f"< {ratio:.3f}" if unfinished else f"{ratio:.2f}"


def print_table(rows: list[dict[str, object]], limits: Limits) -> None:
    header = (
        f"{'sessions':>8}  {'serversession':>22}  {'smbstatus --json':>26}  {'time ratio':>10}  {'memory ratio':>12}"
    )
    print(header)
    for r in rows:
        ours_s, ours_mb = _cells(r, "serversession", limits)
        theirs_s, theirs_mb = _cells(r, "smbstatus", limits)
        print(
            f"{r['sessions']:>8,}  {ours_s:>10} {ours_mb:>11}  {theirs_s:>10} {theirs_mb:>15}  "
            f"{_ratio(r, 's', limits):>10}  {_ratio(r, 'mb', limits):>12}"
        )
    if any(r.get("smbstatus_unfinished") not in (None, "late") for r in rows):
        print(
            "* smbstatus reached the address-space limit (--memory-limit) and ended without an answer "
            "after the time shown; both are lower bounds"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sessions",
        type=int,
        nargs="+",
        default=list(DEFAULT_SESSIONS),
        help="session counts, measured in increasing order (default: %(default)s, under a minute; "
        "20000 adds about 3 minutes)",
    )
    parser.add_argument("--runs", type=int, default=5, help="interleaved runs of each tool (default: %(default)s)")
    parser.add_argument("--per-connection", type=int, default=100, help="sessions per TCP connection")
    parser.add_argument(
        "--time-limit",
        type=float,
        default=120.0,
        help="seconds a run may take; a longer one is killed and shown as '> limit' (default: %(default)s)",
    )
    parser.add_argument(
        "--memory-limit",
        type=float,
        default=round(available_memory_mb() * 0.6),
        metavar="MB",
        help="address space smbstatus may use (default: 60%% of the available memory, %(default)s)",
    )
    args = parser.parse_args()
    counts = sorted(set(args.sessions))
    limits = Limits(args.time_limit, args.memory_limit)

    smbstatus = shutil.which("smbstatus") or "/usr/bin/smbstatus"
    compile_package()
    # One socket per connection here; smbd inherits the limit and forks one process per connection.
    raise_file_limit(max(4096, -(-counts[-1] // args.per_connection) + 1024))
    directory = tempfile.mkdtemp(prefix="serversession-bench-")
    sandbox = Sandbox(directory, free_port())
    rows = []
    connections: list[object] = []
    try:
        sandbox.start(users=USERS)
        opened = 0
        for count in counts:
            print(f"N = {count}")
            started = time.monotonic()
            connections += open_sessions(sandbox, count - opened, args.per_connection)
            print(f"  {count - opened} sessions opened in {time.monotonic() - started:.1f} s")
            opened = count
            rows.append(bench(sandbox, count, args.runs, smbstatus, limits))
    finally:
        for connection in connections:  # smbd ends the sessions of a closed connection itself
            connection.disconnect(close=False)  # type: ignore[attr-defined]
        sandbox.stop()
        shutil.rmtree(directory, ignore_errors=True)

    env = os.environ.copy()
    startup = statistics.median(measure([sys.executable, "-c", "pass"], env).seconds for _ in range(5))
    floor = measure(["/bin/true"], env).peak_rss_mb
    print()
    print(f"median of {args.runs} interleaved runs; peak RSS of each child process (a no-op shows {floor:.1f} MB)")
    print(f"python: {sys.executable} {sys.version.split()[0]}, bare start-up {startup:.3f} s (included above)")
    print(f"limits: {limits.time:g} s per run; smbstatus address space {limits.memory_mb:,.0f} MB")
    print_table(rows, limits)


if __name__ == "__main__":
    main()
