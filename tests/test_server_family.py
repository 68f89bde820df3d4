"""``serversession serve`` with the whole class family (DESIGN.md 2a), both namespaces, real clients.

A real ``serve`` in front of the sandbox smbd; alice has two files open on [share], bob one, and
carol a session without a tree connect. Checked with pywbem (every operation, pull and
association ones included), pywbemcli and sblim wbemcli; every association's ends are
fetched back with GetInstance (one read is one snapshot: nothing dangles).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest
import pywbem

from conftest import wait_for
from serversession.demo import Client
from serversession.sandbox import free_port
from serversession.wql import ObjectPath, format_path
from test_server import start_server, stop, wait_listening

USER, PASSWORD = "monitor", "f4mily-Pa55"
CIMV2, SMB = "root/cimv2", "root/Microsoft/Windows/SMB"
CIMV2_CLASSES = [
    "CIM_ManagedSystemElement",
    "CIM_LogicalElement",
    "CIM_Dependency",
    "Win32_ServerSession",
    "Win32_ServerConnection",
    "Win32_Share",
    "Win32_SessionConnection",
    "Win32_ConnectionShare",
]
SMB_CLASSES = ["MSFT_SmbSession", "MSFT_SmbOpenFile"]
CONCRETE = {
    CIMV2: ["Win32_ServerSession", "Win32_ServerConnection", "Win32_Share", "Win32_SessionConnection",
            "Win32_ConnectionShare"],
    SMB: SMB_CLASSES,
}  # fmt: skip
ALICE = pywbem.CIMInstanceName("Win32_ServerSession", {"ComputerName": "127.0.0.1", "UserName": "alice"})
ALICE_SHARE = pywbem.CIMInstanceName(
    "Win32_ServerConnection", {"ComputerName": "127.0.0.1", "ShareName": "share", "UserName": "alice"}
)
SHARE = pywbem.CIMInstanceName("Win32_Share", {"Name": "share"})


@pytest.fixture(scope="module")
def workdir() -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix="serversession-family-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def family(sandbox) -> Iterator[list[Client]]:
    alice = Client(sandbox.port, "alice", sandbox.users["alice"])
    alice.open_files(["fam1.txt", "fam2.txt"])
    bob = Client(sandbox.port, "bob", sandbox.users["bob"])
    bob.open_files(["fam3.txt"])
    carol = Client(sandbox.port, "carol", sandbox.users["carol"])  # a session, no tree connect
    yield [alice, bob, carol]
    for client in (alice, bob, carol):
        client.close()


@pytest.fixture(scope="module")
def server(sandbox, family, workdir: str) -> Iterator[dict[str, object]]:
    tool = shutil.which("htpasswd")
    if tool is None:
        pytest.fail("htpasswd (apache2-utils) is needed; run the README's test command")
    htpasswd = os.path.join(workdir, "htpasswd")
    subprocess.run([tool, "-B", "-c", "-b", htpasswd, USER, PASSWORD], check=True, capture_output=True)
    port = free_port()
    proc = start_server(["--port", str(port), "--htpasswd", htpasswd, "--smb-conf", sandbox.conf_path])
    wait_listening(port, proc)
    info = {"port": port, "url": f"http://127.0.0.1:{port}", "proc": proc}
    conn = connection(info)
    if not conn.EnumerateInstanceNames("Win32_Share"):  # IPC$ at least, once serve reads whole snapshots
        stop(proc)
        pytest.fail("serve serves Win32_ServerSession alone: commands.py must pass server.source_reader(**source)")
    wait_for(lambda: len(conn.EnumerateInstanceNames("Win32_ServerConnection")) >= 2, timeout=10)
    yield info
    err = stop(proc)
    assert "Traceback" not in err and "internal error" not in err, err[-3000:]


def connection(server, namespace: str = CIMV2, **kwargs) -> pywbem.WBEMConnection:
    return pywbem.WBEMConnection(server["url"], (USER, PASSWORD), default_namespace=namespace, timeout=30, **kwargs)


def keys(path: pywbem.CIMInstanceName) -> dict[str, object]:
    return {k: (keys(v) if isinstance(v, pywbem.CIMInstanceName) else v) for k, v in path.keybindings.items()}


# --- classes ------------------------------------------------------------------------------------


def test_classes_of_each_namespace(server) -> None:
    cimv2, smb = connection(server), connection(server, SMB)
    assert cimv2.EnumerateClassNames(DeepInheritance=True) == CIMV2_CLASSES
    assert cimv2.EnumerateClassNames() == ["CIM_ManagedSystemElement", "CIM_Dependency"]
    assert cimv2.EnumerateClassNames(ClassName="CIM_Dependency") == ["Win32_SessionConnection", "Win32_ConnectionShare"]
    assert smb.EnumerateClassNames(DeepInheritance=True) == SMB_CLASSES
    assert [c.classname for c in smb.EnumerateClasses(DeepInheritance=True)] == SMB_CLASSES
    for namespace in ("root/Microsoft/Windows/SMB", "root\\microsoft\\windows\\smb", "/ROOT/MICROSOFT/WINDOWS/SMB"):
        assert connection(server, namespace).EnumerateClassNames() == SMB_CLASSES
    session = smb.GetClass("MSFT_SmbSession", LocalOnly=False)
    assert session.properties["SessionId"].type == "uint64" and session.properties["SessionId"].qualifiers["Key"].value
    assert list(session.methods) == ["ForceClose"] and session.methods["ForceClose"].return_type == "uint32"
    assert list(smb.GetClass("MSFT_SmbOpenFile").methods) == ["ForceClose"]
    bare = smb.GetClass("MSFT_SmbSession", IncludeQualifiers=False)
    assert not bare.qualifiers and not bare.methods["ForceClose"].qualifiers
    link = cimv2.GetClass("Win32_SessionConnection", LocalOnly=False, IncludeClassOrigin=True)
    assert link.qualifiers["Association"].value is True
    assert link.properties["Antecedent"].type == "reference"
    assert link.properties["Antecedent"].reference_class == "Win32_ServerSession"
    assert link.properties["Dependent"].reference_class == "Win32_ServerConnection"
    assert cimv2.GetClass("CIM_Dependency").properties["Antecedent"].reference_class == "CIM_ManagedSystemElement"
    assert cimv2.GetClass("Win32_Share", LocalOnly=False).properties["Caption"].type == "string"


@pytest.mark.parametrize(
    ("namespace", "call"),
    [
        (SMB, lambda c: c.GetClass("Win32_ServerSession")),
        (SMB, lambda c: c.EnumerateInstances("Win32_Share")),
        (SMB, lambda c: c.EnumerateInstanceNames("CIM_Dependency")),
        (CIMV2, lambda c: c.GetClass("MSFT_SmbSession")),
        (CIMV2, lambda c: c.EnumerateInstances("MSFT_SmbOpenFile")),
        (CIMV2, lambda c: c.GetInstance(pywbem.CIMInstanceName("MSFT_SmbSession", {"SessionId": 1}))),
        (SMB, lambda c: c.EnumerateClassNames(ClassName="CIM_LogicalElement")),
    ],
)
def test_a_class_of_the_other_namespace_is_invalid(server, namespace, call) -> None:
    with pytest.raises(pywbem.CIMError) as caught:
        call(connection(server, namespace))
    assert caught.value.status_code == 5, caught.value  # CIM_ERR_INVALID_CLASS


# --- instances ----------------------------------------------------------------------------------


def test_every_class_enumerates(server) -> None:
    found = {}
    for namespace, classes in CONCRETE.items():
        conn = connection(server, namespace)
        for name in classes:
            instances = conn.EnumerateInstances(name)
            names = conn.EnumerateInstanceNames(name)
            assert instances and {str(i.path) for i in instances} == {str(n) for n in names}, name
            assert all(i.classname == name and i.path.namespace == namespace for i in instances)
            found[name] = instances
    connections = {(c["UserName"], c["ShareName"]): c for c in found["Win32_ServerConnection"]}
    assert connections[("alice", "share")]["NumberOfFiles"] == 2
    assert connections[("bob", "share")]["NumberOfFiles"] == 1
    assert "carol" not in {user for user, _ in connections}
    sessions = {s["UserName"]: s for s in found["Win32_ServerSession"]}
    for user in ("alice", "bob"):  # one snapshot: the connections' files add up to the session's
        assert sessions[user]["ResourcesOpened"] == sum(
            c["NumberOfFiles"] for (u, _), c in connections.items() if u == user
        )
    assert {"share", "IPC$"} <= {s["Name"] for s in found["Win32_Share"]}
    smb = {s["ClientUserName"]: s for s in found["MSFT_SmbSession"]}
    assert smb["alice"]["NumOpens"] == 2 and smb["carol"]["NumOpens"] == 0
    files = [f for f in found["MSFT_SmbOpenFile"] if f["ClientUserName"] == "alice"]
    assert sorted(f["ShareRelativePath"] for f in files) == ["fam1.txt", "fam2.txt"]
    assert {f["SessionId"] for f in files} == {smb["alice"]["SessionId"]}
    link = next(i for i in found["Win32_SessionConnection"] if i["Antecedent"].keybindings["UserName"] == "alice")
    assert isinstance(link["Antecedent"], pywbem.CIMInstanceName)
    assert link["Antecedent"].namespace == CIMV2 and link["Antecedent"].host  # an INSTANCEPATH
    assert keys(link.path) == {"Antecedent": keys(ALICE), "Dependent": keys(ALICE_SHARE)}


def test_abstract_dependency_enumerates_both_associations(server) -> None:
    conn = connection(server)
    deep = conn.EnumerateInstances("CIM_Dependency")
    assert {i.classname for i in deep} == {"Win32_SessionConnection", "Win32_ConnectionShare"}
    assert len(deep) == len(conn.EnumerateInstances("Win32_SessionConnection")) + len(
        conn.EnumerateInstances("Win32_ConnectionShare")
    )
    assert len(conn.EnumerateInstanceNames("CIM_Dependency")) == len(deep)
    everything = conn.EnumerateInstances("CIM_LogicalElement", DeepInheritance=False)
    assert {i.classname for i in everything} == {"Win32_ServerSession", "Win32_ServerConnection", "Win32_Share"}
    assert all(set(i.properties) <= {"Caption", "Description", "InstallDate", "Name", "Status"} for i in everything)


def test_every_instance_and_every_association_end_resolves(server) -> None:
    """DESIGN 2a: associations never dangle. Each instance comes back by its path, and so do both
    ends of every association, in the same and in another request."""
    for namespace, classes in CONCRETE.items():
        conn = connection(server, namespace)
        for name in classes:
            for instance in conn.EnumerateInstances(name):
                got = conn.GetInstance(instance.path)
                assert got.classname == name and str(got.path if got.path else instance.path) == str(instance.path)
                for prop in ("Antecedent", "Dependent"):
                    if prop in instance:
                        end = conn.GetInstance(instance[prop])
                        assert end.classname == instance[prop].classname
    deep = connection(server).GetInstance(
        pywbem.CIMInstanceName("CIM_Dependency", {"Antecedent": ALICE, "Dependent": ALICE_SHARE})
    )
    assert deep.classname == "Win32_SessionConnection"


def test_get_instance_of_a_reference_keyed_class(server) -> None:
    conn = connection(server)
    name = pywbem.CIMInstanceName("Win32_ConnectionShare", {"Antecedent": SHARE, "Dependent": ALICE_SHARE})
    got = conn.GetInstance(name)
    assert got["Antecedent"].keybindings == {"Name": "share"}
    assert conn.GetInstance(name, PropertyList=["Dependent"]).properties.keys() == {"Dependent"}
    upper = pywbem.CIMInstanceName("Win32_ConnectionShare", {"Antecedent": pywbem.CIMInstanceName("WIN32_SHARE", {"NAME": "SHARE"}),
                                                             "Dependent": ALICE_SHARE})  # fmt: skip
    assert conn.GetInstance(upper)["Antecedent"].keybindings == {"Name": "share"}
    for wrong, status in [
        ({"Antecedent": pywbem.CIMInstanceName("Win32_Share", {"Name": "nope"}), "Dependent": ALICE_SHARE}, 6),
        ({"Antecedent": ALICE, "Dependent": ALICE_SHARE}, 4),  # Antecedent must name a Win32_Share
        ({"Dependent": ALICE_SHARE}, 4),
    ]:
        with pytest.raises(pywbem.CIMError) as caught:
            conn.GetInstance(pywbem.CIMInstanceName("Win32_ConnectionShare", wrong))
        assert caught.value.status_code == status, wrong
    text = pywbem.CIMInstanceName(
        "Win32_ConnectionShare", {"Antecedent": 'Win32_Share.Name="share"', "Dependent": ALICE_SHARE}
    )
    assert conn.GetInstance(text)["Antecedent"].keybindings == {"Name": "share"}  # WMI's path text is read too


def test_exec_query_over_the_family(server) -> None:
    conn = connection(server)
    found = conn.ExecQuery("WQL", "SELECT UserName, NumberOfFiles FROM Win32_ServerConnection WHERE NumberOfFiles > 1")
    assert [(i["UserName"], i["NumberOfFiles"]) for i in found] == [("alice", 2)]
    mixed = conn.ExecQuery("WQL", "SELECT * FROM CIM_LogicalElement")
    assert {i.classname for i in mixed} == {"Win32_ServerSession", "Win32_ServerConnection", "Win32_Share"}
    smb = connection(server, SMB).ExecQuery("WQL", "SELECT FileId, ShareRelativePath FROM MSFT_SmbOpenFile")
    assert {"fam1.txt", "fam2.txt", "fam3.txt"} <= {i["ShareRelativePath"] for i in smb}
    pulled = connection(server, SMB).IterQueryInstances("WQL", "SELECT * FROM MSFT_SmbSession", MaxObjectCount=1)
    assert {"alice", "bob", "carol"} <= {i["ClientUserName"] for i in pulled.generator}


# --- associations -------------------------------------------------------------------------------


def test_associators_and_references_both_ways(server) -> None:
    conn = connection(server)
    # session -> its connections, and the association between
    ends = conn.Associators(ALICE)
    assert [keys(e.path) for e in ends] == [keys(ALICE_SHARE)]
    assert ends[0]["NumberOfFiles"] == 2 and ends[0].path.namespace == CIMV2
    assert [keys(p) for p in conn.AssociatorNames(ALICE)] == [keys(ALICE_SHARE)]
    links = conn.References(ALICE)
    assert [r.classname for r in links] == ["Win32_SessionConnection"]
    assert keys(links[0]["Dependent"]) == keys(ALICE_SHARE)
    assert [p.classname for p in conn.ReferenceNames(ALICE)] == ["Win32_SessionConnection"]
    # connection -> its session and its share
    back = conn.Associators(ALICE_SHARE)
    assert {(e.classname, str(keys(e.path))) for e in back} == {
        ("Win32_ServerSession", str(keys(ALICE))),
        ("Win32_Share", str(keys(SHARE))),
    }
    assert {r.classname for r in conn.References(ALICE_SHARE)} == {"Win32_SessionConnection", "Win32_ConnectionShare"}
    # filters
    assert [e.classname for e in conn.Associators(ALICE_SHARE, AssocClass="Win32_ConnectionShare")] == ["Win32_Share"]
    assert [e.classname for e in conn.Associators(ALICE_SHARE, ResultClass="Win32_ServerSession")] == [
        "Win32_ServerSession"
    ]
    assert [e.classname for e in conn.Associators(ALICE_SHARE, Role="Dependent", ResultRole="Antecedent")] != []
    assert conn.Associators(ALICE_SHARE, Role="Antecedent") == []
    assert [r.classname for r in conn.References(ALICE_SHARE, ResultClass="Win32_ConnectionShare")] == [
        "Win32_ConnectionShare"
    ]
    assert conn.References(ALICE_SHARE, Role="Antecedent") == []
    some = conn.Associators(ALICE, PropertyList=["NumberOfFiles"], IncludeClassOrigin=True)
    assert set(some[0].properties) == {"NumberOfFiles"}
    assert some[0].properties["NumberOfFiles"].class_origin == "Win32_ServerConnection"
    # the share: all connections made to it
    to_share = conn.Associators(SHARE, AssocClass="CIM_Dependency")
    assert {(e["UserName"], e["ShareName"]) for e in to_share} >= {("alice", "share"), ("bob", "share")}
    carol = pywbem.CIMInstanceName("Win32_ServerSession", {"ComputerName": "127.0.0.1", "UserName": "carol"})
    assert conn.Associators(carol) == [] and conn.References(carol) == []


@pytest.mark.parametrize(
    ("call", "status"),
    [
        (lambda c: c.Associators(pywbem.CIMInstanceName("Win32_ServerSession", {"ComputerName": "x", "UserName": "y"})), 6),
        (lambda c: c.References(pywbem.CIMInstanceName("Win32_Share", {"Name": "nope"})), 6),
        (lambda c: c.Associators(ALICE, AssocClass="Win32_Nope"), 4),
        (lambda c: c.Associators(ALICE, ResultClass="MSFT_SmbSession"), 4),
        (lambda c: c.Associators(pywbem.CIMInstanceName("Win32_Nope", {"A": "b"})), 5),
        (lambda c: c.ReferenceNames(pywbem.CIMInstanceName("Win32_ServerSession", {"UserName": "alice"})), 4),
        (lambda c: c.Associators(ALICE, Role="x'y"), 4),
        # a reference where a string key is, and a reference into the wrong namespace: invalid, not missing
        (lambda c: c.GetInstance(pywbem.CIMInstanceName("Win32_ServerSession", {"ComputerName": "127.0.0.1",
                                                                                "UserName": SHARE})), 4),
        (lambda c: c.GetInstance(pywbem.CIMInstanceName("Win32_SessionConnection", {
            "Antecedent": pywbem.CIMInstanceName("Win32_ServerSession", dict(ALICE.keybindings), namespace=SMB),
            "Dependent": ALICE_SHARE})), 4),
    ],
)  # fmt: skip
def test_association_errors(server, call, status) -> None:
    with pytest.raises(pywbem.CIMError) as caught:
        call(connection(server))
    assert caught.value.status_code == status, caught.value


def test_class_level_associators(server) -> None:
    conn = connection(server)
    names = conn.AssociatorNames("Win32_ServerSession")
    assert {n.classname for n in names} == {"Win32_ServerConnection", "CIM_ManagedSystemElement"}
    assert all(isinstance(n, pywbem.CIMClassName) and n.namespace == CIMV2 for n in names)
    only = conn.Associators("Win32_ServerSession", AssocClass="Win32_SessionConnection")
    assert [(path.classname, cls.classname) for path, cls in only] == [
        ("Win32_ServerConnection", "Win32_ServerConnection")
    ]
    refs = conn.ReferenceNames("Win32_ServerConnection")
    assert {r.classname for r in refs} == {"CIM_Dependency", "Win32_SessionConnection", "Win32_ConnectionShare"}
    assert {c.classname for _, c in conn.References("Win32_Share", ResultClass="CIM_Dependency")} == {
        "CIM_Dependency",
        "Win32_ConnectionShare",
    }
    assert connection(server, SMB).AssociatorNames("MSFT_SmbSession") == []


# --- association queries through ExecQuery and OpenQueryInstances --------------------------------

ALICE_WQL = 'Win32_ServerSession.ComputerName="127.0.0.1",UserName="alice"'
ALICE_SHARE_WQL = 'Win32_ServerConnection.ComputerName="127.0.0.1",ShareName="share",UserName="alice"'


def summary(instances: list[pywbem.CIMInstance]) -> list[tuple[str, str, dict[str, object]]]:
    """Each instance's class, path (keys) and properties, sorted: two answers compared whole."""
    return sorted(((i.classname, str(keys(i.path)), {k: str(v) for k, v in i.items()}) for i in instances), key=str)


