"""Hostile and careless input: WQL, LIKE patterns and object paths never hang, crash or lie.

Every answer is a result or a clean error (WQLError or PathError, both InvalidInput, exit 2;
NotSupported, exit 1), in bounded time. Generated queries are checked against a reference
evaluator written here, LIKE against a memoized recursive matcher and against the regular
expression translation it replaced, object paths by round trips whatever the key values hold.
"""

from __future__ import annotations

import functools
import json
import operator
import random
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import run_cli
from serversession.errors import InvalidInput, NotFound
from serversession.model import CIMObject, server_sessions
from serversession.sources.base import SESS_GUEST, SessionRecord
from serversession.wql import (
    NotSupported,
    ObjectPath,
    PathError,
    WQLError,
    compile_query,
    find_instance,
    format_path,
    parse_path,
)
from serversession.wql.like import compile_like
from serversession.wql.parser import INT_MAX, INT_MIN, MAX_DEPTH, MAX_LENGTH, REAL_MAX

NOW = 1_800_000_000.0
FROM = "SELECT * FROM Win32_ServerSession WHERE "
TIME_LIMIT = 10.0  # seconds any one query or path may take, however hostile (generous: loaded CI)
HOSTILE = [
    "alice", "O'Brien", 'we"ird', "back\\slash", "a=b,c", "{x}", "line\nbreak", "nul\x00byte", "\U0001f600",
    "\u017f", "\u212a", "\u0130", "\u00df", "", "%_[]^", " spaced ", "tab\t", "ctl\x01\x7f", "\ud800lone",
    "Win32_ServerSession.UserName=\"x\"", "\u0661\u0662\u0663", "a" * 300,
]  # fmt: skip
COMPUTERS = ["10.0.0.5", "WS-1", "ws-10", "host_[1]", "100%.example", 'q"uote', "back\\host", "\u00e9cole", ""]
ALPHABET = "aAbB%_[]^-\\'\"=,{}\n\x00 .\u017f\u212a\u0130\u00df\U0001f600"


def _records() -> list[SessionRecord]:
    rng = random.Random(2024)
    records = []
    for n in range(300):
        user = HOSTILE[n] if n < len(HOSTILE) else "".join(rng.choice(ALPHABET) for _ in range(rng.randrange(12)))
        active = rng.randrange(0, 200_000)
        idle = None if n % 7 == 0 else rng.randrange(0, active + 1)
        records.append(
            SessionRecord(
                hex(n),
                rng.choice(COMPUTERS),
                user,
                NOW - active,
                None if idle is None else NOW - idle,
                None if n % 11 == 0 else rng.choice([0, 1, 16, 255, 2**32 - 1]),
                SESS_GUEST if n % 13 == 0 else 0,
                rng.choice(["SMB3_11", "SMB2_10", None, "NT1"]),
                "tcp:10.0.0.1:445",
            )
        )
    return records


INSTANCES = server_sessions(_records(), now=NOW)


def bounded(function: Callable[[], Any]) -> Any:
    """``function()``, which must end within TIME_LIMIT seconds."""
    start = time.monotonic()
    try:
        return function()
    finally:
        assert time.monotonic() - start < TIME_LIMIT


# --- LIKE: linear, and the same answers as before -----------------------------------------


def old_like_regex(pattern: str, position: int) -> re.Pattern[str]:
    """The translation compile_like replaced (exponential on hostile patterns): the reference."""
    out = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise WQLError(position + i + 1, "[ in the LIKE pattern is not closed with ]")
            out.append(_old_char_class(pattern[i + 1 : end], position + i + 1))
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def _old_char_class(body: str, position: int) -> str:
    negate = body.startswith("^")
    body = body[1:] if negate else body
    if not body:
        raise WQLError(position, "empty [] in the LIKE pattern")
    parts = []
    k = 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            if body[k] > body[k + 2]:
                raise WQLError(position, "reversed")
            parts.append(f"{re.escape(body[k])}-{re.escape(body[k + 2])}")
            k += 3
        else:
            parts.append(re.escape(body[k]))
            k += 1
    return "[" + ("^" if negate else "") + "".join(parts) + "]"


