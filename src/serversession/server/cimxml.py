"""CIM-XML (DMTF DSP0201) requests in, responses out, for the operations of DSP0200.

Requests are parsed in two steps: ``defusedxml`` first (no DTD, no entities, no external
references; a depth limit), then pywbem's own CIM-XML parser, which turns the checked
document into pywbem objects. Responses are pywbem's XML for each object inside the few
envelope elements written here.
"""

from __future__ import annotations

import codecs
import io
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from ..xmltext import xml_safe

log = logging.getLogger("serversession.server")
_DECLARED_ENCODING = re.compile(rb"\A(?:\xef\xbb\xbf)?<\?xml[^>]{0,200}?\sencoding\s*=\s*[\"']([^\"']{0,64})[\"']")
_INTEGER = re.compile(r"[+-]?[0-9]{1,20}")  # DSP0201 decimal integers (int() would take "1_0" and other digits)
METHODS_NAMESPACE = "root/Microsoft/Windows/SMB"  # the one namespace whose classes have methods
_OTHER_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)

# DSP0200 status codes
CIM_ERR_FAILED = 1
CIM_ERR_ACCESS_DENIED = 2
CIM_ERR_INVALID_NAMESPACE = 3
CIM_ERR_INVALID_PARAMETER = 4
CIM_ERR_INVALID_CLASS = 5
CIM_ERR_NOT_FOUND = 6
CIM_ERR_NOT_SUPPORTED = 7
CIM_ERR_METHOD_NOT_FOUND = 17
CIM_ERR_QUERY_LANGUAGE_NOT_SUPPORTED = 14
CIM_ERR_INVALID_QUERY = 15
CIM_ERR_INVALID_ENUMERATION_CONTEXT = 21
CIM_ERR_INVALID_OPERATION_TIMEOUT = 22
CIM_ERR_SERVER_LIMITS_EXCEEDED = 27


