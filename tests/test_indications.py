"""CIM indications (DSP1054) from ``serversession serve`` to real listeners, for real SMB logons
and logoffs: pywbem's WBEMListener and WBEMSubscriptionManager, ``pywbemcli subscription``,
``pywbemlistener``; a listener that is down and comes back, a server restart, the checks on who
subscribes what to where. Everything on 127.0.0.1; every wait bounded.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest
import pywbem

from conftest import wait_for
from serversession.demo import Client
from serversession.sandbox import free_port
from test_server import start_server, stop, wait_listening

# Not marked samba: what it tests (the front end) does not change with the Samba release, and the
# matrix's chroots carry only what the Samba-dependent tests need (as for test_server.py).

INTEROP = "root/interop"
USERS = {"monitor": "s3cret-Pa55", "other": "0ther-Pa55", "third": "Th1rd-Pa55"}
POLL = 1  # seconds: --poll-interval and WITHIN of the filters here
CREATED_DMTF = (
    "SELECT * FROM CIM_InstCreation WHERE SourceInstance ISA Win32_ServerSession AND SourceInstance.UserName = '{user}'"
)
DELETED_WMI = (
    "SELECT * FROM __InstanceDeletionEvent WITHIN 1 WHERE TargetInstance ISA 'Win32_ServerSession' "
    "AND TargetInstance.UserName = '{user}'"
)
EVENTS = 20  # seconds within which an indication of a logon or logoff must arrive


@pytest.fixture(scope="module")
def workdir() -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix="serversession-indications-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def htpasswd(workdir: str) -> str:
    path = os.path.join(workdir, "htpasswd")
    tool = shutil.which("htpasswd")
    if tool is None:
        pytest.fail("htpasswd (apache2-utils) is needed; run the README's test command")
    for number, (user, password) in enumerate(USERS.items()):
        flags = ["-B", "-b"] + (["-c"] if number == 0 else [])
        subprocess.run([tool, *flags, path, user, password], check=True, capture_output=True)
    return path


class Serve:
    """``serversession serve`` as a subprocess, with its own state directory."""

    def __init__(self, sandbox, htpasswd: str | None, state: str, *args: str) -> None:
        self.port = free_port()
        self.state = state
        auth = ["--htpasswd", htpasswd] if htpasswd else ["--no-auth"]
        self.args = ["--port", str(self.port), *auth, "--smb-conf", sandbox.conf_path, "--state-dir", state,
                     "--poll-interval", str(POLL), *args]  # fmt: skip
        self.proc = start_server(self.args)
        wait_listening(self.port, self.proc)
        self.url = f"http://127.0.0.1:{self.port}"

    def restart(self) -> str:
        err = stop(self.proc)
        self.proc = start_server(self.args)
        wait_listening(self.port, self.proc)
        return err

    def conn(self, user: str = "monitor", password: str | None = None) -> pywbem.WBEMConnection:
        creds = (user, USERS[user] if password is None else password)
        return pywbem.WBEMConnection(self.url, creds, default_namespace=INTEROP, timeout=30)

    def stop(self) -> str:
        return stop(self.proc)


@pytest.fixture(scope="module")
def server(sandbox, htpasswd: str, workdir: str) -> Iterator[Serve]:
    state = os.path.join(workdir, "state")
    serve = Serve(sandbox, htpasswd, state, "--subscriber", "monitor", "--subscriber", "third",
                  "--allow-destination", "192.0.2.10")  # fmt: skip
    yield serve
    err = serve.stop()
    assert "Traceback" not in err and "internal error" not in err, err[-3000:]


class Listener:
    """pywbem's WBEMListener on 127.0.0.1, collecting the indications it gets."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.got: list[pywbem.CIMInstance] = []
        self.listener = pywbem.WBEMListener("127.0.0.1", http_port=self.port)
        self.listener.add_callback(lambda indication, host: self.got.append(indication))
        self.listener.start()
        self.url = f"http://127.0.0.1:{self.port}"

    def of(self, classname: str, user: str) -> list[pywbem.CIMInstance]:
        return [i for i in list(self.got) if i.classname == classname and i["SourceInstance"]["UserName"] == user]

    def stop(self) -> None:
        self.listener.stop()


@pytest.fixture
def listeners() -> Iterator[list[Listener]]:
    started: list[Listener] = []
    yield started
    for listener in started:
        listener.stop()


