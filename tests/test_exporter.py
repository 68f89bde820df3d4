"""``serversession exporter`` against a real smbd, real SMB clients and a real Prometheus.

The exporter runs as ``python -m serversession exporter`` on a free loopback port; Debian's
``prometheus`` (the package scripts/dev installs) is started with its own config file and data
directory on loopback, scrapes it, and is asked through its HTTP API (/api/v1/query) for the
series, which are checked against the sessions the test opened and what serversession's API reads.
``promtool check metrics`` checks the output; the fleet test asks the sandbox over srvsvc beside a
host that refuses connections and one that never answers; the web-config tests make a
self-signed certificate with openssl and bcrypt hashes. Every wait is bounded, everything
listens on 127.0.0.1, and every process started is stopped.
"""

from __future__ import annotations

import concurrent.futures
import gzip
import http.client
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from smbprotocol.open import LockFlags, SMB2LockElement

import serversession
from conftest import REPO, wait_for
from serversession.demo import Client
from serversession.exporter import Exporter, check_exposure, make_server
from serversession.exporter.webconfig import WebSettings, load_web_config
from serversession.sandbox import Sandbox, free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
START = 30.0  # seconds a process may take to listen
ANSWER = 15.0  # seconds a scrape may take
#: labels a serversession_ series may have without --per-user (Prometheus adds job and instance)
BOUNDED = {
    "__name__",
    "job",
    "instance",
    "host",
    "dialect",
    "session_type",
    "encryption",
    "signing",
    "share",
    "le",
    "version",
    "python_version",
}
#: the exporter's own series: no host label, even in a fleet
OWN = {
    "serversession_build_info",
    "serversession_read_duration_seconds",
    "serversession_read_timestamp_seconds",
    "serversession_reads_total",
    "serversession_reads_created",
    "serversession_user_series_dropped",
}


def _need(program: str) -> None:
    if not os.access(program, os.X_OK):
        pytest.fail(f"{program} is not installed: run scripts/dev test (it installs Debian's prometheus)")


# --- processes --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    """This module's own sandbox Samba (users alice, bob, carol and the administrator admin)."""
    directory = tempfile.mkdtemp(prefix="serversession-exporter-")
    sandbox = Sandbox(directory, free_port())
    sandbox.start(users=("alice", "bob", "carol"))
    yield sandbox
    sandbox.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def clients(box: Sandbox) -> Iterator[Callable[..., Client]]:
    """Real SMB sessions (smbprotocol); closed, and gone from smbd, when the test ends."""
    opened: list[Client] = []

    def open_session(user: str, guest: bool = False) -> Client:
        client = Client(box.port, user, "any-password" if guest else box.users[user], guest=guest)
        opened.append(client)
        return client

    yield open_session
    for client in opened:
        client.close()
    wait_for(lambda: not [s for s in serversession.sessions(smb_conf=box.conf_path) if s.UserName != "admin"], 20)


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> bool:
    if proc.poll() is not None:
        pytest.fail(f"exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def exporters(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Start ``python -m serversession exporter ARGS`` on a free loopback port (stopped at the end)."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, scheme: str = "http") -> Running:
        port = free_port()
        log = tmp_path / f"exporter-{port}.log"
        env = {k: v for k, v in os.environ.items() if k != "SERVERSESSION_SMB_CONF"}
        env["SERVERSESSION_PASSWORD"] = ""
        with open(log, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "serversession", "exporter", "--port", str(port), *args],
                stdout=err,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        started.append(proc)
        wait_for(lambda: _listening(port, proc, log), START)
        return Running(proc, port, log, scheme)

    yield start
    for proc in started:
        _stop(proc)
    for proc in started:
        assert proc.returncode == 0, f"the exporter did not stop cleanly on SIGTERM ({proc.returncode})"


