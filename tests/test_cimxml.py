"""The server's CIM-XML codec: template fragments equal pywbem's, hostile input is refused."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pywbem._tupleparse import TupleParser
from pywbem._tupletree import xml_to_tupletree_sax

from serversession.model import SERVER_SESSION, load_schema, server_sessions
from serversession.server import xmlwrite
from serversession.server.cimxml import CIMError, ProtocolError, Request, error_response, method_response, parse_request
from serversession.sources.base import SESS_GUEST, SessionRecord

NOW = 1_800_000_000.0
INSTANCES = server_sessions(
    [
        SessionRecord("1", "10.0.0.5", "alice", NOW - 600, NOW - 30, 2, 0, "SMB3_11", "tcp:10.0.0.1:445"),
        SessionRecord("2", "ws<&>\"'", 'we"i<r>d & co', NOW - 5, None, None, SESS_GUEST, None, None),
    ],
    now=NOW,
)
CLS = load_schema().get(SERVER_SESSION)


def parsed(xml: str):
    return TupleParser().parse_any(xml_to_tupletree_sax(xml.encode(), "test"))


@pytest.mark.parametrize("instance", INSTANCES, ids=["plain", "escaped-and-null"])
def test_instance_fragment_equals_pywbem(instance) -> None:
    ours = parsed(xmlwrite.instance_xml(instance, CLS, list(CLS.properties)))
    reference = instance.to_cim_instance()
    reference.path = None
    assert ours == parsed(reference.tocimxmlstr())  # what pywbem's own XML parses to


@pytest.mark.parametrize("instance", INSTANCES, ids=["plain", "escaped-and-null"])
def test_instance_name_and_path_fragments_equal_pywbem(instance) -> None:
    name = parsed(xmlwrite.instance_name_xml(instance, CLS))
    expected = instance.to_cim_instance().path.copy()
    expected.namespace = None
    assert name == parsed(expected.tocimxmlstr())
    path = parsed(xmlwrite.instance_path_xml(instance, CLS, "fs1", "root/cimv2"))
    expected.namespace, expected.host = "root/cimv2", "fs1"
    assert path == parsed(expected.tocimxmlstr())


def test_reference_fragments_equal_pywbem() -> None:
    """An association: REF properties as PROPERTY.REFERENCE/VALUE.REFERENCE/INSTANCEPATH, and
    reference keys as KEYBINDING/VALUE.REFERENCE, parsing to what pywbem's own XML parses to."""
    from serversession.model.instances import instance_class

    session, cls = INSTANCES[1], load_schema().get("Win32_SessionConnection")  # the escaped names
    connection = instance_class("Win32_ServerConnection")(
        ComputerName=session.ComputerName, ShareName='sh"a\\re', UserName=session.UserName
    )
    link = instance_class(cls.name)(Antecedent=session.object_path, Dependent=connection.object_path)
    reference = link.to_cim_instance()
    for name in ("Antecedent", "Dependent"):
        reference[name].host = "fs1"
        reference.path.keybindings[name].host = "fs1"
    ours = parsed(xmlwrite.instance_xml(link, cls, list(cls.properties), host="fs1"))
    expected = reference.copy()
    expected.path = None
    assert ours == parsed(expected.tocimxmlstr())
    assert ours["Antecedent"].namespace == "root/cimv2" and ours["Antecedent"].host == "fs1"
    assert ours.properties["Dependent"].reference_class == "Win32_ServerConnection"
    name = parsed(xmlwrite.instance_name_xml(link, cls, "fs1"))
    expected_name = reference.path.copy()
    expected_name.namespace = expected_name.host = None
    assert name == parsed(expected_name.tocimxmlstr())
    path = parsed(xmlwrite.instance_path_xml(link, cls, "fs1"))
    assert path.namespace == "root/cimv2" and path.keybindings["Dependent"].keybindings["ShareName"] == 'sh"a\\re'


