"""Hostile and careless input never hangs, crashes or lies: the real command, with inputs of its own.

1. Files that are not regular files (FIFOs, devices, huge files), given as options, in the
   environment or through smb.conf ``include =`` lines: one clear line at once, never a hang.
2. Text from SMB clients is data, not markup: every output format keeps it (or its documented
   replacement, formats.py) and lets no control character reach a terminal raw; generated
   names (hypothesis) through every format, and a real session with a hostile name.
3. Numbers and options: out of range, not finite, empty, unknown, too long: exit 2 and one line
   naming the option.
4. Streams and signals: a closed or full stdout, a reader that went away, SIGTERM and SIGINT
   during a read, other locales and terminal widths.

Tests that need a Samba (its bindings, smbd) are marked ``samba`` one by one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Iterator
from typing import Any

import defusedxml.ElementTree as SafeET
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import HOSTILE_NAME, run_cli, xml_kept
from serversession.formats import render, visible
from serversession.model import SERVER_SESSION, load_schema, server_sessions
from serversession.sandbox import Sandbox
from serversession.sources.base import SessionRecord

NOW = 1_800_000_000.0
REPLACEMENT = "\ufffd"
samba = pytest.mark.samba


def shows(char: str) -> bool:
    """What may reach a terminal raw (formats.py): printable characters and spaces."""
    return char.isprintable() or unicodedata.category(char) == "Zs"


def run(*args: str, env: dict[str, str] | None = None, limit: float = 15) -> subprocess.CompletedProcess[str]:
    """The real command, which must end within ``limit`` seconds."""
    start = time.monotonic()
    result = run_cli(*args, env=env, timeout=limit + 30)
    assert time.monotonic() - start < limit, f"{args} took {time.monotonic() - start:.1f} s"
    return result


def one_line(result: subprocess.CompletedProcess[str], code: int, *phrases: str) -> str:
    """The one line on stderr of a command that failed with ``code``, checked."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("serversession: error: "), lines
    assert all(shows(char) for char in lines[0]), repr(lines[0])
    for phrase in phrases:
        assert phrase in lines[0], (phrase, lines[0])
    return lines[0]


# --- 1. files that are not regular files ----------------------------------------------------------


@pytest.fixture
def fifo(tmp_path) -> str:
    path = str(tmp_path / "fifo")
    os.mkfifo(path)
    return path


@pytest.fixture
def huge(tmp_path) -> str:
    """A sparse file larger than any configuration (17 MB of nothing)."""
    path = tmp_path / "huge"
    with open(path, "wb") as handle:
        handle.truncate(17 << 20)
    return str(path)


SRVSVC = ("list", "--host", "127.0.0.1:1", "--user", "someone")


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "huge", "directory"])
@pytest.mark.parametrize("option", ["--password-file", "--hosts-file"])
def test_password_and_hosts_files_that_are_not_regular_files_fail_at_once(tmp_path, fifo, huge, kind, option) -> None:
    path = {"fifo": fifo, "/dev/zero": "/dev/zero", "huge": huge, "directory": str(tmp_path)}[kind]
    args = (*SRVSVC, "--password-file", path) if option == "--password-file" else ("list", "--hosts-file", path)
    result = run(*args, env={"SERVERSESSION_PASSWORD": "x"}, limit=10)
    expected = {"fifo": "not a regular file", "/dev/zero": "not a regular file", "huge": "larger than"}
    one_line(result, 1, path, expected.get(kind, "is a directory"))


@samba
@pytest.mark.parametrize("where", ["option", "environment"])
@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "huge"])
def test_an_smb_conf_that_is_not_a_regular_file_fails_at_once(fifo, huge, kind, where) -> None:
    path = {"fifo": fifo, "/dev/zero": "/dev/zero", "huge": huge}[kind]
    if where == "option":
        result = run("list", "--smb-conf", path, limit=10)
    else:
        result = run("list", env={"SERVERSESSION_SMB_CONF": path}, limit=10)
    one_line(result, 1, path, "larger than" if kind == "huge" else "not a regular file")