class Prometheus:
    """A real Prometheus server with its own config and data directory, asked through its HTTP API."""

    def __init__(self, config: str, directory: Path) -> None:
        _need(PROMETHEUS)
        directory.mkdir()
        (directory / "prometheus.yml").write_text(config)
        self.port = free_port()
        self.log = directory / "prometheus.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [
                    PROMETHEUS,
                    f"--config.file={directory / 'prometheus.yml'}",
                    f"--storage.tsdb.path={directory / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
            )
        wait_for(self._ready, START)

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"prometheus exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/-/ready", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def api(self, path: str, **params: Any) -> Any:
        answer = requests.get(f"http://127.0.0.1:{self.port}/api/v1/{path}", params=params, timeout=10)
        body = answer.json()
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return data["result"]  # type: ignore[no-any-return]

    def values(self, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Labels (without job, instance) -> value of each series ``expr`` gives now."""
        return {
            tuple(sorted((k, v) for k, v in r["metric"].items() if k not in ("__name__", "job", "instance"))): float(
                r["value"][1]
            )
            for r in self.query(expr)
        }

    def scraped_after(self, moment: float, instance: str | None = None) -> bool:
        """Whether a sample of a read that ended after ``moment`` (Unix time) is stored."""
        selector = f'{{instance="{instance}"}}' if instance else ""
        return any(float(r["value"][1]) > moment for r in self.query(f"serversession_read_timestamp_seconds{selector}"))

    def stop(self) -> None:
        _stop(self.proc)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[str], Prometheus]]:
    started: list[Prometheus] = []

    def start(config: str) -> Prometheus:
        server = Prometheus(config, tmp_path / f"prometheus-{len(started)}")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def example_config(port: int) -> str:
    """The README's (docs/exporter.md's) example prometheus.yml, scraping ``port`` every second."""
    text = Path(REPO, "docs", "exporter.md").read_text()
    block = re.search(r"## Example `prometheus.yml`\s+```yaml\n(.*?)```", text, re.S)
    assert block is not None, "docs/exporter.md has no example prometheus.yml"
    config = block.group(1)
    assert "scrape_interval: 15s" in config and '"localhost:9923"' in config
    return config.replace("scrape_interval: 15s", "scrape_interval: 1s").replace("localhost:9923", f"127.0.0.1:{port}")


def scrape(url: str, **options: Any) -> requests.Response:
    return requests.get(f"{url}/metrics", timeout=ANSWER, **options)


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def value(text: str, name: str, **labels: str) -> float:
    found = [v for n, ls, v in samples(text) if n == name and all(ls.get(k) == x for k, x in labels.items())]
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


def lock(handle: Any, offset: int, length: int) -> None:
    element = SMB2LockElement()
    element["offset"], element["length"] = offset, length
    element["flags"] = LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK | LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY
    handle.lock([element])


class Busy:
    """Keeps a client's session busy (a request every 0.3 s) while the ``with`` block runs."""

    def __init__(self, client: Client) -> None:
        self.client, self.stop = client, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.3):
            self.client.touch()

    def __enter__(self) -> Busy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


# --- one server, through Prometheus -------------------------------------------------------------