@pytest.mark.parametrize(
    ("query", "operation"),
    [
        (f"ASSOCIATORS OF {{{ALICE_WQL}}}", lambda c: c.Associators(ALICE)),
        (f"ASSOCIATORS OF {{{ALICE_SHARE_WQL}}}", lambda c: c.Associators(ALICE_SHARE)),
        (f"associators of {{{ALICE_SHARE_WQL}}} where assocclass = win32_connectionshare",
         lambda c: c.Associators(ALICE_SHARE, AssocClass="Win32_ConnectionShare")),
        (f"ASSOCIATORS OF {{{ALICE_SHARE_WQL}}} WHERE ResultClass = Win32_ServerSession",
         lambda c: c.Associators(ALICE_SHARE, ResultClass="Win32_ServerSession")),
        (f"ASSOCIATORS OF {{{ALICE_SHARE_WQL}}} WHERE Role = Dependent ResultRole = Antecedent",
         lambda c: c.Associators(ALICE_SHARE, Role="Dependent", ResultRole="Antecedent")),
        (f"ASSOCIATORS OF {{{ALICE_SHARE_WQL}}} WHERE Role = Antecedent", lambda c: []),
        ('ASSOCIATORS OF {Win32_Share.Name="share"} WHERE AssocClass = CIM_Dependency',
         lambda c: c.Associators(SHARE, AssocClass="CIM_Dependency")),
        (f"REFERENCES OF {{{ALICE_WQL}}}", lambda c: c.References(ALICE)),
        (f"REFERENCES OF {{{ALICE_SHARE_WQL}}}", lambda c: c.References(ALICE_SHARE)),
        (f"REFERENCES OF {{{ALICE_SHARE_WQL}}} WHERE ResultClass = Win32_ConnectionShare",
         lambda c: c.References(ALICE_SHARE, ResultClass="Win32_ConnectionShare")),
        (f"REFERENCES OF {{\\\\.\\root\\cimv2:{ALICE_SHARE_WQL}}} WHERE Role = Dependent",
         lambda c: c.References(ALICE_SHARE, Role="Dependent")),
        ('REFERENCES OF {Win32_ServerSession.ComputerName="127.0.0.1",UserName="carol"}', lambda c: []),
    ],
)  # fmt: skip
def test_exec_query_of_associations_answers_as_the_operations_do(server, query: str, operation) -> None:
    """ExecQuery of ASSOCIATORS OF / REFERENCES OF: the instances Associators and References give,
    each with its full path (VALUE.OBJECTWITHPATH), from one snapshot."""
    conn = connection(server)
    found = conn.ExecQuery("WQL", query)
    assert summary(found) == summary(operation(conn))
    assert all(i.path.namespace == CIMV2 and i.path.host for i in found)
    for instance in found:  # every path it gave resolves
        assert conn.GetInstance(instance.path).classname == instance.classname


