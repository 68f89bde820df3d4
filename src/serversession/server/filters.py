"""The query of a ``CIM_IndicationFilter``: a WMI event query, or a DMTF one translated to it.

Two forms are accepted, with QueryLanguage ``WQL`` or ``DMTF:CQL`` (also ``CIM:CQL``):

- WMI's: ``SELECT * FROM __InstanceCreationEvent WITHIN 5 WHERE TargetInstance ISA
  'Win32_ServerSession'``, given to the event engine as it is (serversession.wql.events).
- DMTF's (DSP1054, CQL): ``SELECT * FROM CIM_InstCreation WHERE SourceInstance ISA
  Win32_ServerSession``, also CIM_InstDeletion, CIM_InstModification and CIM_InstIndication
  (any of the three). It is rewritten token by token with the WQL lexer, never by pattern
  matching over the text: the class becomes the WMI event class, ``WITHIN`` the server's poll
  interval is added (unless the query has its own), ``SourceInstance`` becomes
  ``TargetInstance`` and a class name after ``ISA`` is quoted. The rewritten query is then
  compiled like any event query, so both forms accept the same conditions.

Either way, what is delivered is a DMTF indication (:mod:`.indications`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..model import load_schema
from ..model.schema import namespace_name
from ..wql.events import CREATION, DELETION, INSTANCE_EVENTS, MODIFICATION, OPERATION, CompiledEvent, compile_event
from ..wql.parser import Lexer, NotSupported, Token, WQLError
from .cimxml import (
    CIM_ERR_INVALID_PARAMETER,
    CIM_ERR_NOT_SUPPORTED,
    CIM_ERR_QUERY_LANGUAGE_NOT_SUPPORTED,
    CIMError,
)

MAX_FILTER_QUERY = 4096  # characters of a filter's query
LANGUAGES = {"wql": "WQL", "dmtf:cql": "DMTF:CQL", "cim:cql": "CIM:CQL"}
#: the DMTF indication classes a filter may select, and the WMI event class each stands for
DMTF_CLASSES = {
    "CIM_InstCreation": CREATION,
    "CIM_InstDeletion": DELETION,
    "CIM_InstModification": MODIFICATION,
    "CIM_InstIndication": OPERATION,
}
_DMTF_BY_NAME = {name.lower(): name for name in DMTF_CLASSES}
#: DMTF indication classes that are valid in a filter but never produced here
_OTHER_INDICATIONS = ("cim_instread", "cim_instmethodcall", "cim_alertindication", "cim_classindication",
                      "cim_classcreation", "cim_classdeletion", "cim_classmodification", "cim_processindication",
                      "cim_indication", "cim_snmptrapindication", "cim_alertinstindication")  # fmt: skip
#: what a DMTF query's select list may name: CIM_InstModification's properties (superclasses included)
INDICATION_PROPERTIES = ("IndicationIdentifier", "CorrelatedIndications", "IndicationTime", "PerceivedSeverity",
                         "OtherSeverity", "IndicationFilterName", "SequenceContext", "SequenceNumber",
                         "SourceInstance", "SourceInstanceModelPath", "SourceInstanceHost", "PreviousInstance")  # fmt: skip


@dataclass(frozen=True)
class FilterQuery:
    """A filter's query, checked: the event query the engine runs, and what an indication carries."""

    query: str  # as the client gave it
    language: str  # as this server spells it: WQL, DMTF:CQL or CIM:CQL
    event_query: str  # WMI event WQL, what the engine runs
    compiled: CompiledEvent
    properties: tuple[str, ...] | None  # a DMTF select list (indication properties); None: all

    @property
    def namespace(self) -> str:
        """The namespace of the class the query watches (root/cimv2 or root/Microsoft/Windows/SMB)."""
        return load_schema().get(self.compiled.target_class).namespace


def compile_filter(
    query: object, language: object, poll_interval: float, source_namespaces: list[str] | None = None
) -> FilterQuery:
    """Check a filter's Query, QueryLanguage and SourceNamespaces; CIMError says what is wrong:
    CIM_ERR_QUERY_LANGUAGE_NOT_SUPPORTED for another language, CIM_ERR_NOT_SUPPORTED for a valid
    query this server does not answer (another indication class, GROUP), else CIM_ERR_INVALID_PARAMETER."""
    if not isinstance(language, str) or language.lower() not in LANGUAGES:
        shown = repr(language[:100]) if isinstance(language, str) else "missing"
        raise CIMError(
            CIM_ERR_QUERY_LANGUAGE_NOT_SUPPORTED,
            f"QueryLanguage {shown}: this server takes {', '.join(LANGUAGES.values())}",
        )
    if not isinstance(query, str) or not query.strip():
        raise CIMError(CIM_ERR_INVALID_PARAMETER, "the filter has no Query")
    if len(query) > MAX_FILTER_QUERY:
        raise CIMError(CIM_ERR_INVALID_PARAMETER, f"the filter's Query is longer than {MAX_FILTER_QUERY} characters")
    event_query, properties = _to_event_query(query, poll_interval)
    try:
        compiled = compile_event(event_query)
    except NotSupported as exc:
        raise CIMError(CIM_ERR_NOT_SUPPORTED, f"the filter's Query: {exc}") from None
    except WQLError as exc:
        shown = "" if event_query == query else f" (as the WQL event query {event_query!r})"
        raise CIMError(CIM_ERR_INVALID_PARAMETER, f"the filter's Query{shown}: {exc}") from None
    result = FilterQuery(query, LANGUAGES[language.lower()], event_query, compiled, properties)
    _check_namespaces(result, source_namespaces)
    return result


