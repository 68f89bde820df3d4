"""WMI object paths: parse, format, compare, and find the instance a path names."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serversession.errors import InvalidInput, NotFound
from serversession.model import server_sessions
from serversession.model.instances import local_server_name
from serversession.sources.base import SessionRecord
from serversession.wql import ObjectPath, PathError, find_instance, format_path, parse_path

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        (
            '\\\\FS1\\root\\cimv2:Win32_ServerSession.UserName="alice",ComputerName="10.0.0.7"',
            '\\\\FS1\\root\\cimv2:Win32_ServerSession.ComputerName="10.0.0.7",UserName="alice"',
        ),
        (
            "Win32_ServerSession.ComputerName='x',UserName='o\\'b'",
            'Win32_ServerSession.ComputerName="x",UserName="o\'b"',
        ),
        ('root/cimv2:Win32_ServerSession.UserName="a\\\\b"', 'root\\cimv2:Win32_ServerSession.UserName="a\\\\b"'),
        ("//host/root/cimv2:C.K=5", "\\\\host\\root\\cimv2:C.K=5"),
        ("C.K = -0x10 , J = TRUE", "C.J=TRUE,K=-16"),
        ('Win32_Service="spooler"', 'Win32_Service="spooler"'),
        ("Win32_OperatingSystem=@", "Win32_OperatingSystem=@"),
        ("  Win32_ServerSession  ", "Win32_ServerSession"),
    ],
)
def test_parse_and_canonical_form(text: str, canonical: str) -> None:
    path = parse_path(text)
    assert format_path(path) == canonical
    assert parse_path(canonical) == path
    assert format_path(parse_path(canonical)) == canonical


def test_comparison_ignores_case_order_and_separators() -> None:
    a = parse_path('\\\\fs1\\ROOT\\CIMV2:win32_serversession.username="ALICE",computername="X"')
    b = parse_path('\\\\FS1\\root/cimv2:Win32_ServerSession.ComputerName="x",UserName="alice"')
    assert a == b and hash(a) == hash(b)
    assert a != parse_path('\\\\FS1\\root/cimv2:Win32_ServerSession.ComputerName="x",UserName="bob"')
    assert parse_path("C.K=1") != parse_path('C.K="1"')  # a number is not a string


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("", 1, "expected a class name"),
        ("Win32_X.", 9, "expected a key property name"),
        ("Win32_X.K=", 11, "expected a quoted string"),
        ('Win32_X.K="a', 11, "not closed"),
        ('Win32_X.K="a\\b"', 13, "backslash"),
        ("\\\\host", 7, "expected \\ and a namespace"),
        ("\\\\host\\root\\cimv2", 18, "expected : and a class name"),
        ("Win32_X.K=1,K=2", 13, "given twice"),
        ("Win32_X.K=1 junk", 13, "expected , and another key"),
        ("9lives.K=1", 1, "expected a class name"),
        ("x" * 5000, 4097, "longer than"),
        ("\\\\fs\x9b2J\\root\\cimv2:Win32_X.K=1", 5, "expected \\ and a namespace"),  # C1 control (CSI)
        ("\\\\fs\x85\\root\\cimv2:Win32_X.K=1", 5, "expected \\ and a namespace"),
    ],
)
def test_malformed_paths(text: str, position: int, message: str) -> None:
    with pytest.raises(PathError) as caught:
        parse_path(text)
    assert caught.value.position == position, str(caught.value)
    assert message in str(caught.value)
    assert isinstance(caught.value, InvalidInput)


names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
values = st.one_of(st.text(max_size=20), st.integers(-(2**63), 2**64), st.booleans())


@st.composite
def object_paths(draw: st.DrawFn) -> ObjectPath:
    key_names = draw(st.lists(names, max_size=4, unique_by=str.lower))
    keys = tuple((name, draw(values)) for name in key_names)
    host = draw(st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.-]{0,20}", fullmatch=True)))
    namespace = draw(st.lists(names, min_size=1, max_size=3).map("\\".join))
    if host is None and draw(st.booleans()):
        namespace = None
    return ObjectPath(draw(names), keys, host, namespace)


@settings(max_examples=500, deadline=None)
@given(object_paths())
def test_parse_of_format_is_identity(path: ObjectPath) -> None:
    again = parse_path(format_path(path))
    assert again == path
    assert (again.classname, again.keys, again.host, again.namespace) == (
        path.classname,
        path.keys,
        path.host,
        path.namespace,
    )  # exactly, not only without regard to case


@settings(max_examples=500, deadline=None)
@given(object_paths())
def test_format_is_canonical(path: ObjectPath) -> None:
    text = format_path(path)
    assert format_path(parse_path(text)) == text


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=80))
def test_random_text_raises_only_path_errors(text: str) -> None:
    with contextlib.suppress(PathError):
        parse_path(text)


INSTANCES = server_sessions(
    [
        SessionRecord("1", "10.0.0.7", "alice", NOW - 60, NOW, 0, 0, None, None),
        SessionRecord("2", "10.0.0.7", "Bob", NOW - 60, NOW, 0, 0, None, None),
        SessionRecord("3", "10.0.0.7", "alice", NOW - 60, NOW, 0, 0, None, None, server="fs2"),
    ],
    now=NOW,
)


def test_find_instance() -> None:
    found = find_instance('Win32_ServerSession.UserName="ALICE",ComputerName="10.0.0.7"', INSTANCES)
    assert found.UserName == "alice" and found.server is None
    for host in (".", "localhost", local_server_name().lower()):
        path = f'\\\\{host}\\root\\cimv2:Win32_ServerSession.ComputerName="10.0.0.7",UserName="bob"'
        assert find_instance(path, INSTANCES).UserName == "Bob"
    remote = find_instance(
        '\\\\FS2\\root\\cimv2:Win32_ServerSession.ComputerName="10.0.0.7",UserName="alice"', INSTANCES
    )
    assert remote.server == "fs2"
    assert find_instance(remote.path, INSTANCES) is remote
    with pytest.raises(NotFound, match="no key properties"):  # abstract: instances are named by their class
        find_instance('CIM_LogicalElement.ComputerName="10.0.0.7",UserName="bob"', INSTANCES)


@pytest.mark.parametrize(
    ("path", "error", "message"),
    [
        ('Win32_ServerSession.ComputerName="10.0.0.7",UserName="carol"', NotFound, "no instance"),
        ('\\\\fs9\\root\\cimv2:Win32_ServerSession.ComputerName="10.0.0.7",UserName="bob"', NotFound, "no instance"),
        ('root\\default:Win32_ServerSession.ComputerName="x",UserName="y"', NotFound, "no namespace"),
        ('Win32_Nope.ComputerName="x"', NotFound, "no class"),
        ('Win32_ServerSession.UserName="y"', InvalidInput, "lacks key ComputerName"),
        ('Win32_ServerSession.ComputerName="x",UserName="y",Extra="z"', InvalidInput, "not a key"),
        ('Win32_ServerSession.ComputerName=5,UserName="y"', InvalidInput, "quote its value"),
        ('Win32_ServerSession="x"', InvalidInput, "has 2 keys"),
        ("Win32_ServerSession=@", InvalidInput, "not a singleton"),
        ("Win32_ServerSession.", InvalidInput, "object path error at 21"),
    ],
)
def test_find_instance_errors(path: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        find_instance(path, INSTANCES)