def test_exec_query_of_associations_in_detail(server) -> None:
    conn = connection(server)
    (ends,) = conn.ExecQuery("WQL", f"ASSOCIATORS OF {{{ALICE_WQL}}}")
    assert ends.classname == "Win32_ServerConnection" and keys(ends.path) == keys(ALICE_SHARE)
    assert ends["NumberOfFiles"] == 2 and ends.path.namespace == CIMV2
    # KeysOnly: each instance with its own class's keys alone (Name is a key of Win32_Share only)
    only = {i.classname: i for i in conn.ExecQuery("WQL", f"ASSOCIATORS OF {{{ALICE_SHARE_WQL}}} WHERE KeysOnly")}
    assert set(only) == {"Win32_ServerSession", "Win32_Share"}
    assert set(only["Win32_ServerSession"].properties) == {"ComputerName", "UserName"}
    assert only["Win32_ServerSession"]["UserName"] == "alice"
    assert set(only["Win32_Share"].properties) == {"Name"} and only["Win32_Share"]["Name"] == "share"
    links = conn.ExecQuery("WQL", f"REFERENCES OF {{{ALICE_SHARE_WQL}}} WHERE KeysOnly")
    assert {i.classname for i in links} == {"Win32_SessionConnection", "Win32_ConnectionShare"}
    for link in links:
        assert set(link.properties) == {"Antecedent", "Dependent"}
        assert keys(link["Dependent"]) == keys(ALICE_SHARE) and link["Dependent"].namespace == CIMV2
        assert conn.GetInstance(link["Antecedent"])  # a reference as DSP0201 writes them: it resolves
    # the shorthand of a one-key class, the case of names and values
    assert {i["UserName"] for i in conn.ExecQuery("WQL", "associators of {WIN32_SHARE='SHARE'}")} >= {"alice", "bob"}
    # SMB's namespace has no associations
    smb = connection(server, SMB)
    session = smb.EnumerateInstanceNames("MSFT_SmbSession")[0]
    assert smb.ExecQuery("WQL", f"ASSOCIATORS OF {{MSFT_SmbSession.SessionId={session['SessionId']}}}") == []