@pytest.fixture
def managers() -> Iterator[list[pywbem.WBEMSubscriptionManager]]:
    made: list[pywbem.WBEMSubscriptionManager] = []
    yield made
    for manager in made:
        manager.remove_all_servers()  # deletes what it owns


def manager(managers: list, serve: Serve, name: str) -> tuple[pywbem.WBEMSubscriptionManager, str]:
    """A subscription manager with ``serve`` added (what it owns is deleted when the test ends)."""
    made = pywbem.WBEMSubscriptionManager(name)
    managers.append(made)
    return made, made.add_server(pywbem.WBEMServer(serve.conn()))


def read_text(path: str) -> str:
    if not os.path.exists(path):
        return ""
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def read_json(path: str) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def session(sandbox, user: str) -> Client:
    return Client(sandbox.port, user, sandbox.users[user])


@pytest.fixture(autouse=True)
def no_carol(sandbox) -> None:
    """Each test starts with no session of carol (an earlier one ending now would be an event)."""
    import serversession

    wait_for(lambda: not [s for s in serversession.sessions(smb_conf=sandbox.conf_path) if s.UserName == "carol"], 20)


# --- pywbem: subscription manager and listener -------------------------------------------------


def test_pywbem_listener_gets_each_logon_and_logoff_once_with_both_query_styles(
    sandbox, server, listeners, managers
) -> None:
    listener = Listener()
    listeners.append(listener)
    found_server = pywbem.WBEMServer(server.conn())
    assert found_server.interop_ns == INTEROP and found_server.brand == "serversession"
    assert set(found_server.namespaces) == {"root/cimv2", "root/Microsoft/Windows/SMB", INTEROP}
    submgr, sid = manager(managers, server, "styles")
    destination = submgr.add_destination(sid, listener.url, destination_id="styles")
    dmtf = submgr.add_filter(sid, "root/cimv2", CREATED_DMTF.format(user="carol"), "DMTF:CQL", filter_id="created")
    wmi = submgr.add_filter(sid, "root/cimv2", DELETED_WMI.format(user="carol"), "WQL", filter_id="deleted")
    assert dmtf["QueryLanguage"] == "DMTF:CQL" and wmi["Query"] == DELETED_WMI.format(user="carol")
    for found in (dmtf, wmi):
        submgr.add_subscriptions(sid, found.path, destination.path)
    refs = server.conn().ReferenceNames(destination.path, ResultClass="CIM_IndicationSubscription")
    assert len(refs) == 2

    carol = session(sandbox, "carol")
    created = wait_for(lambda: listener.of("CIM_InstCreation", "carol"), timeout=EVENTS)
    carol.close()
    deleted = wait_for(lambda: listener.of("CIM_InstDeletion", "carol"), timeout=EVENTS)
    time.sleep(3 * POLL)  # more polls: nothing may come twice
    assert len(listener.of("CIM_InstCreation", "carol")) == 1 and len(listener.of("CIM_InstDeletion", "carol")) == 1
    assert len(listener.got) == 2, [i.classname for i in listener.got]
    made, gone = created[0], deleted[0]
    assert made["IndicationFilterName"] == dmtf["Name"] and gone["IndicationFilterName"] == wmi["Name"]
    assert made["SourceInstanceModelPath"].endswith(
        'root/cimv2:Win32_ServerSession.ComputerName="127.0.0.1",UserName="carol"'
    )
    assert isinstance(made["SourceInstance"], pywbem.CIMInstance) and made["SourceInstance"]["ClientType"].startswith(
        "SMB"
    )
    assert isinstance(made["IndicationTime"], pywbem.CIMDateTime)
    assert made["SequenceContext"] == gone["SequenceContext"] and gone["SequenceNumber"] == made["SequenceNumber"] + 1


def test_modifications_carry_the_previous_instance(sandbox, server, listeners, managers) -> None:
    listener = Listener()
    listeners.append(listener)
    submgr, sid = manager(managers, server, "opens")
    destination = submgr.add_destination(sid, listener.url, destination_id="opens")
    query = ("SELECT * FROM CIM_InstModification WHERE SourceInstance ISA Win32_ServerSession AND "
             "SourceInstance.UserName = 'carol' AND SourceInstance.ResourcesOpened <> PreviousInstance.ResourcesOpened")  # fmt: skip
    found = submgr.add_filter(sid, "root/cimv2", query, "WQL", filter_id="opens")
    submgr.add_subscriptions(sid, found.path, destination.path)
    carol = session(sandbox, "carol")
    try:
        time.sleep(2 * POLL)  # a poll sees the session with no file open
        carol.open_files(["indication.txt"])
        (changed,) = wait_for(lambda: listener.of("CIM_InstModification", "carol"), timeout=EVENTS)
    finally:
        carol.close()
    assert changed["SourceInstance"]["ResourcesOpened"] == 1 and changed["PreviousInstance"]["ResourcesOpened"] == 0


