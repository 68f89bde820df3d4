"""Benchmark: ``serversession list CLASS --format json`` for each class of the family against
``smbstatus -S -L --json`` on the same server, and association navigation against snapshot size.

1. Starts the sandbox Samba on 127.0.0.1 with a second share, opens N real SMB sessions with
   smbprotocol (many per connection), each with a tree connect to both shares and F files open
   in each (default 1,000 x 2 x 5: 10,000 open handles), checks that serversession sees them all,
   then runs each command R times, interleaved, and prints the median wall time, each child's
   peak RSS and the ratio against the baseline the issue names, ``smbstatus -S -L --json`` (which
   prints only the tree connects: ``-S`` ends smbstatus after them), and, for the record, against
   ``smbstatus -L -B --json`` (open files and locks). Goal: <= 1.0 in time and memory.
2. Builds snapshots (the sources' own records) of 1,000 and 10,000 sessions in memory and times
   ``ASSOCIATORS OF`` one session in each, the way ``query`` and the API answer it once the
   source is read. Goal: proportional to the answer (the same time for both sizes), not to the
   snapshot.

    python benchmarks/family.py [--sessions 1000] [--files 5] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from list_vs_smbstatus import USERS, compile_package, measure, raise_file_limit
from list_vs_smbstatus import open_sessions as open_some
from serversession.sandbox import Sandbox, free_port

CLASSES = (
    "Win32_ServerSession",
    "Win32_ServerConnection",
    "Win32_Share",
    "Win32_SessionConnection",
    "Win32_ConnectionShare",
    "MSFT_SmbSession",
    "MSFT_SmbOpenFile",
)


class TwoShares(Sandbox):
    """The sandbox with a second share, ``share2``."""

    def _write_files(self, users: tuple[str, ...], admins: tuple[str, ...]) -> None:
        super()._write_files(users, admins)
        os.makedirs(os.path.join(self.directory, "share2"), exist_ok=True)
        os.chmod(os.path.join(self.directory, "share2"), 0o1777)
        with open(self.conf_path, "a", encoding="utf-8") as conf:
            conf.write(f"[share2]\n  path = {self.directory}/share2\n  read only = no\n")


def open_sessions(sandbox: Sandbox, count: int, files: int, per_connection: int) -> list[object]:
    """``count`` sessions, each with both shares connected and ``files`` files open in each."""
    from smbprotocol.open import CreateDisposition, CreateOptions, FileAttributes, ImpersonationLevel, Open, ShareAccess
    from smbprotocol.tree import TreeConnect

    handles = []  # kept open with the connections

    def connect_and_open(session: object, number: int) -> None:
        for share in ("share", "share2"):
            tree = TreeConnect(session, f"\\\\127.0.0.1\\{share}")
            tree.connect()
            for index in range(files):
                handle = Open(tree, f"bench-{number}-{index}.txt")
                handle.create(
                    ImpersonationLevel.Impersonation,
                    0x0013019F,  # read, write and DELETE (which FILE_DELETE_ON_CLOSE needs)
                    FileAttributes.FILE_ATTRIBUTE_NORMAL,
                    ShareAccess.FILE_SHARE_READ | ShareAccess.FILE_SHARE_WRITE | ShareAccess.FILE_SHARE_DELETE,
                    CreateDisposition.FILE_OVERWRITE_IF,
                    CreateOptions.FILE_NON_DIRECTORY_FILE | CreateOptions.FILE_DELETE_ON_CLOSE,
                )
                handles.append(handle)

    return open_some(sandbox, count, per_connection, connect_and_open)


def bench_classes(
    sandbox: Sandbox, count: int, files: int, runs: int, smbstatus: str
) -> list[tuple[str, float, float]]:
    import json

    env = sandbox.environment()
    commands = {
        name: [sys.executable, "-m", "serversession", "list", name, "--format", "json", "--smb-conf", sandbox.conf_path]
        for name in CLASSES
    }
    commands["smbstatus -S -L --json"] = [smbstatus, "-S", "-L", "--json", "-s", sandbox.conf_path]
    commands["smbstatus -L -B --json"] = [smbstatus, "-L", "-B", "--json", "-s", sandbox.conf_path]
    expected = {
        "Win32_ServerSession": len(USERS),
        "MSFT_SmbSession": count,
        "MSFT_SmbOpenFile": count * 2 * files,
        "Win32_ServerConnection": 2 * len(USERS),
        "Win32_SessionConnection": 2 * len(USERS),
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    memory: dict[str, list[float]] = {name: [] for name in commands}
    for number in range(1, runs + 1):
        for name, argv in commands.items():
            run = measure(argv, env, 300)
            times[name].append(run.seconds)
            memory[name].append(run.peak_rss_mb)
            if number == 1 and name in expected:
                found = len(json.loads(run.stdout))
                if found != expected[name]:
                    raise SystemExit(f"{name}: {found} instances, expected {expected[name]}")
        print(f"  run {number}/{runs}", flush=True)
    return [(name, statistics.median(times[name]), statistics.median(memory[name])) for name in commands]


def bench_associators(sizes: tuple[int, ...], repeat: int = 20) -> list[tuple[int, int, float, float]]:
    """(sessions in the snapshot, instances answered, median seconds, seconds to index the
    snapshot once) of ASSOCIATORS OF one session."""
    from serversession.model.providers import build, provided
    from serversession.sources.base import ConnectionRecord, OpenRecord, SessionRecord, ShareRecord, Snapshot
    from serversession.wql import associations
    from serversession.wql.lookup import resolve_path

    rows = []
    for size in sizes:
        now = time.time()
        sessions = tuple(
            SessionRecord(
                f"{n:#x}",
                f"10.0.{n // 250}.{n % 250}",
                f"user{n}",
                now - 60,
                now - 1,
                10,
                0,
                "SMB3_11",
                "tcp",
                wire_id=n,
                dialect="3.1.1",
            )
            for n in range(size)
        )
        connections = tuple(
            ConnectionRecord(f"{n:#x}", share, 2 * n + i, now - 50)
            for n in range(size)
            for i, share in enumerate(("share", "share2"))
        )
        shares = (ShareRecord("share", "/s", 0, None, None), ShareRecord("share2", "/s2", 0, None, None))
        opens = tuple(
            OpenRecord(10 * n + f, f"{n:#x}", 2 * n + f % 2, None, None, None, 0x12019F, 0, False, False, False, True)
            for n in range(size)
            for f in range(10)
        )
        target = resolve_path('Win32_ServerSession.ComputerName="10.0.0.7",UserName="user7"')
        classes = (*associations.association_classes(target.classname), *associations.result_classes(target.classname))
        spent, answer = [], []
        snapshot = Snapshot(sessions, now, connections, shares, opens)
        started = time.perf_counter()
        build((), snapshot, near=target)  # the index, built once per snapshot (the server keeps it)
        indexed = time.perf_counter() - started
        for _ in range(repeat):
            started = time.perf_counter()
            found = build(tuple(c for name in classes for c in provided(name)), snapshot, near=target)
            answer = associations.associators(target, found)
            spent.append(time.perf_counter() - started)
        rows.append((size, len(answer), statistics.median(spent), indexed))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--files", type=int, default=5, help="files open per session and share")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--per-connection", type=int, default=100)
    args = parser.parse_args()

    print("ASSOCIATORS OF one session, snapshot built in memory:")
    rows = bench_associators((1000, 10000))
    for size, answered, seconds, indexed in rows:
        print(
            f"  {size:>6} sessions ({size * 13:,} instances): {answered} answered in {seconds * 1000:.2f} ms "
            f"(indexing the snapshot once: {indexed * 1000:.0f} ms)"
        )
    print(f"  ratio 10,000 / 1,000: {rows[1][2] / rows[0][2]:.2f} (goal: about 1, the answer's size is the same)")

    smbstatus = shutil.which("smbstatus") or "/usr/bin/smbstatus"
    compile_package()
    raise_file_limit(max(4096, args.sessions // args.per_connection + 1024))
    directory = tempfile.mkdtemp(prefix="serversession-bench-family-")
    sandbox = TwoShares(directory, free_port())
    connections: list[object] = []
    try:
        sandbox.start(users=USERS)
        started = time.monotonic()
        connections = open_sessions(sandbox, args.sessions, args.files, args.per_connection)
        print(f"  {args.sessions} sessions opened in {time.monotonic() - started:.1f} s")
        rows = bench_classes(sandbox, args.sessions, args.files, args.runs, smbstatus)
    finally:
        for connection in connections:
            connection.disconnect(close=False)  # type: ignore[attr-defined]
        sandbox.stop()
        shutil.rmtree(directory, ignore_errors=True)

    base = {name: (seconds, mb) for name, seconds, mb in rows}
    s_base, mb_base = base["smbstatus -S -L --json"]
    print()
    print(f"{args.sessions} sessions x 2 shares x {args.files} files; median of {args.runs} interleaved runs")
    print(f"{'command':<28} {'time':>9} {'peak RSS':>10} {'time ratio':>11} {'memory ratio':>13}")
    for name, seconds, mb in rows:
        print(f"{name:<28} {seconds:>8.3f}s {mb:>8.1f}MB {seconds / s_base:>11.2f} {mb / mb_base:>13.2f}")
    print("ratios against smbstatus -S -L --json (goal <= 1.0)")


if __name__ == "__main__":
    main()