@samba
@pytest.mark.parametrize(
    "line",
    ["include = {fifo}", "  IN clude\t=\t{fifo}  ", "inc\\\nlude = {fifo}", "include = /dev/zero", "include = {huge}"],
)
def test_an_include_that_is_not_a_regular_file_is_named_at_once(tmp_path, fifo, huge, line) -> None:
    """Samba's parser would wait on the FIFO forever holding Python's lock (Ctrl-C ignored), or
    read /dev/zero and the sparse file until memory runs out; parameter names are read as
    Samba reads them (case, spaces, continued lines)."""
    target = tmp_path / "second.conf"
    target.write_text("[global]\n" + line.format(fifo=fifo, huge=huge) + "\n")
    conf = tmp_path / "smb.conf"
    conf.write_text(f"[global]\n  workgroup = X\n  include = {target}\n")
    included = fifo if "fifo" in line else huge if "huge" in line else "/dev/zero"
    one_line(run("list", "--smb-conf", str(conf), limit=10), 1, f"smb.conf {target}: include {included}")


@samba
def test_a_config_including_itself_is_an_error_not_a_loop(tmp_path) -> None:
    conf = tmp_path / "smb.conf"
    conf.write_text(f"[global]\n  include = {conf}\n")
    one_line(run("list", "--smb-conf", str(conf), limit=10), 1, "cannot be parsed")


@samba
def test_what_the_include_check_cannot_follow_is_bounded_by_a_killed_child(tmp_path) -> None:
    """An include with a %-substitution is not followed by the check (Samba substitutes it): a
    FIFO named so makes Samba's parser wait forever, and a config of many parametric options
    takes it quadratic time. The parser runs in a child, killed at its deadline."""
    from serversession.errors import SourceTimeout
    from serversession.sources.samba import _import_bindings, load_config

    param = _import_bindings()[1]
    os.mkfifo(tmp_path / "x%Q")
    waiting = tmp_path / "waiting.conf"
    waiting.write_text(f"[global]\n  include = {tmp_path}/x%Q\n")
    slow = tmp_path / "slow.conf"
    slow.write_text("[global]\n" + "".join(f"  x:p{i} = v\n" for i in range(60000)))
    for conf in (waiting, slow):
        start = time.monotonic()
        with pytest.raises(SourceTimeout, match="did not finish reading"):
            load_config(str(conf), param, timeout=1)
        assert time.monotonic() - start < 4
    result = run("list", "--smb-conf", str(waiting), "--timeout", "1", limit=8)  # the command's own bound
    one_line(result, 1, "did not answer within 1 s")


def test_a_sandbox_state_that_is_a_fifo_fails_at_once(tmp_path) -> None:
    box = tmp_path / "box"
    box.mkdir(mode=0o700)
    os.mkfifo(box / "sandbox.json")
    one_line(run("sandbox", "status", "--dir", str(box), limit=10), 1, "not a regular file")