def class_objects(server, query: str, namespace: str = CIMV2) -> list[tuple[pywbem.CIMClassName, pywbem.CIMClass]]:
    """ExecQuery's raw answer: pywbem 1.9's ExecQuery cannot return classes (it sets ``.path`` on
    each object it parsed, and a class comes as a tuple of path and class), so the parsed
    response is read here as pywbem's own ExecQuery reads it, without that last step."""
    conn = connection(server, namespace)
    result = conn._imethodcall("ExecQuery", namespace, QueryLanguage="WQL", Query=query)
    return [item[2] for item in result[0][2]] if result else []


def test_exec_query_class_defs_only_and_schema_only_answer_classes(server) -> None:
    """ClassDefsOnly and SchemaOnly give classes: VALUE.OBJECTWITHPATH with CLASSPATH and CLASS
    (DSP0200 ExecQuery returns objects with their paths, classes or instances)."""
    found = class_objects(server, f"ASSOCIATORS OF {{{ALICE_SHARE_WQL}}} WHERE ClassDefsOnly")
    assert sorted(path.classname for path, _ in found) == ["Win32_ServerSession", "Win32_Share"]
    for path, cls in found:
        assert isinstance(path, pywbem.CIMClassName) and isinstance(cls, pywbem.CIMClass)
        assert path.namespace == CIMV2 and path.host and cls.classname == path.classname
        same = connection(server).GetClass(cls.classname, LocalOnly=False, IncludeQualifiers=True)
        same.path = cls.path  # GetClass gives the host the client asked, ExecQuery the server's own name
        assert cls == same  # the whole class: inherited properties, qualifiers
    refs = class_objects(server, f"REFERENCES OF {{{ALICE_WQL}}} WHERE ClassDefsOnly")
    assert [cls.classname for _, cls in refs] == ["Win32_SessionConnection"]
    assert refs[0][1].properties["Antecedent"].reference_class == "Win32_ServerSession"
    carol = 'Win32_ServerSession.ComputerName="127.0.0.1",UserName="carol"'
    assert class_objects(server, f"ASSOCIATORS OF {{{carol}}} WHERE ClassDefsOnly") == []
    schema = class_objects(server, "REFERENCES OF {Win32_Share} WHERE SchemaOnly")
    assert [cls.classname for _, cls in schema] == ["CIM_Dependency", "Win32_ConnectionShare"]
    ends = class_objects(
        server, "ASSOCIATORS OF {Win32_ServerConnection} WHERE AssocClass = Win32_ConnectionShare SchemaOnly"
    )
    assert [cls.classname for _, cls in ends] == ["Win32_Share"]
    assert class_objects(server, "ASSOCIATORS OF {MSFT_SmbSession} WHERE SchemaOnly", SMB) == []


