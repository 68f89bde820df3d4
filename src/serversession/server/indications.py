"""DMTF indications (DSP1054) from the event engine's events, and the ExportIndication request
that carries one to a listener (DSP0200 section 6, DSP0201 ``EXPMETHODCALL``).

Every filter, WMI-style or DMTF-style, delivers DMTF indications (DESIGN.md 2b):
``CIM_InstCreation``, ``CIM_InstDeletion`` and ``CIM_InstModification``, with the instance in
``SourceInstance`` (and, for a modification, the instance at the poll before in
``PreviousInstance``), both embedded objects (``EmbeddedObject="instance"``, which pywbem's
listener turns back into a CIMInstance), ``IndicationTime`` (the event's TIME_CREATED),
``IndicationFilterName``, ``SourceInstanceModelPath``, ``SourceInstanceHost``, and
``SequenceContext``/``SequenceNumber`` with which a listener can tell a resent indication from
a new one. pywbem builds the instance and writes its CIM-XML; the envelope is written here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import quoteattr

from ..model.instances import local_server_name
from ..wql.events import CREATION, DELETION, MODIFICATION, Event, unix_time
from ..xmltext import xml_safe

#: the DMTF indication class of each WMI event class
INDICATION_CLASSES = {
    CREATION: "CIM_InstCreation",
    DELETION: "CIM_InstDeletion",
    MODIFICATION: "CIM_InstModification",
}
INFORMATION = 2  # CIM_Indication.PerceivedSeverity "Information"
EXPORT_HEADERS = {  # DSP0200 6.3: what marks an HTTP request as a CIM export request
    "CIMExport": "MethodRequest",
    "CIMExportMethod": "ExportIndication",
    "CIMProtocolVersion": "1.0",
    "Content-Type": 'application/xml; charset="utf-8"',
}


def indication(
    event: Event,
    filter_name: str,
    context: str,
    number: int,
    properties: tuple[str, ...] | None = None,
) -> Any:
    """The DMTF indication of ``event`` (a ``pywbem.CIMInstance``), number ``number`` of the
    sequence ``context``; only ``properties`` when the filter's select list names some."""
    import pywbem

    source = event.target.to_cim_instance()
    host = event.target.server or local_server_name()
    path = source.path.copy()
    path.host = host
    moment = datetime.fromtimestamp(unix_time(event.time_created), UTC)
    values: dict[str, Any] = {
        "IndicationIdentifier": pywbem.CIMProperty("IndicationIdentifier", f"{context}:{number}", type="string"),
        "IndicationTime": pywbem.CIMProperty("IndicationTime", pywbem.CIMDateTime(moment), type="datetime"),
        "PerceivedSeverity": pywbem.CIMProperty("PerceivedSeverity", pywbem.Uint16(INFORMATION), type="uint16"),
        "IndicationFilterName": pywbem.CIMProperty("IndicationFilterName", filter_name, type="string"),
        "SequenceContext": pywbem.CIMProperty("SequenceContext", context, type="string"),
        "SequenceNumber": pywbem.CIMProperty("SequenceNumber", pywbem.Sint64(number), type="sint64"),
        "SourceInstance": _embedded("SourceInstance", source),
        "SourceInstanceModelPath": pywbem.CIMProperty("SourceInstanceModelPath", path.to_wbem_uri(), type="string"),
        "SourceInstanceHost": pywbem.CIMProperty("SourceInstanceHost", host, type="string"),
    }
    if event.classname == MODIFICATION:
        previous = event.previous.to_cim_instance() if event.previous is not None else None
        values["PreviousInstance"] = _embedded("PreviousInstance", previous)
    if properties is not None:
        values = {name: prop for name, prop in values.items() if name in properties}
    return pywbem.CIMInstance(INDICATION_CLASSES[event.classname], properties=values)


def _embedded(name: str, instance: Any) -> Any:
    import pywbem

    if instance is not None:
        instance.path = None  # an embedded instance has no path (SourceInstanceModelPath says it)
    return pywbem.CIMProperty(name, instance, type="string", embedded_object="instance")


def export_request(indication: Any, message_id: str) -> bytes:
    """The body of an ExportIndication request carrying ``indication`` (DSP0201 ``SIMPLEEXPREQ``)."""
    body = (
        '<?xml version="1.0" encoding="utf-8" ?>\n'
        '<CIM CIMVERSION="2.0" DTDVERSION="2.0">'
        f'<MESSAGE ID={quoteattr(message_id)} PROTOCOLVERSION="1.0"><SIMPLEEXPREQ>'
        '<EXPMETHODCALL NAME="ExportIndication"><EXPPARAMVALUE NAME="NewIndication">'
        f"{indication.tocimxmlstr()}</EXPPARAMVALUE></EXPMETHODCALL></SIMPLEEXPREQ></MESSAGE></CIM>"
    )
    return xml_safe(body).encode()  # client names may hold characters XML 1.0 cannot