# --- pywbemcli subscription, pywbemlistener ----------------------------------------------------


def pywbemcli(serve: Serve, *args: str, user: str = "monitor") -> subprocess.CompletedProcess[str]:
    tool = os.path.join(os.path.dirname(sys.executable), "pywbemcli")
    command = [tool, "-s", serve.url, "-u", user, "-p", USERS[user], "--timeout", "30", "subscription", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_pywbemcli_subscription_commands(sandbox, server, listeners) -> None:
    listener = Listener()
    listeners.append(listener)
    added = pywbemcli(server, "add-destination", "cli", "-l", listener.url)
    assert added.returncode == 0 and "Added owned destination" in added.stdout, added.stderr
    query = CREATED_DMTF.format(user="carol")
    added = pywbemcli(
        server, "add-filter", "cli", "-q", query, "--query-language", "DMTF:CQL", "--source-namespaces", "root/cimv2"
    )
    assert added.returncode == 0 and "Added owned filter" in added.stdout, added.stderr
    added = pywbemcli(server, "add-subscription", "cli", "cli")
    assert added.returncode == 0 and "Added owned subscription" in added.stdout, added.stderr
    listed = pywbemcli(server, "list-subscriptions")
    assert listed.returncode == 0 and "cli(owned)" in listed.stdout and listener.url in listed.stdout, listed.stderr
    counts = pywbemcli(server, "list")
    assert counts.returncode == 0 and "CIM_IndicationSubscription" in counts.stdout, counts.stderr

    carol = session(sandbox, "carol")
    (made,) = wait_for(lambda: listener.of("CIM_InstCreation", "carol"), timeout=EVENTS)
    carol.close()
    assert made["IndicationFilterName"] == "pywbemfilter:defaultpywbemcliSubMgr:cli"

    refused = pywbemcli(server, "remove-destination", "cli")  # a subscription still uses it (DSP1054)
    assert refused.returncode != 0 and "CIM_ERR_FAILED" in refused.stdout + refused.stderr
    for args in (("remove-subscription", "cli", "cli"), ("remove-filter", "cli"), ("remove-destination", "cli")):
        removed = pywbemcli(server, *args)
        assert removed.returncode == 0 and "Removed" in removed.stdout, (args, removed.stderr)
    conn = server.conn()
    for classname in ("CIM_IndicationSubscription", "CIM_IndicationFilter", "CIM_ListenerDestinationCIMXML"):
        assert conn.EnumerateInstanceNames(classname) == []


def test_pywbemlistener_start_receives_indications(sandbox, server, managers, workdir: str) -> None:
    tool = os.path.join(os.path.dirname(sys.executable), "pywbemlistener")
    port = free_port()
    received = os.path.join(workdir, "pywbemlistener.txt")
    name = f"ss{port}"
    env = {
        **os.environ,
        "PATH": os.pathsep.join((os.path.dirname(tool), os.environ.get("PATH", ""))),
    }  # it runs "pywbemlistener run"
    output = os.path.join(workdir, "pywbemlistener.out")
    with open(output, "w", encoding="utf-8") as out:  # not a pipe: the listener it starts keeps it open
        started = subprocess.run(
            [tool, "start", name, "--port", str(port), "--scheme", "http", "--bind-addr", "127.0.0.1", "--indi-file", received],
            stdout=out, stderr=subprocess.STDOUT, timeout=60, check=False, env=env,
        )  # fmt: skip
    assert started.returncode == 0, read_text(output)
    try:
        submgr, sid = manager(managers, server, "pywbemlistener")
        destination = submgr.add_destination(sid, f"http://127.0.0.1:{port}", destination_id="lis")
        found = submgr.add_filter(sid, "root/cimv2", CREATED_DMTF.format(user="carol"), "DMTF:CQL", filter_id="lis")
        submgr.add_subscriptions(sid, found.path, destination.path)
        carol = session(sandbox, "carol")

        wait_for(lambda: "CIM_InstCreation" in read_text(received) and "carol" in read_text(received), timeout=EVENTS)
        carol.close()
        assert read_text(received).count("instance of CIM_InstCreation") == 1
    finally:
        stopped = subprocess.run([tool, "stop", name], capture_output=True, text=True, timeout=60, check=False, env=env)
        assert stopped.returncode == 0, stopped.stderr


# --- a listener that is down, a server that restarts ----------------------------------------


def test_a_listener_that_is_down_gets_what_was_queued_when_it_comes_back(sandbox, server, listeners, managers) -> None:
    listener = Listener()
    submgr, sid = manager(managers, server, "comeback")
    destination = submgr.add_destination(sid, listener.url, destination_id="comeback")
    for kind, query in (("created", CREATED_DMTF), ("deleted", DELETED_WMI)):
        found = submgr.add_filter(sid, "root/cimv2", query.format(user="carol"), "WQL", filter_id=kind)
        submgr.add_subscriptions(sid, found.path, destination.path)
    listener.stop()
    carol = session(sandbox, "carol")
    time.sleep(3 * POLL)  # a poll sees the logon, the server fails to deliver it and retries
    carol.close()
    time.sleep(3 * POLL)
    back = Listener(listener.port)
    listeners.append(back)
    wait_for(lambda: len(back.got) >= 2, timeout=45)  # back-off: the next try within 2 x the longest wait so far
    time.sleep(2)
    assert [i.classname for i in back.got] == ["CIM_InstCreation", "CIM_InstDeletion"]
    assert back.got[1]["SequenceNumber"] == back.got[0]["SequenceNumber"] + 1


def test_a_dead_listener_costs_bounded_memory_and_gets_the_newest_when_back() -> None:
    """An Outbox (server/delivery.py) whose listener is down drops its oldest indications past
    its bound, counted and with a warning; a real pywbem listener then gets the rest, in order."""
    import aiohttp

    from serversession.server.delivery import Budget, Outbox
    from serversession.server.indications import export_request

    port = free_port()
    outbox = Outbox(f"http://127.0.0.1:{port}", "bounded", max_queue=3)
    outbox.context = "test"

    def body(context: str, number: int) -> bytes:
        indication = pywbem.CIMInstance("CIM_InstCreation", properties={"SequenceNumber": pywbem.Sint64(number)})
        return export_request(indication, str(number))

    async def run() -> list[int]:
        async with aiohttp.ClientSession() as client:
            outbox.start(client)
            for _ in range(10):
                outbox.export(body)
            await asyncio.sleep(1.0)  # tries, fails, backs off
            assert len(outbox) <= 3 and outbox.counts.dropped >= 7
            listener = Listener(port)
            try:
                deadline = time.monotonic() + 30
                while outbox.counts.delivered < 3 and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                await asyncio.sleep(0.5)
                return [int(i["SequenceNumber"]) for i in listener.got]
            finally:
                listener.stop()
                await outbox.stop()

    assert asyncio.run(run()) == [7, 8, 9]
    assert outbox.counts.delivered == 3 and outbox.counts.retries >= 1 and len(outbox) == 0

    shared = Budget(limit=2500)  # all listeners' queues together: a dead one cannot take it all
    dead, other = (Outbox("http://127.0.0.1:9", name, budget=shared) for name in ("dead", "other"))
    for number in range(5):
        dead.put(b"x" * 1000 + str(number).encode())
    assert len(dead) == 2 and dead.counts.dropped == 3 and shared.used == 2002
    other.put(b"y" * 1000)  # past the total: the newest of a queue is kept, the total stays bounded
    assert len(other) == 1 and shared.used == 3002


def test_listeners_that_accept_and_never_answer_do_not_hold_up_another_destination() -> None:
    """40 destinations (one user's, more than any shared pool held) on a listener that accepts
    connections and never answers; a healthy listener beside them still gets its indication at
    once, through the session the server uses (server/delivery.py client_session)."""
    from serversession.server.delivery import Outbox, client_session
    from serversession.server.indications import export_request

    def body(context: str, number: int) -> bytes:
        indication = pywbem.CIMInstance("CIM_InstCreation", properties={"SequenceNumber": pywbem.Sint64(number)})
        return export_request(indication, str(number))

    async def run() -> float:
        held: list[asyncio.StreamWriter] = []

        async def tarpit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            held.append(writer)  # reads the request, answers nothing, keeps the connection open
            while await reader.read(65536):
                pass

        pit = await asyncio.start_server(tarpit, "127.0.0.1", 0)
        port = pit.sockets[0].getsockname()[1]
        listener = Listener()
        session = client_session()
        stuck = [Outbox(f"http://127.0.0.1:{port}/{n}", f"stuck{n}") for n in range(40)]
        healthy = Outbox(listener.url, "healthy")
        try:
            for outbox in stuck:
                outbox.start(session)
                outbox.export(body)
            while len(held) < 40:  # every stuck destination holds a connection now
                await asyncio.sleep(0.05)
            healthy.start(session)
            started = time.monotonic()
            healthy.export(body)
            while healthy.counts.delivered < 1 and time.monotonic() - started < 15:
                await asyncio.sleep(0.05)
            return time.monotonic() - started if healthy.counts.delivered else float("inf")
        finally:
            for outbox in (*stuck, healthy):
                await outbox.stop()
            await session.close()
            for writer in held:
                writer.close()
            pit.close()
            listener.stop()

    took = asyncio.run(run())
    assert took < 3.0, f"the healthy listener waited {took:.1f} s behind listeners that never answer"


def test_a_server_restart_keeps_the_subscriptions_and_delivery_resumes(
    sandbox, htpasswd, workdir, listeners, managers
) -> None:
    serve = Serve(sandbox, htpasswd, os.path.join(workdir, "restart"))
    try:
        listener = Listener()
        listeners.append(listener)
        submgr, sid = manager(managers, serve, "restart")
        destination = submgr.add_destination(sid, listener.url, destination_id="restart")
        found = submgr.add_filter(sid, "root/cimv2", CREATED_DMTF.format(user="carol"), "DMTF:CQL", filter_id="restart")
        submgr.add_subscriptions(sid, found.path, destination.path)
        err = serve.restart()
        assert "Traceback" not in err
        saved = read_json(os.path.join(serve.state, "subscriptions.json"))
        assert [len(saved[s]) for s in ("filters", "destinations", "subscriptions")] == [1, 1, 1]
        again = pywbem.WBEMSubscriptionManager("restart")
        again_id = again.add_server(pywbem.WBEMServer(serve.conn()))  # recognises what it owns, after the restart
        assert len(again.get_owned_subscriptions(again_id)) == 1 and len(again.get_owned_filters(again_id)) == 1
        time.sleep(2 * POLL)  # the restored subscription reads its baseline in the background
        carol = session(sandbox, "carol")
        (made,) = wait_for(lambda: listener.of("CIM_InstCreation", "carol"), timeout=EVENTS)
        carol.close()
        assert made["IndicationFilterName"] == found["Name"]
    finally:
        for made in managers:
            made.remove_all_servers()
        managers.clear()
        serve.stop()


def test_a_damaged_state_file_is_moved_aside_and_an_unusable_entry_kept(sandbox, htpasswd, workdir) -> None:
    state = os.path.join(workdir, "damaged")
    os.makedirs(state)
    path = os.path.join(state, "subscriptions.json")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write('{"format": 1, "filters": [')
    serve = Serve(sandbox, htpasswd, state)
    try:
        assert glob.glob(path + ".corrupt-*")
        listed = serve.conn().EnumerateInstanceNames("CIM_IndicationFilter")
        assert listed == []
    finally:
        err = serve.stop()
    assert "damaged" in err and "Traceback" not in err
    elsewhere = {"owner": "monitor", "created": 1.0,
                 "properties": {"Name": "far", "Destination": "http://192.0.2.10:5990"}}  # fmt: skip
    near = {"owner": "monitor", "created": 1.0, "properties": {"Name": "near", "Destination": "http://127.0.0.1:5990"}}
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"format": 1, "filters": [], "subscriptions": [], "destinations": [elsewhere, near]}, handle)
    serve = Serve(sandbox, htpasswd, state)  # without --allow-destination 192.0.2.10 now
    try:
        names = [p["Name"] for p in serve.conn().EnumerateInstanceNames("CIM_ListenerDestinationCIMXML")]
        assert names == ["near"]
        serve.conn().DeleteInstance(serve.conn().EnumerateInstanceNames("CIM_ListenerDestinationCIMXML")[0])
        kept = read_json(path)["destinations"]
        assert [d["properties"]["Name"] for d in kept] == ["far"]  # set aside, never lost
    finally:
        err = serve.stop()
    assert "is not used" in err and "192.0.2.10" in err