@pytest.mark.parametrize(
    ("namespace", "query", "status", "message"),
    [
        (CIMV2, 'ASSOCIATORS OF {Win32_ServerSession.ComputerName="10.9.9.9",UserName="nobody"}', 6, "no"),
        (CIMV2, 'REFERENCES OF {Win32_Share.Name="no such share"}', 6, "no"),
        (CIMV2, 'ASSOCIATORS OF {Win32_Share.Name="share"', 15, "WQL error"),
        (CIMV2, 'ASSOCIATORS OF {Win32_Nope.Name="x"}', 15, "unknown class"),
        (CIMV2, 'ASSOCIATORS OF {Win32_Share.Name="share"} WHERE AssocClass = Win32_Share', 15, "not an association"),
        (CIMV2, 'ASSOCIATORS OF {Win32_Share.Nope="share"}', 15, "Nope"),
        (CIMV2, "ASSOCIATORS OF {Win32_Share}", 15, "SchemaOnly"),
        (CIMV2, 'ASSOCIATORS OF {Win32_Share.Name="x"} WHERE KeysOnly ClassDefsOnly', 15, "exclude each other"),
        (CIMV2, "ASSOCIATORS OF {MSFT_SmbSession.SessionId=1}", 15, "no class MSFT_SmbSession in root/cimv2"),
        (CIMV2, 'ASSOCIATORS OF {Win32_Share.Name="share"} WHERE ResultClass = MSFT_SmbSession', 15, "no class"),
        (CIMV2, "SELECT * FROM MSFT_SmbSession", 15, "no class MSFT_SmbSession in root/cimv2"),
        (SMB, 'REFERENCES OF {Win32_Share.Name="share"}', 15, "no class Win32_Share in root/Microsoft/Windows/SMB"),
        (CIMV2, 'ASSOCIATORS OF {root\\nope:Win32_Share.Name="share"}', 6, "no namespace"),
        pytest.param(CIMV2, 'ASSOCIATORS OF {Win32_Share.Name="share"} WHERE KeysOnly' + " KeysOnly" * 1500, 15,
                     "twice", id="KeysOnly-1500-times"),
    ],
)  # fmt: skip
def test_association_query_errors(server, namespace: str, query: str, status: int, message: str) -> None:
    conn = connection(server, namespace)
    with pytest.raises(pywbem.CIMError) as caught:
        conn.ExecQuery("WQL", query)
    assert caught.value.status_code == status and message in caught.value.status_description, caught.value
    with pytest.raises(pywbem.CIMError) as pulled:
        conn.OpenQueryInstances("WQL", query)
    assert pulled.value.status_code == status, pulled.value


