"""Ending sessions and closing open handles of the local smbd, through smbd's own messages.

- A session: ``MSG_SMBXSRV_SESSION_CLOSE`` (0x0600), what smbd sends itself when a client
  reconnects a session (smbXsrv_session.c: smbXsrv_session_close_loop). The smbd process that
  holds the session looks it up by wire id, checks its global id and creation time (exact NTTIME),
  and shuts down that session alone: its tree connects and handles close, the connection and its
  other sessions stay. Body: NDR ``smbXsrv_session_closeB`` (smbXsrv.idl), version 0 with a
  unique pointer up to 4.24, version 1 with a ``[ref]`` pointer from 4.25 (the layout's envelope
  version), then ``old_session_global_id``, ``old_session_wire_id``, ``old_creation_time``,
  ``new_session_wire_id`` (0).
- An open handle: ``MSG_SMB_CLOSE_FILE`` (0x0313), what smbd's own ``_srvsvc_NetFileClose`` sends:
  the holding process finds the handle by file id (the ``locking.tdb`` key) and ``share_file_id``
  and closes it (its byte-range locks go with it). Body up to 4.20: the 76-byte
  ``share_mode_entry_to_message`` layout (smb.h OP_BREAK_MSG_*); from 4.21: NDR
  ``oplock_break_message`` (open_files.idl: file_id, udlong share_file_id, uint8 break_to), 33 bytes.

Messages are sent with Samba's own bindings (``samba.messaging``) through the messaging
directories of the smb.conf given, to the process the records name (pid and unique id, after
checking it is still that smbd). smbd does not answer: the close is confirmed by the record
leaving smbd's database, within CLOSE_WAIT seconds. Root only: the databases and messaging
sockets are root's. See docs/close.md.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import AccessDenied, SourceDataError, SourceTimeout, SourceUnavailable
from . import samba_records as records
from . import samba_tdb
from .closing import (
    ERROR_GEN_FAILURE,
    ERROR_NOT_FOUND,
    ERROR_NOT_SUPPORTED,
    ERROR_SUCCESS,
    ERROR_TIMEOUT,
    FileTarget,
    Outcome,
    SessionTarget,
)
from .samba import (
    REPLAY_CACHE_KEY_SIZE,
    SambaSource,
    _import_bindings,
    _open_blob,
    _server_alive,
    load_config,
    smbd_pid,
)

MSG_SMB_CLOSE_FILE = 0x0313  # librpc/idl/messaging.idl
MSG_SMBXSRV_SESSION_CLOSE = 0x0600
UNIQUE_POINTER, REF_POINTER = 0x00020000, 0xAEF1AEF1  # what libndr pushes for a unique / [ref] pointer
FILE_ID = struct.Struct("=QQQ")  # struct file_id (devid, inode, extid) as locking.tdb keys it: native order
LEGACY_CLOSE_FILE_SIZE = 76  # MSG_SMB_SHARE_MODE_ENTRY_SIZE, up to 4.20
NDR_CLOSE_FILE_FROM = (4, 21)  # msg_close_file reads an oplock_break_message (commit 037b9dac21b)
CLOSE_WAIT = 10.0  # seconds smbd gets to act on the messages (at most the time-out)
POLL = 0.05


@dataclass(frozen=True, slots=True)
class _Session:
    """What a session-close message needs, from one session record."""

    global_id: int
    wire_id: int
    creation: int  # NTTIME exactly as stored: smbd compares it
    established: float | None  # as the reader computes it (SessionRecord.established)
    pid: int  # the smbd process of its first channel (where smbd sends this message itself)
    unique_id: int


def session_close_message(version: int, session: _Session) -> bytes:
    """An NDR smbXsrv_session_closeB: version, reserved, union switch, pointer; then the body."""
    pointer = UNIQUE_POINTER if version == 0 else REF_POINTER
    head = struct.pack("<IIII", version, 0, version, pointer)
    return head + struct.pack("<I4xQQQ", session.global_id, session.wire_id, session.creation, 0)


def close_file_message(release: tuple[int, int], key: bytes, entry: records.ShareModeEntry, vnn: int) -> bytes:
    """MSG_SMB_CLOSE_FILE's body for ``release``: smbd uses the file id and share_file_id of it."""
    file_id = struct.pack("<QQQ", *FILE_ID.unpack(key))
    if release >= NDR_CLOSE_FILE_FROM:
        return file_id + struct.pack("<QB", entry.share_file_id, 0)
    body = bytearray(LEGACY_CLOSE_FILE_SIZE)
    struct.pack_into("<I", body, 0, entry.server_pid)
    struct.pack_into("<I", body, 14, entry.access_mask)
    body[34:58] = file_id
    struct.pack_into("<II", body, 58, entry.share_file_id & 0xFFFFFFFF, entry.uid)
    struct.pack_into("<I", body, 72, vnn)
    return bytes(body)


