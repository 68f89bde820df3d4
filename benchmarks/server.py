"""Benchmark: EnumerateInstances of 1,000 instances through our WBEM server vs pywbem_mock.

Runs ``serversession``'s server (the real aiohttp app, CIM-XML codec and repository) in a child
process on 127.0.0.1 (re-reading its source every second, as `serve` does), serving 1,000 synthetic Win32_ServerSession instances (made by the model
from generated records: the sandbox cannot hold 1,000 distinct users from distinct computers).
Then, in the same run:

1. ``pywbem.WBEMConnection.EnumerateInstances`` against it, median of R calls;
2. the same call on ``pywbem_mock.FakedWBEMConnection`` holding the same 1,000 instances in
   process (no network, no XML); ratio 1/2, goal <= 2;
3. requests per second with 8 concurrent clients: pywbem clients (threads; client-side XML
   parsing, GIL-bound), and raw HTTP clients that post the same request and read the whole
   answer (the server's own throughput); goal >= 50/s;
4. the server's peak memory (VmHWM).

    python benchmarks/server.py [--instances 1000] [--runs 7] [--seconds 10]
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

NOW = 1_800_000_000.0


def synthetic_instances(count: int) -> list:
    from serversession.model import server_sessions
    from serversession.sources.base import SessionRecord

    records = [
        SessionRecord(hex(n), f"10.1.{n // 250}.{n % 250}", f"user{n}", NOW - 60 - n, NOW - n % 300, n % 7, 0,
                      "SMB3_11", "tcp:10.0.0.1:445")
        for n in range(count)
    ]  # fmt: skip
    return server_sessions(records, now=NOW)


def serve(port: int, count: int) -> None:
    """The child: our server over synthetic instances, no authentication, until killed."""
    from aiohttp import web

    from serversession.server.app import Server
    from serversession.server.operations import Repository

    instances = synthetic_instances(count)
    server = Server(Repository(lambda: instances), authenticator=None)  # re-read every second, as `serve`
    web.run_app(server.app(), host="127.0.0.1", port=port, print=None, access_log=None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def median_seconds(function, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def throughput(worker, clients: int, seconds: float) -> float:
    done = [0] * clients
    stop = time.perf_counter() + seconds

    def loop(n: int) -> None:
        while time.perf_counter() < stop:
            worker()
            done[n] += 1

    threads = [threading.Thread(target=loop, args=(n,)) for n in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(done) / (time.perf_counter() - start)


REQUEST = (
    b'<?xml version="1.0" encoding="utf-8" ?><CIM CIMVERSION="2.0" DTDVERSION="2.0"><MESSAGE ID="1" '
    b'PROTOCOLVERSION="1.0"><SIMPLEREQ><IMETHODCALL NAME="EnumerateInstances"><LOCALNAMESPACEPATH>'
    b'<NAMESPACE NAME="root"/><NAMESPACE NAME="cimv2"/></LOCALNAMESPACEPATH><IPARAMVALUE NAME="ClassName">'
    b'<CLASSNAME NAME="Win32_ServerSession"/></IPARAMVALUE></IMETHODCALL></SIMPLEREQ></MESSAGE></CIM>'
)


def raw_client(port: int):
    local = threading.local()

    def call() -> None:
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        local.conn.request("POST", "/cimom", REQUEST, {"CIMOperation": "MethodCall", "CIMMethod": "EnumerateInstances",
                                                     "CIMObject": "root%2Fcimv2", "Content-Type": "application/xml"})  # fmt: skip
        answer = local.conn.getresponse()
        body = answer.read()
        if answer.status != 200 or b"<ERROR" in body:
            raise RuntimeError(f"server answered {answer.status}")

    return call


def pywbem_client(port: int):
    import pywbem

    local = threading.local()

    def call() -> None:
        if not hasattr(local, "conn"):
            local.conn = pywbem.WBEMConnection(f"http://127.0.0.1:{port}", default_namespace="root/cimv2", timeout=60)
        local.conn.EnumerateInstances("Win32_ServerSession")

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.instances)
        return

    import pywbem
    import pywbem_mock

    from serversession.model.schema import MOF_FILES, NAMESPACE, _mof_sources

    port = free_port()
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--instances", str(args.instances)])
    try:
        deadline = time.monotonic() + 30
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if time.monotonic() > deadline or child.poll() is not None:
                raise SystemExit("the server did not start")
            time.sleep(0.1)
        conn = pywbem.WBEMConnection(f"http://127.0.0.1:{port}", default_namespace="root/cimv2", timeout=60)
        got = conn.EnumerateInstances("Win32_ServerSession")
        if len(got) != args.instances:
            raise SystemExit(f"the server returned {len(got)} instances")
        ours = median_seconds(lambda: conn.EnumerateInstances("Win32_ServerSession"), args.runs)

        mock = pywbem_mock.FakedWBEMConnection(default_namespace="root/cimv2")
        sources = _mof_sources()
        mock.compile_mof_string("\n".join(sources[(NAMESPACE, n)] for n in MOF_FILES[NAMESPACE]), namespace=NAMESPACE)
        mock.add_cimobjects([i.to_cim_instance() for i in synthetic_instances(args.instances)], namespace="root/cimv2")
        if len(mock.EnumerateInstances("Win32_ServerSession")) != args.instances:
            raise SystemExit("the mock does not hold the instances")
        theirs = median_seconds(lambda: mock.EnumerateInstances("Win32_ServerSession"), args.runs)

        pywbem_rate = throughput(pywbem_client(port), 8, args.seconds)
        raw_rate = throughput(raw_client(port), 8, args.seconds)
        with open(f"/proc/{child.pid}/status", encoding="utf-8") as status:
            peak = next(line.split()[1] for line in status if line.startswith("VmHWM"))
    finally:
        child.kill()
        child.wait()

    print(f"EnumerateInstances of {args.instances} instances, median of {args.runs}")
    print(f"  our server via pywbem (HTTP, CIM-XML): {ours * 1000:8.1f} ms")
    print(f"  pywbem_mock in process:                {theirs * 1000:8.1f} ms")
    print(f"  ratio: {ours / theirs:.2f} (goal <= 2)")
    print(f"8 concurrent clients for {args.seconds:g} s each way:")
    print(f"  pywbem clients (parse XML, share one GIL): {pywbem_rate:6.1f} requests/s")
    print(f"  raw HTTP clients (the server's throughput): {raw_rate:6.1f} requests/s (goal >= 50)")
    print(f"server peak memory (VmHWM): {int(peak) / 1024:.1f} MB; machine: {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
