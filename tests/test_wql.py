"""WQL conformance: each rule of the issue, over a fixed set of instances with known answers."""

from __future__ import annotations

import contextlib
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serversession.errors import InvalidInput
from serversession.model import server_sessions
from serversession.sources.base import SESS_GUEST, SessionRecord
from serversession.wql import NotSupported, WQLError, compile_query, run_query

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
FROM = "SELECT * FROM Win32_ServerSession WHERE "


def session(user, computer, active, idle, opens, client="SMB3_11", flags=0):
    last = None if idle is None else NOW - idle
    return SessionRecord("0x1", computer, user, NOW - active, last, opens, flags, client, "tcp:10.0.0.1:445")


INSTANCES = server_sessions(
    [
        session("alice", "10.0.0.5", 600, 30, 2),
        session("Bob", "10.0.0.5", 7200, 7000, 0, client="SMB2_10"),
        session("carol", "ws-7", 90000, None, None, client=None),
        session("", "10.0.0.9", 5, 5, 0, flags=SESS_GUEST),
        session("nobody", "10.0.0.9", 100, 50, 1, flags=SESS_GUEST),
        session("o'brien", "host_[1]", 300, 0, 16, client="SMB3_02"),
        session("back\\slash", "100%.example", 3600, 3600, 255),
        session('we"ird', "fs.example", 1, 1, 16),
    ],
    now=NOW,
)
ALL = {i.UserName for i in INSTANCES}


def users(*names: str) -> set[str]:
    return set(names)


def others(*names: str) -> set[str]:
    return ALL - set(names)