def test_pulled_association_queries(server) -> None:
    """OpenQueryInstances (IterQueryInstances): the same instances, pulled (PullInstances carries
    INSTANCE elements, without paths); ClassDefsOnly and SchemaOnly, which answer classes, are refused."""
    for pull in (True, False):  # OpenQueryInstances, and pywbem's fallback to ExecQuery
        conn = connection(server, use_pull_operations=pull)
        got = conn.IterQueryInstances("WQL", f"ASSOCIATORS OF {{{ALICE_SHARE_WQL}}}", MaxObjectCount=1)
        ends = {i.classname: i for i in got.generator}
        assert set(ends) == {"Win32_ServerSession", "Win32_Share"}
        assert ends["Win32_ServerSession"]["ResourcesOpened"] == 2 and ends["Win32_Share"]["Name"] == "share"
        refs = conn.IterQueryInstances("WQL", f"REFERENCES OF {{{ALICE_SHARE_WQL}}} WHERE KeysOnly", MaxObjectCount=1)
        links = list(refs.generator)
        assert {i.classname for i in links} == {"Win32_SessionConnection", "Win32_ConnectionShare"}
        assert all(set(i.properties) == {"Antecedent", "Dependent"} for i in links)
    conn = connection(server)
    opened = conn.OpenQueryInstances("WQL", f"REFERENCES OF {{{ALICE_WQL}}}", MaxObjectCount=0)
    rest = conn.PullInstances(opened.context, MaxObjectCount=10)
    assert rest.eos and [i.classname for i in rest.instances] == ["Win32_SessionConnection"]
    for query in (
        f"ASSOCIATORS OF {{{ALICE_WQL}}} WHERE ClassDefsOnly",
        "REFERENCES OF {Win32_Share} WHERE SchemaOnly",
    ):
        with pytest.raises(pywbem.CIMError) as caught:
            conn.OpenQueryInstances("WQL", query)
        assert caught.value.status_code == 7 and "use ExecQuery" in caught.value.status_description


def test_pull_operations_for_every_class_and_association(server) -> None:
    for namespace, classes in CONCRETE.items():
        conn = connection(server, namespace, use_pull_operations=True)
        for name in classes:
            pulled = list(conn.IterEnumerateInstances(name, MaxObjectCount=1))
            assert pulled and {str(i.path) for i in pulled} == {
                str(p) for p in conn.IterEnumerateInstancePaths(name, MaxObjectCount=1)
            }
    conn = connection(server, use_pull_operations=True)
    ends = list(conn.IterAssociatorInstances(ALICE_SHARE, MaxObjectCount=1))
    assert {e.classname for e in ends} == {"Win32_ServerSession", "Win32_Share"} and all(e.path for e in ends)
    paths = list(conn.IterAssociatorInstancePaths(ALICE_SHARE, ResultClass="Win32_Share", MaxObjectCount=1))
    assert [keys(p) for p in paths] == [keys(SHARE)]
    refs = list(conn.IterReferenceInstances(ALICE, MaxObjectCount=1))
    assert [r.classname for r in refs] == ["Win32_SessionConnection"]
    ref_paths = list(conn.IterReferenceInstancePaths(ALICE_SHARE, MaxObjectCount=1))
    assert {p.classname for p in ref_paths} == {"Win32_SessionConnection", "Win32_ConnectionShare"}
    opened = conn.OpenAssociatorInstances(SHARE, MaxObjectCount=0, PropertyList=["UserName"])
    rest = conn.PullInstancesWithPath(opened.context, MaxObjectCount=100)
    assert rest.eos and all(set(i.properties) == {"UserName"} for i in rest.instances)
    with pytest.raises(pywbem.CIMError) as caught:
        conn.OpenReferenceInstances(ALICE, FilterQueryLanguage="DMTF:FQL", FilterQuery="x")
    assert caught.value.status_code == 25


def test_force_close_needs_an_operator(server, sandbox) -> None:
    """Without ``serve --operator`` nobody may close (tests/test_force_close.py closes for real)."""
    import serversession

    def held() -> tuple[set[int], set[int]]:  # read from smbd now, not from the server's read
        read = {name: serversession.instances(name, smb_conf=sandbox.conf_path) for name in SMB_CLASSES}
        return {s.SessionId for s in read["MSFT_SmbSession"]}, {f.FileId for f in read["MSFT_SmbOpenFile"]}

    before = held()
    conn = connection(server, SMB)
    for name in SMB_CLASSES:
        with pytest.raises(pywbem.CIMError) as caught:
            conn.InvokeMethod("ForceClose", conn.EnumerateInstanceNames(name)[0])
        assert caught.value.status_code == 2 and "--operator" in str(caught.value)  # CIM_ERR_ACCESS_DENIED
    assert held() == before and all(before)


