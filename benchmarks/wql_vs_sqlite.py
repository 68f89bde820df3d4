"""Benchmark: WQL evaluation against SQLite (in memory) over the same 100,000 rows.

For five representative WHERE clauses, times ``CompiledQuery.run`` over 100,000
Win32_ServerSession instances against ``sqlite3`` running the equivalent SQL over a table of
the same values, in the same run; checks both return the same rows; prints the medians, the
ratios (goal: <= 1.5) and how long parsing and compiling each query takes.

Then hostile LIKE patterns, many wildcards that made a backtracking matcher take exponential
time: over the same rows (60-character Descriptions), and over a few rows whose UserName is
10,000 characters long. SQLite is stopped by a progress handler if it takes more than
--sqlite-limit seconds (its LIKE backtracks too); WQL's has no such limit.

    python benchmarks/wql_vs_sqlite.py [--rows 100000] [--runs 7] [--sqlite-limit 60]
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sqlite3
import statistics
import time

from serversession.model import server_sessions
from serversession.sources.base import SESS_GUEST, SessionRecord
from serversession.wql import compile_query
from serversession.wql.evaluate import _compile as cached_compile

NOW = 1_800_000_000.0
FROM = "SELECT * FROM Win32_ServerSession WHERE "
CLAUSES = [
    ("equality", "UserName = 'USER4242'", "UserName = 'USER4242' COLLATE NOCASE"),
    ("range", "ActiveTime >= 1000 AND ActiveTime < 5000", "ActiveTime >= 1000 AND ActiveTime < 5000"),
    ("LIKE", "ComputerName LIKE 'WS-1%'", "ComputerName LIKE 'WS-1%'"),
    (
        "AND/OR",
        "(ClientType = 'smb3_11' OR ClientType = 'smb2_10') AND ResourcesOpened > 5 OR SessionType = 0",
        "(ClientType = 'smb3_11' COLLATE NOCASE OR ClientType = 'smb2_10' COLLATE NOCASE)"
        " AND ResourcesOpened > 5 OR SessionType = 0",
    ),
    (
        "NOT/NULL",
        "NOT IdleTime < 600 AND ResourcesOpened IS NOT NULL",
        # WQL: a comparison with NULL is false, so NOT of it is true; SQL's NULL would stay NULL
        "NOT (IdleTime IS NOT NULL AND IdleTime < 600) AND ResourcesOpened IS NOT NULL",
    ),
]
HOSTILE = [  # (name, WHERE of both; the patterns use only % and _, which mean the same in SQL)
    ("5 x %_", "Description LIKE '%_%_%_%_%_x'"),
    ("8 x %_", "Description LIKE '%_%_%_%_%_%_%_%_x'"),
    ("10 x %e", "Description LIKE '%e%e%e%e%e%e%e%e%e%e%z'"),
    ("16 x %s", "Description LIKE '%s%s%s%s%s%s%s%s%s%s%s%s%s%s%s%s%'"),
    ("prefix+%_", "Description LIKE 'Session of user user1%_%_%_%_%_%_%_%_%_%_1%'"),
]
LONG = [  # over rows whose UserName is 10,000 characters of 'a'
    ("10 x %a, b", "UserName LIKE '%a%a%a%a%a%a%a%a%a%a%b'"),
    ("10 x %a", "UserName LIKE '%a%a%a%a%a%a%a%a%a%a%'"),
    ("30 x %_, b", "UserName LIKE '" + "%_" * 30 + "b'"),
    ("%a_a_..b%", "UserName LIKE '%" + "a_" * 40 + "b%'"),
]


def make_records(count: int, user: str | None = None) -> list[SessionRecord]:
    rng = random.Random(42)
    dialects = ["SMB3_11", "SMB3_02", "SMB2_10", None]
    records = []
    for n in range(count):
        active = rng.randrange(1, 100_000)
        idle = None if n % 10 == 0 else rng.randrange(0, active + 1)
        records.append(
            SessionRecord(
                session_id=hex(n),
                computer_name=f"ws-{n // 4}",
                user_name=user or f"user{n}",
                established=NOW - active,
                last_request=None if idle is None else NOW - idle,
                opens=None if n % 17 == 0 else rng.randrange(0, 20),
                user_flags=SESS_GUEST if n % 13 == 0 else 0,
                client_type=dialects[n % 4],
                transport="tcp:10.0.0.1:445",
                detail=f"smbd pid {100_000 + n}",  # some 60 characters of Description
            )
        )
    return records


def load_sqlite(instances: list, description: bool = False) -> sqlite3.Connection:
    """A table of the instances' values; with Description only if asked (a wider row slows SQLite a little)."""
    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE TABLE s (id INTEGER PRIMARY KEY, ComputerName TEXT, UserName TEXT, ActiveTime INTEGER,"
        " IdleTime INTEGER, ResourcesOpened INTEGER, ClientType TEXT, SessionType INTEGER"
        + (", Description TEXT)" if description else ")")
    )
    columns = ("ComputerName", "UserName", "ActiveTime", "IdleTime", "ResourcesOpened", "ClientType")
    columns += ("SessionType", "Description") if description else ("SessionType",)
    db.executemany(
        f"INSERT INTO s VALUES (?{', ?' * len(columns)})",
        [(n, *(getattr(i, c) for c in columns)) for n, i in enumerate(instances)],
    )
    return db