@samba
def test_the_sandbox_refuses_directories_others_control(tmp_path) -> None:
    """smbd runs the configuration written there, as root when root starts it: a directory of
    another user, or their symbolic link to /etc, would let them run anything as root."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make a directory of another user")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    one_line(run("sandbox", "start", "--dir", str(theirs), "--port", "4999", limit=10), 2, "belongs to user 65534")
    link = tmp_path / "link"
    victim = tmp_path / "victim"
    victim.mkdir()
    link.symlink_to(victim)
    os.lchown(link, 65534, 65534)
    one_line(run("sandbox", "start", "--dir", str(link), "--port", "4999", limit=10), 2, "symbolic link of user 65534")
    assert not os.listdir(victim)
    own = tempfile.mkdtemp(prefix="serversession-hostile-")  # the users must reach it: not under tmp_path
    try:
        os.mkfifo(os.path.join(own, "smb.conf"))
        one_line(run("sandbox", "start", "--dir", own, "--port", "4999", limit=15), 1, "cannot write", "smb.conf")
    finally:
        shutil.rmtree(own, ignore_errors=True)
    one_line(run("sandbox", "start", "--dir", str(tmp_path / "50%m"), "--port", "4999", limit=10), 2, "'%'")


# --- 2. text from clients is data, not markup --------------------------------------------------------

SPECIALS = (
    "\x00\x01\x07\x08\t\n\x0b\x0c\r\x1b\x7f\x80\x85\x9b\x9f\u00a0\u00ad\u200b\u200e\u202e\u2028\u2029\u2066"
    "\ufeff\ufffe\uffff\ud800\udfff\U000e0001\U0010ffff\u0301[]/\\\"'=+-@:<>&;%, "
)
TOKENS = ("[bold]", "[/]", "[/bold]", "[link=http://evil.example/]", ":smile:", "\x1b[31m", "\x1b]0;title\x07", "\r\n")
hostile = st.lists(st.one_of(st.characters(), st.sampled_from(SPECIALS), st.sampled_from(TOKENS)), max_size=12).map(
    "".join
)
servers = st.one_of(st.none(), st.text(st.sampled_from("ab.-[]/:"), min_size=1, max_size=10))


def instances_of(computer: str, user: str, server: str | None = None) -> list:
    record = SessionRecord("0x1", computer, user, NOW - 65, NOW - 5, 1, 0, "SMB3_11", "tcp:10.0.0.1:445", server=server)
    other = SessionRecord("0x2", "10.0.0.9", "bob", NOW - 5, NOW - 5, 0, 0, None, None, server=server)
    return server_sessions([record, other], now=NOW)


def mof_kept(text: str) -> str:
    """What MOF keeps: U+FFFD for NUL (no CIM string holds it) and lone surrogates."""
    return "".join(REPLACEMENT if c == "\0" or 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def csv_kept(text: str) -> str:
    return "".join(REPLACEMENT if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


CLS = load_schema().get(SERVER_SESSION)
HYPOTHESIS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@HYPOTHESIS
@given(hostile, hostile, servers)
def test_the_table_shows_names_as_plain_visible_text(computer, user, server) -> None:
    for encoding in ("utf-8", "ascii", "latin-1"):
        text = render(instances_of(computer, user, server), CLS, "table", 1000, encoding=encoding)
        assert all(char == "\n" or shows(char) for char in text), repr(text)
        text.encode(encoding)  # what the terminal's encoding cannot hold is escaped too
        row = next(line for line in text.splitlines() if "SMB3_11" in line)
        assert visible(computer, encoding) in row and visible(user or "(anonymous)", encoding) in row, (row, computer)
        assert text.splitlines()[-1] == "2 sessions"


@HYPOTHESIS
@given(hostile, hostile, servers)
def test_xml_always_parses_and_keeps_the_names(computer, user, server) -> None:
    text = render(instances_of(computer, user, server), CLS, "xml")
    assert all(char in "\t\n" or shows(char) for char in text), repr(text)
    root = SafeET.fromstring(text.encode("utf-8"))
    names = {(keys.findtext("KEYBINDING[@NAME='ComputerName']/KEYVALUE") or "") for keys in root.iter("INSTANCENAME")}
    assert xml_kept(computer) in names
    values = [p.findtext("VALUE") or "" for p in root.iter("PROPERTY") if p.get("NAME") == "UserName"]
    assert xml_kept(user) in values


@HYPOTHESIS
@given(hostile, hostile, servers)
def test_json_round_trips_exactly(computer, user, server) -> None:
    text = render(instances_of(computer, user, server), CLS, "json")
    assert text.isascii()
    assert (computer, user) in {(row["ComputerName"], row["UserName"]) for row in json.loads(text)}


@HYPOTHESIS
@given(hostile, hostile, servers)
def test_csv_round_trips(computer, user, server) -> None:
    """Exact (CSV is for programs: no escapes; cells starting with = + - @ are not prefixed)."""
    text = render(instances_of(computer, user, server), CLS, "csv")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert len(rows) == 2
    assert (csv_kept(computer), csv_kept(user)) in {(row["ComputerName"], row["UserName"]) for row in rows}


@pytest.fixture(scope="module")
def mof_compiler():
    import pywbem

    from conftest import compile_package_mof
    from serversession.model.schema import NAMESPACE

    conn = pywbem.MOFWBEMConnection()
    compiler = pywbem.MOFCompiler(conn, verbose=False, log_func=lambda _m: None)
    compile_package_mof(compiler)

    def compile_instances(text: str) -> list:
        conn.instances[NAMESPACE] = []
        compiler.compile_string(text, NAMESPACE, filename="list.mof")
        return list(conn.instances[NAMESPACE])

    return compile_instances


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hostile, hostile, st.integers(0, 120))
def test_mof_compiles_and_keeps_the_names(mof_compiler, computer, user, padding) -> None:
    """With pywbem's MOF compiler; long names make pywbem split strings over lines."""
    computer += "x" * padding
    text = render(instances_of(computer, user), CLS, "mof")
    assert all(char == "\n" or shows(char) or ord(char) > 0xFFFF for char in text), repr(text)
    parsed = mof_compiler(text)
    assert (mof_kept(computer), mof_kept(user)) in {(i["ComputerName"], i["UserName"]) for i in parsed}