def test_a_state_file_that_is_not_utf8_is_moved_aside(sandbox, htpasswd, workdir) -> None:
    state = os.path.join(workdir, "not-utf8")
    os.makedirs(state)
    path = os.path.join(state, "subscriptions.json")
    with open(path, "wb") as handle:
        handle.write(b'{"format": 1, "filters": [], "destinations": [{"owner": "\xff\xfe"}]}')
    serve = Serve(sandbox, htpasswd, state)
    try:
        assert serve.proc.poll() is None
        assert glob.glob(path + ".corrupt-*") and not os.path.exists(path)
        assert serve.conn().EnumerateInstanceNames("CIM_ListenerDestinationCIMXML") == []
    finally:
        err = serve.stop()
    assert "damaged" in err and "UTF-8" in err.replace("utf-8", "UTF-8"), err[-2000:]
    assert "internal error" not in err and "Traceback" not in err


def test_a_saved_entry_with_an_out_of_range_time_is_set_aside(sandbox, htpasswd, workdir) -> None:
    state = os.path.join(workdir, "out-of-range")
    os.makedirs(state)
    path = os.path.join(state, "subscriptions.json")
    huge = {"owner": "monitor", "created": 10**400,
            "properties": {"Name": "huge", "Destination": "http://127.0.0.1:5990"}}  # fmt: skip
    near = {"owner": "monitor", "created": 1.0, "properties": {"Name": "near", "Destination": "http://127.0.0.1:5991"}}
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(json.dumps({"format": 1, "filters": [], "subscriptions": [], "destinations": [huge, near]}))
    serve = Serve(sandbox, htpasswd, state)
    try:
        assert serve.proc.poll() is None
        names = [p["Name"] for p in serve.conn().EnumerateInstanceNames("CIM_ListenerDestinationCIMXML")]
        assert names == ["near"]
        serve.conn().DeleteInstance(serve.conn().EnumerateInstanceNames("CIM_ListenerDestinationCIMXML")[0])
        kept = read_json(path)["destinations"]
        assert [d["properties"]["Name"] for d in kept] == ["huge"]  # set aside, never lost
    finally:
        err = serve.stop()
    assert "is not used" in err and "created is not a time" in err, err[-2000:]
    assert "internal error" not in err and "Traceback" not in err


