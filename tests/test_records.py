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
    for locking in records.LOCKING_LAYOUTS:
        for decode_locking in (records.decode_share_modes, records.decode_brlocks):
            with contextlib.suppress(records.RecordFormatError):
                decode_locking(data, locking)
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


def _installed_locking_layout() -> records.LockingLayout:
    """The locking.tdb/brlock.tdb layout of the Samba installed here."""
    _import_bindings()
    from samba import version

    layout = records.locking_layout_for_version(version)
    assert layout is not None, f"Samba {version} is older than every known locking layout"
    return layout


LOCKING = _installed_locking_layout()


@pytest.mark.parametrize(
    ("version", "name"),
    [
        ("4.13.17-Debian", "4.13-4.16"),
        ("4.16.11", "4.13-4.16"),
        ("4.17.12-Debian", "4.17-4.21"),
        ("4.21.3", "4.17-4.21"),
        ("4.22.11-Debian-4.22.11+dfsg-0+deb13u1", "4.22"),
        ("4.23.1", "4.23"),
        ("4.24.5", "4.24"),
        ("4.25.1-Debian-4.25.1+dfsg-1", "4.25"),
        ("5.0.0", "4.25"),
        ("4.12.9", None),
        ("garbage", None),
    ],
)
def test_locking_layout_for_version(version: str, name: str | None) -> None:
    layout = records.locking_layout_for_version(version)
    assert (layout.name if layout else None) == name


@pytest.fixture
def locked_file(sandbox, connect) -> tuple[bytes, bytes]:
    """Real values of locking.tdb and brlock.tdb for one open file with two byte-range locks."""
    from smbprotocol.open import LockFlags, SMB2LockElement

    client = connect("alice")
    client.open_files(["locking.txt"])
    handle = client.files[0]
    handle.write(b"z" * 64, 0)
    elements = []
    for offset in (0, 32):
        element = SMB2LockElement()
        element["offset"], element["length"] = offset, 8
        element["flags"] = LockFlags.SMB2_LOCKFLAG_EXCLUSIVE_LOCK | LockFlags.SMB2_LOCKFLAG_FAIL_IMMEDIATELY
        elements.append(element)
    handle.lock(elements)
    tdb = _import_bindings()[0]
    lock = os.path.join(sandbox.directory, "lock")
    modes = [v for v in read_values(tdb, os.path.join(lock, "locking.tdb")) if b"locking.txt" in v]
    (brlock,) = read_values(tdb, os.path.join(lock, "brlock.tdb"))
    assert len(modes) == 1
    return modes[0], brlock


def test_real_share_mode_and_lock_records_decode(locked_file, sandbox) -> None:
    mode_value, brlock_value = locked_file
    mode = records.decode_share_modes(mode_value, LOCKING)
    assert mode is not None
    assert (mode.servicepath, mode.base_name, mode.stream_name) == (sandbox.share_path, "locking.txt", None)
    (entry,) = mode.entries
    assert entry.access_mask & 0x3 == 0x3  # read and write data, as asked (GENERIC_READ | GENERIC_WRITE)
    assert abs(records.nttime_to_unix(entry.open_nttime) - time.time()) < 60
    locks = records.decode_brlocks(brlock_value, LOCKING)
    assert sorted((lk.start, lk.size, lk.write) for lk in locks) == [(0, 8, True), (32, 8, True)]
    assert {(lk.server_pid, lk.server_unique_id) for lk in locks} == {(entry.server_pid, entry.server_unique_id)}
    assert len({lk.fnum for lk in locks}) == 1


def test_every_truncation_of_a_share_mode_record_is_a_format_error(locked_file) -> None:
    """Cut anywhere, a share-mode record is refused, except where it ends whole: after the lock
    header (a record holding only a lock: None) or after its data (no entries)."""
    value = locked_file[0]
    whole = records.decode_share_modes(value, LOCKING)
    for end in range(len(value)):
        try:
            cut = records.decode_share_modes(value[:end], LOCKING)
        except records.RecordFormatError:
            continue
        assert cut is None or (cut.servicepath == whole.servicepath and cut.entries == ()), end
    for junk in (b"\0", bytes(7)):
        with pytest.raises(records.RecordFormatError):
            records.decode_share_modes(value + junk, LOCKING)


def test_every_truncation_of_a_lock_record_is_a_format_error_or_fewer_locks(locked_file) -> None:
    value = locked_file[1]
    size = 80 if LOCKING.version_1 else 72
    for end in range(len(value)):
        try:
            cut = records.decode_brlocks(value[:end], LOCKING)
        except records.RecordFormatError:
            continue
        assert (end - (4 if LOCKING.version_1 else 0)) % size == 0 and len(cut) < 2, end
    with pytest.raises(records.RecordFormatError):
        records.decode_brlocks(value + b"\0", LOCKING)
    bad_type = bytearray(value)
    bad_type[(4 if LOCKING.version_1 else 0) + 64] = 7  # lock_type
    with pytest.raises(records.RecordFormatError):
        records.decode_brlocks(bytes(bad_type), LOCKING)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 4000), st.binary(min_size=1, max_size=8))
def test_corrupted_real_share_mode_record_is_refused_or_decoded_within_bounds(locked_file, position, junk) -> None:
    value = locked_file[0]
    position %= len(value)
    data = value[:position] + junk + value[position + len(junk) :]
    try:
        mode = records.decode_share_modes(data, LOCKING)
    except records.RecordFormatError:
        return
    if mode is not None:
        assert len(mode.entries) <= len(data) // 124
        assert all(e.open_nttime >= 0 and 0 <= e.access_mask < 1 << 32 for e in mode.entries)
