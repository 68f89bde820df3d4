"""``serversession serve`` with the real CIM clients: pywbem, pywbemcli and sblim wbemcli.

The server runs as a subprocess (the real command) in front of the Samba sandbox, with HTTP
Basic authentication from a file made by Apache's ``htpasswd``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

import pytest
import pywbem
import requests

from conftest import pam_wrapper_env, wait_for
from serversession.demo import Client
from serversession.sandbox import free_port

USER, PASSWORD = "monitor", "s3cret-Pa55"


def start_server(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "serversession", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def wait_listening(port: int, proc: subprocess.Popen[str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("server did not start listening")


def stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


@pytest.fixture(scope="module")
def workdir() -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix="serversession-serve-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def htpasswd(workdir: str) -> str:
    path = os.path.join(workdir, "htpasswd")
    tool = shutil.which("htpasswd")
    if tool is None:
        pytest.fail("htpasswd (apache2-utils) is needed; run the README's test command")
    subprocess.run([tool, "-B", "-c", "-b", path, USER, PASSWORD], check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def sessions(sandbox) -> Iterator[list[Client]]:
    """alice with two files open and bob idle, for the whole module."""
    alice = Client(sandbox.port, "alice", sandbox.users["alice"])
    alice.open_files(["srv1.txt", "srv2.txt"])
    bob = Client(sandbox.port, "bob", sandbox.users["bob"])
    yield [alice, bob]
    for client in (alice, bob):
        client.close()


@pytest.fixture(scope="module")
def server(sandbox, sessions, htpasswd: str, workdir: str) -> Iterator[dict[str, object]]:
    port = free_port()
    log = os.path.join(workdir, "access.log")
    proc = start_server(
        ["--port", str(port), "--htpasswd", htpasswd, "--smb-conf", sandbox.conf_path, "--access-log", log]
    )
    wait_listening(port, proc)
    yield {"port": port, "url": f"http://127.0.0.1:{port}", "log": log, "proc": proc}
    stop(proc)


def connection(server, user: str = USER, password: str = PASSWORD, **kwargs) -> pywbem.WBEMConnection:
    return pywbem.WBEMConnection(server["url"], (user, password), default_namespace="root/cimv2", timeout=30, **kwargs)


# --- pywbem: every operation ------------------------------------------------------------------


def test_class_operations(server) -> None:
    conn = connection(server)
    family = ["CIM_ManagedSystemElement", "CIM_LogicalElement", "CIM_Dependency", "Win32_ServerSession",
              "Win32_ServerConnection", "Win32_Share", "Win32_SessionConnection", "Win32_ConnectionShare"]  # fmt: skip
    assert conn.EnumerateClassNames(DeepInheritance=True) == family  # root/cimv2's (MSFT_* are in their own)
    assert conn.EnumerateClassNames() == ["CIM_ManagedSystemElement", "CIM_Dependency"]
    assert conn.EnumerateClassNames(ClassName="CIM_LogicalElement") == [
        "Win32_ServerSession", "Win32_ServerConnection", "Win32_Share"
    ]  # fmt: skip
    classes = conn.EnumerateClasses(DeepInheritance=True, LocalOnly=False)
    assert [c.classname for c in classes] == family
    local = conn.GetClass("Win32_ServerSession", LocalOnly=True)
    assert "UserName" in local.properties and "Caption" not in local.properties
    full = conn.GetClass("win32_serversession", LocalOnly=False, IncludeClassOrigin=True)
    assert full.properties["Caption"].class_origin == "CIM_ManagedSystemElement"
    assert full.properties["Caption"].propagated is True
    assert full.properties["UserName"].qualifiers["Key"].value is True
    bare = conn.GetClass("Win32_ServerSession", IncludeQualifiers=False, PropertyList=["UserName"])
    assert list(bare.properties) == ["UserName"] and not bare.properties["UserName"].qualifiers


def test_instance_operations(server) -> None:
    conn = connection(server)
    names = conn.EnumerateInstanceNames("Win32_ServerSession")
    users = {n.keybindings["UserName"] for n in names}
    assert {"alice", "bob"} <= users
    instances = conn.EnumerateInstances("Win32_ServerSession")
    alice = next(i for i in instances if i["UserName"] == "alice")
    assert alice["ResourcesOpened"] == 2
    assert alice.properties["ResourcesOpened"].type == "uint32"
    assert isinstance(alice["InstallDate"], pywbem.CIMDateTime)
    assert alice.path.keybindings == {"ComputerName": "127.0.0.1", "UserName": "alice"}
    assert alice["IdleTime"] is not None
    got = conn.GetInstance(alice.path)
    assert got["UserName"] == "alice" and got["ResourcesOpened"] == 2
    some = conn.GetInstance(alice.path, PropertyList=["IdleTime"])
    assert list(some.properties) == ["IdleTime"]
    upper = pywbem.CIMInstanceName("Win32_ServerSession", {"ComputerName": "127.0.0.1", "UserName": "ALICE"})
    assert conn.GetInstance(upper)["UserName"] == "alice"  # keys compare without regard to case


def test_enumerate_instances_options(server) -> None:
    conn = connection(server)
    shallow = conn.EnumerateInstances("CIM_LogicalElement", DeepInheritance=False)
    assert {"Win32_ServerSession"} <= {i.classname for i in shallow} <= {"Win32_ServerSession", "Win32_ServerConnection",
                                                                     "Win32_Share"}  # fmt: skip
    assert all("UserName" not in i.properties and "Caption" in i.properties for i in shallow)
    deep = conn.EnumerateInstances("CIM_LogicalElement")
    assert all("UserName" in i.properties for i in deep if i.classname == "Win32_ServerSession")
    listed = conn.EnumerateInstances("Win32_ServerSession", PropertyList=["username", "IdleTime"])
    assert all(set(i.properties) == {"UserName", "IdleTime"} for i in listed)
    assert all(not i.properties for i in conn.EnumerateInstances("Win32_ServerSession", PropertyList=[]))
    origin = conn.EnumerateInstances("Win32_ServerSession", IncludeClassOrigin=True)
    assert origin[0].properties["Caption"].class_origin == "CIM_ManagedSystemElement"
    qualified = conn.EnumerateInstances("Win32_ServerSession", IncludeQualifiers=True)
    assert qualified[0].properties["UserName"].qualifiers["Key"].value is True


def test_exec_query(server) -> None:
    conn = connection(server)
    found = conn.ExecQuery("WQL", "SELECT UserName, ResourcesOpened FROM Win32_ServerSession WHERE ResourcesOpened > 1")
    assert [i["UserName"] for i in found] == ["alice"]
    assert set(found[0].properties) == {"ComputerName", "UserName", "ResourcesOpened"}
    assert found[0].path.namespace == "root/cimv2" and found[0].path.host


def test_pull_operations(server) -> None:
    conn = connection(server, use_pull_operations=True)
    first = conn.OpenEnumerateInstances("Win32_ServerSession", MaxObjectCount=1)
    assert len(first.instances) == 1 and not first.eos
    rest = conn.PullInstancesWithPath(first.context, MaxObjectCount=100)
    assert rest.eos and {i["UserName"] for i in first.instances + rest.instances} >= {"alice", "bob"}
    assert all(i.path.keybindings for i in rest.instances)
    opened = conn.OpenEnumerateInstances("Win32_ServerSession", MaxObjectCount=0)
    conn.CloseEnumeration(opened.context)
    with pytest.raises(pywbem.CIMError) as caught:
        conn.PullInstancesWithPath(opened.context, MaxObjectCount=1)
    assert caught.value.status_code == 21  # CIM_ERR_INVALID_ENUMERATION_CONTEXT
    paths = list(conn.IterEnumerateInstancePaths("Win32_ServerSession", MaxObjectCount=1))
    assert {p.keybindings["UserName"] for p in paths} >= {"alice", "bob"}
    query = conn.IterQueryInstances("WQL", "SELECT * FROM Win32_ServerSession WHERE UserName = 'bob'", MaxObjectCount=1)
    assert [i["UserName"] for i in query.generator] == ["bob"]
    everything = list(conn.IterEnumerateInstances("CIM_ManagedSystemElement", MaxObjectCount=1))
    assert {i["UserName"] for i in everything if i.classname == "Win32_ServerSession"} >= {"alice", "bob"}


def test_contexts_belong_to_their_user_and_are_limited(server, htpasswd) -> None:
    subprocess.run(["htpasswd", "-B", "-b", htpasswd, "other", "other-pw"], check=True, capture_output=True)
    mine = connection(server).OpenEnumerateInstances("Win32_ServerSession", MaxObjectCount=0)
    theirs = connection(server, "other", "other-pw")
    with pytest.raises(pywbem.CIMError) as caught:
        theirs.PullInstancesWithPath(mine.context, MaxObjectCount=1)
    assert caught.value.status_code == 21
    connection(server).CloseEnumeration(mine.context)


def test_open_enumerations_are_limited(server) -> None:
    conn = connection(server, use_pull_operations=True)
    opened = []
    try:
        with pytest.raises(pywbem.CIMError) as caught:
            for _ in range(100):
                opened.append(conn.OpenEnumerateInstances("Win32_ServerSession", MaxObjectCount=0).context)
        assert caught.value.status_code == 27  # CIM_ERR_SERVER_LIMITS_EXCEEDED
        assert len(opened) == 64
    finally:
        for context in opened:
            conn.CloseEnumeration(context)
    conn.CloseEnumeration(conn.OpenEnumerateInstances("Win32_ServerSession", MaxObjectCount=0).context)  # room again


@pytest.mark.parametrize(
    ("call", "status"),
    [
        (lambda c: c.EnumerateInstances("Win32_Nope"), 5),  # CIM_ERR_INVALID_CLASS
        (lambda c: c.GetClass("Win32_Nope"), 5),
        (lambda c: c.GetInstance(pywbem.CIMInstanceName("Win32_ServerSession", {"ComputerName": "x", "UserName": "y"})), 6),
        (lambda c: c.GetInstance(pywbem.CIMInstanceName("Win32_ServerSession", {"UserName": "y"})), 4),
        (lambda c: c.ExecQuery("DMTF:CQL", "SELECT * FROM Win32_ServerSession"), 14),
        (lambda c: c.ExecQuery("WQL", "SELECT * FROM"), 15),
        (lambda c: c.ExecQuery("WQL", "SELECT Nope FROM Win32_ServerSession"), 15),
        (lambda c: c.ExecQuery("WQL", "SELECT * FROM __InstanceCreationEvent WITHIN 5"), 7),
        (lambda c: c.ExecQuery("WQL", 'ASSOCIATORS OF {Win32_ServerSession.ComputerName="x",UserName="y"}'), 6),
        (lambda c: c.ExecQuery("WQL", "REFERENCES OF {Win32_ServerSession}"), 15),  # a class: SchemaOnly asks that
        (lambda c: c.ExecQuery("WQL", "REFERENCES OF {Win32_ServerSession.UserName='y'}"), 15),  # a key missing
        (lambda c: c.OpenQueryInstances("WQL", "REFERENCES OF {Win32_ServerSession} WHERE SchemaOnly"), 7),
        (lambda c: c.EnumerateInstances("Win32_ServerSession", namespace="root/nope"), 3),
        (lambda c: c.DeleteInstance(pywbem.CIMInstanceName("Win32_ServerSession", {"ComputerName": "x", "UserName": "y"})), 7),
        (lambda c: c.ModifyInstance(pywbem.CIMInstance("Win32_ServerSession", path=pywbem.CIMInstanceName("Win32_ServerSession", {"ComputerName": "x", "UserName": "y"}))), 7),
        (lambda c: c.EnumerateQualifiers(), 7),
        (lambda c: c.OpenEnumerateInstances("Win32_ServerSession", OperationTimeout=100000), 22),
        (lambda c: c.OpenEnumerateInstances("Win32_ServerSession", ContinueOnError=True), 26),
        (lambda c: c.OpenEnumerateInstances("Win32_ServerSession", FilterQueryLanguage="DMTF:FQL", FilterQuery="x"), 25),
        (lambda c: c.InvokeMethod("Terminate", pywbem.CIMInstanceName("Win32_ServerSession", {"ComputerName": "x", "UserName": "y"}, namespace="root/cimv2")), 7),
    ],
)  # fmt: skip
def test_cim_errors(server, call, status) -> None:
    conn = connection(server)
    with pytest.raises(pywbem.CIMError) as caught:
        call(conn)
    assert caught.value.status_code == status, caught.value
    assert conn.EnumerateInstanceNames("Win32_ServerSession")  # and the server keeps answering


def test_namespace_spellings(server) -> None:
    for namespace in ("root/cimv2", "root\\cimv2", "ROOT/CIMV2", "/root/cimv2"):
        assert connection(server).EnumerateInstanceNames("Win32_ServerSession", namespace=namespace)


# --- authentication -----------------------------------------------------------------------


def test_wrong_password_and_no_credentials(server) -> None:
    start = time.monotonic()
    with pytest.raises(pywbem.AuthError):
        connection(server, USER, "wrong").EnumerateInstanceNames("Win32_ServerSession")
    assert time.monotonic() - start >= 0.9  # the delay after a failed login
    with pytest.raises(pywbem.AuthError):
        connection(server, "nobody-known", "x").EnumerateInstanceNames("Win32_ServerSession")
    answer = requests.post(server["url"] + "/cimom", data=b"<CIM/>", headers={"CIMOperation": "MethodCall"}, timeout=10)
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Basic")


def test_pam(sandbox, sessions, tmp_path) -> None:
    """serve --pam, with Debian's pam_wrapper and pam_matrix standing in for the system's PAM stack."""
    env = pam_wrapper_env(tmp_path, "serversession-serve", "pamuser:pam-Pa55:serversession-serve\n")
    port = free_port()
    proc = start_server(
        ["--port", str(port), "--pam", "--pam-service", "serversession-serve", "--smb-conf", sandbox.conf_path], env
    )
    try:
        wait_listening(port, proc)
        url = f"http://127.0.0.1:{port}"
        good = pywbem.WBEMConnection(url, ("pamuser", "pam-Pa55"), default_namespace="root/cimv2", timeout=30)
        assert {n.keybindings["UserName"] for n in good.EnumerateInstanceNames("Win32_ServerSession")} >= {"alice"}
        bad = pywbem.WBEMConnection(url, ("pamuser", "wrong"), default_namespace="root/cimv2", timeout=30)
        with pytest.raises(pywbem.AuthError):
            bad.EnumerateInstanceNames("Win32_ServerSession")
    finally:
        stop(proc)


def test_users_added_while_running(server, htpasswd) -> None:
    with pytest.raises(pywbem.AuthError):
        connection(server, "latecomer", "pw-late").EnumerateInstanceNames("Win32_ServerSession")
    subprocess.run(["htpasswd", "-B", "-b", htpasswd, "latecomer", "pw-late"], check=True, capture_output=True)
    assert connection(server, "latecomer", "pw-late").EnumerateInstanceNames("Win32_ServerSession")


# --- hostile and broken requests ----------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<CIM CIMVERSION="2.0" DTDVERSION="2.0">&lol3;</CIM>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1" PROTOCOLVERSION="1.0">&xxe;</MESSAGE></CIM>"""
EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE CIM SYSTEM "http://127.0.0.1:9/cim.dtd"><CIM CIMVERSION="2.0" DTDVERSION="2.0"/>"""


def request_xml(method: str, params: str = "", namespace: str = "root/cimv2") -> bytes:
    ns = "".join(f'<NAMESPACE NAME="{n}"/>' for n in namespace.split("/"))
    return (
        '<?xml version="1.0" encoding="utf-8"?><CIM CIMVERSION="2.0" DTDVERSION="2.0">'
        f'<MESSAGE ID="7" PROTOCOLVERSION="1.0"><SIMPLEREQ><IMETHODCALL NAME="{method}">'
        f"<LOCALNAMESPACEPATH>{ns}</LOCALNAMESPACEPATH>{params}</IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>"
    ).encode()


def post(server, body: bytes, method: str = "EnumerateInstanceNames", **headers: str) -> requests.Response:
    sent = {"CIMOperation": "MethodCall", "CIMMethod": method, "CIMObject": "root%2Fcimv2",
            "Content-Type": 'application/xml; charset="utf-8"', **headers}  # fmt: skip
    return requests.post(server["url"] + "/cimom", data=body, headers=sent, auth=(USER, PASSWORD), timeout=20)


@pytest.mark.parametrize(
    ("body", "status", "cim_error"),
    [
        (BILLION_LAUGHS, 400, "request-not-well-formed"),
        (EXTERNAL_ENTITY, 400, "request-not-well-formed"),
        (EXTERNAL_DTD, 400, "request-not-well-formed"),
        (b"<CIM><unclosed>", 400, "request-not-well-formed"),
        (b"\xff\xfe not xml at all", 400, "request-not-well-formed"),
        (b"", 400, "request-not-well-formed"),
        (b'<?xml version="1.0"?><CIM CIMVERSION="2.0" DTDVERSION="2.0"><DECLARATION/></CIM>', 400, "request-not-valid"),
        (b'<?xml version="1.0"?><CIM CIMVERSION="3.0" DTDVERSION="2.0"><MESSAGE ID="1" PROTOCOLVERSION="1.0"/></CIM>',
         400, "unsupported-cim-version"),
        (b"<a>" * 200 + b"</a>" * 200, 400, "request-not-valid"),
        (request_xml("EnumerateInstanceNames", "<IPARAMVALUE NAME='ClassName'><BOGUS/></IPARAMVALUE>"), 400,
         "request-not-valid"),
        (b'<?xml version="1.0"?><CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1" PROTOCOLVERSION="1.0">'
         b"<MULTIREQ/></MESSAGE></CIM>", 501, "multiple-requests-unsupported"),
    ],
)  # fmt: skip
def test_hostile_bodies(server, body: bytes, status: int, cim_error: str) -> None:
    answer = post(server, body)
    assert answer.status_code == status, answer.text
    assert answer.headers.get("CIMError") == cim_error
    assert connection(server).EnumerateInstanceNames("Win32_ServerSession")  # still answering


def test_oversized_body(server) -> None:
    body = request_xml("EnumerateInstanceNames", "<!--" + "x" * (2 << 20) + "-->")
    answer = post(server, body)
    assert answer.status_code == 413
    assert connection(server).EnumerateInstanceNames("Win32_ServerSession")


def test_header_rules(server) -> None:
    body = request_xml(
        "EnumerateInstanceNames", "<IPARAMVALUE NAME='ClassName'><CLASSNAME NAME='Win32_ServerSession'/></IPARAMVALUE>"
    )
    assert post(server, body).status_code == 200
    assert post(server, body, CIMOperation="Nonsense").headers.get("CIMError") == "unsupported-operation"
    assert post(server, body, CIMMethod="GetClass").headers.get("CIMError") == "header-mismatch"
    assert post(server, body, CIMObject="root%2Fother").headers.get("CIMError") == "header-mismatch"
    assert requests.get(server["url"] + "/cimom", auth=(USER, PASSWORD), timeout=10).status_code == 405
    assert requests.post(server["url"] + "/other", timeout=10).status_code == 404
    answer = post(server, body)
    assert answer.headers["CIMOperation"] == "MethodResponse"
    assert answer.headers["Content-Type"].startswith("application/xml")


def test_access_log(server) -> None:
    import json
    from pathlib import Path

    def enumerations() -> list[dict]:
        lines = [json.loads(line) for line in Path(server["log"]).read_text(encoding="utf-8").splitlines()]
        return [r for r in lines if r["operation"] == "EnumerateInstances"]

    before = len(enumerations())
    with pytest.raises(pywbem.AuthError):  # a failed login is logged too, as 401
        pywbem.WBEMConnection(server["url"], (USER, "wrong"), default_namespace="root/cimv2").EnumerateInstances(
            "Win32_ServerSession"
        )
    connection(server).EnumerateInstances("Win32_ServerSession")
    # the log is written by a thread of its own: the line follows the answer by a moment (and may
    # follow lines of earlier requests still on their way)
    wanted = {"user": USER, "class": "Win32_ServerSession", "status": 200, "cim_status": 0}
    last = wait_for(lambda: next((r for r in enumerations()[before:] if wanted.items() <= r.items()), None), timeout=10)
    assert last["duration_ms"] >= 0 and last["client"]
    lines = [json.loads(line) for line in Path(server["log"]).read_text(encoding="utf-8").splitlines()]
    assert any(r["status"] == 401 and r["operation"] is None for r in lines)
    assert not any(PASSWORD in json.dumps(r) for r in lines)


# --- the other clients --------------------------------------------------------------------


def run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def test_pywbemcli(server) -> None:
    beside = os.path.join(os.path.dirname(sys.executable), "pywbemcli")  # the test environment's own
    tool = beside if os.path.exists(beside) else shutil.which("pywbemcli")
    assert tool, "pywbemcli (pywbemtools) is needed; run the README's test command"
    base = [tool, "-s", server["url"], "-u", USER, "-p", PASSWORD, "-d", "root/cimv2"]
    enum = run([*base, "instance", "enumerate", "Win32_ServerSession"])
    assert enum.returncode == 0, enum.stderr
    assert 'UserName = "alice";' in enum.stdout and "ResourcesOpened = 2;" in enum.stdout
    # not `instance query`: pywbemcli 1.4.1 calls list() on pywbem 1.9's IterQueryInstancesReturn,
    # which is not iterable (a client bug whatever the server; ExecQuery is tested with pywbem above)
    count = run([*base, "instance", "count", "Win32_ServerSession"])
    assert count.returncode == 0 and "Win32_ServerSession" in count.stdout
    cls = run([*base, "class", "get", "Win32_ServerSession"])
    assert cls.returncode == 0 and "class Win32_ServerSession : CIM_LogicalElement" in cls.stdout
    get = run([*base, "instance", "get", 'Win32_ServerSession.ComputerName="127.0.0.1",UserName="alice"'])
    assert get.returncode == 0 and "ResourcesOpened = 2;" in get.stdout, get.stderr
    wrong = run([tool, "-s", server["url"], "-u", USER, "-p", "bad", "instance", "count", "Win32_ServerSession"])
    assert wrong.returncode != 0


def test_wbemcli(server) -> None:
    tool = shutil.which("wbemcli")
    if tool is None:
        pytest.fail("sblim wbemcli is needed; run the README's test command")
    base = f"http://{USER}:{PASSWORD}@127.0.0.1:{server['port']}/root/cimv2"
    ein = run([tool, "ein", f"{base}:Win32_ServerSession"])
    assert ein.returncode == 0, ein.stderr
    assert 'Win32_ServerSession.ComputerName="127.0.0.1",UserName="alice"' in ein.stdout
    ei = run([tool, "ei", f"{base}:Win32_ServerSession"])
    assert ei.returncode == 0 and "ResourcesOpened=2" in ei.stdout and 'UserName="bob"' in ei.stdout
    gi = run([tool, "gi", f'{base}:Win32_ServerSession.ComputerName="127.0.0.1",UserName="alice"'])
    assert gi.returncode == 0 and "ResourcesOpened=2" in gi.stdout
    ec = run([tool, "ec", base])
    assert ec.returncode == 0 and "CIM_ManagedSystemElement" in ec.stdout
    gc = run([tool, "gc", f"{base}:Win32_ServerSession"])
    assert gc.returncode == 0 and "UserName=" in gc.stdout and "ActiveTime=" in gc.stdout
    denied = run([tool, "ein", f"http://{USER}:nope@127.0.0.1:{server['port']}/root/cimv2:Win32_ServerSession"])
    assert denied.returncode != 0


# --- configuration, TLS -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--no-auth", "--bind", "0.0.0.0"], "without TLS"),
        ([], "choose how clients authenticate"),
        (["--no-auth", "--pam"], "exclude each other"),
        (["--no-auth", "--tls-cert", "/x"], "go together"),
        (["--htpasswd", "/nonexistent/htpasswd"], "/nonexistent/htpasswd"),
        (["--no-auth", "--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"], "TLS file not found"),
    ],
)
def test_refused_configurations(args: list[str], message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "serversession", "serve", "--port", str(free_port()), *args],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_port_in_use(sandbox, htpasswd) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "serversession", "serve", "--htpasswd", htpasswd, "--port", str(port)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    assert result.returncode == 1 and "cannot listen" in result.stderr and "Traceback" not in result.stderr


def test_tls(sandbox, sessions, htpasswd, workdir, monkeypatch) -> None:
    # requests lets REQUESTS_CA_BUNDLE override the CA file pywbem passes (psf/requests#3829)
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    cert, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    port = free_port()
    proc = start_server(["--port", str(port), "--htpasswd", htpasswd, "--tls-cert", cert, "--tls-key", key,
                         "--smb-conf", sandbox.conf_path])  # fmt: skip
    try:
        wait_listening(port, proc)
        conn = pywbem.WBEMConnection(f"https://127.0.0.1:{port}", (USER, PASSWORD), default_namespace="root/cimv2",
                                     ca_certs=cert, timeout=30)  # fmt: skip
        assert {n.keybindings["UserName"] for n in conn.EnumerateInstanceNames("Win32_ServerSession")} >= {"alice"}
        untrusting = pywbem.WBEMConnection(f"https://127.0.0.1:{port}", (USER, PASSWORD), timeout=10)
        with pytest.raises(pywbem.ConnectionError):  # a client that does not trust the certificate
            untrusting.EnumerateInstanceNames("Win32_ServerSession", namespace="root/cimv2")
        try:
            plain_status = requests.post(f"http://127.0.0.1:{port}/cimom", data=b"x", timeout=10).status_code
        except requests.exceptions.ConnectionError:
            plain_status = None  # the TLS port closes a plain-text connection
        assert plain_status != 200
    finally:
        stop(proc)


def test_source_failure_is_cim_err_failed(htpasswd) -> None:
    port = free_port()
    proc = start_server(["--port", str(port), "--htpasswd", htpasswd, "--smb-conf", "/nonexistent/smb.conf"])
    try:
        wait_listening(port, proc)
        conn = pywbem.WBEMConnection(f"http://127.0.0.1:{port}", (USER, PASSWORD), default_namespace="root/cimv2")
        with pytest.raises(pywbem.CIMError) as caught:
            conn.EnumerateInstances("Win32_ServerSession")
        assert caught.value.status_code == 1 and "smb.conf not found" in caught.value.status_description
        assert conn.EnumerateClassNames()  # classes need no source
    finally:
        err = stop(proc)
    assert "Traceback" not in err


def test_slow_request_times_out_and_the_limit_answers_503(sandbox, htpasswd) -> None:
    port = free_port()
    proc = start_server(["--port", str(port), "--htpasswd", htpasswd, "--smb-conf", sandbox.conf_path,
                         "--request-timeout", "1.5", "--max-requests", "1"])  # fmt: skip
    try:
        wait_listening(port, proc)
        import base64

        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        slow = socket.create_connection(("127.0.0.1", port), timeout=10)
        slow.sendall(
            b"POST /cimom HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\nCIMOperation: MethodCall\r\n"
            b"CIMMethod: EnumerateInstanceNames\r\nAuthorization: Basic " + token.encode() + b"\r\n\r\n<CIM"
        )  # and never the rest of the body
        time.sleep(0.3)
        busy = connection({"url": f"http://127.0.0.1:{port}"})
        with pytest.raises(pywbem.HTTPError) as caught:
            busy.EnumerateInstanceNames("Win32_ServerSession")
        assert caught.value.status == 503  # the one slot is taken by the slow sender
        started = time.monotonic()
        answer = slow.recv(4096)
        assert b" 408 " in answer.split(b"\r\n")[0] and time.monotonic() - started < 5
        slow.close()
        assert isinstance(busy.EnumerateInstanceNames("Win32_ServerSession"), list)  # answered again
    finally:
        stop(proc)


# --- load ---------------------------------------------------------------------------------


def test_load_32_clients_200_requests(server) -> None:
    """32 pywbem clients x 200 requests, no errors; p50 and p99 latency printed."""
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        conn = connection(server)
        name = pywbem.CIMInstanceName("Win32_ServerSession", {"ComputerName": "127.0.0.1", "UserName": "alice"})
        for i in range(200):
            start = time.perf_counter()
            try:
                if i % 2:
                    conn.GetInstance(name)
                else:
                    conn.EnumerateInstanceNames("Win32_ServerSession")
            except BaseException as exc:
                with lock:
                    errors.append(exc)
                return
            with lock:
                latencies.append(time.perf_counter() - start)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(32)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    elapsed = time.perf_counter() - started
    assert not errors, errors[:3]
    assert len(latencies) == 32 * 200
    latencies.sort()
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
    print(
        f"\nload: 6400 requests in {elapsed:.1f} s ({6400 / elapsed:.0f}/s), p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
    )
    assert p99 < 10  # seconds: no request starved


def test_query_processes_answer_association_queries() -> None:
    """The query child process answers ASSOCIATORS OF and REFERENCES OF over one snapshot's
    instances as the WQL layer does in process; SchemaOnly is sent no instances, and the child
    keeps those it holds."""
    from serversession.model.providers import build
    from serversession.server.queries import QueryFailed, QueryRunner, evaluate
    from test_wql_assoc import ALICE, ALICE_DOCS, FAMILY, family_snapshot

    instances = build(FAMILY, family_snapshot())
    runner = QueryRunner(1)
    try:
        generation = (1, FAMILY)
        ends = runner.run(generation, instances, f"ASSOCIATORS OF {{{ALICE}}}")
        assert ends == evaluate(f"ASSOCIATORS OF {{{ALICE}}}", instances)
        assert ends.classname == "Win32_ServerConnection" and ends.classes is None
        assert sorted(i.ShareName for i in ends.instances) == ["data", "docs"]
        keys_only = runner.run(generation, instances, f"REFERENCES OF {{{ALICE_DOCS}}} WHERE KeysOnly")
        assert keys_only.keys_only and keys_only.properties == ("Antecedent", "Dependent")
        assert {i.classname for i in keys_only.instances} == {"Win32_SessionConnection", "Win32_ConnectionShare"}
        defs = runner.run(generation, instances, f"ASSOCIATORS OF {{{ALICE_DOCS}}} WHERE ClassDefsOnly")
        assert defs.classes == ["Win32_ServerSession", "Win32_Share"] and not defs.instances
        schema = runner.run(None, None, "REFERENCES OF {Win32_Share} WHERE SchemaOnly")
        assert schema.classes == ["CIM_Dependency", "Win32_ConnectionShare"]
        assert runner._idle[0].generation == generation  # still holds the instances: not sent again
        again = runner.run(
            generation, instances, f"ASSOCIATORS OF {{{ALICE}}} WHERE ResultClass = Win32_ServerConnection"
        )
        assert again.instances == ends.instances
        for query, kind in (
            ('ASSOCIATORS OF {Win32_Share.Name="nope"}', "notfound"),
            ('ASSOCIATORS OF {Win32_Share.Name="docs"} WHERE Nope', "invalid"),
            ("SELECT * FROM __InstanceCreationEvent WITHIN 5", "unsupported"),
        ):
            with pytest.raises(QueryFailed) as caught:
                runner.run(generation, instances, query)
            assert caught.value.kind == kind, caught.value
            with pytest.raises(QueryFailed) as local:
                evaluate(query, instances)
            assert local.value.kind == kind and str(local.value) == str(caught.value)
    finally:
        runner.close()


def test_the_server_reads_through_the_api_snapshot_reader(sandbox, sessions) -> None:
    """serve's reader is serversession.api.snapshot_reader: the options checked once, when it is
    made (before anything listens), then one Snapshot per call, holding the parts asked for."""
    from serversession.api import snapshot_reader
    from serversession.errors import InvalidInput
    from serversession.server import source_reader
    from serversession.sources.base import CONNECTIONS, SHARES

    read = source_reader(source=None, smb_conf=sandbox.conf_path, timeout=None, hosts=(), smb_port=None, user=None)
    bare = read(frozenset())
    assert {s.user_name for s in bare.sessions} >= {"alice", "bob"} and bare.shares is None
    both = read(frozenset({CONNECTIONS, SHARES}))
    assert both.connections is not None and "share" in {s.name for s in both.shares or ()}
    assert both.taken >= bare.taken
    for bad, message in (
        ({"timeout": -1}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"smb_port": 70000}, "smb_port"),
        ({"hosts": "server1"}, "hosts must be a list"),
        ({"password": ""}, "password"),
        ({"smb_conf": "a\0b"}, "NUL"),
        ({"source": "nope"}, "unknown source"),
        ({"source": "samba", "user": "alice"}, "srvsvc"),
    ):
        with pytest.raises(InvalidInput, match=message):
            snapshot_reader(**bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="timeout"):
        source_reader(timeout=0, smb_conf=sandbox.conf_path)


def test_server_survives_everything_and_stops_cleanly(server) -> None:
    assert server["proc"].poll() is None
    wait_for(lambda: connection(server).EnumerateInstanceNames("Win32_ServerSession"))