# --- who may subscribe what to where -------------------------------------------------------------


def destination(url: str, name: str = "d") -> pywbem.CIMInstance:
    return pywbem.CIMInstance("CIM_ListenerDestinationCIMXML", properties={"Name": name, "Destination": url})


def query_filter(query: str, language: str = "WQL", name: str = "f", **more) -> pywbem.CIMInstance:
    return pywbem.CIMInstance(
        "CIM_IndicationFilter", properties={"Name": name, "Query": query, "QueryLanguage": language, **more}
    )


def refused(call, status: int) -> str:
    with pytest.raises(pywbem.CIMError) as caught:
        call()
    assert caught.value.status_code == status, caught.value
    return caught.value.status_description


def test_only_authenticated_authorised_users_create_and_delete(sandbox, server, workdir) -> None:
    with pytest.raises(pywbem.AuthError):
        server.conn("monitor", "wrong").CreateInstance(destination("http://127.0.0.1:5990"))
    why = refused(lambda: server.conn("other").CreateInstance(destination("http://127.0.0.1:5990")), 2)
    assert "--subscriber" in why
    assert server.conn("other").EnumerateInstanceNames("CIM_IndicationFilter") is not None  # reading is not refused
    mine = server.conn("monitor").CreateInstance(destination("http://127.0.0.1:5990", "mine"))
    try:
        why = refused(lambda: server.conn("third").DeleteInstance(mine), 2)
        assert "another user" in why
        theirs = server.conn("third").CreateInstance(query_filter(CREATED_DMTF.format(user="x"), name="theirs"))
        subscription = pywbem.CIMInstance("CIM_IndicationSubscription", properties={"Filter": theirs, "Handler": mine})
        refused(lambda: server.conn("third").CreateInstance(subscription), 2)  # not third's destination
        server.conn("third").DeleteInstance(theirs)
    finally:
        server.conn("monitor").DeleteInstance(mine)

    anonymous = Serve(sandbox, None, os.path.join(workdir, "anonymous"))
    try:
        conn = pywbem.WBEMConnection(anonymous.url, default_namespace=INTEROP, timeout=30)
        why = refused(lambda: conn.CreateInstance(destination("http://127.0.0.1:5990")), 2)
        assert "--no-auth" in why
    finally:
        anonymous.stop()
    allowed = Serve(sandbox, None, os.path.join(workdir, "anonymous-allowed"), "--no-auth-subscriptions")
    try:
        conn = pywbem.WBEMConnection(allowed.url, default_namespace=INTEROP, timeout=30)
        made = conn.CreateInstance(destination("http://127.0.0.1:5990"))
        assert conn.GetInstance(made)["Destination"] == "http://127.0.0.1:5990"
    finally:
        allowed.stop()


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("http://192.0.2.99:5990", 2),  # off loopback, not allowed: CIM_ERR_ACCESS_DENIED
        ("http://listener.example:5990", 2),
        ("http://[::ffff:192.0.2.99]:5990", 2),
        ("http://localhost.:5990/", 2),  # names that resolve through the DNS, not literal loopback
        ("http://127.0.0.1.:5990/", 2),
        ("http://LOCALHOST.:5990", 2),
        ("http://user:secret@127.0.0.1:5990", 4),  # credentials in the URL
        ("file:///etc/passwd", 4),
        ("ftp://127.0.0.1:5990", 4),
        ("127.0.0.1:5990", 4),  # no scheme
        ("http://127.0.0.1:5990/x?a=b", 4),
        ("http://127.0.0.1:99999", 4),
        ("http://127.0.0.1:5990/" + "x" * 3000, 4),
    ],
)  # fmt: skip
def test_destinations_must_be_loopback_http_urls_unless_allowed(server, url: str, status: int) -> None:
    refused(lambda: server.conn().CreateInstance(destination(url)), status)
    assert server.conn().EnumerateInstanceNames("CIM_ListenerDestinationCIMXML") == []