# --- the other clients --------------------------------------------------------------------------


def run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def pywbemcli(server, namespace: str = CIMV2) -> list[str]:
    beside = os.path.join(os.path.dirname(sys.executable), "pywbemcli")
    tool = beside if os.path.exists(beside) else shutil.which("pywbemcli")
    assert tool, "pywbemcli (pywbemtools) is needed; run the README's test command"
    return [tool, "-s", str(server["url"]), "-u", USER, "-p", PASSWORD, "-d", namespace]


def test_pywbemcli_classes_and_instances(server) -> None:
    for namespace, classes in ((CIMV2, CIMV2_CLASSES), (SMB, SMB_CLASSES)):
        for name in classes:
            got = run([*pywbemcli(server, namespace), "class", "get", name])
            assert got.returncode == 0 and f"class {name}" in got.stdout, (name, got.stderr)
    smb = run([*pywbemcli(server, SMB), "class", "get", "MSFT_SmbSession"])
    assert "uint32 ForceClose();" in smb.stdout
    link = run([*pywbemcli(server), "class", "get", "Win32_SessionConnection"])
    assert "Win32_ServerSession REF Antecedent;" in link.stdout
    for namespace, classes in CONCRETE.items():
        for name in classes:
            enum = run([*pywbemcli(server, namespace), "instance", "enumerate", name])
            assert enum.returncode == 0 and f"instance of {name} {{" in enum.stdout, (name, enum.stderr)
    enum = run([*pywbemcli(server), "instance", "enumerate", "Win32_SessionConnection"])
    assert enum.returncode == 0 and "Antecedent =" in enum.stdout and "/root/cimv2:Win32_ServerSession." in enum.stdout
    get = run(
        [
            *pywbemcli(server),
            "instance",
            "get",
            'Win32_ServerConnection.ComputerName="127.0.0.1",ShareName="share",UserName="alice"',
        ]
    )
    assert get.returncode == 0 and "NumberOfFiles = 2;" in get.stdout, get.stderr
    share = run([*pywbemcli(server), "instance", "get", 'Win32_Share.Name="share"'])
    assert share.returncode == 0 and 'Name = "share";' in share.stdout, share.stderr


def test_pywbemcli_associators_and_references(server) -> None:
    session = 'Win32_ServerSession.ComputerName="127.0.0.1",UserName="alice"'
    connection_path = 'Win32_ServerConnection.ComputerName="127.0.0.1",ShareName="share",UserName="alice"'
    ends = run([*pywbemcli(server), "instance", "associators", session])
    assert ends.returncode == 0 and "instance of Win32_ServerConnection {" in ends.stdout, ends.stderr
    assert "NumberOfFiles = 2;" in ends.stdout
    refs = run([*pywbemcli(server), "instance", "references", session])
    assert refs.returncode == 0 and "instance of Win32_SessionConnection {" in refs.stdout, refs.stderr
    back = run([*pywbemcli(server), "instance", "associators", connection_path])
    assert back.returncode == 0, back.stderr
    assert "instance of Win32_ServerSession {" in back.stdout and "instance of Win32_Share {" in back.stdout
    back_refs = run([*pywbemcli(server), "instance", "references", connection_path, "--rc", "Win32_ConnectionShare"])
    assert back_refs.returncode == 0 and "instance of Win32_ConnectionShare {" in back_refs.stdout, back_refs.stderr
    assert "Win32_SessionConnection" not in back_refs.stdout
    names = run([*pywbemcli(server), "instance", "associators", connection_path, "--no", "--rc", "Win32_Share"])
    assert names.returncode == 0 and 'Win32_Share.Name="share"' in names.stdout, names.stdout + names.stderr


def test_wbemcli_associators_and_references(server) -> None:
    tool = shutil.which("wbemcli")
    if tool is None:
        pytest.fail("sblim wbemcli is needed; run the README's test command")
    base = f"http://{USER}:{PASSWORD}@127.0.0.1:{server['port']}"
    session = f'{base}/root/cimv2:Win32_ServerSession.ComputerName="127.0.0.1",UserName="alice"'
    ai = run([tool, "ai", session])
    assert ai.returncode == 0, ai.stderr
    assert "Win32_ServerConnection" in ai.stdout and "NumberOfFiles=2" in ai.stdout
    ain = run([tool, "ain", session])
    assert ain.returncode == 0 and 'ShareName="share"' in ain.stdout, ain.stderr
    ar = run([tool, "ri", session])  # wbemcli's references are ri and rin
    assert ar.returncode == 0 and "Win32_SessionConnection" in ar.stdout and "Antecedent=" in ar.stdout, ar.stderr
    connection_path = (
        f'{base}/root/cimv2:Win32_ServerConnection.ComputerName="127.0.0.1",ShareName="share",UserName="alice"'
    )
    back = run([tool, "ai", connection_path])
    assert back.returncode == 0 and "Win32_ServerSession" in back.stdout and "Win32_Share" in back.stdout, back.stderr
    back_refs = run([tool, "rin", connection_path])
    assert back_refs.returncode == 0, back_refs.stderr
    assert "Win32_SessionConnection" in back_refs.stdout and "Win32_ConnectionShare" in back_refs.stdout
    smb = run([tool, "ei", f"{base}/root/Microsoft/Windows/SMB:MSFT_SmbSession"])
    assert smb.returncode == 0 and 'ClientUserName="alice"' in smb.stdout, smb.stderr
    files = run([tool, "ein", f"{base}/root/Microsoft/Windows/SMB:MSFT_SmbOpenFile"])
    assert files.returncode == 0 and "MSFT_SmbOpenFile.FileId=" in files.stdout, files.stderr
    gc = run([tool, "gc", f"{base}/root/Microsoft/Windows/SMB:MSFT_SmbSession"])
    assert gc.returncode == 0 and "SessionId" in gc.stdout, gc.stderr


