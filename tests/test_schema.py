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
    assert list(schema.classes) == [
        "CIM_ManagedSystemElement",
        "CIM_LogicalElement",
        "CIM_Dependency",
        SERVER_SESSION,
        "Win32_ServerConnection",
        "Win32_Share",
        "Win32_SessionConnection",
        "Win32_ConnectionShare",
        "MSFT_SmbSession",
        "MSFT_SmbOpenFile",
    ]
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


def test_class_family_as_design_names_it() -> None:
    """DESIGN.md 2a: keys, types, namespaces, association ends and methods of the family."""
    schema = load_schema()
    expected = {
        "Win32_ServerConnection": ("root/cimv2", ("ComputerName", "ShareName", "UserName")),
        "Win32_Share": ("root/cimv2", ("Name",)),
        "Win32_SessionConnection": ("root/cimv2", ("Antecedent", "Dependent")),
        "Win32_ConnectionShare": ("root/cimv2", ("Antecedent", "Dependent")),
        "MSFT_SmbSession": ("root/Microsoft/Windows/SMB", ("SessionId",)),
        "MSFT_SmbOpenFile": ("root/Microsoft/Windows/SMB", ("FileId",)),
    }
    for name, (namespace, keys) in expected.items():
        cls = schema.get(name)
        assert (cls.namespace, cls.keys) == (namespace, keys), name
    ends = {p.name: p.reference_class for p in schema.get("Win32_SessionConnection").references}
    assert ends == {"Antecedent": SERVER_SESSION, "Dependent": "Win32_ServerConnection"}
    ends = {p.name: p.reference_class for p in schema.get("Win32_ConnectionShare").references}
    assert ends == {"Antecedent": "Win32_Share", "Dependent": "Win32_ServerConnection"}
    assert schema.get("Win32_SessionConnection").is_association and schema.get("CIM_Dependency").is_abstract
    assert not schema.get(SERVER_SESSION).is_association
    types = {
        ("MSFT_SmbSession", "SessionId"): "uint64",
        ("MSFT_SmbSession", "SecondsIdle"): "uint64",
        ("MSFT_SmbSession", "Dialect"): "string",
        ("MSFT_SmbOpenFile", "Permissions"): "uint32",
        ("MSFT_SmbOpenFile", "Locks"): "uint32",
        ("MSFT_SmbOpenFile", "ContinuouslyAvailable"): "boolean",
        ("Win32_Share", "Type"): "uint32",
        ("Win32_ServerConnection", "NumberOfFiles"): "uint32",
    }
    for (name, prop), kind in types.items():
        assert schema.get(name).property(prop).type == kind, (name, prop)
    for name in ("MSFT_SmbSession", "MSFT_SmbOpenFile"):
        method = schema.get(name).methods["ForceClose"]
        assert (method.return_type, method.parameters) == ("uint32", {})
    assert schema.namespace_classes("ROOT\\microsoft\\windows\\smb") == ["MSFT_SmbSession", "MSFT_SmbOpenFile"]
    assert schema_module.namespace_name("root\\CIMV2") == "root/cimv2"
    assert schema_module.namespace_name("root/other") is None


def test_cache_is_written_and_used(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    compiled = []
    real_compile = schema_module.compile_mof
    monkeypatch.setattr(schema_module, "compile_mof", lambda s: compiled.append(1) or real_compile(s))
    load = schema_module.load_schema.__wrapped__  # bypass the in-process cache
    first = load()
    files = list((tmp_path / "serversession").iterdir())
    assert len(files) == 1 and files[0].name.startswith(f"schema-{schema_module.CACHE_FORMAT}-")
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
    namespace = schema_module.NAMESPACE
    for name in ("qualifiers.mof", "CIM_ManagedSystemElement.mof", "CIM_LogicalElement.mof"):
        compiler.compile_string(sources[(namespace, name)], namespace, filename=name)
    compiler.compile_string(result.stdout, namespace, filename="printed.mof")
    printed = conn.classes[namespace][SERVER_SESSION]
    assert printed.properties["ActiveTime"].qualifiers["Units"].value == "seconds"
    assert printed.properties["UserName"].qualifiers["Key"].value is True


def test_whole_schema_printed_compiles_back_in_both_namespaces() -> None:
    """``schema`` (every class) is MOF that compiles again, each class in its own namespace."""
    import pywbem

    result = run_cli("schema")
    assert result.returncode == 0, result.stderr
    conn = pywbem.MOFWBEMConnection()
    compiler = pywbem.MOFCompiler(conn, verbose=False, log_func=lambda _m: None)
    qualifiers = schema_module._mof_sources()[(schema_module.NAMESPACE, "qualifiers.mof")]
    for namespace in schema_module.MOF_FILES:
        compiler.compile_string(qualifiers, namespace, filename="qualifiers.mof")
    compiler.compile_string(result.stdout, schema_module.NAMESPACE, filename="printed.mof")
    smb = conn.classes[schema_module.SMB_NAMESPACE]
    assert set(smb) == {"MSFT_SmbSession", "MSFT_SmbOpenFile"}
    assert "ForceClose" in smb["MSFT_SmbSession"].methods
    dependent = conn.classes[schema_module.NAMESPACE]["Win32_SessionConnection"].properties["Dependent"]
    assert dependent.reference_class == "Win32_ServerConnection"


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
    for name in {n for names in schema_module.MOF_FILES.values() for n in names}:
        assert os.path.getsize(os.path.join(directory, name)) > 0