def test_prometheus_from_the_example_config_shows_the_true_sessions(box, clients, exporters, prometheus) -> None:
    alice = clients("alice")
    alice.open_files(["exporter-a.txt", "exporter-b.txt"])
    lock(alice.files[0], 0, 10)
    clients("bob")
    clients("visitor", guest=True)
    exporter = exporters("--smb-conf", box.conf_path, "--max-age", "0")
    server = prometheus(example_config(exporter.port))
    with Busy(alice):
        # bob's and the guest's sessions idle past the first bucket (10 s) while alice works
        wait_for(
            lambda: all(
                (s.SecondsIdle or 0) > 11
                for s in serversession.instances("MSFT_SmbSession", smb_conf=box.conf_path)
                if s.ClientUserName != "alice"
            ),
            40,
        )
        truth = serversession.instances("MSFT_SmbSession", smb_conf=box.conf_path)
        moment = time.time()
        wait_for(lambda: server.scraped_after(moment), 30)
        series = {
            name: server.values(name)
            for name in (
                "serversession_up",
                "serversession_users",
                "serversession_clients",
                "serversession_session_idle_seconds_bucket",
                "serversession_session_age_seconds_bucket",
                "serversession_session_idle_seconds_gcount",
            )
        }
        by_type = server.values("sum by (session_type, dialect) (serversession_sessions)")
        per_share = {
            name: server.values(f"serversession_{name}")
            for name in ("tree_connects", "open_handles", "byte_range_locks")
        }
    assert len(truth) == 3 and {s.ClientUserName for s in truth} == {"alice", "bob", "nobody"}
    dialect = truth[0].Dialect
    assert dialect and {s.Dialect for s in truth} == {dialect}
    assert series["serversession_up"] == {(): 1.0}
    assert series["serversession_users"] == {(): 3.0}  # alice, bob, and the guest's account
    assert series["serversession_clients"] == {(): 1.0}  # all from 127.0.0.1
    assert by_type == {
        (("dialect", dialect), ("session_type", "Guest")): 1.0,
        (("dialect", dialect), ("session_type", "Other")): 2.0,
    }
    idle = {dict(k)["le"]: v for k, v in series["serversession_session_idle_seconds_bucket"].items()}
    assert idle["10"] == 1.0 and idle["30"] == 3.0 and idle["+Inf"] == 3.0  # alice busy, the others idle
    assert series["serversession_session_idle_seconds_gcount"] == {(): 3.0}
    age = {dict(k)["le"]: v for k, v in series["serversession_session_age_seconds_bucket"].items()}
    assert age["10"] == 0.0 and age["60"] == 3.0 and age["604800"] == 3.0
    assert per_share["tree_connects"] == {(("share", "IPC$"),): 0.0, (("share", "share"),): 1.0}
    assert per_share["open_handles"] == {(("share", "IPC$"),): 0.0, (("share", "share"),): 2.0}
    assert per_share["byte_range_locks"] == {(("share", "IPC$"),): 0.0, (("share", "share"),): 1.0}
    # bounded labels: no user, client address or session id without --per-user
    names = set().union(*(s.keys() for s in server.api("series", **{"match[]": '{__name__=~"serversession_.+"}'})))
    assert names <= BOUNDED, names - BOUNDED
    assert "error" not in exporter.stderr()