CASES = [
    # FROM, classes, case of keywords and names
    ("SELECT * FROM Win32_ServerSession", ALL),
    ("select * from win32_serversession", ALL),
    ("SeLeCt * FrOm WIN32_SERVERSESSION wHeRe USERNAME = 'alice'", users("alice")),
    ("SELECT * FROM CIM_LogicalElement", ALL),
    ("SELECT * FROM CIM_ManagedSystemElement", ALL),
    # equality, strings case-insensitive, both quote styles, constant on either side
    (FROM + "UserName = 'alice'", users("alice")),
    (FROM + "UserName = 'ALICE'", users("alice")),
    (FROM + 'username = "bob"', users("Bob")),
    (FROM + "'alice' = UserName", users("alice")),
    (FROM + "UserName <> 'alice'", others("alice")),
    (FROM + "UserName != 'alice'", others("alice")),
    (FROM + "UserName = ''", users("")),
    (FROM + "ClientType = 'smb3_11'", users("alice", "", "nobody", "back\\slash", 'we"ird')),
    (FROM + "ClientType <> 'SMB3_11'", users("Bob", "o'brien")),
    (FROM + "Status = 'ok'", ALL),
    (FROM + "Caption = 'alice@10.0.0.5'", users("alice")),
    (FROM + "UserName < 'b'", users("alice", "")),
    (FROM + "UserName >= 'O'", users("o'brien", 'we"ird')),
    # numbers: ranges, hex, signs, numeric strings, constant on the left
    (FROM + "ActiveTime > 3600", users("Bob", "carol")),
    (FROM + "ActiveTime >= 3600", users("Bob", "carol", "back\\slash")),
    (FROM + "3600 <= ActiveTime", users("Bob", "carol", "back\\slash")),
    (FROM + "3600 > ActiveTime", users("alice", "", "nobody", "o'brien", 'we"ird')),
    (FROM + "ActiveTime < 0x10", users("", 'we"ird')),
    (FROM + "ResourcesOpened = 0x10", users("o'brien", 'we"ird')),
    (FROM + "ResourcesOpened = 0XFF", users("back\\slash")),
    (FROM + "ResourcesOpened = +16", users("o'brien", 'we"ird')),
    (FROM + "ActiveTime > -1", ALL),
    (FROM + "ResourcesOpened > -5", others("carol")),
    (FROM + "ActiveTime = '600'", users("alice")),
    (FROM + "ActiveTime = 600.0", users("alice")),
    (FROM + "SessionType = 0", users("", "nobody")),
    # NULL
    (FROM + "IdleTime IS NULL", users("carol")),
    (FROM + "IdleTime IS NOT NULL", others("carol")),
    (FROM + "IdleTime = NULL", users("carol")),
    (FROM + "IdleTime <> NULL", others("carol")),
    (FROM + "IdleTime < 100", users("alice", "", "nobody", "o'brien", 'we"ird')),
    (FROM + "IdleTime >= 100", users("Bob", "back\\slash")),
    (FROM + "NOT IdleTime < 100", users("Bob", "carol", "back\\slash")),
    (FROM + "IdleTime <> 30", others("alice", "carol")),
    (FROM + "ResourcesOpened IS NULL OR ResourcesOpened = 0", users("Bob", "carol", "")),
    # LIKE
    (FROM + "UserName LIKE 'a%'", users("alice")),
    (FROM + "UserName LIKE '%O%'", users("Bob", "carol", "nobody", "o'brien")),
    (FROM + "UserName LIKE '_ob'", users("Bob")),
    (FROM + "UserName LIKE '%'", ALL),
    (FROM + "UserName LIKE '_%'", others("")),
    (FROM + "UserName LIKE '[a-c]%'", users("alice", "Bob", "carol", "back\\slash")),
    (FROM + "UserName LIKE '[abc]%'", users("alice", "Bob", "carol", "back\\slash")),
    (FROM + "UserName LIKE '[^a-c]%'", users("nobody", "o'brien", 'we"ird')),
    (FROM + "ComputerName LIKE 'host[_]%'", users("o'brien")),
    (FROM + "ComputerName LIKE 'host_[[]1]'", users("o'brien")),
    (FROM + "ComputerName LIKE '%[%]%'", users("back\\slash")),
    (FROM + "ComputerName LIKE '10.0.0._'", users("alice", "Bob", "", "nobody")),
    (FROM + "UserName LIKE 'back\\slash'", users("back\\slash")),  # no escapes inside LIKE
    (FROM + "Name LIKE 'anonymous@%'", users("")),
    # escapes and mixed quotes outside LIKE
    (FROM + "UserName = 'back\\\\slash'", users("back\\slash")),
    (FROM + 'UserName = "we\\"ird"', users('we"ird')),
    (FROM + "UserName = 'we\"ird'", users('we"ird')),
    (FROM + 'UserName = "o\'brien"', users("o'brien")),
    (FROM + "UserName = 'o\\'brien'", users("o'brien")),
    # NOT before LIKE, NOT LIKE, and NULL under NOT
    (FROM + "NOT UserName LIKE '%o%'", users("alice", "", "back\\slash", 'we"ird')),
    (FROM + "UserName NOT LIKE '%o%'", users("alice", "", "back\\slash", 'we"ird')),
    (FROM + "ClientType NOT LIKE 'SMB3%'", users("Bob")),
    (FROM + "NOT ClientType LIKE 'SMB3%'", users("Bob", "carol")),
    # precedence: NOT > AND > OR, parentheses
    (FROM + "UserName = 'alice' OR UserName = 'bob' AND ActiveTime > 10000", users("alice")),
    (FROM + "(UserName = 'alice' OR UserName = 'bob') AND ActiveTime > 1000", users("Bob")),
    (FROM + "NOT (UserName = 'alice' OR UserName = 'bob')", others("alice", "Bob")),
    (FROM + "NOT UserName = 'alice' AND NOT UserName = 'bob'", others("alice", "Bob")),
    (FROM + "NOT NOT UserName = 'alice'", users("alice")),
    (FROM + "((((UserName = 'alice'))))", users("alice")),
    (FROM + "SessionType = 2 AND ResourcesOpened > 0", users("alice", "o'brien", "back\\slash", 'we"ird')),
    (
        FROM + "ResourcesOpened > 1 AND ResourcesOpened < 255 AND NOT ClientType = 'SMB3_02'",
        users("alice", 'we"ird'),
    ),
    # datetimes as CIM datetime strings, with their UTC offsets
    (FROM + "InstallDate < '20270115070000.000000+000'", users("carol", "Bob")),
    (FROM + "InstallDate <= '20270115070000.000000+000'", users("carol", "Bob", "back\\slash")),
    (FROM + "InstallDate < '20270115080000.000000+060'", users("carol", "Bob")),
    (FROM + "InstallDate = '20270115075000.000000+000'", users("alice")),
    # system properties and ISA
    (FROM + "__CLASS = 'Win32_ServerSession'", ALL),
    (FROM + "__CLASS = 'CIM_LogicalElement'", set()),
    ("SELECT * FROM CIM_LogicalElement WHERE __THIS ISA 'Win32_ServerSession'", ALL),
    (FROM + "__THIS ISA 'CIM_ManagedSystemElement' AND UserName = 'bob'", users("Bob")),
    (FROM + "NOT (__THIS IS NULL)", ALL),  # the instance itself is never null (hypothesis found a KeyError)
    (FROM + "__THIS IS NULL", set()),
    (FROM + "__RELPATH LIKE '%UserName=\"alice\"'", users("alice")),
    (FROM + "__NAMESPACE = 'root\\\\cimv2'", ALL),
    (FROM + "__GENUS = 2", ALL),
    # white space
    (FROM + "\n\tUserName\t=\n'alice'   ", users("alice")),
]


