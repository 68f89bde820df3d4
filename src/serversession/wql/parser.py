"""WQL, the WMI Query Language, parsed into a small syntax tree.

Written by hand because no Python library implements WQL. A recursive-descent parser over a
lazy lexer, rather than a generated one, because WQL's lexing depends on context (a string
after LIKE keeps its backslashes), every error must name its position and the token expected,
and nesting must be bounded before Python's own recursion limit is near.

Grammar (MS-WMI 2.2.1 and Microsoft's WQL reference)::

    query      := select | associators | references
    associators:= ASSOCIATORS OF '{' path '}' [WHERE word+]
    references := REFERENCES OF '{' path '}' [WHERE word+]
    word       := (AssocClass | ResultClass | Role | ResultRole | RequiredQualifier
                  | RequiredAssocQualifier) '=' name | ClassDefsOnly | KeysOnly | SchemaOnly
                  (each at most once, separated by spaces, not AND; REFERENCES OF takes
                  ResultClass, Role, RequiredQualifier and the three flags)
    select     := SELECT ('*' | property (',' property)*) FROM class
                  [WITHIN number] [WHERE expr] [GROUP WITHIN number [BY ...] [HAVING ...]]
    expr       := and (OR and)*
    and        := unary (AND unary)*
    unary      := NOT unary | '(' expr ')' | test
    test       := operand compare operand | property IS [NOT] NULL
                | property [NOT] LIKE string | property ISA string
    operand    := property | string | number | TRUE | FALSE | NULL
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from ..errors import InvalidInput, ServerSessionError

MAX_LENGTH = 16_384  # characters in a query
MAX_DEPTH = 64  # nested parentheses and NOTs
INT_MIN, INT_MAX = -(2**63), 2**64 - 1  # sint64's least and uint64's greatest
REAL_MAX = Decimal(sys.float_info.max)
COMPARE_OPS = ("=", "<>", "!=", "<=", ">=", "<", ">")
EVENT_CLASSES = frozenset(
    name.lower()
    for name in (
        "__Event",
        "__InstanceOperationEvent",
        "__InstanceCreationEvent",
        "__InstanceDeletionEvent",
        "__InstanceModificationEvent",
        "__ClassOperationEvent",
        "__ExtrinsicEvent",
        "__TimerEvent",
    )
)


class WQLError(InvalidInput):
    """A query that is not valid WQL; ``position`` is 1-based."""

    def __init__(self, position: int, message: str) -> None:
        super().__init__(f"WQL error at {position}: {message}")
        self.position = position
        self.reason = message


class NotSupported(ServerSessionError):
    """Valid WQL that serversession does not answer yet (exit code 1)."""


# --- syntax tree ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Property:
    name: str  # as written; resolved against the schema by the compiler
    position: int


@dataclass(frozen=True)
class Constant:
    value: Any  # str, int, Decimal (exact, a number with a fraction or exponent), bool or None
    position: int


@dataclass(frozen=True)
class Compare:
    left: Property | Constant
    op: str
    right: Property | Constant
    position: int


@dataclass(frozen=True)
class IsNull:
    prop: Property
    negated: bool


@dataclass(frozen=True)
class Like:
    prop: Property
    pattern: str
    negated: bool
    position: int  # of the pattern


@dataclass(frozen=True)
class Isa:
    prop: Property
    classname: str
    position: int


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


Node = Compare | IsNull | Like | Isa | Not | And | Or


@dataclass(frozen=True)
class SelectQuery:
    """``SELECT properties FROM classname WHERE where``; ``properties`` None means ``*``."""

    properties: tuple[Property, ...] | None
    classname: str
    class_position: int
    where: Node | None
    text: str


@dataclass(frozen=True)
class EventQuery:
    """``SELECT ... FROM EventClass [WITHIN seconds] [WHERE ...] [GROUP WITHIN ...]``, checked for
    syntax only: the event class, the WHERE over ``TargetInstance.Prop``/``PreviousInstance.Prop``
    and the rest are checked by the event compiler (wql/events.py)."""

    properties: tuple[Property, ...] | None
    classname: str
    class_position: int
    within: Any  # seconds (int or Decimal) or None
    within_position: int  # of WITHIN, or 0
    where: Node | None
    group_position: int  # of GROUP, or 0
    text: str


@dataclass(frozen=True)
class Word:
    """The name given to a keyword of ``ASSOCIATORS OF``/``REFERENCES OF`` (``ResultClass = Win32_Share``)."""

    value: str
    position: int


@dataclass(frozen=True)
class AssociationQuery:
    """``ASSOCIATORS OF {path} WHERE ...`` or ``REFERENCES OF {path} WHERE ...``, checked for syntax
    only (the path is parsed; classes and keys are checked against the schema by the compiler).

    A flag (``class_defs_only``, ``keys_only``, ``schema_only``) is the position of its keyword, or 0.
    """

    kind: str  # ASSOCIATORS or REFERENCES
    path: str  # the object path between the braces, as written
    path_position: int  # of the path's first character
    assoc_class: Word | None = None
    result_class: Word | None = None
    role: Word | None = None
    result_role: Word | None = None
    required_qualifier: Word | None = None
    required_assoc_qualifier: Word | None = None
    class_defs_only: int = 0
    keys_only: int = 0
    schema_only: int = 0
    text: str = ""


# --- lexer ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    kind: str  # name, string, number, op, punct, eof
    value: Any
    position: int  # 1-based
    text: str


_SPACE = re.compile(r"[ \t\r\n\f\v]*")  # ASCII only: no control or exotic space is white space
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NUMBER = re.compile(r"[+-]?(?:0[xX][0-9A-Fa-f]+|[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)(?![A-Za-z0-9_])")
_OPS = ("<>", "!=", "<=", ">=", "=", "<", ">")
_PUNCT = "(),*{}.:"
_ESCAPES = {"\\": "\\", '"': '"', "'": "'"}


class Lexer:
    """Tokens on demand; ``raw`` strings (LIKE patterns) keep their backslashes."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def next(self, raw: bool = False) -> Token:
        text = self.text
        self.pos = _SPACE.match(text, self.pos).end()  # type: ignore[union-attr]
        start = self.pos
        if start >= len(text):
            return Token("eof", None, start + 1, "end of query")
        char = text[start]
        if char in "'\"":
            return self._string(start, char, raw)
        number = NUMBER.match(text, start)
        if number:
            self.pos = number.end()
            return Token("number", read_number(number.group(), start + 1), start + 1, number.group())
        name = _NAME.match(text, start)
        if name:
            self.pos = name.end()
            return Token("name", name.group(), start + 1, name.group())
        for op in _OPS:
            if text.startswith(op, start):
                self.pos = start + len(op)
                return Token("op", op, start + 1, op)
        if char in _PUNCT:
            self.pos = start + 1
            return Token("punct", char, start + 1, char)
        raise WQLError(start + 1, f"unexpected character {char!r}")

    def _string(self, start: int, quote: str, raw: bool) -> Token:
        text = self.text
        out = []
        i = start + 1
        while i < len(text):
            char = text[i]
            if char == quote:
                self.pos = i + 1
                return Token("string", "".join(out), start + 1, text[start : i + 1])
            if char == "\\" and not raw:
                follower = text[i + 1 : i + 2]
                if follower not in _ESCAPES:
                    raise WQLError(i + 1, "a backslash in a string must be written \\\\ (or escape a quote)")
                out.append(_ESCAPES[follower])
                i += 2
                continue
            out.append(char)
            i += 1
        raise WQLError(start + 1, "string is not closed")