# --- a hostile client name in a reference key -----------------------------------------------------

PATH_NETBIOS = "FAMILYPATH12345"
PATHY = "q\"\\',=}{;:.\u00e9zz"  # quotes, a backslash, path punctuation, non-ASCII: 15 bytes in UTF-8


@pytest.fixture
def pathy_session(sandbox, monkeypatch) -> Iterator[str]:
    """A session (with a file open) whose client name is path syntax; smbd's session record is
    edited in place to a name of the same length (as conftest's hostile_session does)."""
    import smbprotocol.connection
    from smbprotocol.transport import Tcp

    from conftest import _netbios_name
    from serversession.sources.samba import _import_bindings

    class NetbiosTcp(Tcp):
        def connect(self) -> None:
            super().connect()
            body = _netbios_name("*SMBSERVER", 0x20) + _netbios_name(PATH_NETBIOS, 0x00)
            self._sock.sendall(bytes([0x81, 0]) + len(body).to_bytes(2, "big") + body)
            self._sock.settimeout(10)
            assert self._sock.recv(4)[:1] == b"\x82"
            self._sock.settimeout(None)

    monkeypatch.setattr(smbprotocol.connection, "Tcp", NetbiosTcp)
    client = Client(sandbox.port, "carol", sandbox.users["carol"])
    client.open_files(["pathy.txt"])
    monkeypatch.undo()
    tdb = _import_bindings()[0]
    db = tdb.Tdb(os.path.join(sandbox.directory, "lock", "smbXsrv_session_global.tdb"), 0, 0x1000, os.O_RDWR)
    needle, replacement = PATH_NETBIOS.lower().encode() + b"\0", PATHY.encode() + b"\0"
    assert len(needle) == len(replacement)
    try:
        (key,) = [k for k in db if needle in (db.get(k) or b"")]
        db.store(key, db.get(key).replace(needle, replacement), tdb.REPLACE)
    finally:
        db.close()
    yield PATHY
    client.close()


def test_a_hostile_client_name_round_trips_through_references(server, pathy_session: str) -> None:
    conn = connection(server)

    def link() -> pywbem.CIMInstance | None:
        found = [i for i in conn.EnumerateInstances("Win32_SessionConnection")
                 if i["Antecedent"].keybindings["ComputerName"] == pathy_session]  # fmt: skip
        return found[0] if found else None

    association = wait_for(link, timeout=10)
    assert isinstance(association, pywbem.CIMInstance)
    assert conn.GetInstance(association.path)["Dependent"].keybindings["ComputerName"] == pathy_session
    session = conn.GetInstance(association["Antecedent"])
    assert session["ComputerName"] == pathy_session and session["UserName"] == "carol"
    ends = conn.Associators(association["Antecedent"])
    assert [(e["ComputerName"], e["ShareName"]) for e in ends] == [(pathy_session, "share")]
    # the same through ExecQuery: the name written in WQL's path syntax is data, '}' and quotes included
    text = format_path(ObjectPath("Win32_ServerSession", (("ComputerName", pathy_session), ("UserName", "carol"))))
    queried = conn.ExecQuery("WQL", f"ASSOCIATORS OF {{{text}}} WHERE ResultClass = Win32_ServerConnection")
    assert summary(queried) == summary(ends)
    links = conn.ExecQuery("WQL", f"REFERENCES OF {{{text}}} WHERE KeysOnly")
    assert [keys(r["Antecedent"]) for r in links] == [{"ComputerName": pathy_session, "UserName": "carol"}]
    refs = conn.ReferenceNames(ends[0].path)
    assert {r.classname for r in refs} == {"Win32_SessionConnection", "Win32_ConnectionShare"}
    for ref in refs:
        assert conn.GetInstance(ref).classname == ref.classname  # every path it gave back resolves
        assert ref.keybindings["Dependent"].keybindings["ComputerName"] == pathy_session
    pulled = list(
        connection(server, use_pull_operations=True).IterReferenceInstances(association["Antecedent"], MaxObjectCount=1)
    )
    assert [r["Dependent"].keybindings["ComputerName"] for r in pulled] == [pathy_session]


def test_pywbemcli_instance_query_of_associations(server) -> None:
    """pywbemcli's ``instance query`` sends OpenQueryInstances (pywbem's IterQueryInstances, eager:
    the server has answered when it returns). pywbemcli 1.4.1 then calls list() on pywbem 1.9's
    IterQueryInstancesReturn, which is not iterable: a client bug whatever the query (see
    test_server.test_pywbemcli). Either the instances are shown, or exactly that bug is met, never
    a CIM error."""
    for query in (f"ASSOCIATORS OF {{{ALICE_WQL}}}", f"REFERENCES OF {{{ALICE_SHARE_WQL}}} WHERE KeysOnly"):
        got = run([*pywbemcli(server), "instance", "query", query, "--ql", "WQL"])
        assert "CIMError" not in got.stderr + got.stdout, got.stderr[-2000:]
        if got.returncode == 0:  # a pywbemcli that works
            assert "instance of Win32_" in got.stdout, got.stdout
        else:
            assert "'IterQueryInstancesReturn' object is not iterable" in got.stderr, got.stderr[-2000:]
    wrong = run([*pywbemcli(server), "instance", "query", 'REFERENCES OF {Win32_Share.Name="nope"}', "--ql", "WQL"])
    assert wrong.returncode != 0 and "CIM_ERR_NOT_FOUND" in wrong.stdout + wrong.stderr, wrong.stderr[-2000:]