@pytest.mark.parametrize(("query", "expected"), CASES, ids=[c[0].replace(FROM, "WHERE ") for c in CASES])
def test_conformance(query: str, expected: set[str]) -> None:
    assert {i.UserName for i in run_query(query, INSTANCES)} == expected


def test_at_least_sixty_cases() -> None:
    assert len(CASES) >= 60


def test_projection_adds_keys_and_keeps_only_the_selected() -> None:
    result = run_query("SELECT ActiveTime FROM Win32_ServerSession WHERE UserName = 'alice'", INSTANCES)
    assert result.properties == ("ActiveTime", "ComputerName", "UserName")
    [alice] = result
    assert alice.ActiveTime == 600 and alice.UserName == "alice" and alice.ComputerName == "10.0.0.5"
    assert alice.IdleTime is None and alice.Caption is None  # not selected
    system = alice.system_properties()
    assert system["__CLASS"] == "Win32_ServerSession"
    assert system["__RELPATH"] == 'Win32_ServerSession.ComputerName="10.0.0.5",UserName="alice"'
    assert system["__PATH"].endswith(":" + system["__RELPATH"]) and system["__PATH"].startswith("\\\\")
    assert system["__NAMESPACE"] == "root\\cimv2"


def test_select_star_of_a_superclass_returns_whole_instances() -> None:
    result = run_query("SELECT * FROM CIM_LogicalElement WHERE Caption = 'alice@10.0.0.5'", INSTANCES)
    assert result.classname == "Win32_ServerSession"
    assert "IdleTime" in result.properties and result[0].IdleTime == 30


def test_select_list_names_are_canonical() -> None:
    result = run_query("SELECT idletime, USERNAME FROM Win32_ServerSession", INSTANCES)
    assert result.properties == ("ComputerName", "IdleTime", "UserName")


