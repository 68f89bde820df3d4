"""``serversession close-session`` and ``close-file``: show what matches, ask, close, say what became of it.

Exit codes (DESIGN.md 4, issue 14): 0 when everything that matched was closed (``--what-if``:
something matched), 1 when nothing matched, the user said no, or a close failed (each failure
on its own line on stderr, with the reason), 2 for invalid input, including a close without
``--force`` when standard input is not a terminal to ask on.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click

from ..cli import PROG, emit, line
from ..errors import InvalidInput
from ..model import CIMObject, load_schema
from .run import CloseReport, Kind

NOUNS = {"session": ("session", "sessions"), "file": ("open file", "open files")}


def run_close(
    kind: Kind,
    selectors: dict[str, Any],
    force: bool,
    what_if: bool,
    source: dict[str, Any],
    width: int | None,
    encoding: str,
) -> int:
    """Close what ``selectors`` (close_session's or close_file's keywords) name; the exit code."""
    from ..api import close_file, close_session

    _described(kind, selectors)  # no selector, a malformed id: said first
    if not (what_if or force or _interactive()):
        raise InvalidInput(
            f"closing {NOUNS[kind][1]} needs a confirmation and standard input is not a terminal: "
            "use --force (or --what-if to see what matches)"
        )

    def confirm(matched: Sequence[CIMObject]) -> bool:
        emit(_table(matched, width, encoding))
        if force:
            return True
        return click.confirm(f"Close {_count(kind, len(matched))}?", default=False)

    close = close_session if kind == "session" else close_file
    report = close(**selectors, what_if=what_if, confirm=confirm, **source)
    return _report(kind, report, selectors, width, encoding)


def _report(kind: Kind, report: CloseReport, selectors: dict[str, Any], width: int | None, encoding: str) -> int:
    if not report.matched:
        _error(f"no {NOUNS[kind][0]} matches {_described(kind, selectors)}")
        return 1
    if report.what_if:
        emit(_table(report.matched, width, encoding))
        emit(f"What if: would close {_count(kind, len(report.matched))}; nothing was changed\n")
        return 0
    if report.declined:
        emit("nothing was closed\n")
        return 1
    for outcome in report.outcomes:
        if outcome.closed:
            emit(line(f"closed {outcome.target}") + "\n")
            for other in outcome.also:
                emit(line(f"  also ended, not asked for: {other}") + "\n")
        else:
            _error(f"{outcome.target} was not closed: {outcome.reason} (Win32 error {outcome.code})")
    if report.failed:
        _error(f"{len(report.failed)} of {len(report.outcomes)} closes failed")
        return 1
    return 0


def _described(kind: Kind, selectors: dict[str, Any]) -> str:
    from .select import Selection

    if kind == "session":
        chosen = Selection.sessions(selectors["session_id"], selectors["client_computer"], selectors["client_user"])
    else:
        chosen = Selection.files(
            selectors["file_id"],
            selectors["path"],
            selectors["session_id"],
            selectors["client_computer"],
            selectors["client_user"],
        )
    return chosen.describe(kind)


def _table(matched: Sequence[CIMObject], width: int | None, encoding: str) -> str:
    from ..formats import render

    return render(matched, load_schema().get(matched[0].classname), "table", width, encoding=encoding)


def _count(kind: Kind, count: int) -> str:
    return f"{count} {NOUNS[kind][0 if count == 1 else 1]}"


def _error(text: str) -> None:
    click.echo(f"{PROG}: error: {line(text)}", err=True)


def _interactive() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (OSError, ValueError):
        return False