def test_markup_and_emoji_codes_in_names_are_shown_as_they_are() -> None:
    names = ["[bold]x[/bold]", "[/]", "[link=http://evil.example/]y", ":smile:", "[red"]
    text = render(
        server_sessions([SessionRecord(f"0x{i}", n, n, NOW, NOW, 0, 0, None, None) for i, n in enumerate(names)]),
        CLS,
        "table",
        200,
    )
    shown = [line.split()[:2] for line in text.splitlines()[2:-1]]
    assert sorted(shown) == sorted([name, name] for name in names)  # computer, then user


@pytest.mark.parametrize("width", [None, 0, -5, 1, 30, 999999])
def test_any_width_shows_every_cell(width) -> None:
    """A table narrower than its columns folds them; rich would leave out whole columns."""
    text = render(instances_of("COMPUTER-NAME", "someone"), CLS, "table", width)
    expected = Counter("".join(["COMPUTER-NAME", "someone", "SMB3_11", "00:01:05", "00:00:05", "Other", "OK"]))
    assert not expected - Counter(text), text
    assert text.splitlines()[-1] == "2 sessions"


def test_error_lines_quoting_hostile_text_show_no_control_character() -> None:
    """Option values, file names and WQL are quoted in error lines: escaped, one line."""
    one_line(run("query", "SELECT \x1b[2J FROM x"), 2, "\\x1b")
    one_line(run("list", "--host", "\x1b[2J\nsecond line", "--user", "a"), 2, "control character")
    one_line(run("list", "--format", "\x1b[31mred\rx"), 2, "--format")
    one_line(run("schema", "[bold]\x07"), 1, "[bold]\\x07")


@samba
def test_file_names_in_error_lines_show_no_control_character() -> None:
    """From an option or the environment (SERVERSESSION_SMB_CONF), quoted escaped."""
    name = "/nonexistent/\x1b]0;pwned\x07\x9b2J\u202e"
    one_line(run("list", "--smb-conf", name), 1, "\\x1b]0;pwned\\x07\\x9b2J\\u202e")
    one_line(run("list", env={"SERVERSESSION_SMB_CONF": name}), 1, "\\x1b]0;pwned\\x07")


@pytest.mark.parametrize("password", ["p\nq\r\x1b[2J", "x" * 100_000, " "])
def test_a_garbage_password_in_the_environment_is_only_a_password(password) -> None:
    """Newlines, escapes, 100 kB: used as it is, never echoed; the failure is the host's."""
    result = run("list", "--host", "127.0.0.1:1", "--user", "a", env={"SERVERSESSION_PASSWORD": password})
    line = one_line(result, 1, "connection refused")
    assert "x" * 20 not in line and "p\\x0aq" not in line


