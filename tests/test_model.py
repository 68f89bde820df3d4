"""The model: schema-generated instance classes and the merge rule of DESIGN.md section 2."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest

from serversession.model import SERVER_SESSION, instance_class, load_schema, server_sessions
from serversession.model.instances import cim_datetime_text, session_type
from serversession.sources.base import SESS_GUEST, SESS_NOENCRYPTION, SessionRecord

NOW = 1_800_000_000.0


def record(**values: object) -> SessionRecord:
    base: dict[str, object] = {
        "session_id": "0x1",
        "computer_name": "10.0.0.5",
        "user_name": "alice",
        "established": NOW - 600,
        "last_request": NOW - 30,
        "opens": 2,
        "user_flags": 0,
        "client_type": "SMB3_11",
        "transport": "tcp:10.0.0.1:445",
    }
    base.update(values)
    return SessionRecord(**base)  # type: ignore[arg-type]


def test_instance_class_has_every_schema_property_and_nothing_else() -> None:
    cls = instance_class(SERVER_SESSION)
    schema_names = list(load_schema().get(SERVER_SESSION).properties)
    assert [f.name for f in dataclasses.fields(cls)] == [*schema_names, "server"]  # server: not CIM
    assert list(cls().to_dict()) == schema_names
    assert "ResourcesOpened" in schema_names and "Caption" in schema_names  # own and inherited
    instance = cls()
    with pytest.raises(dataclasses.FrozenInstanceError):
        instance.UserName = "x"  # type: ignore[misc]


def test_one_session_becomes_one_instance_with_true_values() -> None:
    [s] = server_sessions([record()], now=NOW)
    assert (s.ComputerName, s.UserName) == ("10.0.0.5", "alice")
    assert s.ActiveTime == 600
    assert s.IdleTime == 30
    assert s.ResourcesOpened == 2
    assert s.SessionType == 2
    assert s.ClientType == "SMB3_11"
    assert s.TransportName == "tcp:10.0.0.1:445"
    assert s.Status == "OK"
    assert s.Caption == s.Name == "alice@10.0.0.5"
    assert s.InstallDate == datetime.fromtimestamp(NOW - 600, UTC)
    assert s.InstallDate.utcoffset() is not None  # aware, local time zone
    assert s.path == 'Win32_ServerSession.ComputerName="10.0.0.5",UserName="alice"'


def test_merge_rule_oldest_start_least_idle_summed_opens() -> None:
    older = record(session_id="0x1", established=NOW - 900, last_request=NOW - 800, opens=1, client_type="SMB2_10")
    newer = record(session_id="0x2", established=NOW - 100, last_request=NOW - 5, opens=4)
    other = record(session_id="0x3", user_name="bob", opens=0)
    merged = server_sessions([newer, other, older], now=NOW)
    assert [(s.UserName, s.ActiveTime, s.IdleTime, s.ResourcesOpened) for s in merged] == [
        ("alice", 900, 5, 5),
        ("bob", 600, 30, 0),
    ]
    assert merged[0].ClientType == "SMB2_10"  # the rest from the oldest
    assert merged[0].Description.startswith("2 sessions of user alice")


def test_unknown_values_stay_null_and_idle_never_exceeds_active() -> None:
    [s] = server_sessions([record(established=None, last_request=None, opens=None, client_type=None)], now=NOW)
    assert (s.ActiveTime, s.IdleTime, s.ResourcesOpened, s.InstallDate, s.ClientType) == (None,) * 5
    [t] = server_sessions([record(established=NOW - 10, last_request=NOW - 50)], now=NOW)
    assert t.IdleTime == 10


def test_anonymous_and_guest() -> None:
    anon, guest = server_sessions(
        [record(user_name="", user_flags=SESS_GUEST), record(computer_name="z", user_name="nobody", user_flags=1)],
        now=NOW,
    )
    assert anon.UserName == "" and anon.Name == "anonymous@10.0.0.5" and anon.SessionType == 0
    assert "an anonymous user" in anon.Description
    assert guest.SessionType == 0


def test_session_type_values() -> None:
    assert session_type(SESS_GUEST) == 0
    assert session_type(SESS_NOENCRYPTION) == 1
    assert session_type(SESS_GUEST | SESS_NOENCRYPTION) == 0
    assert session_type(0) == 2


def test_status_is_degraded_only_when_every_session_is() -> None:
    [one] = server_sessions([record(status="Degraded")], now=NOW)
    assert one.Status == "Degraded"
    [two] = server_sessions([record(status="Degraded"), record(session_id="0x2")], now=NOW)
    assert two.Status == "OK"


def test_times_are_clamped_to_uint32() -> None:
    [s] = server_sessions([record(established=NOW - 2**33, last_request=NOW + 100)], now=NOW)
    assert s.ActiveTime == 2**32 - 1
    assert s.IdleTime == 0


def test_keys_are_escaped_in_the_path() -> None:
    [s] = server_sessions([record(user_name='we"ird\\name')], now=NOW)
    assert s.path.endswith('UserName="we\\"ird\\\\name"')


def test_cim_instance_round_trip() -> None:
    import pywbem

    [s] = server_sessions([record()], now=NOW)
    cim = s.to_cim_instance()
    assert isinstance(cim, pywbem.CIMInstance)
    assert cim.classname == SERVER_SESSION
    assert cim.path.keybindings == {"ComputerName": "10.0.0.5", "UserName": "alice"}
    assert cim.path.namespace == "root/cimv2"
    assert cim["ActiveTime"] == 600 and cim.properties["ActiveTime"].type == "uint32"
    assert cim.properties["InstallDate"].type == "datetime"
    assert cim["InstallDate"].datetime == s.InstallDate
    assert cim.properties["ResourcesOpened"].type == "uint32"


def test_cim_datetime_text() -> None:
    moment = datetime(2026, 11, 24, 9, 5, 7, 123456, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))
    assert cim_datetime_text(moment) == "20261124090507.123456-330"
    assert cim_datetime_text(moment.astimezone(UTC)) == "20261124143507.123456+000"


def test_sessions_of_different_servers_stay_apart() -> None:
    local, remote = server_sessions([record(server="fs1"), record()], now=NOW)
    assert (local.server, remote.server) == (None, "fs1")
    assert local.path == 'Win32_ServerSession.ComputerName="10.0.0.5",UserName="alice"'
    assert remote.path == "\\\\fs1\\root\\cimv2:" + local.path
    assert remote.to_cim_instance().path.host == "fs1"
    assert "server" not in remote.to_dict()
