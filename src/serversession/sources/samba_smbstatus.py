"""Sessions through Samba's own ``smbstatus --json``: the fallback when smbd's records do not decode.

``smbstatus --json`` exists from Samba 4.17 (and only in builds with JSON support); an smbstatus
without it is SourceUnavailable, said as such. Its sessions carry the smbd process, uid, user name
(NSS's name for that uid), remote machine, client address and dialect; from 4.20 also the
creation and expiration times and every channel with both endpoints; from 4.23 each channel's
transport. Its open files come from ``locking.tdb`` and name the smbd process and uid of each
open, never the session, and never a named pipe. What that costs is :data:`LOST` (4.20 and later)
or :func:`lost` for a given release (what the fallback's warning names). IdleTime comes from the
kernel, as in the TDB reader.

The output is untrusted: it is read with a time limit and a size limit, and every field is
checked; a malformed answer is a SourceDataError.
"""

from __future__ import annotations

import calendar
import datetime
import json
import os
import re
import selectors
import subprocess
import time
from collections import defaultdict
from typing import Any

from ..errors import SourceDataError, SourceTimeout, SourceUnavailable
from ..files import check_regular_file
from ..sandbox import _find
from . import tcp_idle
from .base import SESS_GUEST, SessionRecord
from .samba import DIALECTS, SMB_DIALECTS, _import_bindings
from .samba_records import parse_address, parse_version

SMBSTATUS_DIRS = ("/usr/bin", "/usr/local/bin", "/usr/sbin", "/usr/local/sbin", "/bin", "/sbin", "/usr/local/samba/bin")
MAX_OUTPUT = 256 << 20  # bytes of JSON: about 300,000 open files
MAX_STDERR = 64 << 10  # bytes of stderr kept for the error message
MAX_TEXT = 1024  # characters of any one string field
JSON_SINCE = (4, 17)  # the first release whose smbstatus has --json
CHANNELS_SINCE = (4, 20)  # creation_time, expiration_time, channels with local_address
NO_JSON = (
    "smbstatus has no --json option (Samba before 4.17, or built without JSON support): "
    "serversession cannot read the sessions through it"
)
#: popt's complaint (then the usage, last): "Invalid option --json: unknown option"
NO_JSON_OPTION = re.compile(r"(?i)\b(?:invalid|unknown|unrecognized) option\b.*--json\b|--json\b.*\bunknown option")
WINDOWS_DIALECTS = {name: SMB_DIALECTS[code] for code, name in DIALECTS.items()}  # "SMB3_11" -> "3.1.1"
LAST_SECOND = 253402300799  # 9999-12-31T23:59:59Z: later times are NTTIME's "infinity" (never)
ALWAYS_LOST = (
    "named pipes in ResourcesOpened (smbstatus lists open files and directories only), "
    "the split of one user's handles between several sessions on one connection, "
    "anonymous logons (shown as the guest account), Builtin Guests members who are not the guest account, "
    "and user names other than NSS's name for the session's uid"
)
LOST = ALWAYS_LOST  # what the fallback loses on 4.20 and later, the releases it serves
DIALECT_TEXT = re.compile(r"[A-Za-z0-9_.]{1,16}")
UNKNOWN_DIALECT = re.compile(r"Unknown \(0x([0-9a-fA-F]{4})\)")
TIMESTAMP = re.compile(
    r"(\d{4,})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?:([+-])(\d\d):?(\d\d)|Z)?"
    r"|(-?\d+)(?:\.(\d+))? seconds since the Epoch"
)


def lost(version: str | None) -> str:
    """What ``smbstatus --json`` of Samba ``version`` cannot give, for the warning naming the fallback.

    ``version`` is the release as Samba names it (``4.19.3``, ``4.22.0-Debian``); an unparsable one
    gets the text for 4.20 and later. Before 4.17 there is no ``--json``: :func:`read_smbstatus`
    then raises SourceUnavailable (:data:`NO_JSON`).
    """
    release = parse_version(version or "")
    if release is not None and release < CHANNELS_SINCE:
        return (
            f"{ALWAYS_LOST}, ActiveTime and InstallDate (no creation time before 4.20), Degraded status "
            "(no expiration time) and the idle time of a session's other channels (multichannel)"
        )
    return ALWAYS_LOST