def test_warning_lines_show_no_control_character() -> None:
    """Warnings (and the per-host error lines of several hosts) go through the same line."""
    import logging

    from serversession.cli import _WarningFormatter

    record = logging.LogRecord("serversession", logging.WARNING, __file__, 1, "client %s\r\nsaid %s", None, None)
    record.args = ("[b]\x1b[2J", "\x9b\u202e" + "x" * 10_000)
    text = _WarningFormatter().format(record)
    assert text.startswith("serversession: warning: client [b]\\x1b[2J\\x0d\\x0asaid \\x9b\\u202e")
    assert all(shows(char) for char in text) and len(text) < 2500


@samba
def test_a_real_session_with_a_hostile_name_in_every_format(hostile_session: Sandbox, mof_compiler) -> None:
    conf = hostile_session.conf_path

    def listed(fmt: str, env: dict[str, str] | None = None) -> str:
        proc = _command(
            "list", "--smb-conf", conf, "--format", fmt, env=env or {}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = proc.communicate(timeout=30)  # bytes: text mode would make a CR a line break
        assert proc.returncode == 0 and b"Traceback" not in err, err
        encoding = (env or {}).get("PYTHONIOENCODING", "utf-8") if fmt == "table" else "utf-8"
        return out.decode(encoding)

    rows = json.loads(listed("json"))
    assert HOSTILE_NAME in [row["ComputerName"] for row in rows]
    table = listed("table")
    assert "[b]x[/]\\x1b[2J\\x07\\x0d\\x85" in table
    assert all(char == "\n" or shows(char) for char in table), repr(table)
    root = SafeET.fromstring(listed("xml").encode())
    assert xml_kept(HOSTILE_NAME) in [k.text for k in root.iter("KEYVALUE")]
    assert HOSTILE_NAME in [i["ComputerName"] for i in mof_compiler(listed("mof"))]
    assert HOSTILE_NAME in [r["ComputerName"] for r in csv.DictReader(io.StringIO(listed("csv"), newline=""))]
    for env in ({"LC_ALL": "C"}, {"LANG": "C"}, {"PYTHONIOENCODING": "latin-1"}, {"PYTHONIOENCODING": "ascii"}):
        shown = listed("table", env)
        assert "\\x1b[2J" in shown and "\x1b" not in shown, env
        assert HOSTILE_NAME in [row["ComputerName"] for row in json.loads(listed("json", env))]
    for columns in ("0", "-5", "abc", "999999", "1"):
        output, code = _in_a_terminal(["list", "--smb-conf", conf], {"COLUMNS": columns})
        assert code == 0 and "\x1b" not in output and "session" in output, (columns, output)


def _in_a_terminal(args: list[str], env: dict[str, str]) -> tuple[str, int]:
    """Run the command with its stdout on a pseudo-terminal; its output and exit code."""
    leader, follower = pty.openpty()
    full_env = {k: v for k, v in os.environ.items() if k != "SERVERSESSION_SMB_CONF"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "serversession", *args],
        stdout=follower,
        stderr=subprocess.PIPE,
        env={**full_env, **env},
    )
    os.close(follower)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the command ended
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
    code = proc.wait(timeout=30)
    assert b"Traceback" not in proc.stderr.read()
    return b"".join(chunks).decode("utf-8", "replace"), code


# --- 3. numbers and options ---------------------------------------------------------------------