def median_time(function, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare(
    instances: list, db: sqlite3.Connection, clauses: list[tuple[str, str, str]], runs: int, limit: float | None
) -> float:
    """Print one line per clause; the worst ratio. SQLite is interrupted after ``limit`` seconds (None: never)."""
    index = {id(i): n for n, i in enumerate(instances)}
    print(f"{'clause':<10} {'matches':>8} {'wql':>10} {'sqlite':>10} {'ratio':>6} {'parse+compile':>14}")
    worst = 0.0
    for name, where, sql_where in clauses:
        wql = FROM + where
        sql = f"SELECT id FROM s WHERE {sql_where}"
        compiled = compile_query(wql)
        ours = {index[id(i)] for i in compiled.run(instances)}
        wql_s = median_time(lambda c=compiled: c.run(instances), runs)
        parse_s = median_time(lambda q=wql: cached_compile.__wrapped__(q), 50)
        deadline = time.monotonic() + (limit or float("inf"))
        if limit is not None:  # not for the common clauses: a handler costs SQLite a little
            db.set_progress_handler(lambda d=deadline: time.monotonic() > d, 10_000)
        try:
            theirs = {row[0] for row in db.execute(sql)}
            sql_s = median_time(lambda q=sql: db.execute(q).fetchall(), runs if time.monotonic() < deadline else 1)
        except sqlite3.OperationalError:  # interrupted by the progress handler
            theirs, sql_s = ours, float("inf")
        finally:
            db.set_progress_handler(None, 0)
        if ours != theirs:
            raise SystemExit(f"{name}: WQL found {len(ours)} rows, SQLite {len(theirs)}; the clauses differ")
        ratio = wql_s / sql_s
        worst = max(worst, ratio)
        sqlite_text = f"{sql_s * 1000:>8.2f}ms" if sql_s != float("inf") else f">{limit or 0:>7.0f} s"
        print(f"{name:<10} {len(ours):>8} {wql_s * 1000:>8.2f}ms {sqlite_text} {ratio:>6.2f} {parse_s * 1e6:>11.0f} us")
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sqlite-limit", type=float, default=60.0, help="seconds SQLite may take per query")
    args = parser.parse_args()

    instances = server_sessions(make_records(args.rows), now=NOW)
    db = load_sqlite(instances)
    print(f"{args.rows} instances; median of {args.runs} runs; sqlite {sqlite3.sqlite_version}")
    worst = compare(instances, db, CLAUSES, args.runs, None)
    print(f"worst ratio {worst:.2f} (goal <= 1.5)")
    print(f"\nhostile LIKE patterns, {args.rows} instances (Description: ~60 characters)")
    db = load_sqlite(instances, description=True)
    compare(instances, db, [(n, w, w) for n, w in HOSTILE], args.runs, args.sqlite_limit)
    records = [dataclasses.replace(r, computer_name=f"ws-{n}") for n, r in enumerate(make_records(10, "a" * 10_000))]
    long_rows = server_sessions(records, now=NOW)
    print("\nhostile LIKE patterns, 10 instances whose UserName is 10,000 characters long")
    compare(long_rows, load_sqlite(long_rows), [(n, w, w) for n, w in LONG], args.runs, args.sqlite_limit)


if __name__ == "__main__":
    main()