def test_promtool_checks_both_formats_and_ten_scrapers_cost_one_read(box, clients, exporters) -> None:
    _need(PROMTOOL)
    clients("alice").open_files(["promtool.txt"])
    clients("carol")
    exporter = exporters("--smb-conf", box.conf_path, "--per-user", "--max-age", "60")
    with concurrent.futures.ThreadPoolExecutor(10) as pool:  # ten scrapers at once, before any read
        answers = list(pool.map(lambda _: scrape(exporter.url), range(10)))
    assert [a.status_code for a in answers] == [200] * 10
    assert {value(a.text, "serversession_reads_total") for a in answers} == {1.0}
    assert len({value(a.text, "serversession_read_timestamp_seconds") for a in answers}) == 1
    text = answers[0].text
    assert answers[0].headers["Content-Type"].startswith("text/plain; version=0.0.4")
    check = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check
    assert value(text, "serversession_user_sessions", user="alice") == 1.0
    assert value(text, "serversession_user_open_handles", user="alice") == 1.0
    assert value(text, "serversession_user_series_dropped") == 0.0
    assert 0 <= value(text, "serversession_user_idle_seconds", user="carol") < 60
    # OpenMetrics by content negotiation (what Prometheus asks for), gzip when asked
    open_metrics = scrape(exporter.url, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert open_metrics.headers["Content-Type"].startswith("application/openmetrics-text")
    assert open_metrics.text.endswith("# EOF\n")
    assert "# TYPE serversession_session_idle_seconds gaugehistogram" in open_metrics.text
    raw = requests.get(f"{exporter.url}/metrics", headers={"Accept-Encoding": "gzip"}, stream=True, timeout=ANSWER)
    assert raw.headers["Content-Encoding"] == "gzip"
    assert b"serversession_up 1.0" in gzip.decompress(raw.raw.read())


def test_per_user_series_are_capped_with_a_warning(box, clients, caplog) -> None:
    for user in ("bob", "bob", "alice", "carol"):
        clients(user)
    exporter = Exporter(smb_conf=box.conf_path, per_user=True, user_limit=2, max_age=0)
    server = make_server(exporter, "127.0.0.1", 0, WebSettings(None))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        with caplog.at_level(logging.WARNING, logger="serversession"):
            text = scrape(f"http://127.0.0.1:{server.server_port}").text
    finally:
        server.shutdown()
        server.server_close()
    users = {ls["user"]: v for n, ls, v in samples(text) if n == "serversession_user_sessions"}
    assert users == {"bob": 2.0, "alice": 1.0}  # most sessions first, then by name: carol is left out
    assert value(text, "serversession_user_series_dropped") == 1.0
    assert value(text, "serversession_users") == 3.0  # the bounded series still count everyone
    assert any("--per-user: 3 users" in r.getMessage() for r in caplog.records)


# --- fleet, and the dashboard ------------------------------------------------------------------


def test_fleet_failing_hosts_and_every_dashboard_query(box, clients, exporters, prometheus, tmp_path) -> None:
    clients("alice").open_files(["fleet.txt"])
    password = tmp_path / "admin.pw"
    password.write_text(box.users["admin"] + "\n")
    refused = free_port()  # nothing listens there
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        hosts = {
            "up": f"127.0.0.1@{box.port}",
            "refused": f"127.0.0.1@{refused}",
            "silent": f"127.0.0.1@{silent.getsockname()[1]}",
        }
        fleet = exporters(
            "--host",
            f"127.0.0.1:{box.port}",
            "--host",
            f"127.0.0.1:{refused}",
            "--host",
            f"127.0.0.1:{silent.getsockname()[1]}",
            "--user",
            "admin",
            "--password-file",
            str(password),
            "--timeout",
            "1",
            "--max-age",
            "0",
        )
        local = exporters("--smb-conf", box.conf_path, "--max-age", "0")
        started = time.monotonic()
        text = scrape(fleet.url).text
        assert time.monotonic() - started < 6  # bounded by the time-out, not by the silent host
        up = {ls["host"]: v for n, ls, v in samples(text) if n == "serversession_up"}
        assert up == {hosts["up"]: 1.0, hosts["refused"]: 0.0, hosts["silent"]: 0.0}
        for name, labels, _ in samples(text):
            if name.startswith("serversession_") and name not in OWN:
                assert labels.get("host") == hosts["up"] or name == "serversession_up", (name, labels)
        assert value(text, "serversession_users", host=hosts["up"]) >= 2  # alice, and admin reading
        assert value(text, "serversession_open_handles", host=hosts["up"], share="*unknown*") == 1.0  # srvsvc: no share

        dashboard = json.loads(Path(REPO, "contrib", "grafana", "serversession-dashboard.json").read_text())
        server = prometheus(f"""
global:
  scrape_interval: 4s
  scrape_timeout: 3s
scrape_configs:
  - job_name: fleet
    static_configs: [{{targets: ["127.0.0.1:{fleet.port}"]}}]
  - job_name: local
    static_configs: [{{targets: ["127.0.0.1:{local.port}"]}}]
""")
        moment = time.time()
        wait_for(
            lambda: (
                server.scraped_after(moment, f"127.0.0.1:{fleet.port}")
                and server.scraped_after(moment, f"127.0.0.1:{local.port}")
            ),
            40,
        )
        assert server.values("up") == {(): 1.0}  # both targets answered within the scrape time-out
        down = server.values("serversession_up == 0")
        assert set(down) == {(("host", hosts[h]),) for h in ("refused", "silent")}
        queries = _dashboard_queries(dashboard)
        assert len(queries) >= 14
        for kind, query in queries:
            if kind == "variable":
                metric, label = re.fullmatch(r"label_values\((.*), (\w+)\)", query).groups()  # type: ignore[union-attr]
                found = server.api(f"label/{label}/values", **{"match[]": _expand(metric)})
            else:
                found = server.query(_expand(query))
            assert found, f"the dashboard's {kind} query {query!r} returns no series"
    # each failing host's error is logged once, not once per read
    assert value(scrape(fleet.url).text, "serversession_reads_total") >= 3
    assert fleet.stderr().count(f"{hosts['refused']}: cannot connect") == 1, fleet.stderr()


def _dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    queries = [("variable", v["definition"]) for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return queries + [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]


def _expand(expr: str) -> str:
    """A dashboard query as Grafana sends it with every exporter and host chosen ("All")."""
    for variable, text in (("$instance", ".*"), ("$host", ".*"), ("$__rate_interval", "1m"), ("$__interval", "4s")):
        expr = expr.replace(variable, text)
    return expr


# --- web config: TLS and basic auth ------------------------------------------------------------


def _certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "server.crt", directory / "server.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def _hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()


def test_web_config_tls_and_basic_auth_also_for_prometheus(box, exporters, prometheus, tmp_path) -> None:
    cert, key = _certificate(tmp_path)
    web = tmp_path / "web.yml"
    web.write_text(f"""# as node_exporter reads it
tls_server_config:
  cert_file: {cert.name}   # relative to this file
  key_file: "{key.name}"
basic_auth_users:
  prometheus: {_hash("s3cret-Pw")}
http_server_config:
  headers:
    X-Frame-Options: deny
""")
    exporter = exporters("--smb-conf", box.conf_path, "--web-config-file", str(web), scheme="https")
    assert "(TLS, basic auth;" in wait_for(lambda: "serving" in exporter.stderr() and exporter.stderr(), 10)
    anonymous = scrape(exporter.url, verify=str(cert))
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic")
    assert "serversession" not in anonymous.text
    assert scrape(exporter.url, verify=str(cert), auth=("prometheus", "wrong")).status_code == 401
    assert scrape(exporter.url, verify=str(cert), auth=("nobody", "s3cret-Pw")).status_code == 401
    good = scrape(exporter.url, verify=str(cert), auth=("prometheus", "s3cret-Pw"))
    assert good.status_code == 200 and value(good.text, "serversession_up") == 1.0
    assert good.headers["X-Frame-Options"] == "deny"
    assert requests.get(f"{exporter.url}/", verify=str(cert), timeout=ANSWER).status_code == 401  # every path
    with pytest.raises(requests.exceptions.ConnectionError):  # no plain HTTP on the TLS port
        requests.get(f"http://127.0.0.1:{exporter.port}/metrics", timeout=ANSWER)
    # Prometheus scrapes it through TLS with basic auth
    (tmp_path / "password").write_text("s3cret-Pw")
    server = prometheus(f"""
global: {{scrape_interval: 1s}}
scrape_configs:
  - job_name: tls
    scheme: https
    tls_config: {{ca_file: {cert}}}
    basic_auth: {{username: prometheus, password_file: {tmp_path / "password"}}}
    static_configs: [{{targets: ["127.0.0.1:{exporter.port}"]}}]
""")
    wait_for(lambda: server.values("serversession_up") == {(): 1.0}, 30)
    # the file is read again when it changes: a new user, then a broken file (500), then fixed
    web.write_text(web.read_text().replace("prometheus:", "grafana:"))
    assert scrape(exporter.url, verify=str(cert), auth=("prometheus", "s3cret-Pw")).status_code == 401
    assert scrape(exporter.url, verify=str(cert), auth=("grafana", "s3cret-Pw")).status_code == 200
    fixed = web.read_text()
    web.write_text(fixed + "unknown_setting: 1\n")
    assert scrape(exporter.url, verify=str(cert), auth=("grafana", "s3cret-Pw")).status_code == 500
    web.write_text(fixed)
    assert scrape(exporter.url, verify=str(cert), auth=("grafana", "s3cret-Pw")).status_code == 200


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("tls_server_config:\n  cert_file: x.crt\n", "tls_server_config needs key_file"),
        ("basic_auth_users:\n  alice: secret\n", "the password of alice is not a bcrypt hash"),
        ("basic_auths:\n  alice: x\n", "unknown setting basic_auths"),
        ("tls_server_config:\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", "cipher_suites is not supported"),
        ("basic_auth_users: &users\n", "line 1: '&'"),
        ("tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n", "cert_file of web config file"),
        ("".join(f"{' ' * n}k{n}:\n" for n in range(1000)), "line 33: mappings nested more than 32 levels deep"),
    ],
    ids=lambda v: v[:40] if isinstance(v, str) else None,
)
def test_a_bad_web_config_stops_the_start(box, tmp_path, content, message) -> None:
    web = tmp_path / "web.yml"
    web.write_text(content)
    port = free_port()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "serversession",
            "exporter",
            "--port",
            str(port),
            "--smb-conf",
            box.conf_path,
            "--web-config-file",
            str(web),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode in (1, 2) and message in result.stderr, result.stderr
    assert (result.returncode == 1) == ("missing" in content)  # unreadable: 1; wrong content: 2
    assert "Traceback" not in result.stderr