WQL = "SELECT * FROM Win32_ServerSession"
PATH = 'Win32_ServerSession.ComputerName="x",UserName="y"'
BAD_NUMBERS = [
    *[("list", "--timeout", t) for t in ("nan", "inf", "-inf", "-1", "0", "1e308", "1e-300", "0x10", "", "86401")],
    *[("list", "--timeout", t) for t in ("1_0", "\u0663", "\uff15")],  # float() reads them: ASCII only
    ("query", WQL, "--timeout", "nan"),
    ("get", PATH, "--timeout", "inf"),
    *[("list", "--port", p) for p in ("0", "70000", "-1", "http", "99999999999999999999")],
    *[("sandbox", "start", "--port", p) for p in ("0", "70000", "-1")],
    *[("demo", "--hold", h) for h in ("nan", "inf", "-1", "601")],
    *[("serve", "--max-age", t, "--no-auth") for t in ("nan", "inf", "-1", "86401")],
    *[("serve", "--request-timeout", t, "--no-auth") for t in ("nan", "1e308", "0")],
    *[("serve", "--max-requests", n, "--no-auth") for n in ("0", "65537", "99999999999999999999")],
]


@pytest.mark.parametrize("args", BAD_NUMBERS, ids=lambda args: " ".join(args))
def test_numbers_out_of_range_or_not_finite_are_usage_errors(args) -> None:
    option = next(a for a in args if a.startswith("--"))
    one_line(run(*args), 2, option, "--help")


BAD_OPTIONS = [
    (("list", "--format", "yaml"), "--format"),
    (("list", "--source", "ldap"), "--source"),
    (("list", "--formt", "json"), "--formt"),
    (("list", "--smb-conf", ""), "--smb-conf"),
    (("list", "--hosts-file", ""), "--hosts-file"),
    (("list", "--password-file", " "), "--password-file"),
    (("list", "--user", ""), "--user"),
    (("sandbox", "status", "--dir", ""), "--dir"),
    (("list", "--timeout"), "--timeout"),
    (("serve", "--bind", "", "--no-auth"), "--bind"),
    (("serve", "--bind", " ", "--tls-cert", "c", "--tls-key", "k", "--no-auth"), "--bind"),
    (("query",), "WQL"),
    (("get",), "OBJECTPATH"),
    (("list", "Win32_Share", "extra"), "extra"),
    (("nosuchcommand",), "nosuchcommand"),
    (("sandbox", "explode"), "explode"),
    (("schema", "--format", "xml"), "--format"),
    (("list", "--host", "h" * 100_000, "--user", "a"), "longer than"),
    (("list", "--host", "10.0.0.1", "--user", "u" * 100_000), "user"),
    (("list", "--host", "fs1:\u00b2", "--user", "a"), "not a TCP port"),  # isdigit() but not int()
    (("list", "--host", "fs1:\u0664\u0664\u0665", "--user", "a"), "not a TCP port"),
]


@pytest.mark.parametrize(("args", "named"), BAD_OPTIONS, ids=lambda value: str(value)[:40])
def test_usage_errors_are_one_line_naming_the_option(args, named) -> None:
    line = one_line(run(*args, env={"SERVERSESSION_PASSWORD": "x"}), 2, named)
    assert len(line) < 2500


def test_a_hosts_file_with_control_characters_is_invalid_input(tmp_path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_bytes(b"# servers\nfs1\x00.example\n\x1b[2Jfs2\n")
    one_line(run("list", "--hosts-file", str(hosts), "--user", "a", env={"SERVERSESSION_PASSWORD": "x"}), 2, "\\x00")


def test_the_api_refuses_what_the_options_refuse() -> None:
    import serversession
    from serversession.errors import InvalidInput

    for timeout in (float("nan"), float("inf"), -1, 0, 1e308, "30"):
        with pytest.raises(InvalidInput, match="timeout"):
            serversession.sessions(timeout=timeout)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="NUL"):
        serversession.sessions(smb_conf="/etc/samba/smb.conf\0x")
    refused: list[tuple[dict[str, Any], str]] = [
        ({"smb_port": port}, "port") for port in (0, 70000, True, 445.0, "445")
    ]
    refused += [({name: value}, name) for name in ("smb_conf", "hosts_file", "user") for value in ("", " ", 5)]
    refused += [({"hosts": "fs1"}, "hosts"), ({"hosts": [5]}, "hosts"), ({"hosts": 5}, "hosts")]
    refused += [({"hosts": ["fs1"], "user": "a", "password": value}, "password") for value in ("", 5)]
    for options, named in refused:
        with pytest.raises(InvalidInput, match=named):
            serversession.sessions(**options)
    for path in (5, None, b"Win32_ServerSession"):
        with pytest.raises(InvalidInput, match="object path must be text"):
            serversession.get(path)  # type: ignore[arg-type]


