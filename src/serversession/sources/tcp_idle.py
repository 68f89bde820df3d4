"""How long each established TCP connection has gone without receiving data.

Asks the kernel through NETLINK_SOCK_DIAG (the interface ``ss -ti`` uses) for every
established TCP socket with its ``tcp_info``, and reads ``tcpi_last_data_recv``: the
milliseconds since the last segment carrying data arrived. Pure ACKs and keep-alive probes
carry no data, so they do not reset it.

Written with the socket module rather than pyroute2: the request is one fixed struct, and
importing pyroute2 costs about 140 ms, more than half of what ``smbstatus`` takes in all.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from functools import lru_cache

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
INET_DIAG_INFO = 2
TCP_ESTABLISHED, TCP_CLOSE_WAIT = 1, 8
TCPI_LAST_DATA_RECV = 52  # offset of tcpi_last_data_recv in struct tcp_info
DIAG_MSG_LEN = 72  # struct inet_diag_msg

Endpoint = tuple[str, int]
ConnectionKey = tuple[Endpoint, Endpoint]  # (local, remote)


class SockDiagError(OSError):
    """The kernel's socket diagnostics could not be read."""


@lru_cache(maxsize=4096)
def normalize_ip(address: str) -> str:
    """Canonical text of an IP address; IPv4-mapped IPv6 becomes plain IPv4."""
    ip = ipaddress.ip_address(address.strip("[]"))
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def _request(family: int, seq: int) -> bytes:
    states = (1 << TCP_ESTABLISHED) | (1 << TCP_CLOSE_WAIT)
    body = struct.pack("=BBBxI", family, socket.IPPROTO_TCP, 1 << (INET_DIAG_INFO - 1), states)
    body += bytes(48)  # inet_diag_sockid: a dump matches every socket
    header = struct.pack("=IHHII", 16 + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
    return header + body


def _parse(message: bytes, family: int) -> tuple[ConnectionKey, int] | None:
    sport, dport = struct.unpack_from(">HH", message, 4)
    size = 4 if family == socket.AF_INET else 16
    src = socket.inet_ntop(family, message[8 : 8 + size])
    dst = socket.inet_ntop(family, message[24 : 24 + size])
    offset = DIAG_MSG_LEN
    while offset + 4 <= len(message):
        length, kind = struct.unpack_from("=HH", message, offset)
        if length < 4:
            break
        if kind == INET_DIAG_INFO and length - 4 >= TCPI_LAST_DATA_RECV + 4:
            idle_ms = struct.unpack_from("=I", message, offset + 4 + TCPI_LAST_DATA_RECV)[0]
            key = ((normalize_ip(src), sport), (normalize_ip(dst), dport))
            return key, idle_ms
        offset += (length + 3) & ~3
    return None


def _dump(family: int, local_ports: set[int] | None, timeout: float) -> dict[ConnectionKey, int]:
    found: dict[ConnectionKey, int] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as sock:
        sock.settimeout(timeout)
        sock.send(_request(family, 1))
        while True:
            data = sock.recv(1 << 17)
            offset = 0
            while offset + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, offset)
                if length < 16:
                    raise SockDiagError("malformed netlink answer")
                if kind == NLMSG_DONE:
                    return found
                if kind == NLMSG_ERROR:
                    errno = -struct.unpack_from("=i", data, offset + 16)[0]
                    raise SockDiagError(errno, "sock_diag refused the request")
                message = data[offset + 16 : offset + length]
                sport = struct.unpack_from(">H", message, 4)[0]
                if local_ports is None or sport in local_ports:
                    parsed = _parse(message, family)
                    if parsed is not None:
                        found[parsed[0]] = parsed[1]
                offset += (length + 3) & ~3


def idle_milliseconds(local_ports: set[int] | None = None, timeout: float = 5.0) -> dict[ConnectionKey, int]:
    """Milliseconds since each established TCP connection last received data.

    Keys are ``((local_ip, local_port), (remote_ip, remote_port))`` with addresses
    normalized by :func:`normalize_ip`. ``local_ports`` restricts the answer to sockets
    bound to those ports (the SMB server's).
    """
    result: dict[ConnectionKey, int] = {}
    try:
        for family in (socket.AF_INET, socket.AF_INET6):
            result.update(_dump(family, local_ports, timeout))
    except TimeoutError as exc:
        raise SockDiagError("the kernel did not answer the socket diagnostics request") from exc
    return result