def read_number(text: str, position: int) -> int | Decimal:
    """A number that matched NUMBER: an int, or an exact Decimal if it has a fraction or exponent.

    Integers must lie between sint64's least and uint64's greatest value, reals within real64's
    range (checked before any conversion, so no digit count can slow it down or overflow).
    """
    body = text.lstrip("+-")
    if body[:2] in ("0x", "0X") or not any(c in body for c in ".eE"):
        hexadecimal = body[:2] in ("0x", "0X")
        digits = (body[2:] if hexadecimal else body).lstrip("0") or "0"
        if len(digits) <= (16 if hexadecimal else 20):
            value = int(digits, 16 if hexadecimal else 10) * (-1 if text.startswith("-") else 1)
            if INT_MIN <= value <= INT_MAX:
                return value
        raise WQLError(position, f"number {shorten(text)} is out of range (integers: {INT_MIN} to {INT_MAX})")
    try:
        real = Decimal(text)  # exact: 600.0000000000000001 is not 600, 1e-400 is not 0
    except InvalidOperation:  # an exponent beyond what Decimal holds (some 18 digits)
        raise WQLError(position, f"number {shorten(text)} is out of range (its exponent)") from None
    if real.copy_abs() > REAL_MAX:
        raise WQLError(position, f"number {shorten(text)} is out of range (beyond real64's {sys.float_info.max:g})")
    if real.adjusted() < 20 and real == real.to_integral_value() and INT_MIN <= int(real) <= INT_MAX:
        return int(real)  # 1e3, 600.0: an integer (the faster comparison)
    return real