def reference_like(pattern: str, text: str) -> bool:
    """Memoized recursion over the pattern's elements; one character compared as re.IGNORECASE does."""
    elements: list[re.Pattern[str] | None] = []  # None is %
    i = 0
    while i < len(pattern):
        if pattern[i] == "[":
            end = pattern.index("]", i + 1)
            elements.append(re.compile(_old_char_class(pattern[i + 1 : end], 0), re.IGNORECASE | re.DOTALL))
            i = end + 1
            continue
        char = pattern[i]
        elements.append(None if char == "%" else re.compile("." if char == "_" else re.escape(char), re.I | re.S))
        i += 1

    @functools.cache
    def match(e: int, t: int) -> bool:
        if e == len(elements):
            return t == len(text)
        element = elements[e]
        if element is None:
            return match(e + 1, t) or (t < len(text) and match(e, t + 1))
        return t < len(text) and element.fullmatch(text[t]) is not None and match(e + 1, t + 1)

    return match(0, 0)


LIKE_ELEMENTS = st.one_of(
    st.sampled_from(list("abAB.\\-^]'s \n\u017f\u212a\u0130\u00df\U0001f600")),
    st.sampled_from(["_", "%", "%", "%%"]),
    st.sampled_from(["[ab]", "[a-c]", "[^a]", "[^a-b]", "[%]", "[_]", "[[]", "[-a]", "[a-]", "[^^]", "[\\]", "[s-z]"]),
)
like_patterns = st.lists(LIKE_ELEMENTS, max_size=12).map("".join)
like_texts = st.text(alphabet="abcABC.\\-^[]%_' \nsSk\u017f\u212a\u0130i\u00df\U0001f600", max_size=24)


@settings(max_examples=1500, deadline=None)
@given(like_patterns, like_texts)
def test_like_agrees_with_a_recursive_reference(pattern: str, text: str) -> None:
    assert (compile_like(pattern, 1)(text) is not None) == reference_like(pattern, text), (pattern, text)


@settings(max_examples=1500, deadline=None)
@given(st.text(alphabet="ab%_[]^-\\\u017fK", max_size=12), st.lists(like_texts, max_size=4))
def test_like_agrees_with_the_old_translation_errors_included(pattern: str, texts: list[str]) -> None:
    """Raw pattern text, valid or not: the same error at the same position, or the same answers."""
    try:
        old = old_like_regex(pattern, 7)
    except WQLError as expected:
        with pytest.raises(WQLError) as caught:
            compile_like(pattern, 7)
        assert caught.value.position == expected.position
        return
    if pattern.count("%") > 4:  # the old one backtracks exponentially: keep it quick
        texts = [t[:8] for t in texts]
    matcher = compile_like(pattern, 7)
    for text in texts:
        assert (matcher(text) is not None) == (old.fullmatch(text) is not None), (pattern, text)


PATHOLOGICAL = [  # (pattern, text, matches)
    ("%a%a%a%a%a%a%a%a%a%a%b", "a" * 10_000, False),
    ("%a%a%a%a%a%a%a%a%a%a%b", "a" * 10_000 + "b", True),
    ("%a%a%a%a%a%a%a%a%a%a%", "b" * 100_000, False),
    ("%_" * 40 + "b", "a" * 100_000, False),
    ("%" + "a_" * 40 + "b%", "a" * 100_000, False),
    ("%[a-z]%[^b]%[a]" * 10 + "%x", "a" * 50_000, False),
    ("%" + "%".join("ab") * 30 + "%", "ab" * 5_000, True),
    ("_%" * 3000, "a" * 2_999, False),
    ("%" * 5000 + "x", "y" * 100_000, False),
]


