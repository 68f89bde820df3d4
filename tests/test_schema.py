"""The schema: MOF in the package, compiled by pywbem, cached, printed by ``serversession schema``."""

from __future__ import annotations

import json
import os

import pytest

from conftest import run_cli
from serversession.errors import NotFound
from serversession.model import SERVER_SESSION, load_schema
from serversession.model import schema as schema_module


def test_classes_and_inheritance() -> None:
    schema = load_schema()
    assert list(schema.classes) == ["CIM_ManagedSystemElement", "CIM_LogicalElement", SERVER_SESSION]
    cls = schema.get("win32_serversession")  # case-insensitive, like CIM
    assert cls.superclass == "CIM_LogicalElement"
    assert cls.keys == ("ComputerName", "UserName")
    assert set(cls.properties) == {
        "Caption",
        "Description",
        "InstallDate",
        "Name",
        "Status",
        "ActiveTime",
        "ClientType",
        "ComputerName",
        "IdleTime",
        "ResourcesOpened",
        "SessionType",
        "TransportName",
        "UserName",
    }
    assert cls.properties["Caption"].class_origin == "CIM_ManagedSystemElement"
    assert cls.properties["IdleTime"].class_origin == SERVER_SESSION


def test_types_and_qualifiers_from_design() -> None:
    cls = load_schema().get(SERVER_SESSION)
    prop = cls.property
    assert prop("ActiveTime").type == "uint32" and prop("ActiveTime").qualifiers["Units"] == "seconds"
    assert prop("IdleTime").qualifiers["Units"] == "seconds"
    assert prop("InstallDate").type == "datetime"
    assert prop("Caption").qualifiers["MaxLen"] == 64
    assert prop("Status").qualifiers["MaxLen"] == 10
    assert "OK" in prop("Status").qualifiers["ValueMap"]
    assert prop("SessionType").qualifiers["ValueMap"] == ["0", "1", "2"]
    assert prop("SessionType").qualifiers["Values"] == ["Guest", "NoEncryption", "Other"]
    assert prop("username").name == "UserName"
    with pytest.raises(NotFound):
        prop("NoSuchProperty")
    with pytest.raises(NotFound):
        load_schema().get("Win32_Process")


def test_cache_is_written_and_used(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    compiled = []
    real_compile = schema_module.compile_mof
    monkeypatch.setattr(schema_module, "compile_mof", lambda s: compiled.append(1) or real_compile(s))
    load = schema_module.load_schema.__wrapped__  # bypass the in-process cache
    first = load()
    files = list((tmp_path / "serversession").iterdir())
    assert len(files) == 1 and files[0].name.startswith("schema-1-")
    second = load()
    assert compiled == [1]  # the second load came from the cache file
    assert first.classes == second.classes
    files[0].write_text("{not json")  # a broken cache is compiled again, not trusted
    assert load().classes == first.classes
    assert compiled == [1, 1]


def test_cache_in_unwritable_place_still_works(tmp_path, monkeypatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # a file, so the cache dir cannot be made
    assert schema_module.load_schema.__wrapped__().get(SERVER_SESSION).keys == ("ComputerName", "UserName")


def test_schema_command_mof_compiles_back() -> None:
    import pywbem

    result = run_cli("schema", SERVER_SESSION)
    assert result.returncode == 0, result.stderr
    assert "class Win32_ServerSession : CIM_LogicalElement" in result.stdout
    conn = pywbem.MOFWBEMConnection()
    compiler = pywbem.MOFCompiler(conn, verbose=False, log_func=lambda _m: None)
    sources = schema_module._mof_sources()
    for name in schema_module.MOF_FILES[:-1]:
        compiler.compile_string(sources[name], schema_module.NAMESPACE, filename=name)
    compiler.compile_string(result.stdout, schema_module.NAMESPACE, filename="printed.mof")
    printed = conn.classes[schema_module.NAMESPACE][SERVER_SESSION]
    assert printed.properties["ActiveTime"].qualifiers["Units"].value == "seconds"
    assert printed.properties["UserName"].qualifiers["Key"].value is True


def test_schema_command_json() -> None:
    result = run_cli("schema", "--format", "json")
    assert result.returncode == 0, result.stderr
    classes = json.loads(result.stdout)
    assert [c["name"] for c in classes] == list(load_schema().classes)
    one = json.loads(run_cli("schema", "win32_serversession", "--format", "json").stdout)
    assert one["keys"] == ["ComputerName", "UserName"]
    assert {p["name"]: p["type"] for p in one["properties"]}["InstallDate"] == "datetime"


def test_schema_command_unknown_class() -> None:
    result = run_cli("schema", "Win32_Nope")
    assert result.returncode == 1
    assert "no class 'Win32_Nope'" in result.stderr
    assert "Traceback" not in result.stderr


def test_mof_files_ship_in_the_package() -> None:
    directory = os.path.dirname(schema_module.__file__).replace("model", "schema")
    for name in schema_module.MOF_FILES:
        assert os.path.getsize(os.path.join(directory, name)) > 0
