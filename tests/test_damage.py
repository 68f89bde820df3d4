"""A damaged session database is an error or a warning, never a silent short or empty list.

The images are smbd's own databases, copied while real sessions were open, then damaged the
ways a disk, a crash or a careless administrator damages them.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
from collections.abc import Iterator

import pytest

from conftest import run_cli, wait_for
from serversession.errors import SourceDataError
from serversession.sandbox import Sandbox, free_port
from serversession.sources import samba_tdb
from serversession.sources.samba import _import_bindings

pytestmark = pytest.mark.samba
USERS = ("alice", "bob", "carol")


@pytest.fixture(scope="module")
def damaged_box() -> Iterator[Sandbox]:
    """A sandbox of this module's own: its database is damaged on purpose."""
    directory = tempfile.mkdtemp(prefix="serversession-damage-")
    box = Sandbox(directory, free_port())
    box.start(users=USERS)
    yield box
    box.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def image(damaged_box: Sandbox) -> Iterator[bytes]:
    """smbd's session database with nine live sessions, as bytes."""
    from serversession.demo import Client

    clients = [Client(damaged_box.port, user, damaged_box.users[user]) for user in USERS for _ in range(3)]
    path = os.path.join(damaged_box.directory, "lock", "smbXsrv_session_global.tdb")
    tdb = _import_bindings()[0]
    wait_for(lambda: len(samba_tdb.read_values(tdb, path)) == 9)
    with open(path, "rb") as handle:
        data = handle.read()
    yield data
    for client in clients:
        client.close()


def _geometry(data: bytes) -> tuple[int, list[tuple[int, int]]]:
    """(where the TDB proper starts, [(chain number, first record offset)] of the non-empty chains)."""
    _version, hash_size, *_, features, mutex_size = samba_tdb.TDB_HEADER.unpack_from(data)
    base = mutex_size if features & samba_tdb.TDB_FEATURE_FLAG_MUTEX else 0
    heads = struct.unpack_from(f"<{hash_size}I", data, base + samba_tdb.TDB_HEADER_SIZE + 4)
    return base, [(i, head) for i, head in enumerate(heads) if head]


def _poke(data: bytes, offset: int, value: int) -> bytes:
    damaged = bytearray(data)
    struct.pack_into("<I", damaged, offset, value)
    return bytes(damaged)


def test_intact_image_gives_every_record(image: bytes) -> None:
    assert len(samba_tdb.walk_records("db", image)) == 9


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5, 0.7, 0.9, 0.99])
def test_truncated_image_is_damaged(image: bytes, fraction: float) -> None:
    """A cut is an error, unless it only took free space after the last record: then nothing is lost."""
    cut = int(len(image) * fraction)
    try:
        records = samba_tdb.walk_records("db", image[:cut])
    except SourceDataError as exc:
        assert "damaged" in str(exc)
        return
    assert len(records) == 9, f"a cut at {cut} bytes read {len(records)} of 9 records without an error"


def test_chain_that_loops_is_damaged(image: bytes) -> None:
    base, chains = _geometry(image)
    _, first = chains[0]
    with pytest.raises(SourceDataError, match="loops"):
        samba_tdb.walk_records("db", _poke(image, base + first, first))  # next -> itself


def test_record_with_bad_magic_is_damaged(image: bytes) -> None:
    base, chains = _geometry(image)
    with pytest.raises(SourceDataError, match="magic"):
        samba_tdb.walk_records("db", _poke(image, base + chains[-1][1] + 20, 0xDEADBEEF))


def test_chain_pointing_past_the_end_is_damaged(image: bytes) -> None:
    base, chains = _geometry(image)
    chain, _ = chains[0]
    head = base + samba_tdb.TDB_HEADER_SIZE + 4 + 4 * chain
    with pytest.raises(SourceDataError, match="past its end"):
        samba_tdb.walk_records("db", _poke(image, head, len(image) * 2))


def test_record_longer_than_its_room_is_damaged(image: bytes) -> None:
    base, chains = _geometry(image)
    with pytest.raises(SourceDataError, match="longer than its room"):
        samba_tdb.walk_records("db", _poke(image, base + chains[0][1] + 12, 1 << 30))  # data_len


def test_not_a_tdb_and_a_foreign_byte_order(image: bytes) -> None:
    with pytest.raises(SourceDataError, match="not a TDB"):
        samba_tdb.walk_records("db", b"\x7fELF" + image[4:])
    with pytest.raises(SourceDataError, match="not a TDB this machine wrote"):
        swapped = int.from_bytes(samba_tdb.TDB_VERSION.to_bytes(4, "little"), "big")
        samba_tdb.walk_records("db", _poke(image, 32, swapped))


@pytest.mark.parametrize("size", [0, 10, 100, 200, 4096])
def test_truncated_file_never_kills_the_reader(image: bytes, tmp_path, size: int) -> None:
    """tdb dies of SIGBUS opening a file shorter than its mutex area: checked before it opens."""
    path = tmp_path / "smbXsrv_session_global.tdb"
    path.write_bytes(image[:size])
    tdb = _import_bindings()[0]
    with pytest.raises(SourceDataError, match=r"damaged|not a TDB"):
        samba_tdb.read_databases(tdb, [str(path)], 10, "test")


def test_list_on_a_damaged_live_database_fails_clearly(damaged_box: Sandbox, image: bytes) -> None:
    """The end to end case: smbd's live database damaged; `list` exits 1, it never prints 'no sessions'."""
    base, chains = _geometry(image)
    path = os.path.join(damaged_box.directory, "lock", "smbXsrv_session_global.tdb")
    _, first = chains[0]
    with open(path, "r+b") as handle:  # the first chain's first record now points to itself
        handle.seek(base + first)
        handle.write(struct.pack("<I", first))
    result = run_cli("list", "--smb-conf", damaged_box.conf_path, "--format", "json")
    assert result.returncode == 1, result.stdout
    assert "damaged" in result.stderr and "loops" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_records_cut_out_of_their_chains_are_noticed(image: bytes) -> None:
    """A chain head set to 0 leaves its records unreachable; the walk of the data area finds them."""
    base, chains = _geometry(image)
    damaged = image
    for chain, _ in chains[:2]:
        damaged = _poke(damaged, base + samba_tdb.TDB_HEADER_SIZE + 4 + 4 * chain, 0)
    with pytest.raises(SourceDataError, match="hash chains reach"):
        samba_tdb.walk_records("db", damaged)