def test_pathological_patterns_finish_in_a_subprocess_with_a_time_out() -> None:
    """Each took minutes or centuries as one backtracking regular expression; all together must
    take less than 20 s (in a subprocess, so that a regression fails instead of hanging)."""
    code = textwrap.dedent(
        """
        import json, sys
        from serversession.model import server_sessions
        from serversession.sources.base import SessionRecord
        from serversession.wql import compile_query
        from serversession.wql.like import compile_like
        for pattern, text, expected in json.load(sys.stdin):
            assert (compile_like(pattern, 1)(text) is not None) == expected, pattern
        long = [SessionRecord(str(n), f"ws{n}", "a" * 10_000, 1e9, 1e9, 0, 0, None, None) for n in range(20)]
        rows = server_sessions(long, now=1e9 + 70)
        query = "SELECT * FROM Win32_ServerSession WHERE Description LIKE '" + "%_" * 30 + "%x'"
        assert compile_query(query).run(rows) == []
        query = "SELECT * FROM Win32_ServerSession WHERE UserName NOT LIKE '" + "%a" * 30 + "%b'"
        assert len(compile_query(query).run(rows)) == 20
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], input=json.dumps(PATHOLOGICAL), text=True, capture_output=True, timeout=20
    )
    assert done.returncode == 0, done.stderr


# --- numbers, nesting, lengths, characters: errors with positions, or exact answers ---------


def users(query: str) -> set[str]:
    return {i.UserName for i in compile_query(query).run(INSTANCES)}


ALL = {i.UserName for i in INSTANCES}
KNOWN = {i.UserName for i in INSTANCES if i.ActiveTime is not None}


@pytest.mark.parametrize(
    ("where", "position", "message"),
    [
        ("ActiveTime = " + "1" * 5000, 54, "out of range"),  # int() refuses more than 4300 digits
        ("ActiveTime = 0x" + "f" * 5000, 54, "out of range"),
        ("ActiveTime = '" + "9" * 5000 + "'", 54, "out of range"),
        ("ActiveTime = 1e999", 54, "out of range"),
        ("ActiveTime = -1e400", 54, "out of range"),
        ("ActiveTime = 1e99999999999999999999999", 54, "out of range"),  # beyond even Decimal
        ("ActiveTime = 18446744073709551616", 54, "out of range"),
        ("ActiveTime = -9223372036854775809", 54, "out of range"),
        ("ActiveTime = -0x8000000000000001", 54, "out of range"),
        ("ActiveTime = \u0661\u0662\u0663", 54, "unexpected character"),  # Arabic-Indic digits
        ("ActiveTime = '\u0661\u0662\u0663'", 54, "is not one"),
        ("ActiveTime = '1_000'", 54, "is not one"),  # int() would read it
        ("ActiveTime = '0b101'", 54, "is not one"),
        ("ActiveTime = ' 0o7'", 54, "is not one"),
        ("ActiveTime = 'nan'", 54, "is not one"),
        ("ActiveTime = 'Infinity'", 54, "is not one"),
        ("ActiveTime = '\uff11'", 54, "is not one"),  # fullwidth digit
        ("InstallDate > '" + "\u0662" * 14 + ".000000+000'", 55, "datetime"),
        ("UserName\u00a0= 'a'", 49, "unexpected character"),  # no-break space is not white space
        ("UserName\x1c= 'a'", 49, "unexpected character"),  # nor a control character
        ("User\x00Name = 'a'", 45, "unexpected character"),
        ("UserName = 'a' AND \U0001f600", 60, "unexpected character"),
        ("UserName LIKE '[z-a]'", 56, "reversed"),
        ("NOT " * 200 + "UserName = 'a'", None, "nested more than 64"),
        ("(" * 10_000 + "UserName = 'a'" + ")" * 10_000, None, "longer than"),
        ("UserName = '" + "x" * 20_000, 16_385, "longer than"),
    ],
    ids=lambda value: repr(value)[:40] if isinstance(value, str) else str(value),
)
def test_hostile_input_is_a_clean_error(where: str, position: int | None, message: str) -> None:
    with pytest.raises(WQLError) as caught:
        bounded(lambda: compile_query(FROM + where))
    assert message in str(caught.value), str(caught.value)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300  # one line, not the whole query
    if position is not None:
        assert caught.value.position == position, str(caught.value)


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("ActiveTime < 18446744073709551615", KNOWN),  # beyond uint32: compared exactly
        ("ActiveTime <= 0xFFFFFFFFFFFFFFFF", KNOWN),
        ("ActiveTime > -9223372036854775808", KNOWN),
        ("ActiveTime >= -0x8000000000000000", KNOWN),
        ("ActiveTime = 4294967296", set()),
        ("ActiveTime < -1", set()),
        ("ActiveTime < 1.7976931348623157e308", KNOWN),
        ("ActiveTime > -1e308", KNOWN),
        ("ActiveTime > 1e-400", {i.UserName for i in INSTANCES if (i.ActiveTime or 0) > 0}),  # not 0
        ("ResourcesOpened = 4294967295.0000000000000001", set()),  # not rounded to 2**32 - 1
        ("ResourcesOpened = 4294967295.0", {i.UserName for i in INSTANCES if i.ResourcesOpened == 2**32 - 1}),
        ("ResourcesOpened = '4.294967295e9'", {i.UserName for i in INSTANCES if i.ResourcesOpened == 2**32 - 1}),
        ("ResourcesOpened = ' 0x10 '", {i.UserName for i in INSTANCES if i.ResourcesOpened == 16}),
        ("UserName = 'nul\x00byte'", {"nul\x00byte"}),
        ("UserName = 'line\nbreak'", {"line\nbreak"}),
        ("UserName = '\ud800LONE'", {"\ud800lone"}),
        ("UserName = '\U0001f600'", {"\U0001f600"}),
        ("UserName LIKE '%\\%'", {u for u in ALL if "\\" in u}),  # no escape in a LIKE pattern
        ("NOT " * (MAX_DEPTH - 1) + "UserName = 'alice'", ALL - {"alice"}),
        ("(" * (MAX_DEPTH - 1) + "UserName = 'alice'" + ")" * (MAX_DEPTH - 1), {"alice"}),
    ],
    ids=lambda value: repr(value)[:40] if isinstance(value, str) else "",
)
def test_hostile_but_valid_input_answers_exactly(where: str, expected: set[str]) -> None:
    assert bounded(lambda: users(FROM + where)) == expected


def test_deepest_and_longest_queries_compile() -> None:
    """Nesting at the bound, alternating OR and AND (the most parentheses in the generated code)."""
    where = "UserName = 'x'"
    for _ in range(MAX_DEPTH - 1):
        where = f"UserName = 'a' OR UserName = 'b' AND ({where})"
    assert bounded(lambda: users(FROM + where)) == {u for u in ALL if u.lower() == "a"}
    terms = (MAX_LENGTH - len(FROM)) // len("SessionType = 1 OR ")
    assert bounded(lambda: users(FROM + " OR ".join(["SessionType = 1"] * terms))) == set()


@pytest.mark.parametrize("query", [None, b"SELECT * FROM Win32_ServerSession", ["SELECT"], 5])
def test_a_query_that_is_not_text(query: Any) -> None:
    with pytest.raises(InvalidInput, match="must be text"):
        compile_query(query)


def test_cli_exits_2_before_reading_any_source() -> None:
    for where in ("ActiveTime = " + "9" * 5000, "NOT " * 500 + "UserName = 'a'", "ActiveTime = 1e999"):
        done = run_cli("query", FROM + where, "--smb-conf", "/nonexistent/smb.conf")
        assert done.returncode == 2 and done.stderr.startswith("serversession: error: WQL error at "), done.stderr
    done = run_cli("get", "Win32_ServerSession.ComputerName=" + "9" * 3000, "--smb-conf", "/nonexistent/smb.conf")
    assert done.returncode == 2 and "object path error at 34" in done.stderr, done.stderr


# --- generated queries: a reference evaluator, then mutations --------------------------------

STRING_PROPS = ["UserName", "ComputerName", "ClientType", "Caption", "Status", "__CLASS", "__RELPATH"]
LIKE_PROPS = ["UserName", "ComputerName", "ClientType", "Status", "Caption"]
NUMBER_PROPS = ["ActiveTime", "IdleTime", "ResourcesOpened", "SessionType", "__GENUS"]
OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "<>": operator.ne, "!=": operator.ne, "<": operator.lt, ">": operator.gt,
    "<=": operator.le, ">=": operator.ge,
}  # fmt: skip
Check = Callable[[CIMObject], bool]
Leaf = tuple[str, Check, bool]  # WQL text, reference answer, whether the text must be refused


def value_of(instance: CIMObject, prop: str) -> Any:
    if prop.startswith("__"):
        return instance.system_properties()[prop]
    return getattr(instance, prop)


def quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@st.composite
def string_tests(draw: st.DrawFn) -> Leaf:
    prop, op = draw(st.sampled_from(STRING_PROPS)), draw(st.sampled_from(list(OPS)))
    value = draw(st.one_of(st.sampled_from(HOSTILE), st.text(ALPHABET, max_size=8), st.text(max_size=8)))
    compare, flipped = OPS[op], draw(st.booleans())  # flipped: constant op property

    def check(o: CIMObject) -> bool:
        v = value_of(o, prop)
        return v is not None and (compare(value.lower(), v.lower()) if flipped else compare(v.lower(), value.lower()))

    return (f"{quote(value)} {op} {prop}" if flipped else f"{prop} {op} {quote(value)}"), check, False


def number_text(value: int | Decimal, form: str) -> str:
    if isinstance(value, Decimal):
        text = str(value)
    elif form == "hex":
        text = ("-" if value < 0 else "") + f"0x{abs(value):X}"
    else:
        text = ("+" if form == "plus" and value >= 0 else "") + str(value)
    return f"'{text}'" if form == "quoted" else text


@st.composite
def number_tests(draw: st.DrawFn) -> Leaf:
    prop, op = draw(st.sampled_from(NUMBER_PROPS)), draw(st.sampled_from(list(OPS)))
    value = draw(
        st.one_of(
            st.integers(-(2**66), 2**66),
            st.sampled_from([0, 1, -1, 2**32 - 1, 2**32, INT_MIN, INT_MAX, INT_MIN - 1, INT_MAX + 1, 600]),
            st.decimals(allow_nan=False, allow_infinity=False),
            st.sampled_from([Decimal("1e999"), Decimal("-1e-400"), Decimal("600.0"), Decimal("2E+1")]),
        )
    )
    if isinstance(value, Decimal) and not any(c in str(value) for c in ".eE"):
        value = int(value)  # written as an integer, read as one
    form = draw(st.sampled_from(["decimal", "hex", "plus", "quoted"]))
    refused = value.copy_abs() > REAL_MAX if isinstance(value, Decimal) else not INT_MIN <= value <= INT_MAX
    compare = OPS[op]

    def check(o: CIMObject) -> bool:
        v = value_of(o, prop)
        return v is not None and compare(v, value)

    return f"{prop} {op} {number_text(value, form)}", check, refused


@st.composite
def other_tests(draw: st.DrawFn) -> Leaf:
    kind = draw(st.sampled_from(["null", "like", "isa"]))
    if kind == "null":
        prop, negated = draw(st.sampled_from(["IdleTime", "ResourcesOpened", "ClientType"])), draw(st.booleans())
        return f"{prop} IS {'NOT ' if negated else ''}NULL", lambda o: (value_of(o, prop) is None) != negated, False
    if kind == "isa":
        cls = draw(st.sampled_from(["Win32_ServerSession", "CIM_LogicalElement", "CIM_ManagedSystemElement"]))
        return f"__THIS ISA '{cls}'", lambda o: True, False
    prop, negated = draw(st.sampled_from(LIKE_PROPS)), draw(st.booleans())
    pattern = draw(st.lists(LIKE_ELEMENTS.filter(lambda e: "'" not in e), max_size=8).map("".join))
    text = f"{prop} {'NOT ' if negated else ''}LIKE '{pattern}'"
    return text, lambda o: (v := value_of(o, prop)) is not None and reference_like(pattern, v) != negated, False


def _extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.tuples(st.just("NOT"), children),
        st.tuples(st.sampled_from(["AND", "OR"]), st.lists(children, min_size=2, max_size=3)),
    )


trees = st.recursive(st.one_of(string_tests(), number_tests(), other_tests()), _extend, max_leaves=8)


def render(tree: Any, depth: int = 0) -> tuple[str, Check, bool, int]:
    """WQL text, reference answer, whether it must be refused, deepest nesting (as the parser counts)."""
    if tree[0] == "NOT":
        text, check, refused, deepest = render(tree[1], depth + 2)
        return f"NOT ({text})", lambda o: not check(o), refused, deepest
    if tree[0] in ("AND", "OR"):
        parts = [render(child, depth + 1) for child in tree[1]]
        combine = all if tree[0] == "AND" else any
        return (
            f" {tree[0]} ".join(f"({p[0]})" for p in parts),
            lambda o: combine(p[1](o) for p in parts),
            any(p[2] for p in parts),
            max(p[3] for p in parts),
        )
    return tree[0], tree[1], tree[2], depth + 1


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees)
def test_generated_queries_answer_as_the_reference(tree: Any) -> None:
    where, check, refused, deepest = render(tree)
    query = FROM + where
    if refused or deepest > MAX_DEPTH or len(query) > MAX_LENGTH:
        event("refused")
        with pytest.raises(WQLError):
            bounded(lambda: compile_query(query))
        return
    found = bounded(lambda: compile_query(query).run(INSTANCES))
    event("answered, some rows" if found else "answered, no rows")
    assert {id(o) for o in found} == {id(o) for o in INSTANCES if check(o)}, query


VOCABULARY = [
    "SELECT", "*", "FROM", "Win32_ServerSession", "WHERE", "UserName", "ActiveTime", "InstallDate", "=", "<>",
    "<", ">=", "LIKE", "NOT", "AND", "OR", "IS", "NULL", "ISA", "(", ")", ",", "'a%'", '"x\\"y"', "0x1F", "-3",
    "1e999", "9" * 30, "TRUE", "__CLASS", "__THIS", "'[a-'", "'\\q'", "{", "}", "ASSOCIATORS", "OF", "WITHIN",
    "GROUP", ".", "'20270115000000.000000+000'", "'", '"', "\\", "[", "%", "\x00", "\u0661", "\u00a0", "\n",
    "'" + "%_" * 20 + "x'", "NOT " * 70, "(" * 70,
]  # fmt: skip
TOKEN = re.compile(r"'(?:\\.|[^'\\])*'|\"(?:\\.|[^\"\\])*\"|\w+|\s+|.", re.DOTALL)


@st.composite
def mutated_queries(draw: st.DrawFn) -> str:
    whole = draw(st.integers(0, 4)) == 0  # else only the WHERE clause: most mutations should get that far
    tokens = TOKEN.findall((FROM if whole else "") + render(draw(trees))[0])
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(tokens)))
        action = draw(st.sampled_from(["delete", "duplicate", "replace", "insert", "swap", "character"]))
        if action == "delete" and at < len(tokens):
            del tokens[at]
        elif action == "duplicate" and at < len(tokens):
            tokens.insert(at, tokens[at])
        elif action == "replace" and at < len(tokens):
            tokens[at] = draw(st.sampled_from(VOCABULARY))
        elif action == "insert":
            tokens.insert(at, " " + draw(st.sampled_from(VOCABULARY)) + " ")
        elif action == "swap" and at + 1 < len(tokens):
            tokens[at], tokens[at + 1] = tokens[at + 1], tokens[at]
        elif action == "character":
            tokens.insert(at, draw(st.characters(exclude_categories=())))
    return ("" if whole else FROM) + "".join(tokens)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(mutated_queries(), st.text(ALPHABET + "SELECT*FROMWin32_ServerSessionWHERE=<>0123456789()", max_size=300))
)
def test_mutated_queries_answer_or_fail_cleanly(query: str) -> None:
    try:
        compiled = bounded(lambda: compile_query(query))
    except (WQLError, NotSupported) as exc:
        event(" ".join(exc.reason.split()[:2]) if isinstance(exc, WQLError) else "not supported")
        assert "\n" not in str(exc) and len(str(exc)) < 400
        return
    event("answered")
    result = bounded(lambda: compiled.run(INSTANCES))
    assert len(result) <= len(INSTANCES)


# --- object paths --------------------------------------------------------------------------

names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
hostile_text = st.one_of(st.text(st.characters(exclude_categories=()), max_size=30), st.sampled_from(HOSTILE))
key_values = st.one_of(hostile_text, st.integers(-(10**20) + 1, 10**20 - 1), st.booleans())


@st.composite
def object_paths(draw: st.DrawFn) -> ObjectPath:
    keys = tuple((name, draw(key_values)) for name in draw(st.lists(names, max_size=4, unique_by=str.lower)))
    if len(keys) == 1 and draw(st.booleans()):
        keys = ((None, keys[0][1]),)  # Class="value"
    host = draw(st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.@-]{0,20}", fullmatch=True)))
    namespace = draw(st.lists(names, min_size=1, max_size=3).map("\\".join)) if host or draw(st.booleans()) else None
    return ObjectPath(draw(names), keys, host, namespace)


@settings(max_examples=700, deadline=None)
@given(object_paths())
def test_any_key_value_round_trips(path: ObjectPath) -> None:
    """Quotes, backslashes, = , { } newlines, NUL, lone surrogates, non-BMP: read back exactly."""
    again = parse_path(format_path(path))
    assert (again.classname, again.keys, again.host, again.namespace) == (
        path.classname,
        path.keys,
        path.host,
        path.namespace,
    )


@st.composite
def mutated_paths(draw: st.DrawFn) -> str:
    text = list(format_path(draw(object_paths())))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        piece = draw(
            st.one_of(
                st.sampled_from([*"\\\"'=,.:{}@/ \t\n\x00", "\u0661", "9" * 30, "0x", "TRUE", "\u00a0"]),
                st.characters(exclude_categories=()),
            )
        )
        if draw(st.booleans()) and at < len(text):
            del text[at]
        else:
            text.insert(at, piece)
    return "".join(text)


@settings(max_examples=700, deadline=None)
@given(st.one_of(mutated_paths(), st.text(st.characters(exclude_categories=()), max_size=80)))
def test_mutated_paths_parse_or_fail_cleanly(text: str) -> None:
    try:
        path = bounded(lambda: parse_path(text))
    except PathError as exc:
        assert 1 <= exc.position <= len(text) + 1 and "\n" not in str(exc)
        return
    assert parse_path(format_path(path)) == path
    try:
        bounded(lambda: find_instance(path, INSTANCES))
    except (NotFound, InvalidInput) as exc:
        assert "\n" not in str(exc)


def test_every_hostile_instance_is_found_by_its_own_path() -> None:
    for instance in INSTANCES:
        assert find_instance(instance.path, INSTANCES).object_path == instance.object_path
        system = instance.system_properties()
        assert users(f"{FROM}__RELPATH = {quote(system['__RELPATH'])}") >= {instance.UserName}


@pytest.mark.parametrize(
    ("text", "position", "message"),
    [
        ("C.K=" + "9" * 21, 5, "out of range"),
        ("C.K=-0x" + "f" * 17, 5, "out of range"),
        ("C.K=" + "1" * 4000, 5, "out of range"),  # int() would refuse it (4300 digits) or take long
        ("C.K=\u0661\u0662", 5, "expected a quoted string, a number"),
        ("C.K=fals\u017fe", 5, "expected a quoted string, a number"),  # upper() makes it FALSE
        ("C.K=1:", 6, "expected , and another key"),
        ("   C.", 6, "expected a key property name"),  # positions in the text as given
        ("\u00a0C.K=1", 1, "expected a class name"),  # only ASCII white space is skipped
        ("\\\\ho\x01st\\root\\cimv2:C.K=1", 5, "expected \\ and a namespace"),
        ('C.K="a\\n"', 7, "backslash"),
        ("C.K=1,," + "K" * 10, 7, "expected a key property name"),
    ],
)
def test_malformed_paths_name_the_position(text: str, position: int, message: str) -> None:
    with pytest.raises(PathError) as caught:
        parse_path(text)
    assert caught.value.position == position, str(caught.value)
    assert message in str(caught.value)


def test_integer_keys_are_bounded_so_every_path_formats() -> None:
    assert parse_path("C.K=-99999999999999999999").keys == (("K", -(10**20) + 1),)
    assert parse_path("C.K=0xFFFFFFFFFFFFFFFF").keys == (("K", 2**64 - 1),)
    with pytest.raises(InvalidInput, match="more than 20 digits"):
        ObjectPath("C", (("K", 10**5000),))  # str() of it would raise ValueError