class _Smbd:
    """The running smbd of one smb.conf: its databases, and a messaging context to reach it."""

    def __init__(self, smb_conf: str | None, timeout: float) -> None:
        self.tdb, param, _, _ = _import_bindings()
        self.config = load_config(smb_conf, param, timeout)
        smbd_pid(self.config)  # SourceUnavailable when it is not running
        layout = records.layout_for_version(self.config.samba_version)
        locking = records.locking_layout_for_version(self.config.samba_version)
        if layout is None or locking is None:
            raise SourceUnavailable(
                f"Samba {self.config.samba_version} is not supported for closing (4.13 or newer is)"
            )
        self.layout, self.locking = layout, locking
        self.release = records.parse_version(self.config.samba_version) or (0, 0)
        self.lp = param.LoadParm()
        self.lp.load(self.config.path)
        if self.lp.get("clustering"):
            raise SourceUnavailable("closing on a clustered Samba (CTDB) is not supported")
        self.what = f"Samba ({self.config.path})"
        self.messaging: Any = None
        self.undecoded = 0  # records of the last read that did not decode

    def missing(self, what: str) -> str:
        """Why a target is not among the records read."""
        if self.undecoded:
            return (
                f"it is not among the {what} records that decode ({self.undecoded} of Samba "
                f"{self.config.samba_version} did not): ended already, or not readable here"
            )
        return "it has ended already" if what == "session" else "it is closed already"

    def path(self, name: str) -> str:
        return os.path.join(self.config.lock_directory, name)

    def sessions(self, timeout: float) -> list[_Session]:
        """The session records that decode (the reader warns about the others)."""
        (blobs,) = samba_tdb.read_databases(self.tdb, [self.path("smbXsrv_session_global.tdb")], timeout, self.what)
        out, self.undecoded = [], 0
        for value in blobs:
            try:
                blob = records.strip_watchers(value)
                if not blob:
                    continue
                s = records.decode_session(blob, self.layout)
                creation = records._SESSION_HEAD.unpack_from(blob)[7]  # the raw NTTIME decode_session converts
            except (records.RecordFormatError, struct.error):
                self.undecoded += 1
                continue
            first = s.channels[0]
            out.append(
                _Session(
                    s.session_global_id,
                    s.session_wire_id,
                    creation,
                    s.creation_time,
                    first.server_pid,
                    first.server_unique_id,
                )
            )
        return out

    def opens(self, timeout: float) -> list[records.OpenGlobalRecord]:
        path = self.path("smbXsrv_open_global.tdb")
        (blobs,) = samba_tdb.read_databases(self.tdb, [path], timeout, self.what, REPLAY_CACHE_KEY_SIZE)
        out, self.undecoded = [], 0
        for value in blobs:
            try:
                out.append(records.decode_open(_open_blob(value, self.layout), self.layout))
            except records.RecordFormatError:
                self.undecoded += 1
        return out

    def share_modes(self, timeout: float) -> list[tuple[bytes, records.ShareModeRecord]]:
        """locking.tdb's records with their keys (the file id a close message names)."""
        from . import forked

        tdb, path, layout = self.tdb, self.path("locking.tdb"), self.locking

        def read() -> list[tuple[bytes, bytes]]:
            with samba_tdb._read_locked(tdb, path) as db:
                return [(bytes(k), bytes(db.get(k) or b"")) for k in db if len(k) == FILE_ID.size]

        (outcome,) = forked.finish([forked.start(read)], time.monotonic() + timeout)
        if isinstance(outcome.error, forked.Late):
            raise SourceTimeout(f"{self.what} did not answer within {timeout:g} s (a lock on {path} is held)")
        if isinstance(outcome.error, forked.Lost):
            raise SourceDataError(f"the process reading {path} ended without an answer")
        if outcome.error is not None:
            raise outcome.error
        out = []
        for key, value in outcome.value:  # type: ignore[union-attr]
            try:
                record = records.decode_share_modes(value, layout)
            except records.RecordFormatError:
                continue
            if record is not None:
                out.append((key, record))
        return out

    def send(self, pid: int, unique_id: int, message: int, body: bytes) -> str | None:
        """Send one message to the smbd process (pid, unique_id); the reason when it cannot be."""
        if not _server_alive(self.config.lock_directory, pid, unique_id):
            return f"its smbd process {pid} has ended"
        from samba.dcerpc import server_id
        from samba.messaging import Messaging

        try:
            if self.messaging is None:
                self.messaging = Messaging(lp_ctx=self.lp)
            target = server_id.server_id()
            target.pid, target.task_id, target.unique_id = pid, 0, unique_id
            target.vnn = self.messaging.server_id.vnn  # this node's: not clustered (checked)
            self.messaging.send(target, message, body)
        except Exception as exc:  # RuntimeError, samba.NTSTATUSError: no messaging, or the socket is gone
            return f"cannot send smbd process {pid} a message: {exc}"
        return None

    def close(self) -> None:
        self.messaging = None  # its socket and lock files go with it