def find_smbstatus() -> str:
    """Absolute path of ``smbstatus``; SourceUnavailable if it is not installed."""
    found = _find(("smbstatus",), SMBSTATUS_DIRS)
    if found is None:
        raise SourceUnavailable("smbstatus is not installed (Debian: apt-get install samba)")
    return os.path.abspath(found)


def read_smbstatus(
    smb_conf: str, timeout: float, env: dict[str, str] | None = None, *, binary: str | None = None
) -> list[SessionRecord]:
    """The sessions ``smbstatus --json`` shows for ``smb_conf``, with idle times from the kernel.

    ``env`` is smbstatus's environment (default: this process's), e.g. a sandbox's nss_wrapper
    variables: smbstatus names users through NSS. ``binary`` replaces the smbstatus found by
    :func:`find_smbstatus` (tests' stand-ins). Raises SourceTimeout after ``timeout`` seconds,
    SourceDataError if the answer is malformed or larger than MAX_OUTPUT, SourceUnavailable if
    smbstatus is missing, fails, or has no ``--json`` (:data:`NO_JSON`).
    """
    deadline = time.monotonic() + timeout
    check_regular_file(smb_conf, "smb.conf")  # Samba's parser would wait on a FIFO, read a device forever
    param = _import_bindings()[1]
    lp = param.LoadParm()
    try:
        lp.load(smb_conf)
    except RuntimeError as exc:
        raise SourceUnavailable(f"smb.conf cannot be parsed: {smb_conf} (run testparm {smb_conf})") from exc
    guest = lp.get("guest account") or "nobody"
    ports = {int(p) for p in map(str, lp.get("smb ports") or ()) if p.isascii() and p.isdigit() and 0 < int(p) < 65536}
    argv = [binary or find_smbstatus(), "--json", f"--configfile={smb_conf}"]
    output = run_smbstatus(argv, timeout, env)
    document = parse_json(output)
    sessions = document_sessions(document)
    for session in sessions:
        ports.update(local[1] for local, _ in session.channels if local is not None)
    left = max(0.1, min(5.0, deadline - time.monotonic()))
    sockets = tcp_idle.idle_milliseconds(ports, left) if ports else {}
    return session_records(sessions, document_opens(document), guest, sockets, time.time())


def run_smbstatus(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> bytes:
    """stdout of ``argv`` (no shell), read as it comes; killed after ``timeout`` s or beyond MAX_OUTPUT."""
    deadline = time.monotonic() + timeout
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, close_fds=True
        )
    except OSError as exc:
        raise SourceUnavailable(f"{argv[0]} cannot be run: {exc.strerror}") from None
    out: list[bytes] = []
    err = bytearray()
    size = 0
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
            selector.register(proc.stderr, selectors.EVENT_READ)  # type: ignore[arg-type]
            while selector.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SourceTimeout(f"smbstatus did not answer within {timeout:g} s")
                for key, _ in selector.select(left):
                    chunk = os.read(key.fd, 1 << 16)
                    if not chunk:
                        selector.unregister(key.fileobj)
                    elif key.fileobj is proc.stdout:
                        size += len(chunk)
                        if size > MAX_OUTPUT:
                            raise SourceDataError(f"smbstatus printed more than {MAX_OUTPUT >> 20} MB")
                        out.append(chunk)
                    else:
                        err += chunk[: max(0, MAX_STDERR - len(err))]
        try:
            code = proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise SourceTimeout(f"smbstatus did not answer within {timeout:g} s") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            pipe.close()  # type: ignore[union-attr]
    if code != 0:
        text = err.decode(errors="replace")
        if "--json" in argv and NO_JSON_OPTION.search(text):
            raise SourceUnavailable(NO_JSON)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        reason = lines[-1] if lines else "no message"
        raise SourceUnavailable(f"smbstatus failed (exit {code}): {reason}")
    return b"".join(out)


