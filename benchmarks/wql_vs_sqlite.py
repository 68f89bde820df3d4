"""Benchmark: WQL evaluation against SQLite (in memory) over the same 100,000 rows.

For five representative WHERE clauses, times ``CompiledQuery.run`` over 100,000
Win32_ServerSession instances against ``sqlite3`` running the equivalent SQL over a table of
the same values, in the same run; checks both return the same rows; prints the medians, the
ratios (goal: <= 1.5) and how long parsing and compiling each query takes.

    python benchmarks/wql_vs_sqlite.py [--rows 100000] [--runs 7]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import time

from serversession.model import server_sessions
from serversession.sources.base import SESS_GUEST, SessionRecord
from serversession.wql import compile_query
from serversession.wql.evaluate import compile_query as cached_compile

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


def make_records(count: int) -> list[SessionRecord]:
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
                user_name=f"user{n}",
                established=NOW - active,
                last_request=None if idle is None else NOW - idle,
                opens=None if n % 17 == 0 else rng.randrange(0, 20),
                user_flags=SESS_GUEST if n % 13 == 0 else 0,
                client_type=dialects[n % 4],
                transport="tcp:10.0.0.1:445",
            )
        )
    return records


def load_sqlite(instances: list) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE TABLE s (id INTEGER PRIMARY KEY, ComputerName TEXT, UserName TEXT, ActiveTime INTEGER,"
        " IdleTime INTEGER, ResourcesOpened INTEGER, ClientType TEXT, SessionType INTEGER)"
    )
    db.executemany(
        "INSERT INTO s VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (n, i.ComputerName, i.UserName, i.ActiveTime, i.IdleTime, i.ResourcesOpened, i.ClientType, i.SessionType)
            for n, i in enumerate(instances)
        ],
    )
    return db


def median_time(function, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()

    instances = server_sessions(make_records(args.rows), now=NOW)
    index = {id(i): n for n, i in enumerate(instances)}
    db = load_sqlite(instances)
    print(f"{args.rows} instances; median of {args.runs} runs; sqlite {sqlite3.sqlite_version}")
    print(f"{'clause':<10} {'matches':>8} {'wql':>10} {'sqlite':>10} {'ratio':>6} {'parse+compile':>14}")
    worst = 0.0
    for name, where, sql_where in CLAUSES:
        wql = FROM + where
        sql = f"SELECT id FROM s WHERE {sql_where}"
        compiled = compile_query(wql)
        ours = {index[id(i)] for i in compiled.run(instances)}
        theirs = {row[0] for row in db.execute(sql)}
        if ours != theirs:
            raise SystemExit(f"{name}: WQL found {len(ours)} rows, SQLite {len(theirs)}; the clauses differ")
        wql_s = median_time(lambda c=compiled: c.run(instances), args.runs)
        sql_s = median_time(lambda q=sql: db.execute(q).fetchall(), args.runs)
        parse_s = median_time(lambda q=wql: cached_compile.__wrapped__(q), 50)
        ratio = wql_s / sql_s
        worst = max(worst, ratio)
        print(
            f"{name:<10} {len(ours):>8} {wql_s * 1000:>8.2f}ms {sql_s * 1000:>8.2f}ms {ratio:>6.2f} "
            f"{parse_s * 1e6:>11.0f} us"
        )
    print(f"worst ratio {worst:.2f} (goal <= 1.5)")


if __name__ == "__main__":
    main()