def test_an_allowed_destination_host_and_loopback_ones_are_accepted(server) -> None:
    conn = server.conn()
    made = [conn.CreateInstance(destination(url, f"ok{n}")) for n, url in enumerate(
        ("http://192.0.2.10:5990", "https://localhost:5991/listener", "http://[::1]:5992", "http://127.0.0.2:5993"))]  # fmt: skip
    try:
        assert {conn.GetInstance(p)["Destination"] for p in made} >= {"http://192.0.2.10:5990", "http://[::1]:5992"}
        assert conn.GetInstance(made[0])["PersistenceType"] == 2 and conn.GetInstance(made[0])["Protocol"] == 2
        refused(lambda: conn.CreateInstance(destination("http://127.0.0.1:5994", "ok0")), 11)  # the same keys
    finally:
        for path in made:
            conn.DeleteInstance(path)


@pytest.mark.parametrize(
    ("query", "language", "status", "message"),
    [
        ("SELECT * FROM CIM_InstCreation WHERE SourceInstance ISA Win32_ServerSession", "XQL", 14, "QueryLanguage"),
        ("SELECT * FROM __InstanceCreationEvent WHERE TargetInstance ISA 'Win32_ServerSession'", "WQL", 4, "WITHIN"),
        ("SELECT * FROM CIM_InstCreation WHERE SourceInstance ISA Win32_Nope", "DMTF:CQL", 4, "unknown class"),
        ("SELECT * FROM CIM_InstCreation", "DMTF:CQL", 4, "names the class to watch"),
        ("SELECT * FROM Win32_ServerSession", "WQL", 4, "not an indication class"),
        ("SELECT * FROM CIM_AlertIndication", "DMTF:CQL", 7, "not produced here"),
        ("SELECT Nope FROM CIM_InstCreation WHERE SourceInstance ISA Win32_ServerSession", "DMTF:CQL", 4, "Nope"),
        ("SELECT * FROM CIM_InstCreation WHERE SourceInstance ISA Win32_ServerSession AND SourceInstance.Nope = 1", "WQL", 4, "Nope"),
        ("SELECT * FROM CIM_InstCreation WHERE SourceInstance ISA Win32_ServerSession AND 'x", "WQL", 4, "not closed"),
        ("SELECT * FROM CIM_InstCreation WHERE SourceInstance ISA Win32_ServerSession" + " " * 5000, "WQL", 4, "longer than"),
        ("", "WQL", 4, "no Query"),
    ],
)  # fmt: skip
def test_malformed_filters_are_refused_with_the_right_cim_error(server, query, language, status, message) -> None:
    why = refused(lambda: server.conn().CreateInstance(query_filter(query, language)), status)
    assert message in why
    assert server.conn().EnumerateInstanceNames("CIM_IndicationFilter") == []


