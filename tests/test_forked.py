"""Work in forked children (sources/forked.py): answers, errors, and children killed at the deadline."""

from __future__ import annotations

import os
import time

import pytest

from serversession.errors import AccessDenied, SourceDataError
from serversession.sources import forked


def gone(pid: int) -> bool:
    """True once ``pid`` is neither running nor a zombie waiting to be reaped."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_value_and_error_come_back_in_order() -> None:
    def fails() -> None:
        raise AccessDenied("host: access denied")

    children = [forked.start(lambda: {"pid": os.getpid(), "rows": [1, 2]}), forked.start(fails)]
    answer, error = forked.finish(children, time.monotonic() + 30)
    assert answer.error is None and answer.value["rows"] == [1, 2]
    assert answer.value["pid"] == children[0].pid != os.getpid()  # the work ran in the child
    assert isinstance(error.error, AccessDenied) and str(error.error) == "host: access denied"
    assert all(gone(child.pid) for child in children)


def test_a_child_still_working_at_the_deadline_is_killed_and_the_others_kept() -> None:
    stuck = forked.start(lambda: time.sleep(60))
    quick = forked.start(lambda: "done")
    start = time.monotonic()
    late, answered = forked.finish([stuck, quick], time.monotonic() + 1)
    assert time.monotonic() - start < 5
    assert isinstance(late.error, forked.Late) and late.value is None
    assert answered.value == "done"
    assert gone(stuck.pid)


def test_a_child_that_dies_without_answering_is_lost() -> None:
    (outcome,) = forked.finish([forked.start(lambda: os._exit(3))], time.monotonic() + 30)
    assert isinstance(outcome.error, forked.Lost)


def test_an_error_that_does_not_pickle_arrives_as_text() -> None:
    class Local(Exception):  # defined in a function: pickle cannot find it by name
        pass

    def fails() -> None:
        raise Local("odd")

    (outcome,) = forked.finish([forked.start(fails)], time.monotonic() + 30)
    assert isinstance(outcome.error, SourceDataError) and str(outcome.error) == "Local: odd"


def test_result_that_does_not_pickle_arrives_as_error() -> None:
    (outcome,) = forked.finish([forked.start(lambda: lambda: None)], time.monotonic() + 30)
    assert isinstance(outcome.error, SourceDataError) and "pickle" in str(outcome.error).lower()


@pytest.mark.parametrize("size", [0, 3 << 20])
def test_large_and_empty_answers(size: int) -> None:
    (outcome,) = forked.finish([forked.start(lambda: b"x" * size)], time.monotonic() + 30)
    assert outcome.value == b"x" * size
