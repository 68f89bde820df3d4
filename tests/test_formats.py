"""Each output format of ``list``: json, csv, mof, xml and the table."""

from __future__ import annotations

import csv
import io
import json

import defusedxml.ElementTree as SafeET
import pytest

from serversession.formats import FORMATS, human_duration, render
from serversession.model import SERVER_SESSION, load_schema, server_sessions
from serversession.sources.base import SESS_GUEST, SessionRecord

NOW = 1_800_000_000.0


@pytest.fixture
def instances() -> list:
    records = [
        SessionRecord("0x1", "10.0.0.5", "alice", NOW - 3725, NOW - 61, 3, 0, "SMB3_11", "tcp:10.0.0.1:445"),
        SessionRecord("0x2", "ws-7", 'o"brien, jr', NOW - 90000, None, None, 0, None, None),
        SessionRecord("0x3", "10.0.0.9", "", NOW - 5, NOW - 5, 0, SESS_GUEST, "SMB2_10", "tcp:10.0.0.1:445"),
    ]
    return server_sessions(records, now=NOW)


@pytest.fixture
def cls():
    return load_schema().get(SERVER_SESSION)


def test_json_has_every_property_nulls_and_iso_dates(instances, cls) -> None:
    data = json.loads(render(instances, cls, "json"))
    assert [d["UserName"] for d in data] == ["alice", "", 'o"brien, jr']  # sorted by ComputerName
    for item in data:
        assert list(item) == list(cls.properties)
    alice = data[0]
    assert alice["ActiveTime"] == 3725 and alice["IdleTime"] == 61 and alice["ResourcesOpened"] == 3
    from datetime import datetime

    assert datetime.fromisoformat(alice["InstallDate"]).timestamp() == NOW - 3725
    assert alice["InstallDate"][-6] in "+-"  # ISO 8601 with the offset
    assert data[2]["IdleTime"] is None and data[2]["ResourcesOpened"] is None and data[2]["ClientType"] is None
    assert json.loads(render([], cls, "json")) == []


def test_csv_round_trips_with_quoting(instances, cls) -> None:
    rows = list(csv.DictReader(io.StringIO(render(instances, cls, "csv"))))
    assert len(rows) == 3
    assert rows[2]["UserName"] == 'o"brien, jr'
    assert rows[2]["IdleTime"] == ""  # unknown is an empty cell
    assert rows[0]["ActiveTime"] == "3725"
    assert list(rows[0]) == list(cls.properties)
    assert render([], cls, "csv").strip() == ",".join(cls.properties)


def test_mof_parses_back_with_pywbem(instances, cls) -> None:
    import pywbem

    text = render(instances, cls, "mof")
    conn = pywbem.MOFWBEMConnection()
    compiler = pywbem.MOFCompiler(conn, verbose=False, log_func=lambda _m: None)
    from conftest import compile_package_mof
    from serversession.model.schema import NAMESPACE

    compile_package_mof(compiler)
    compiler.compile_string(text, NAMESPACE, filename="list.mof")
    parsed = conn.instances[NAMESPACE]
    assert len(parsed) == 3
    by_user = {i["UserName"]: i for i in parsed}
    assert by_user["alice"]["ResourcesOpened"] == 3
    assert by_user['o"brien, jr']["IdleTime"] is None
    assert str(by_user["alice"]["InstallDate"]) == str(instances[0].to_cim_instance()["InstallDate"])


def test_xml_is_a_cim_document_with_instance_names(instances, cls) -> None:
    text = render(instances, cls, "xml")
    root = SafeET.fromstring(text.encode())
    assert root.tag == "CIM" and root.get("DTDVERSION") == "2.0"
    objects = root.findall("./DECLARATION/DECLGROUP.WITHPATH/VALUE.OBJECTWITHLOCALPATH")
    assert len(objects) == 3
    path, instance = objects[0]
    assert path.tag == "LOCALINSTANCEPATH"
    namespace = [n.get("NAME") for n in path.findall("./LOCALNAMESPACEPATH/NAMESPACE")]
    assert namespace == ["root", "cimv2"]
    name = path.find("INSTANCENAME")
    assert name.get("CLASSNAME") == SERVER_SESSION
    assert instance.tag == "INSTANCE" and instance.get("CLASSNAME") == SERVER_SESSION
    keys = {kb.get("NAME"): kb.findtext("KEYVALUE") for kb in name.findall("KEYBINDING")}
    assert keys == {"ComputerName": "10.0.0.5", "UserName": "alice"}
    values = {p.get("NAME"): p.findtext("VALUE") for p in instance.findall("PROPERTY")}
    assert values["ActiveTime"] == "3725"
    assert len(values["InstallDate"]) == 25  # yyyymmddHHMMSS.mmmmmmsUUU


def test_table_for_people(instances, cls) -> None:
    text = render(instances, cls, "table", width=120)
    lines = text.splitlines()
    assert lines[0].split() == ["Computer", "User", "Client", "type", "Opens", "Active", "Idle", "Type", "Status"]
    alice = next(line for line in lines if "alice" in line)
    assert "01:02:05" in alice and "00:01:01" in alice and "SMB3_11" in alice and "Other" in alice
    obrien = next(line for line in lines if "brien" in line)
    assert "1d 01:00:00" in obrien
    assert "(anonymous)" in text and "Guest" in text
    assert lines[-1] == "3 sessions"
    assert render([], cls, "table").splitlines()[-1] == "0 sessions"


def test_every_format_renders(instances, cls) -> None:
    for fmt in FORMATS:
        assert render(instances, cls, fmt).endswith("\n")


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, "-"), (0, "00:00:00"), (59, "00:00:59"), (3600, "01:00:00"), (86401, "1d 00:00:01")]
)
def test_human_duration(seconds, text) -> None:
    assert human_duration(seconds) == text