ERRORS = [
    ("", 1, "expected SELECT"),
    ("SELEC * FROM Win32_ServerSession", 1, "expected SELECT"),
    ("SELECT * FROM", 14, "expected a class name"),
    ("SELECT * FROM Nope", 15, "unknown class 'Nope'"),
    ("SELECT Nope FROM Win32_ServerSession", 8, "no property 'Nope'"),
    ("SELECT UserName, FROM Win32_ServerSession", 18, "expected a property name"),
    ("SELECT * FROM Win32_ServerSession WHERE", 40, "expected a property name or a constant"),
    (FROM + "UserName = 5", 52, "compare it with a quoted string"),
    (FROM + "ActiveTime = 'abc'", 54, "is a number"),
    (FROM + "(UserName = 'a'", 56, "expected )"),
    (FROM + "UserName = 'a\\b'", 54, "backslash"),
    (FROM + "UserName = 'abc", 52, "string is not closed"),
    (FROM + "UserName LIKE '[a-'", 56, "not closed with ]"),
    (FROM + "UserName LIKE '[]'", 56, "empty []"),
    (FROM + "UserName == 'a'", 51, "expected a property name or a constant"),
    (FROM + "ActiveTime > IdleTime", 52, "not with another property"),
    (FROM + "1 = 1", 41, "needs a property"),
    (FROM + "UserName IS 'a'", 53, "expected NULL"),
    (FROM + "InstallDate > 'yesterday'", 55, "datetime"),
    (FROM + "ActiveTime LIKE '1%'", 41, "LIKE needs a string"),
    (FROM + "UserName = 'a' garbage", 56, "expected AND, OR or the end"),
    (FROM + "UserName = 'a' ; DROP TABLE x", 56, "unexpected character ';'"),
    ("SELECT * FROM CIM_LogicalElement WHERE ActiveTime > 1", 40, "no property 'ActiveTime'"),
    (FROM + "UserName ISA 'x'", 41, "ISA applies to __THIS"),
    (FROM + "__THIS ISA 'Nope'", 52, "unknown class 'Nope'"),
    (FROM + "ActiveTime < NULL", 54, "NULL can only be compared"),
    (FROM + "UserName", 49, "expected an operator"),
    (FROM + "AND UserName = 'a'", 41, "expected a property name or a constant"),
    ("SELECT * FROM Win32_ServerSession WHERE " + "(" * 80 + "UserName='a'" + ")" * 80, None, "nested more than"),
    ("SELECT * FROM Win32_ServerSession WHERE " + "NOT " * 500 + "UserName='a'", None, "nested more than"),
    ("SELECT * FROM Win32_ServerSession WHERE UserName = '" + "x" * 20000 + "'", 16385, "longer than"),
]


@pytest.mark.parametrize(("query", "position", "message"), ERRORS, ids=[e[0][:60] for e in ERRORS])
def test_errors_name_position_and_expectation(query: str, position: int | None, message: str) -> None:
    with pytest.raises(WQLError) as caught:
        compile_query(query)
    assert message in str(caught.value)
    assert str(caught.value).startswith("WQL error at ")
    if position is not None:
        assert caught.value.position == position, str(caught.value)
    assert isinstance(caught.value, InvalidInput)  # exit code 2


@pytest.mark.parametrize(
    ("query", "error", "message"),
    [
        ("SELECT * FROM __InstanceCreationEvent WITHIN 5 WHERE TargetInstance ISA 'Win32_ServerSession'",
         NotSupported, "serversession watch"),
        ("SELECT * FROM __InstanceDeletionEvent WHERE TargetInstance.UserName = 'alice'", WQLError, "WITHIN"),
        ("SELECT * FROM Win32_ServerSession WITHIN 5", WQLError, "not an event class"),
        ("SELECT * FROM Win32_ServerSession WHERE UserName = 'a' GROUP WITHIN 10", WQLError, "not an event class"),
        ("SELECT * FROM __InstanceModificationEvent WITHIN 2.5 WHERE TargetInstance ISA 'Win32_ServerSession'"
         " AND TargetInstance.IdleTime <> PreviousInstance.IdleTime GROUP WITHIN 60 BY TargetInstance.UserName"
         " HAVING NumberOfEvents > 3", NotSupported, "aggregate"),
    ],
)  # fmt: skip
def test_event_queries_are_parsed_then_sent_to_watch(query: str, error: type, message: str) -> None:
    """A data query's compiler checks an event query whole, then points to `watch` (wql/events.py)."""
    with pytest.raises(error, match=message):
        compile_query(query)


@pytest.mark.parametrize(
    "query",
    [
        "ASSOCIATORS OF {Win32_ServerSession.ComputerName='x',UserName='y'}",
        'ASSOCIATORS OF {Win32_ServerSession.ComputerName="x",UserName="y"} WHERE ResultClass = Win32_Share',
        "REFERENCES OF {Win32_ServerSession.ComputerName='x',UserName='y'} WHERE ClassDefsOnly",
    ],
)
def test_association_queries_are_no_data_queries(query: str) -> None:
    """compile_query compiles SELECT only; ASSOCIATORS/REFERENCES OF go through compile_wql (test_wql_assoc.py)."""
    with pytest.raises(NotSupported, match="not a data query"):
        compile_query(query)