def parse_json(output: bytes) -> dict[str, Any]:
    """The JSON object smbstatus printed; text it prints before (``locking.tdb not initialised``) is skipped.

    Its plain report instead (``Samba version 4.x``: a release whose popt ignores an unknown
    option) is SourceUnavailable (:data:`NO_JSON`), any other text SourceDataError.
    """
    try:
        text = output.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceDataError("smbstatus --json printed text that is not UTF-8") from None
    start = 0 if text.startswith("{") else text.find("\n{") + 1
    if start == 0 and not text.startswith("{"):
        if re.search(r"^Samba version \d", text, re.MULTILINE):
            raise SourceUnavailable(NO_JSON)
        first = text.strip().splitlines()[0][:200] if text.strip() else "nothing"
        raise SourceDataError(f"smbstatus --json printed no JSON object: {first}")
    try:
        document, end = json.JSONDecoder().raw_decode(text, start)
    except (ValueError, RecursionError) as exc:
        raise SourceDataError(f"smbstatus --json printed malformed JSON: {str(exc)[:200]}") from None
    if text[end:].strip():
        raise SourceDataError("smbstatus --json printed text after its JSON object")
    if not isinstance(document, dict):
        raise SourceDataError("smbstatus --json printed JSON that is not an object")
    return document


class StatusSession:
    """One session of the JSON, checked."""

    __slots__ = (
        "channels",
        "created",
        "dialect",
        "expires",
        "id",
        "machine",
        "pid",
        "transport",
        "uid",
        "unique",
        "user",
    )

    def __init__(self, key: str, raw: Any) -> None:
        where = f"session {key[:40]}"
        _need(isinstance(raw, dict), f"{where} is not an object")
        self.id = _number(raw.get("session_id", key), f"{where}: session_id")
        self.pid, self.unique = _server_id(raw.get("server_id"), where)
        self.uid = _uid(raw.get("uid"), f"{where}: uid")
        self.user = _text(raw.get("username"), f"{where}: username")
        self.machine = _text(raw.get("remote_machine"), f"{where}: remote_machine")
        self.dialect = _dialect(_text(raw.get("session_dialect"), f"{where}: session_dialect"))
        self.created = _time(raw.get("creation_time"), f"{where}: creation_time")
        self.expires = _time(raw.get("expiration_time"), f"{where}: expiration_time")
        #: (local, remote) of each channel; local None before 4.20 (only the client's address is printed)
        self.channels: list[tuple[tcp_idle.Endpoint | None, tcp_idle.Endpoint]] = []
        self.transport = "tcp"
        channels = raw.get("channels")
        if channels is None:
            self.channels.append((None, _address(raw.get("hostname"), f"{where}: hostname")))
            return
        _need(isinstance(channels, dict) and channels, f"{where}: channels is not a non-empty object")
        for number, (name, channel) in enumerate(channels.items()):  # in the record's order
            at = f"{where}: channel {name[:40]}"
            _need(isinstance(channel, dict), f"{at} is not an object")
            local = _address(channel.get("local_address"), f"{at}: local_address")
            self.channels.append((local, _address(channel.get("remote_address"), f"{at}: remote_address")))
            if number == 0 and channel.get("transport") is not None:
                transport = _text(channel.get("transport"), f"{at}: transport")
                _need(re.fullmatch(r"[a-z0-9]{1,16}", transport) is not None, f"{at}: transport {transport[:40]!r}")
                self.transport = transport


def document_sessions(document: dict[str, Any]) -> list[StatusSession]:
    """The authenticated sessions of the JSON, by session id (those still in authentication are skipped)."""
    sessions = document.get("sessions")
    _need(isinstance(sessions, dict), "sessions is missing or not an object")
    parsed = [StatusSession(str(key), value) for key, value in sessions.items()]
    return sorted((s for s in parsed if s.uid != -1), key=lambda s: s.id)


