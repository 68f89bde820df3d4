"""smbd's records decoded by hand (samba_records) and the kernel's idle times (tcp_idle)."""

from __future__ import annotations

import contextlib
import os
import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import wait_for
from serversession.errors import SourceDataError
from serversession.sources import samba_records as records
from serversession.sources import tcp_idle
from serversession.sources.samba import SambaSource, _import_bindings, load_config
from serversession.sources.samba_tdb import read_values

pytestmark = pytest.mark.samba


def _installed_layout() -> records.Layout:
    """The layout of the Samba installed here (the version matrix runs this module on each release)."""
    _import_bindings()
    from samba import version

    layout = records.layout_for_version(version)
    assert layout is not None, f"Samba {version} is older than every known layout"
    return layout


LAYOUT = _installed_layout()


@pytest.fixture
def session_blob(sandbox, connect) -> bytes:
    """A real smbXsrv_session_globalB that smbd wrote for a live session."""
    connect("alice")
    tdb = _import_bindings()[0]
    values = read_values(tdb, os.path.join(sandbox.directory, "lock", "smbXsrv_session_global.tdb"))
    blobs = [records.strip_watchers(v) for v in values]
    assert blobs
    return blobs[0]


def test_real_record_decodes(session_blob: bytes) -> None:
    session = records.decode_session(session_blob, LAYOUT)
    assert session.channels and session.channels[0].remote_address.startswith("ipv4:127.0.0.1:")
    assert abs(session.creation_time - time.time()) < 60
    assert 0 < session.auth_offset < len(session_blob)
    assert session.connection_dialect in (0x0202, 0x0210, 0x0300, 0x0302, 0x0311)


def test_every_truncation_is_a_format_error(session_blob: bytes) -> None:
    for end in range(len(session_blob)):
        try:
            records.decode_session(session_blob[:end], LAYOUT)
        except records.RecordFormatError:
            continue
        # a prefix can be whole only once the authentication part begins
        assert end > records.decode_session(session_blob, LAYOUT).auth_offset - 8


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_crash_the_decoders(data: bytes) -> None:
    for decode in (records.decode_session, records.decode_open, records.decode_tcon):
        for layout in records.LAYOUTS:
            with contextlib.suppress(records.RecordFormatError):
                decode(data, layout)
    with contextlib.suppress(records.RecordFormatError):
        records.strip_watchers(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 4000), st.binary(min_size=1, max_size=8))
def test_corrupted_real_record_is_skipped_or_a_data_error(
    session_blob: bytes, sandbox, position: int, junk: bytes
) -> None:
    """The whole decoding path, Samba's NDR bindings included: skipped or SourceDataError, no crash."""
    _, param, ndr, auth = _import_bindings()
    source = SambaSource(sandbox.conf_path)
    config = load_config(sandbox.conf_path, param)
    position %= len(session_blob)
    data = session_blob[:position] + junk + session_blob[position + len(junk) :]
    try:
        decoded = source._decode_sessions([bytes(4) + data], LAYOUT, ndr, auth, config)
    except SourceDataError:
        return
    assert len(decoded) <= 1


@pytest.mark.parametrize(
    ("version", "name"),
    [
        ("4.13.17-Debian", "4.13-4.14"),
        ("4.15.13-Ubuntu", "4.15-4.18"),
        ("4.17.12-Debian", "4.15-4.18"),
        ("4.18.0", "4.15-4.18"),
        ("4.19.5-Ubuntu", "4.19"),
        ("4.21.3", "4.20-4.22"),
        ("4.22.6-Debian-4.22.6+dfsg-0+deb13u1", "4.20-4.22"),
        ("4.23.0", "4.23-4.24"),
        ("4.24.5", "4.23-4.24"),
        ("4.25.0", "4.25"),
        ("4.31.2", "4.25"),
        ("4.12.9", None),
        ("3.6.25", None),
        ("5.0.0", "4.25"),
        ("garbage", None),
    ],
)
def test_layout_for_version(version: str, name: str | None) -> None:
    layout = records.layout_for_version(version)
    assert (layout.name if layout else None) == name


def test_nttime() -> None:
    assert records.nttime_to_unix(0) is None
    assert records.nttime_to_unix(records.NTTIME_INFINITY) is None
    assert records.nttime_to_unix(116444736000000000) == 0.0
    assert records.nttime_to_unix(116444736000000000 + 15_000_000) == 1.5


def test_strip_watchers() -> None:
    assert records.strip_watchers(b"\0\0\0\0abc") == b"abc"
    assert records.strip_watchers((1).to_bytes(4, "little") + bytes(32) + b"x") == b"x"
    with pytest.raises(records.RecordFormatError):
        records.strip_watchers((5).to_bytes(4, "little") + bytes(10))


def test_normalize_ip() -> None:
    assert tcp_idle.normalize_ip("::ffff:10.1.2.3") == "10.1.2.3"
    assert tcp_idle.normalize_ip("[fe80:0::1]") == "fe80::1"
    assert tcp_idle.normalize_ip("127.0.0.1") == "127.0.0.1"


def test_idle_time_of_a_real_loopback_connection() -> None:
    """The kernel's tcpi_last_data_recv: grows while quiet, resets when data arrives."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        with client, accepted:
            client.sendall(b"hello")
            assert accepted.recv(5) == b"hello"
            time.sleep(1.5)
            key = (("127.0.0.1", port), ("127.0.0.1", client.getsockname()[1]))
            idle = tcp_idle.idle_milliseconds({port})
            assert key in idle
            assert 1400 <= idle[key] <= 5000
            assert all(local[1] == port for local, _ in idle)  # only the asked-for port
            client.sendall(b"again")
            assert accepted.recv(5) == b"again"
            assert tcp_idle.idle_milliseconds({port})[key] < 500


def test_real_tree_connect_decodes_and_every_truncation_is_a_format_error(sandbox, connect) -> None:
    connect("carol").open_files(["tcon.txt"])
    tdb = _import_bindings()[0]
    path = os.path.join(sandbox.directory, "lock", "smbXsrv_tcon_global.tdb")
    blobs = wait_for(lambda: read_values(tdb, path, None))
    tcons = [records.decode_tcon(blob, LAYOUT) for blob in blobs]
    assert "share" in {t.share_name for t in tcons}
    assert all(t.server_pid > 0 and t.creation_time and t.creation_time <= time.time() for t in tcons)
    blob = blobs[0]
    for end in range(len(blob)):
        with pytest.raises(records.RecordFormatError):
            records.decode_tcon(blob[:end], LAYOUT)
    with pytest.raises(records.RecordFormatError):
        records.decode_tcon(blob + b"\0", LAYOUT)  # a byte left over