def test_malformed_association_is_a_syntax_error() -> None:
    with pytest.raises(WQLError, match=r"expected \{ and an object path"):
        compile_query("ASSOCIATORS OF Win32_ServerSession")
    with pytest.raises(WQLError, match=r"not closed with \}"):
        compile_query("ASSOCIATORS OF {Win32_ServerSession")
    with pytest.raises(WQLError, match="ResultClass or KeysOnly"):
        compile_query("ASSOCIATORS OF {x} WHERE Bogus = y")


@pytest.mark.parametrize(
    ("query", "position", "message"),
    [
        ("SELECT * FROM Win32_ServerSession WITHIN", 41, "a number of seconds"),
        ("SELECT * FROM Win32_ServerSession WITHIN 0", 42, "a number of seconds above 0"),
        ("SELECT * FROM Win32_ServerSession GROUP", 40, "expected WITHIN"),
        ("SELECT * FROM Win32_ServerSession WHERE UserName = 'a' GROUP WITHIN 10 BY", 74, "a property name"),
        ("SELECT * FROM __InstanceCreationEvent WITHIN 5 GROUP WITHIN 9 HAVING", 69, "a property name"),
        ("SELECT * FROM __InstanceCreationEvent garbage", 39, "expected WHERE"),
        ("SELECT * FROM __InstanceCreationEvent WHERE (", 46, "a property name"),
        ("REFERENCES OF {}", 16, "in the object path: expected a class name"),
        ("ASSOCIATORS OF {Win32_ServerSession.ComputerName='a\\q'}", 52, "in the object path: a backslash"),
        ("ASSOCIATORS OF {Win32_ServerSession.ComputerName='}'", 16, "not closed with }"),
    ],
)
def test_invalid_event_and_association_queries_are_syntax_errors(query: str, position: int, message: str) -> None:
    """Parsed and then refused: an invalid one is invalid input (exit 2), not "not supported" (1)."""
    with pytest.raises(WQLError, match=re.escape(message)) as caught:
        compile_query(query)
    assert caught.value.position == position, str(caught.value)


def test_a_brace_inside_a_quoted_key_value_does_not_end_the_path() -> None:
    with pytest.raises(NotSupported):
        compile_query("REFERENCES OF {Win32_ServerSession.ComputerName='a}b',UserName=\"}\"} WHERE KeysOnly")


def test_many_terms_compile_and_run() -> None:
    query = FROM + " OR ".join(f"ActiveTime={n}" for n in range(800))
    assert len(query) < 16384
    assert {i.UserName for i in run_query(query, INSTANCES)} == users("alice", "", "nobody", "o'brien", 'we"ird')


def test_compiled_queries_are_cached() -> None:
    assert compile_query(FROM + "UserName = 'x'") is compile_query(FROM + "UserName = 'x'")


VOCABULARY = [
    "SELECT", "*", "FROM", "Win32_ServerSession", "WHERE", "UserName", "ActiveTime", "InstallDate",
    "=", "<>", "<", ">=", "LIKE", "NOT", "AND", "OR", "IS", "NULL", "ISA", "(", ")", ",", "'a%'",
    '"x\\"y"', "0x1F", "-3", "TRUE", "__CLASS", "__THIS", "'[a-'", "'\\q'", "{", "}", "ASSOCIATORS", "OF",
    "WITHIN", "GROUP", ".", "'20270115000000.000000+000'",
]  # fmt: skip


@settings(max_examples=1500, deadline=None)
@given(st.text(max_size=200))
def test_random_text_raises_only_wql_errors(text: str) -> None:
    with contextlib.suppress(WQLError, NotSupported):
        compile_query(text)


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(VOCABULARY), max_size=30))
def test_random_token_soup_raises_only_wql_errors(words: list[str]) -> None:
    try:
        compiled = compile_query(" ".join(words))
    except (WQLError, NotSupported):
        return
    compiled.run(INSTANCES)  # whatever parses must also run