def document_opens(document: dict[str, Any]) -> dict[tuple[int, int | None, int], int] | None:
    """Open handles per (smbd pid, unique id, uid); None if the JSON has no open_files (unknown)."""
    files = document.get("open_files")
    if files is None:
        return None
    _need(isinstance(files, dict), "open_files is not an object")
    counts: dict[tuple[int, int | None, int], int] = defaultdict(int)
    for path, entry in files.items():
        where = f"open file {str(path)[:80]}"
        _need(isinstance(entry, dict) and isinstance(entry.get("opens"), dict), f"{where}: opens is not an object")
        for name, handle in entry["opens"].items():
            at = f"{where}: open {str(name)[:40]}"
            _need(isinstance(handle, dict), f"{at} is not an object")
            pid, unique = _server_id(handle.get("server_id"), at)
            counts[(pid, unique, _uid(handle.get("uid"), f"{at}: uid"))] += 1
    return counts


def session_records(
    sessions: list[StatusSession],
    opens: dict[tuple[int, int | None, int], int] | None,
    guest_account: str,
    idle: dict[tcp_idle.ConnectionKey, int],
    now: float,
) -> list[SessionRecord]:
    """SessionRecords of checked sessions; ``idle`` is :func:`tcp_idle.idle_milliseconds` of smbd's ports.

    An open counts for the first session (by id) of its smbd process and uid; one whose uid has no
    session in that process (``force user``) counts for the process's first session.
    """
    remaining = dict(opens or {})
    counts: dict[int, int] = defaultdict(int)
    first_of_process: dict[tuple[int, int | None], int] = {}
    for session in sessions:
        counts[session.id] += remaining.pop((session.pid, session.unique, session.uid), 0)
        first_of_process.setdefault((session.pid, session.unique), session.id)
    for (pid, unique, _), count in remaining.items():
        if (pid, unique) in first_of_process:
            counts[first_of_process[pid, unique]] += count
    by_remote = {key[1]: key for key in idle}  # before 4.20 only the client's endpoint is printed
    out = []
    for session in sessions:
        keys = [(local, remote) if local is not None else by_remote.get(remote) for local, remote in session.channels]
        last = [now - idle[key] / 1000.0 for key in keys if key is not None and key in idle]
        first = keys[0]
        expired = session.expires is not None and session.expires < now
        out.append(
            SessionRecord(
                session_id=f"{session.id:#x}",
                computer_name=session.machine,
                user_name=session.user,
                established=session.created,
                last_request=max(last) if last else None,
                opens=None if opens is None else counts[session.id],
                user_flags=SESS_GUEST if session.user == guest_account else 0,
                client_type=session.dialect,
                transport=None if first is None else f"{session.transport}:{tcp_idle.format_endpoint(first[0])}",
                status="Degraded" if expired else "OK",
                client_address=tcp_idle.format_endpoint(session.channels[0][1]),
                detail=f"smbd pid {session.pid}",
                # smbstatus prints the global id: an SMB2 session's wire id, not an SMB1 session's UID
                wire_id=None if session.dialect == "NT1" else session.id,
                dialect=WINDOWS_DIALECTS.get(session.dialect),
            )
        )
    return out


def _need(condition: bool, problem: str) -> None:
    if not condition:
        raise SourceDataError(f"smbstatus --json: {problem}")


def _text(value: Any, what: str) -> str:
    _need(isinstance(value, str) and len(value) <= MAX_TEXT, f"{what} is missing or not a string")
    return value  # type: ignore[no-any-return]


def _uid(value: Any, what: str) -> int:
    _need(isinstance(value, int) and not isinstance(value, bool) and -1 <= value < 1 << 32, f"{what} is not a uid")
    return value  # type: ignore[no-any-return]


def _number(value: Any, what: str) -> int:
    """A decimal number printed as a string ("16911"), as smbstatus prints pids and ids."""
    _need(
        isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20, f"{what} is not a number"
    )
    return int(value)