def _tokens(query: str) -> list[Token]:
    """The query's tokens (a string after LIKE keeps its backslashes, as the parser reads it)."""
    lexer = Lexer(query)
    out: list[Token] = []
    while True:
        raw = len(out) > 0 and out[-1].kind == "name" and out[-1].value.upper() == "LIKE"
        token = lexer.next(raw)
        if token.kind == "eof":
            return out
        out.append(token)


def _to_event_query(query: str, poll_interval: float) -> tuple[str, tuple[str, ...] | None]:
    """The WMI event query for ``query`` and, for a DMTF one, its select list (None for ``*``)."""
    try:
        tokens = _tokens(query)
    except WQLError as exc:
        raise CIMError(CIM_ERR_INVALID_PARAMETER, f"the filter's Query: {exc}") from None
    names = [t.value.upper() if t.kind == "name" else None for t in tokens]
    if not tokens or names[0] != "SELECT" or "FROM" not in names:
        raise CIMError(CIM_ERR_INVALID_PARAMETER, "the filter's Query must be SELECT ... FROM class WHERE ...")
    at = names.index("FROM") + 1
    if at >= len(tokens) or tokens[at].kind != "name":
        raise CIMError(CIM_ERR_INVALID_PARAMETER, "the filter's Query names no class after FROM")
    classname = tokens[at].value
    if classname.lower() in INSTANCE_EVENTS:
        return query, None
    dmtf = _DMTF_BY_NAME.get(classname.lower())
    if dmtf is None:
        if classname.lower() in _OTHER_INDICATIONS:
            raise CIMError(
                CIM_ERR_NOT_SUPPORTED,
                f"{classname} indications are not produced here: filter CIM_InstCreation, CIM_InstDeletion, "
                "CIM_InstModification or CIM_InstIndication (or WMI's __Instance*Event)",
            )
        raise CIMError(
            CIM_ERR_INVALID_PARAMETER,
            f"the filter's Query selects from {classname[:100]!r}, which is not an indication class "
            "(CIM_InstCreation, CIM_InstDeletion, CIM_InstModification, CIM_InstIndication, or WMI's __Instance*Event)",
        )
    properties = _select_list(tokens[1 : at - 1])
    edits: list[tuple[int, int, str]] = [(tokens[at].position - 1, len(tokens[at].text), DMTF_CLASSES[dmtf])]
    if names[at + 1 : at + 2] != ["WITHIN"]:
        edits.append((tokens[at].position - 1 + len(tokens[at].text), 0, f" WITHIN {poll_interval:g}"))
    edits.append((tokens[1].position - 1, tokens[at - 1].position - 1 - (tokens[1].position - 1), "* "))
    for index, token in enumerate(tokens[at + 1 :], start=at + 1):
        if token.kind != "name":
            continue
        if token.value.lower() == "sourceinstance":
            edits.append((token.position - 1, len(token.text), "TargetInstance"))
        elif names[index - 1] == "ISA":  # CQL names the class without quotes
            edits.append((token.position - 1, len(token.text), f"'{token.value}'"))
    text = query
    for start, length, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[start + length :]
    return text, properties


def _select_list(tokens: list[Token]) -> tuple[str, ...] | None:
    """A DMTF select list: ``*`` or indication properties separated by commas."""
    if len(tokens) == 1 and tokens[0].text == "*":
        return None
    chosen: list[str] = []
    for number, token in enumerate(tokens):
        if number % 2:
            if token.text != ",":
                raise CIMError(
                    CIM_ERR_INVALID_PARAMETER, f"the filter's Query: unexpected {token.text!r} at {token.position}"
                )
            continue
        name = next(
            (p for p in INDICATION_PROPERTIES if token.kind == "name" and p.lower() == token.value.lower()), None
        )
        if name is None:
            raise CIMError(
                CIM_ERR_INVALID_PARAMETER,
                f"the filter's Query selects {token.text[:100]!r} at {token.position}, which is not a property "
                f"of the indication ({', '.join(INDICATION_PROPERTIES)})",
            )
        chosen.append(name)
    if not chosen or len(tokens) % 2 == 0:
        raise CIMError(CIM_ERR_INVALID_PARAMETER, "the filter's Query selects nothing (SELECT * or property names)")
    return tuple(dict.fromkeys(chosen))


def _check_namespaces(query: FilterQuery, source_namespaces: list[str] | None) -> None:
    """The class the filter watches must be in one of its SourceNamespaces, when it names any."""
    if not source_namespaces:
        return
    served = []
    for text in source_namespaces:
        name = namespace_name(text) if isinstance(text, str) else None
        if name is None:
            shown = text[:200] if isinstance(text, str) else text
            raise CIMError(CIM_ERR_INVALID_PARAMETER, f"SourceNamespaces names {shown!r}, which has no events here")
        served.append(name)
    if query.namespace not in served:
        raise CIMError(
            CIM_ERR_INVALID_PARAMETER,
            f"the filter watches {query.compiled.target_class}, which is in {query.namespace}, "
            f"not in its SourceNamespaces ({', '.join(served)})",
        )
