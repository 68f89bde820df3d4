"""WQL LIKE in linear time: the pattern split on ``%`` into fixed-length segments.

Translating a whole pattern into one regular expression (``.*a.*a.*b``) lets Python's
backtracking engine take exponential time: ``%_%_%_%_%_%_%_%_x`` against a 60-character
string took 37 s, and each more wildcard multiplies that. Each run of elements between two ``%`` has a fixed length (every element
matches exactly one character), and for fixed-length segments the leftmost occurrence of each
one after the previous is always the right choice: it leaves the most room for the rest. So
the last segment is checked first, at the very end; the others are placed greedily left to
right before it, the first at the start, each middle one at its leftmost occurrence, and no
placement is ever reconsidered: each middle one is an atomic group ``(?>.*?segment)``
(Python 3.11), which the engine cannot backtrack into. Regular expressions still, run in C,
at a cost of at most O(len(text) * len(pattern)).

Elements: ``%`` any run of characters, ``_`` one character, ``[abc]`` a set, ``[a-f]`` a range,
``[^...]`` their complement (``[%]``, ``[_]``, ``[[]`` the literal character); any other
character, backslash included, stands for itself. Case is ignored as Python's ``re.IGNORECASE``
ignores it, one character against one character.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .parser import WQLError

#: what the compiled WHERE clause calls: anything but None means the text matches
Matcher = Callable[[str], object]
_FLAGS = re.IGNORECASE | re.DOTALL


def compile_like(pattern: str, position: int) -> Matcher:
    """A matcher for the LIKE ``pattern``; ``position`` (1-based, of its opening quote) places errors."""
    segments = [_segment(body, position + 1 + offset) for body, offset in _split(pattern)]
    if len(segments) == 1:  # no %: the one segment, which has a fixed length, is the whole text
        return re.compile(segments[0][0], _FLAGS).fullmatch
    (head, _), *middle, (tail, length) = segments
    # (?>.*?m): the leftmost occurrence of m, then never reconsidered (an atomic group); that of
    # _ (.) is where the previous segment ended
    rest = re.compile(head + "".join(m if m == "." * n else f"(?>.*?{m})" for m, n in middle), _FLAGS).match
    if not length:  # 'abc%...%': a prefix is enough
        return rest
    last = re.compile(tail, _FLAGS).match

    def matches(text: str) -> object:
        """The tail first, at the very end (cheap, and it fails most often), then the rest before it."""
        start = len(text) - length
        return None if start < 0 or last(text, start) is None else rest(text, 0, start)

    return matches


def _split(pattern: str) -> list[tuple[str, int]]:
    """The pattern's segments between ``%`` outside brackets, each with its offset in the pattern."""
    out = []
    start = i = 0
    while i < len(pattern):
        if pattern[i] == "[":
            close = pattern.find("]", i + 1)
            i = len(pattern) if close < 0 else close  # an unclosed [ is reported by _segment
        elif pattern[i] == "%":
            out.append((pattern[start:i], start))
            start = i + 1
        i += 1
    out.append((pattern[start:], start))
    return out


def _segment(body: str, position: int) -> tuple[str, int]:
    """The regular expression of a segment without ``%`` (one element a character, no quantifier), its length."""
    parts = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "_":
            parts.append(".")
        elif char == "[":
            end = body.find("]", i + 1)
            if end < 0:
                raise WQLError(position + i, "[ in the LIKE pattern is not closed with ]")
            parts.append(_char_class(body[i + 1 : end], position + i))
            i = end
        else:
            parts.append(re.escape(char))
        i += 1
    return "".join(parts), len(parts)


def _char_class(body: str, position: int) -> str:
    negate = body.startswith("^")
    if negate:
        body = body[1:]
    if not body:
        raise WQLError(position, "empty [] in the LIKE pattern")
    parts = []
    k = 0
    while k < len(body):
        if k + 2 < len(body) and body[k + 1] == "-":
            low, high = body[k], body[k + 2]
            if low > high:
                raise WQLError(position, f"range {low!r}-{high!r} in the LIKE pattern is reversed")
            parts.append(f"{re.escape(low)}-{re.escape(high)}")
            k += 3
        else:
            parts.append(re.escape(body[k]))
            k += 1
    return "[" + ("^" if negate else "") + "".join(parts) + "]"