def test_a_filter_watches_a_class_of_its_source_namespaces(server) -> None:
    conn = server.conn()
    query = "SELECT * FROM CIM_InstIndication WHERE SourceInstance ISA MSFT_SmbSession"
    why = refused(lambda: conn.CreateInstance(query_filter(query, SourceNamespaces=["root/cimv2"])), 4)
    assert "root/Microsoft/Windows/SMB" in why
    refused(lambda: conn.CreateInstance(query_filter(query, SourceNamespaces=["root/nope"])), 4)
    made = conn.CreateInstance(query_filter(query, "DMTF:CQL", SourceNamespaces=["root\\Microsoft\\Windows\\SMB"]))
    try:
        assert conn.GetInstance(made)["Query"] == query
    finally:
        conn.DeleteInstance(made)


def test_an_instance_too_large_for_the_state_file_is_refused(server) -> None:
    query = CREATED_DMTF.format(user="carol")
    why = refused(lambda: server.conn().CreateInstance(query_filter(query, Description="x" * 20000)), 4)
    assert "larger than" in why
    assert server.conn().EnumerateInstanceNames("CIM_IndicationFilter") == []


def test_root_interop_classes_are_dmtfs(server) -> None:
    conn = server.conn()
    names = conn.EnumerateClassNames(DeepInheritance=True)
    assert {"CIM_IndicationFilter", "CIM_ListenerDestinationCIMXML", "CIM_IndicationSubscription",
            "CIM_Namespace", "CIM_ObjectManager", "CIM_InstCreation", "CIM_InstModification"} <= set(names)  # fmt: skip
    cls = conn.GetClass("CIM_IndicationFilter", LocalOnly=False)
    assert cls.superclass == "CIM_ManagedElement" and cls.properties["Query"].qualifiers["Required"].value is True
    assert cls.properties["ElementName"].class_origin in (None, "CIM_ManagedElement")
    modification = conn.GetClass("CIM_InstModification", LocalOnly=False)
    assert modification.properties["PreviousInstance"].qualifiers["EmbeddedObject"].value is True
    (manager,) = conn.EnumerateInstances("CIM_ObjectManager")
    assert manager["ElementName"] == "serversession" and manager.path.keybindings["Name"] == "serversession"
    refused(lambda: conn.DeleteInstance(manager.path), 7)
    refused(lambda: conn.ModifyInstance(manager), 7)
    refused(lambda: conn.EnumerateInstances("Win32_ServerSession"), 5)  # each namespace has its own classes
    with pytest.raises(pywbem.CIMError) as caught:
        server.conn().CreateInstance(query_filter("x"), namespace="root/cimv2")
    assert caught.value.status_code == 7 and INTEROP in caught.value.status_description


def test_serve_options_are_checked_before_it_listens(sandbox, workdir) -> None:
    from conftest import run_cli

    for args, message in (
        (["--htpasswd", "/nope", "--no-auth-subscriptions"], "--no-auth-subscriptions goes with --no-auth"),
        (["--no-auth", "--subscriber", "x"], "--subscriber names users"),
        (["--no-auth", "--poll-interval", "0.1"], "--poll-interval"),
        (["--no-auth", "--allow-destination", "http://x/"], "--allow-destination takes a host"),
    ):
        result = run_cli("serve", "--port", str(free_port()), "--smb-conf", sandbox.conf_path, *args, timeout=30)
        assert result.returncode == 2 and message in result.stderr, result.stderr
    state = os.path.join(workdir, "busy")
    first = Serve(sandbox, None, state)
    try:
        result = run_cli("serve", "--no-auth", "--port", str(free_port()), "--smb-conf", sandbox.conf_path,
                         "--state-dir", state, timeout=30)  # fmt: skip
        assert result.returncode == 1 and "used by another serversession serve" in result.stderr
    finally:
        first.stop()