def test_a_very_long_path_is_one_bounded_line() -> None:
    line = one_line(run("list", "--smb-conf", "/" + "a" * 100_000), 1, "characters left out")
    assert len(line) < 2500


@pytest.mark.parametrize("args", [(), ("--help",), ("list", "--help"), ("sandbox", "start", "-h"), ("demo", "--help")])
def test_help_still_works(args) -> None:
    result = run(*args)
    assert result.returncode == 0 and "Usage:" in result.stdout and result.stderr == ""


# --- 4. streams and signals ---------------------------------------------------------------------


def _command(*args: str, **kwargs) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "SERVERSESSION_SMB_CONF"}
    env.update(kwargs.pop("env", {}))
    return subprocess.Popen([sys.executable, "-m", "serversession", *args], env=env, **kwargs)


@pytest.mark.parametrize("args", [("schema",), ("schema", "--format", "json"), ("list", "--help")])
def test_a_reader_that_went_away_ends_the_command_quietly(args) -> None:
    """``serversession ... | head -1``: exit 1 (the output is incomplete), nothing on stderr."""
    reader, writer = os.pipe()
    os.close(reader)
    proc = _command(*args, stdout=writer, stderr=subprocess.PIPE, text=True)
    os.close(writer)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and err == "", err


def test_a_closed_or_full_stdout_is_an_error_not_silence() -> None:
    proc = _command("schema", stdout=None, stderr=subprocess.PIPE, text=True, preexec_fn=lambda: os.close(1))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and err.splitlines() == [
        "serversession: error: cannot write the output: standard output is closed"
    ]
    with open("/dev/full", "w") as full:
        proc = _command("schema", stdout=full, stderr=subprocess.PIPE, text=True)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1 and err.splitlines() == [
        "serversession: error: cannot write the output: No space left on device"
    ]
    proc = _command("list", "--smb-conf", "/nonexistent", stdin=None, stderr=None, preexec_fn=lambda: os.close(2))
    assert proc.wait(timeout=30) == 1  # nowhere to say it, but the code says it


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers (an SMB server stuck for good)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server.getsockname()[1]
    server.close()


@pytest.mark.parametrize(
    ("sig", "code", "said"), [(signal.SIGTERM, 143, "terminated (SIGTERM)"), (signal.SIGINT, 130, "interrupted")]
)
def test_a_signal_during_a_read_ends_with_one_line(silent_server, sig, code, said) -> None:
    pytest.importorskip("impacket")
    proc = _command(
        "list", "--host", f"127.0.0.1:{silent_server}", "--user", "a", "--timeout", "60",
        env={"SERVERSESSION_PASSWORD": "x"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1.5)
    assert proc.poll() is None, proc.communicate()
    start = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    assert time.monotonic() - start < 5
    assert proc.returncode == code and out == "" and err.splitlines() == [f"serversession: {said}"], (
        proc.returncode,
        err,
    )


@samba
def test_sigterm_during_the_demo_cleans_up(tmp_path) -> None:
    """The demo's sandbox (smbd, its temporary directory) is removed when it is told to stop."""
    proc = _command("demo", "--hold", "60", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    directory = first.rsplit(" in ", 1)[1].strip()
    assert proc.stdout.readline().startswith("sessions:"), proc.communicate()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and err.splitlines() == ["serversession: terminated (SIGTERM)"], err
    assert "sandbox stopped and removed" in out and not os.path.exists(directory)