def _server_id(value: Any, where: str) -> tuple[int, int | None]:
    _need(isinstance(value, dict), f"{where}: server_id is missing or not an object")
    pid = _number(value.get("pid"), f"{where}: server_id.pid")
    unique = value.get("unique_id")
    return pid, None if unique is None else _number(unique, f"{where}: server_id.unique_id")


def _address(value: Any, what: str) -> tcp_idle.Endpoint:
    """``ipv4:1.2.3.4:445`` / ``ipv6:fe80::1:445`` to (ip, port)."""
    text = _text(value, what)
    _need(text.startswith(("ipv4:", "ipv6:")), f"{what} {text[:60]!r} is not an ipv4:/ipv6: address")
    try:
        host, port = parse_address(text)
    except ValueError:  # RecordFormatError
        raise SourceDataError(f"smbstatus --json: {what} {text[:60]!r} is not an address") from None
    return host, port


def _dialect(text: str) -> str:
    """smbstatus names dialects as serversession does (NT1, SMB2_02 ... SMB3_11); others kept if plain."""
    unknown = UNKNOWN_DIALECT.fullmatch(text)
    if unknown:
        return DIALECTS.get(int(unknown.group(1), 16), f"0x{unknown.group(1).lower()}")
    _need(DIALECT_TEXT.fullmatch(text) is not None, f"session_dialect {text[:40]!r} is not a dialect name")
    return text


def _time(value: Any, what: str) -> float | None:
    """Unix time of smbstatus's ``2025-01-31T12:00:00.123456+01:00``; None if absent or beyond year 9999
    (NTTIME's "infinity", an expiration that never comes).

    A date that does not exist (year 0, February 30, before 1970), an offset that is not one, or
    a time that cannot be converted is a SourceDataError, never a ValueError or OverflowError.
    """
    if value is None:
        return None
    text = _text(value, what)
    match = TIMESTAMP.fullmatch(text)
    _need(match is not None, f"{what} {text[:60]!r} is not a time")
    assert match is not None
    if match.group(11) is not None:  # what Samba prints when localtime() fails
        whole = int(match.group(11))
        if whole > LAST_SECOND:
            return None
        _need(whole >= 0, f"{what} {text[:60]!r} is not a time")
        return whole + float(f"0.{match.group(12) or 0}")
    year, month, day, hour, minute, second = (int(match.group(n)) for n in range(1, 7))
    if year > 9999:
        return None
    offset = None
    if match.group(8):  # local minus UTC, the dates ignored: within a day either way
        hours, minutes = int(match.group(9)), int(match.group(10))
        _need(hours < 24 and minutes < 60, f"{what} {text[:60]!r} has no UTC offset")
        offset = (hours * 3600 + minutes * 60) * (-1 if match.group(8) == "-" else 1)
    try:
        datetime.datetime(year, month, day, hour, minute, min(second, 59))  # year 0, February 30: ValueError
        _need(year >= 1970 and second < 61, f"{what} {text[:60]!r} is not a time")
        seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
        if offset is not None:
            seconds -= _true_offset(seconds, offset)
    except (ValueError, OverflowError, OSError):
        raise SourceDataError(f"smbstatus --json: {what} {text[:60]!r} is not a time") from None
    return seconds + float(f"0.{match.group(7) or 0}")


def _true_offset(wall: int, printed: int) -> int:
    """The UTC offset (seconds) of the local wall-clock time ``wall`` (as if UTC) that smbstatus printed.

    Samba computes the offset from the local and UTC hours and minutes, ignoring the date, so it
    can be a day off (Honolulu prints +14:00 instead of -10:00). smbstatus ran with this process's
    time zone (its environment is this process's, TZ included): of the printed offset and the same
    +-24 h, the one the zone really has at that moment wins (the printed one first: in the hour a
    clock is set back both exist). If none is (smbstatus given another TZ), the printed one stays.
    """
    for offset in (printed, printed - 86400, printed + 86400):
        if time.localtime(wall - offset).tm_gmtoff == offset:
            return offset
    return printed