def test_class_origin_attributes() -> None:
    ours = parsed(xmlwrite.instance_xml(INSTANCES[0], CLS, ["Caption", "UserName"], include_class_origin=True))
    assert ours.properties["Caption"].class_origin == "CIM_ManagedSystemElement"
    assert ours.properties["Caption"].propagated is True
    assert ours.properties["UserName"].propagated is False


def request(body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?><CIM CIMVERSION="2.0" DTDVERSION="2.0">'
        f'<MESSAGE ID="42" PROTOCOLVERSION="1.0"><SIMPLEREQ>{body}</SIMPLEREQ></MESSAGE></CIM>'
    ).encode()


def test_parse_request() -> None:
    body = request(
        '<IMETHODCALL NAME="EnumerateInstances"><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/><NAMESPACE NAME="cimv2"/>'
        '</LOCALNAMESPACEPATH><IPARAMVALUE NAME="ClassName"><CLASSNAME NAME="Win32_ServerSession"/></IPARAMVALUE>'
        '<IPARAMVALUE NAME="DeepInheritance"><VALUE>FALSE</VALUE></IPARAMVALUE>'
        '<IPARAMVALUE NAME="PropertyList"><VALUE.ARRAY><VALUE>UserName</VALUE></VALUE.ARRAY></IPARAMVALUE>'
        "</IMETHODCALL>"
    )
    parsed_request = parse_request(body)
    assert parsed_request.message_id == "42" and parsed_request.method == "EnumerateInstances"
    assert parsed_request.namespace == "root/cimv2"
    assert parsed_request.param("classname").classname == "Win32_ServerSession"
    assert parsed_request.flag("DeepInheritance", True) is False
    assert parsed_request.param("PropertyList") == ["UserName"]


def test_request_parameter_checks() -> None:
    bad = Request("1", "X", "root/cimv2", {"localonly": "maybe", "maxobjectcount": "many"})
    with pytest.raises(CIMError):
        bad.flag("LocalOnly", True)
    with pytest.raises(CIMError):
        bad.integer("MaxObjectCount", 0)
    assert bad.flag("IncludeQualifiers", True) is True


def test_extrinsic_method_calls_are_not_supported() -> None:
    from serversession.server.cimxml import CIMErrorWithId

    body = request(
        '<METHODCALL NAME="Terminate"><LOCALINSTANCEPATH><LOCALNAMESPACEPATH><NAMESPACE NAME="root"/>'
        '</LOCALNAMESPACEPATH><INSTANCENAME CLASSNAME="X"/></LOCALINSTANCEPATH></METHODCALL>'
    )
    with pytest.raises(CIMErrorWithId) as caught:
        parse_request(body)
    assert caught.value.error.code == 7 and caught.value.message_id == "42"


def test_responses_parse_with_pywbem() -> None:
    ok = method_response(
        "9", "PullInstancesWithPath", [], {"EndOfSequence": ("boolean", True), "EnumerationContext": ("string", None)}
    )
    tree = xml_to_tupletree_sax(ok, "response")
    assert tree[0] == "CIM"
    error = error_response("9", "GetInstance", CIMError(6, 'no instance "x" <&>'))
    assert b'CODE="6"' in error and b"&lt;&amp;&gt;" in error
    assert TupleParser().parse_cim(xml_to_tupletree_sax(error, "response"))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=400))
def test_random_bodies_raise_only_protocol_errors(body: bytes) -> None:
    from serversession.server.cimxml import CIMErrorWithId

    with contextlib.suppress(ProtocolError, CIMErrorWithId):
        parse_request(body)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="<>/=\"' CIMESAGNPLQRTVXYDOWabcdefgh12.", max_size=300))
def test_random_markup_raises_only_protocol_errors(text: str) -> None:
    from serversession.server.cimxml import CIMErrorWithId

    with contextlib.suppress(ProtocolError, CIMErrorWithId):
        parse_request(request(text))