def _wait(present: Callable[[float], set[int]], wanted: set[int], deadline: float) -> set[int]:
    """Poll ``present(time_left)`` until none of ``wanted`` is in it or ``deadline``; what is left."""
    while True:
        left = wanted & present(max(deadline - time.monotonic(), 0.5))
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(POLL)


class SambaCloser:
    """Closes sessions and open handles of the local smbd of an smb.conf (sources/closing.py)."""

    by_session_id = True

    def __init__(self, smb_conf: str | None = None) -> None:
        self.source = SambaSource(smb_conf)
        self.description = self.source.description
        self.smb_conf = smb_conf

    def check(self) -> None:
        if os.geteuid() != 0:
            raise AccessDenied(
                "closing sessions or files of the local Samba needs root: smbd's databases and "
                "messages are root's (run it with sudo)"
            )

    def close_sessions(
        self, targets: Sequence[SessionTarget], timeout: float, others: Sequence[SessionTarget] = ()
    ) -> list[Outcome]:
        self.check()
        started = time.monotonic()
        smbd = _Smbd(self.smb_conf, timeout)
        try:
            before = smbd.sessions(timeout)
            outcomes: list[Outcome | None] = []
            sent: dict[int, tuple[int, _Session]] = {}  # global id -> (index, session)
            for target in targets:
                found = [s for s in before if s.wire_id == target.session_id]
                if target.established is not None:
                    found = [s for s in found if s.established == target.established]
                if not found:
                    outcomes.append(Outcome(target.label, ERROR_NOT_FOUND, smbd.missing("session")))
                    continue
                if len(found) > 1:  # SMB1 ids repeat across connections
                    outcomes.append(Outcome(target.label, ERROR_GEN_FAILURE, f"{len(found)} sessions have this id"))
                    continue
                session = found[0]
                version = smbd.layout.envelope_version
                failed = smbd.send(
                    session.pid, session.unique_id, MSG_SMBXSRV_SESSION_CLOSE, session_close_message(version, session)
                )
                if failed:
                    outcomes.append(Outcome(target.label, ERROR_GEN_FAILURE, failed))
                    continue
                sent[session.global_id] = (len(outcomes), session)
                outcomes.append(None)
            deadline = started + min(timeout, CLOSE_WAIT)
            left = _wait(lambda t: {s.global_id for s in smbd.sessions(t)}, set(sent), deadline) if sent else set()
            after = {s.global_id for s in smbd.sessions(timeout)} if sent else set()
        finally:
            smbd.close()
        names = {t.session_id: t.label for t in (*others, *targets)}
        asked = {s.global_id for _, s in sent.values()}
        for global_id, (index, session) in sent.items():
            target = targets[index]
            if global_id in left:
                waited = min(timeout, CLOSE_WAIT)
                outcomes[index] = Outcome(
                    target.label, ERROR_TIMEOUT, f"smbd (pid {session.pid}) did not end it within {waited:g} s"
                )
                continue
            gone = [
                names.get(s.wire_id, f"session {s.wire_id}")
                for s in before
                if (s.pid, s.unique_id) == (session.pid, session.unique_id) and s.global_id not in after | asked
            ]
            outcomes[index] = Outcome(target.label, ERROR_SUCCESS, also=tuple(gone))
        return [o for o in outcomes if o is not None]

    def close_files(self, targets: Sequence[FileTarget], timeout: float) -> list[Outcome]:
        self.check()
        started = time.monotonic()
        smbd = _Smbd(self.smb_conf, timeout)
        try:
            opens = smbd.opens(timeout)
            modes = smbd.share_modes(timeout)
            by_id = smbd.locking.share_file_id_is_open_id
            outcomes: list[Outcome | None] = []
            sent: dict[int, int] = {}  # open global id -> index
            for target in targets:
                outcome, message = self._file_message(smbd, target, opens, modes, by_id)
                if message is not None:
                    pid, unique_id, body = message
                    failed = smbd.send(pid, unique_id, MSG_SMB_CLOSE_FILE, body)
                    if not failed:
                        sent[target.file_id] = len(outcomes)
                        outcomes.append(None)
                        continue
                    outcome = Outcome(target.label, ERROR_GEN_FAILURE, failed)
                outcomes.append(outcome)
            deadline = started + min(timeout, CLOSE_WAIT)
            left = _wait(lambda t: {o.open_global_id for o in smbd.opens(t)}, set(sent), deadline) if sent else set()
        finally:
            smbd.close()
        for file_id, index in sent.items():
            label = targets[index].label
            outcomes[index] = (
                Outcome(label, ERROR_TIMEOUT, f"smbd did not close it within {min(timeout, CLOSE_WAIT):g} s")
                if file_id in left
                else Outcome(label, ERROR_SUCCESS)
            )
        return [o for o in outcomes if o is not None]

    @staticmethod
    def _file_message(
        smbd: _Smbd,
        target: FileTarget,
        opens: list[records.OpenGlobalRecord],
        modes: list[tuple[bytes, records.ShareModeRecord]],
        by_id: bool,
    ) -> tuple[Outcome | None, tuple[int, int, bytes] | None]:
        """The (pid, unique id, body) of the message that closes ``target``, or why there is none."""
        label = target.label
        found = [o for o in opens if o.open_global_id == target.file_id]
        if not found:
            return Outcome(label, ERROR_NOT_FOUND, smbd.missing("open file")), None
        op = found[0]
        if op.disconnected:
            return Outcome(
                label,
                ERROR_NOT_SUPPORTED,
                "a durable handle whose client is gone: no smbd process holds it; smbd closes it when its time-out ends",
            ), None
        wanted = (op.server_pid, op.server_unique_id, op.open_global_id if by_id else op.open_nttime)
        entries = [
            (key, entry)
            for key, mode in modes
            for entry in mode.entries
            if (entry.server_pid, entry.server_unique_id, entry.share_file_id if by_id else entry.open_nttime) == wanted
        ]
        if not entries:
            return Outcome(
                label,
                ERROR_NOT_SUPPORTED,
                "it has no share-mode entry: a named pipe (smbd closes a pipe only with its session), "
                "or a file being opened or closed right now",
            ), None
        if len({(key, entry.share_file_id) for key, entry in entries}) > 1:
            return Outcome(label, ERROR_GEN_FAILURE, "several share-mode entries match it"), None
        key, entry = entries[0]
        vnn = 0xFFFFFFFF  # NONCLUSTER_VNN (clustering is refused)
        return None, (op.server_pid, op.server_unique_id, close_file_message(smbd.release, key, entry, vnn))
