"""Text from clients made safe inside XML 1.0, for every front end that writes XML.

Names come from SMB clients and may hold any character. pywbem and ``xml.sax.saxutils`` escape
``& < > "`` but write control characters raw: a document holding U+0001 does not parse, and a
raw CR becomes LF when it is parsed. :func:`xml_safe` fixes an already escaped XML text: each
character XML 1.0 cannot hold at all (C0 controls other than tab, LF and CR, lone surrogates,
U+FFFE, U+FFFF) becomes U+FFFD; every other one a terminal should not see raw (CR, C1 controls,
DEL, bidi overrides ...) a character reference. Tab and LF stay as they are.
"""

from __future__ import annotations

import re
import unicodedata

REPLACEMENT = "\ufffd"
_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def shows(char: str) -> bool:
    """Whether ``char`` may reach a terminal as it is: printable, or a space."""
    return char.isprintable() or unicodedata.category(char) == "Zs"


def xml_safe(text: str) -> str:
    """Escaped XML ``text`` with no character XML 1.0 forbids or a terminal should not see raw."""
    return "\n".join(line if line.isprintable() else "".join(map(_xml_char, line)) for line in text.split("\n"))


def _xml_char(char: str) -> str:
    if char == "\t" or shows(char):
        return char
    if _FORBIDDEN.match(char):
        return REPLACEMENT
    return f"&#x{ord(char):X};"