def test_security_by_default(box, exporters) -> None:
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "serversession",
            "exporter",
            "--bind",
            "0.0.0.0",
            "--per-user",
            "--port",
            str(free_port()),
            "--smb-conf",
            box.conf_path,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and "refusing --per-user on 0.0.0.0 without TLS and basic auth" in refused.stderr
    assert "anyone who reaches the port" in (check_exposure("0.0.0.0", True, False, False) or "")
    assert check_exposure("::1", False, False, True) is None
    assert check_exposure("192.0.2.1", True, True, True) is None

    exporter = exporters("--smb-conf", box.conf_path)
    page = requests.get(f"{exporter.url}/", timeout=ANSWER)
    assert page.status_code == 200 and 'href="metrics"' in page.text and box.conf_path not in page.text
    assert requests.post(f"{exporter.url}/metrics", data=b"x" * 100, timeout=ANSWER).status_code == 405
    assert requests.get(f"{exporter.url}/debug", timeout=ANSWER).status_code == 404
    assert requests.head(f"{exporter.url}/metrics", timeout=ANSWER).status_code == 200
    with socket.create_connection(("127.0.0.1", exporter.port), timeout=ANSWER) as sock:  # a head too large
        head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Filler: "
        sock.sendall(head + b"a" * (16 * 1024 - len(head)))  # all of it is read: no reset hides the answer
        assert sock.recv(100).startswith(b"HTTP/1.0 431")
    with socket.create_connection(("127.0.0.1", exporter.port), timeout=ANSWER) as sock:  # a request line too long
        sock.sendall(b"GET /" + b"a" * (16 * 1024 - 5))
        assert sock.recv(100).startswith(b"HTTP/1.0 414")
    # 64 idle connections from one address: it holds 16, the rest and the next are closed at once;
    # a scrape from another address (127.0.0.2, also loopback) is answered; they are dropped within 10 s
    idle = [socket.create_connection(("127.0.0.1", exporter.port), timeout=ANSWER) for _ in range(64)]
    try:
        time.sleep(0.5)
        with socket.create_connection(("127.0.0.1", exporter.port), timeout=ANSWER) as extra:
            assert extra.recv(100) == b""
        other = http.client.HTTPConnection("127.0.0.1", exporter.port, timeout=ANSWER, source_address=("127.0.0.2", 0))
        try:
            other.request("GET", "/metrics")
            answer = other.getresponse()
            assert answer.status == 200 and b"serversession_up" in answer.read()
        finally:
            other.close()
        started = time.monotonic()
        assert all(sock.recv(100) == b"" for sock in idle)  # closed by the exporter
        assert time.monotonic() - started < 12
    finally:
        for sock in idle:
            sock.close()
    assert scrape(exporter.url).status_code == 200


def test_a_web_config_with_a_byte_order_mark_is_read(tmp_path) -> None:
    web = tmp_path / "web.yml"
    web.write_bytes("\ufeff# saved by Notepad\nbasic_auth_users:\n  prometheus: {}\n".format(_hash("pw")).encode())
    assert list(load_web_config(str(web)).users) == ["prometheus"]


def test_failed_logins_do_not_push_a_scrapers_success_out_of_the_cache(tmp_path, monkeypatch) -> None:
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: {bcrypt.hashpw(b'right', bcrypt.gensalt(rounds=4)).decode()}\n")
    settings = WebSettings(str(web))
    config = settings.current()
    assert settings.authorized(config, "prometheus", "right")  # one bcrypt check, remembered
    for _ in range(2000):  # an attacker's guesses: each one checked, none remembered
        assert not settings.authorized(config, "prometheus", os.urandom(12).hex())
    checks: list[bytes] = []
    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda password, hashed: checks.append(password) or real(password, hashed))
    started = time.monotonic()
    assert settings.authorized(config, "prometheus", "right")
    assert checks == [] and time.monotonic() - started < 0.05  # from the cache: no bcrypt, no wait
    assert not settings.authorized(config, "prometheus", "wrong") and checks == [b"wrong"]