def shorten(text: str, limit: int = 40) -> str:
    """``text`` quoted for an error message, cut to ``limit`` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


# --- parser -----------------------------------------------------------------------------------


class Parser:
    def __init__(self, text: str) -> None:
        if len(text) > MAX_LENGTH:
            raise WQLError(MAX_LENGTH + 1, f"query is longer than {MAX_LENGTH} characters")
        self.lexer = Lexer(text)
        self.text = text
        self.depth = 0
        self._peeked: tuple[bool, Token, int] | None = None

    # token helpers
    def peek(self, raw: bool = False) -> Token:
        if self._peeked is not None and self._peeked[0] == raw:
            return self._peeked[1]
        start = self._peeked[2] if self._peeked is not None else self.lexer.pos
        self.lexer.pos = start
        token = self.lexer.next(raw)
        self._peeked = (raw, token, start)
        return token

    def take(self, raw: bool = False) -> Token:
        token = self.peek(raw)
        self._peeked = None
        return token

    def keyword(self, *words: str) -> str | None:
        """Take the next token if it is one of ``words`` (case-insensitive); return it upper-cased."""
        token = self.peek()
        if token.kind == "name" and token.value.upper() in words:
            self.take()
            return token.value.upper()
        return None

    def expect_keyword(self, word: str) -> Token:
        token = self.peek()
        if not self.keyword(word):
            raise self.error(token, word)
        return token

    def punct(self, char: str) -> bool:
        token = self.peek()
        if token.kind == "punct" and token.value == char:
            self.take()
            return True
        return False

    def error(self, token: Token, expected: str) -> WQLError:
        found = "the end of the query" if token.kind == "eof" else shorten(token.text)
        return WQLError(token.position, f"expected {expected}, found {found}")

    def name(self, what: str) -> Token:
        token = self.peek()
        if token.kind != "name" or token.value.upper() in _RESERVED:
            raise self.error(token, what)
        return self.take()

    # grammar
    def query(self) -> SelectQuery | AssociationQuery | EventQuery:
        first = self.peek()
        word = self.keyword("SELECT", "ASSOCIATORS", "REFERENCES")
        if word is None:
            raise self.error(first, "SELECT, ASSOCIATORS OF or REFERENCES OF")
        if word != "SELECT":
            return self._association(word)
        properties = self._select_list()
        self.expect_keyword("FROM")
        cls = self.name("a class name")
        event = cls.value.lower() in EVENT_CLASSES
        within, within_position, group_position = None, 0, 0
        within_token = self.peek()
        if self.keyword("WITHIN"):
            within, within_position = self._seconds(), within_token.position
            event = True
        where = None
        if self.keyword("WHERE"):
            where = self.expr()
        group_token = self.peek()
        if self.keyword("GROUP"):
            self._group()
            event, group_position = True, group_token.position
        token = self.peek()
        if token.kind != "eof":
            raise self.error(token, "WHERE or the end of the query" if where is None else "AND, OR or the end")
        if event:  # parsed whole: an invalid event query is an error (exit 2) like any other
            return EventQuery(
                properties, cls.value, cls.position, within, within_position, where, group_position, self.text
            )
        return SelectQuery(properties, cls.value, cls.position, where, self.text)

    def _select_list(self) -> tuple[Property, ...] | None:
        if self.punct("*"):
            return None
        props = [self._property("a property name or *")]
        while self.punct(","):
            props.append(self._property("a property name"))
        return tuple(props)

    def _property(self, what: str = "a property name") -> Property:
        token = self.name(what)
        name = token.value
        while self.punct("."):  # TargetInstance.Name: only meaningful in event queries
            name += "." + self.name("a property name").value
        return Property(name, token.position)

    def _association(self, kind: str) -> AssociationQuery:
        """``ASSOCIATORS OF {path} [WHERE ...]`` after its first word: each keyword at most once."""
        self.expect_keyword("OF")
        token = self.peek()
        if not self.punct("{"):
            raise self.error(token, "{ and an object path")
        path, path_position = self._object_path(token.position)
        found: dict[str, Any] = {}
        if self.keyword("WHERE"):
            allowed = _ASSOCIATORS_WORDS if kind == "ASSOCIATORS" else _REFERENCES_WORDS
            while True:
                token = self.peek()
                if token.kind == "eof" and found:
                    break
                upper = token.value.upper() if token.kind == "name" else None
                if upper in ("AND", "OR"):
                    raise WQLError(
                        token.position, f"the keywords after WHERE in {kind} OF are separated by spaces, not {upper}"
                    )
                if upper not in _ASSOCIATION_WORDS:
                    raise self.error(token, "an ASSOCIATORS/REFERENCES keyword such as ResultClass or KeysOnly")
                field = _ASSOCIATION_WORDS[upper]
                if field not in allowed:
                    words = ", ".join(_SPELLING[f] for f in allowed)
                    raise WQLError(token.position, f"{kind} OF takes no {_SPELLING[field]} (it takes {words})")
                if field in found:
                    raise WQLError(token.position, f"{_SPELLING[field]} is given twice")
                self.take()
                if field in _FLAGS:
                    found[field] = token.position
                    continue
                op = self.peek()
                if not (op.kind == "op" and op.value == "="):
                    raise self.error(op, "=")
                self.take()
                name = self.name("a class name" if field.endswith("class") else "a name")
                found[field] = Word(name.value, name.position)
        end = self.peek()
        if end.kind != "eof":
            raise self.error(end, "WHERE or the end of the query" if not found else "another keyword or the end")
        for first, second in (
            ("class_defs_only", "keys_only"),
            ("schema_only", "class_defs_only"),
            ("schema_only", "keys_only"),
        ):
            if first in found and second in found:
                later = max(found[first], found[second])
                raise WQLError(later, f"{_SPELLING[first]} and {_SPELLING[second]} exclude each other")
        return AssociationQuery(kind, path, path_position, **found, text=self.text)

    def _object_path(self, brace: int) -> tuple[str, int]:
        """The object path after ``{`` and the position of its first character (not WQL: read as
        a path up to the ``}`` outside quotes, and checked for syntax)."""
        from ..model.objectpath import PathError, parse_path

        start = self.lexer.pos
        close = _closing_brace(self.text, start)
        if close < 0:
            raise WQLError(brace, "object path is not closed with }")
        text = self.text[start:close]
        try:
            parse_path(text)
        except PathError as exc:
            raise WQLError(start + exc.position, f"in the object path: {exc.reason}") from None
        self.lexer.pos = close + 1
        self._peeked = None
        return text, start + 1

    def _seconds(self) -> Any:
        """The number of seconds after WITHIN: above 0."""
        token = self.take()
        if token.kind != "number" or not token.value > 0:
            raise self.error(token, "a number of seconds above 0")
        return token.value

    def _group(self) -> None:
        """``GROUP WITHIN seconds [BY property, ...] [HAVING expr]``, after GROUP."""
        self.expect_keyword("WITHIN")
        self._seconds()
        if self.keyword("BY"):
            self._property()
            while self.punct(","):
                self._property()
        if self.keyword("HAVING"):
            self.expr()

    def expr(self) -> Node:
        operands = [self.conjunction()]
        while self.keyword("OR"):
            operands.append(self.conjunction())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def conjunction(self) -> Node:
        operands = [self.unary()]
        while self.keyword("AND"):
            operands.append(self.unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def unary(self) -> Node:
        token = self.peek()
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise WQLError(token.position, f"query is nested more than {MAX_DEPTH} levels deep")
        try:
            if self.keyword("NOT"):
                return Not(self.unary())
            if self.punct("("):
                inner = self.expr()
                close = self.peek()
                if not self.punct(")"):
                    raise self.error(close, ") or AND/OR")
                return inner
            return self.test()
        finally:
            self.depth -= 1

    def test(self) -> Node:
        left = self.operand()
        token = self.peek()
        if isinstance(left, Property):
            word = token.value.upper() if token.kind == "name" else None
            if word == "IS":
                self.take()
                negated = bool(self.keyword("NOT"))
                null = self.peek()
                if not self.keyword("NULL"):
                    raise self.error(null, "NULL" if negated else "NULL or NOT NULL")
                return IsNull(left, negated)
            if word in ("LIKE", "NOT"):
                self.take()
                negated = word == "NOT"
                if negated:
                    self.expect_keyword("LIKE")
                pattern = self.take(raw=True)
                if pattern.kind != "string":
                    raise self.error(pattern, "a quoted LIKE pattern")
                return Like(left, pattern.value, negated, pattern.position)
            if word == "ISA":
                self.take()
                cls = self.take()
                if cls.kind != "string":
                    raise self.error(cls, "a quoted class name")
                return Isa(left, cls.value, cls.position)
        if token.kind != "op":
            expected = "an operator (=, <>, <, >, <=, >=, LIKE, IS, ISA)"
            raise self.error(token, expected if isinstance(left, Property) else "an operator (=, <>, <, >, <=, >=)")
        self.take()
        right = self.operand()
        if isinstance(left, Constant) and isinstance(right, Constant):
            raise WQLError(left.position, "a comparison needs a property on one side")
        return Compare(left, token.value, right, token.position)

    def operand(self) -> Property | Constant:
        token = self.peek()
        if token.kind in ("string", "number"):
            self.take()
            return Constant(token.value, token.position)
        if token.kind == "name":
            word = token.value.upper()
            if word in ("TRUE", "FALSE", "NULL"):
                self.take()
                return Constant({"TRUE": True, "FALSE": False, "NULL": None}[word], token.position)
            if word not in _RESERVED:
                return self._property()
        raise self.error(token, "a property name or a constant")


_RESERVED = frozenset(
    [
        "AND",
        "ASSOCIATORS",
        "BY",
        "FALSE",
        "FROM",
        "GROUP",
        "HAVING",
        "IS",
        "ISA",
        "LIKE",
        "NOT",
        "NULL",
        "OF",
        "OR",
        "REFERENCES",
        "SELECT",
        "TRUE",
        "WHERE",
        "WITHIN",
    ]
)
# keyword (upper case) -> AssociationQuery field
_ASSOCIATION_WORDS = {
    "ASSOCCLASS": "assoc_class",
    "RESULTCLASS": "result_class",
    "ROLE": "role",
    "RESULTROLE": "result_role",
    "REQUIREDQUALIFIER": "required_qualifier",
    "REQUIREDASSOCQUALIFIER": "required_assoc_qualifier",
    "CLASSDEFSONLY": "class_defs_only",
    "KEYSONLY": "keys_only",
    "SCHEMAONLY": "schema_only",
}
_SPELLING = {
    "assoc_class": "AssocClass",
    "result_class": "ResultClass",
    "role": "Role",
    "result_role": "ResultRole",
    "required_qualifier": "RequiredQualifier",
    "required_assoc_qualifier": "RequiredAssocQualifier",
    "class_defs_only": "ClassDefsOnly",
    "keys_only": "KeysOnly",
    "schema_only": "SchemaOnly",
}
_FLAGS = frozenset({"class_defs_only", "keys_only", "schema_only"})
_ASSOCIATORS_WORDS = tuple(_SPELLING)
_REFERENCES_WORDS = ("result_class", "role", "required_qualifier", "class_defs_only", "keys_only", "schema_only")


def _closing_brace(text: str, start: int) -> int:
    """Index of the first ``}`` from ``start`` that is outside a quoted value (with backslash
    escapes), or -1."""
    quote = None
    i = start
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "}":
            return i
        i += 1
    return -1


def parse(text: str) -> SelectQuery | AssociationQuery | EventQuery:
    """Parse a WQL query; WQLError (exit code 2) names the position of what is wrong."""
    if not isinstance(text, str):
        raise InvalidInput("a WQL query must be text")
    return Parser(text).query()