class CIMError(Exception):
    """An operation failed: answered as an ERROR element (HTTP 200), DSP0200 status ``code``."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description


class ProtocolError(Exception):
    """The request is not a CIM operation: an HTTP error with a ``CIMError`` header."""

    def __init__(self, status: int, cim_error: str | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.cim_error = cim_error
        self.message = message


@dataclass
class Request:
    """One method call: intrinsic (IMETHODCALL), or extrinsic (METHODCALL) on ``target``."""

    message_id: str
    method: str
    namespace: str
    params: dict[str, Any] = field(default_factory=dict)  # lower-case names
    target: Any = None  # extrinsic: the pywbem CIMInstanceName (or CIMClassName) of LOCAL*PATH
    extrinsic: bool = False

    def param(self, name: str, default: Any = None) -> Any:
        value = self.params.get(name.lower(), default)
        return default if value is None else value

    def flag(self, name: str, default: bool) -> bool:
        value = self.params.get(name.lower())
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise CIMError(CIM_ERR_INVALID_PARAMETER, f"{name} must be TRUE or FALSE")

    def integer(self, name: str, default: int | None) -> int | None:
        value = self.params.get(name.lower())
        if value is None:
            return default
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if not isinstance(value, str) or not _INTEGER.fullmatch(value.strip(" \t\r\n")):
            raise CIMError(CIM_ERR_INVALID_PARAMETER, f"{name} must be an integer (decimal digits)")
        return int(value)


def check_encoding(body: bytes) -> None:
    """Refuse a body that is not UTF-8 (DSP0200): another declared encoding, a UTF-16/32 mark."""
    if body.startswith(_OTHER_BOMS):
        raise ProtocolError(400, "request-not-well-formed", "the body is UTF-16 or UTF-32; CIM-XML requests are UTF-8")
    match = _DECLARED_ENCODING.match(body)
    if match is None:
        return
    name = match.group(1).decode("ascii", "replace")
    try:
        known = codecs.lookup(name).name if re.fullmatch(r"[A-Za-z][A-Za-z0-9._-]*", name) else None
    except LookupError:
        known = None
    if known not in ("utf-8", "ascii"):
        raise ProtocolError(
            400,
            "request-not-well-formed",
            f"the XML declaration names encoding {name[:64]!r}; CIM-XML requests are UTF-8",
        )


def check_xml(body: bytes, max_depth: int) -> None:
    """Refuse what is not safe, well-formed XML: ProtocolError 400 request-not-well-formed."""
    check_encoding(body)
    try:
        depth = 0
        for event, element in SafeET.iterparse(io.BytesIO(body), events=("start", "end"), forbid_dtd=True):
            if event == "start":
                depth += 1
                if depth > max_depth:
                    raise ProtocolError(400, "request-not-valid", f"XML nested deeper than {max_depth} levels")
            else:
                depth -= 1
                element.clear()  # only the shape matters here: keep no tree
    except DefusedXmlException as exc:
        raise ProtocolError(400, "request-not-well-formed", f"refused XML: {type(exc).__name__}") from None
    except SafeET.ParseError as exc:
        raise ProtocolError(400, "request-not-well-formed", f"XML is not well-formed: {exc}") from None
    except (ValueError, LookupError, UnicodeError) as exc:  # what expat raises for encodings it cannot read
        raise ProtocolError(400, "request-not-well-formed", f"XML cannot be read: {exc}") from None


def parse_request(body: bytes, max_depth: int = 32) -> Request:
    """Check and decode a CIM-XML request body into a :class:`Request`.

    Raises ProtocolError (an HTTP error) or CIMErrorWithId (an ERROR answer), nothing else: what
    the parsers raise unexpectedly is a request the server cannot read (400), logged on one line.
    """
    check_xml(body, max_depth)
    try:
        return _decode(body)
    except (ProtocolError, CIMErrorWithId):
        raise
    except Exception as exc:
        log.warning("unexpected %s while reading a request: %s", type(exc).__name__, str(exc)[:200])
        raise ProtocolError(400, "request-not-valid", f"not valid CIM-XML: {type(exc).__name__}") from None


def _decode(body: bytes) -> Request:
    from pywbem import Error as PywbemError
    from pywbem._tupleparse import TupleParser, kids
    from pywbem._tupletree import xml_to_tupletree_sax

    try:
        tree = xml_to_tupletree_sax(body, "CIM-XML request")
    except PywbemError as exc:
        raise ProtocolError(400, "request-not-well-formed", f"XML is not well-formed: {exc}") from None
    children = kids(tree)  # elements only, no white space between them
    if tree[0] != "CIM" or len(children) != 1 or children[0][0] != "MESSAGE":
        raise ProtocolError(400, "request-not-valid", "the document is not a CIM MESSAGE")
    cim_version = tree[1].get("CIMVERSION", "")
    dtd_version = tree[1].get("DTDVERSION", "")
    if not cim_version.startswith("2."):
        raise ProtocolError(400, "unsupported-cim-version", f"CIMVERSION {cim_version!r} is not 2.x")
    if not dtd_version.startswith("2."):
        raise ProtocolError(400, "unsupported-dtd-version", f"DTDVERSION {dtd_version!r} is not 2.x")
    message = children[0]
    message_id = message[1].get("ID", "")
    if not message[1].get("PROTOCOLVERSION", "").startswith("1."):
        raise ProtocolError(400, "unsupported-protocol-version", "PROTOCOLVERSION is not 1.x")
    requests = kids(message)
    kinds = [child[0] for child in requests]
    if kinds == ["MULTIREQ"]:
        raise ProtocolError(501, "multiple-requests-unsupported", "multiple requests are not supported")
    if kinds != ["SIMPLEREQ"] or len(kids(requests[0])) != 1:
        raise ProtocolError(400, "request-not-valid", "MESSAGE must hold one SIMPLEREQ")
    call = kids(requests[0])[0]
    if call[0] == "METHODCALL":
        return _extrinsic(call, message_id)
    try:
        _, attrs, namespace, params = TupleParser().parse_imethodcall(call)
    except PywbemError as exc:
        raise ProtocolError(400, "request-not-valid", f"not valid CIM-XML: {exc}") from None
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ProtocolError(400, "request-not-valid", f"not valid CIM-XML: {type(exc).__name__}") from None
    return Request(message_id, attrs["NAME"], namespace, _once(params, message_id, attrs["NAME"]))


def _once(params: Iterable[Any], message_id: str, method: str, extrinsic: bool = False) -> dict[str, Any]:
    """Parameters by lower-case name, each given once (else CIM_ERR_INVALID_PARAMETER)."""
    seen: dict[str, Any] = {}
    for param in params:
        name = param[0]
        if name.lower() in seen:
            error = CIMError(CIM_ERR_INVALID_PARAMETER, f"parameter {name[:100]} is given more than once")
            raise CIMErrorWithId(message_id, method, error, extrinsic)
        seen[name.lower()] = param[-1]  # IPARAMVALUE: (name, value); PARAMVALUE: (name, type, value)
    return seen


def _extrinsic(call: Any, message_id: str) -> Request:
    """A METHODCALL (DSP0200 extrinsic method call) on a LOCALINSTANCEPATH or LOCALCLASSPATH.

    Only root/Microsoft/Windows/SMB has methods (MSFT_SmbSession's and MSFT_SmbOpenFile's
    ForceClose, DESIGN.md 2c): a call in any other namespace is CIM_ERR_NOT_SUPPORTED, as before.
    """
    from pywbem import Error as PywbemError
    from pywbem._tupleparse import TupleParser, kids

    from ..model.schema import namespace_name

    method = call[1].get("NAME", "")
    try:  # LOCALINSTANCEPATH or LOCALCLASSPATH, whose first child is LOCALNAMESPACEPATH
        spaces = kids(kids(kids(call)[0])[0])
        namespace = "/".join(str(n[1].get("NAME", "")) for n in spaces if n[0] == "NAMESPACE")
    except (IndexError, TypeError, AttributeError):
        namespace = ""
    if namespace_name(namespace) != METHODS_NAMESPACE:  # refused before anything else is parsed
        error = CIMError(
            CIM_ERR_NOT_SUPPORTED,
            f"extrinsic methods are served in {METHODS_NAMESPACE} only (ForceClose of MSFT_SmbSession and "
            "MSFT_SmbOpenFile); the other namespaces have none",
        )
        raise CIMErrorWithId(message_id, method, error, extrinsic=True)
    try:
        _, _, target, params = TupleParser().parse_methodcall(call)
    except PywbemError as exc:
        raise ProtocolError(400, "request-not-valid", f"not valid CIM-XML: {exc}") from None
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ProtocolError(400, "request-not-valid", f"not valid CIM-XML: {type(exc).__name__}") from None
    return Request(message_id, method, namespace, _once(params, message_id, method, True), target, True)


class CIMErrorWithId(Exception):
    """A CIMError found while parsing, once the message ID and method are known."""

    def __init__(self, message_id: str, method: str, error: CIMError, extrinsic: bool = False) -> None:
        super().__init__(error.description)
        self.message_id = message_id
        self.method = method
        self.error = error
        self.extrinsic = extrinsic


def _head(message_id: str, method: str, element: str = "IMETHODRESPONSE") -> str:
    return (
        '<?xml version="1.0" encoding="utf-8" ?>\n'
        '<CIM CIMVERSION="2.0" DTDVERSION="2.0">'
        f'<MESSAGE ID={quoteattr(message_id)} PROTOCOLVERSION="1.0"><SIMPLERSP>'
        f"<{element} NAME={quoteattr(method)}>"
    )


def _envelope(message_id: str, method: str, inner: str, element: str = "IMETHODRESPONSE") -> bytes:
    # the head quotes the client's message id and method; inner may quote its text in an error
    return xml_safe(_head(message_id, method, element) + f"{inner}</{element}></SIMPLERSP></MESSAGE></CIM>").encode()


def method_response(
    message_id: str,
    method: str,
    values: Iterable[str] | None = None,
    out_params: dict[str, tuple[str, Any]] | None = None,
    encoded: bytes | None = None,
) -> bytes:
    """An IMETHODRESPONSE: IRETURNVALUE holding ``values`` (XML fragments) and typed out parameters.

    ``encoded``: the IRETURNVALUE's content already joined and encoded (shared by many responses).
    """
    if encoded is not None and not out_params:
        head = xml_safe(_head(message_id, method)) + "<IRETURNVALUE>"
        return head.encode() + encoded + b"</IRETURNVALUE></IMETHODRESPONSE></SIMPLERSP></MESSAGE></CIM>"
    if encoded is not None:
        values = [encoded.decode()]
    inner = "" if values is None else "<IRETURNVALUE>" + "".join(values) + "</IRETURNVALUE>"
    for name, (cim_type, value) in (out_params or {}).items():
        inner += f"<PARAMVALUE NAME={quoteattr(name)} PARAMTYPE={quoteattr(cim_type)}>"
        if value is not None:
            text = ("TRUE" if value else "FALSE") if isinstance(value, bool) else str(value)
            inner += f"<VALUE>{escape(text)}</VALUE>"
        inner += "</PARAMVALUE>"
    return _envelope(message_id, method, inner)


def return_response(message_id: str, method: str, cim_type: str, value: int) -> bytes:
    """A METHODRESPONSE (an extrinsic method's answer) with its RETURNVALUE."""
    inner = f"<RETURNVALUE PARAMTYPE={quoteattr(cim_type)}><VALUE>{int(value)}</VALUE></RETURNVALUE>"
    return _envelope(message_id, method, inner, "METHODRESPONSE")


def error_response(message_id: str, method: str, error: CIMError, extrinsic: bool = False) -> bytes:
    """An IMETHODRESPONSE (METHODRESPONSE for an extrinsic method) with an ERROR element."""
    return _envelope(
        message_id,
        method,
        f"<ERROR CODE={quoteattr(str(error.code))} DESCRIPTION={quoteattr(error.description)}></ERROR>",
        "METHODRESPONSE" if extrinsic else "IMETHODRESPONSE",
    )
