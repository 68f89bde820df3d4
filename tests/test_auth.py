"""Authentication for ``serve``: htpasswd files made by Apache's own ``htpasswd``, PAM for real.

PAM runs the real libpam with pam_wrapper's ``pam_matrix`` module (Debian ``libpam-wrapper``),
which checks passwords against a plain passdb file. pam_wrapper must be preloaded before the
process starts, so those checks run in a child Python.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import pam_wrapper_env
from serversession.errors import InvalidInput
from serversession.server.auth import (
    Authenticator,
    HtpasswdAuth,
    PamAuth,
    make_authenticator,
    parse_basic,
)

# ---------------------------------------------------------------- htpasswd files by Apache's tool


def htpasswd(*args: str) -> subprocess.CompletedProcess[str]:
    """Run Apache's ``htpasswd`` (Debian ``apache2-utils``)."""
    tool = shutil.which("htpasswd")
    if tool is None:
        pytest.fail("htpasswd (apache2-utils) is needed; run scripts/dev test")
    return subprocess.run([tool, *args], capture_output=True, text=True)


def add(path: str, user: str, password: str, *flags: str) -> None:
    """Add or update a user with ``htpasswd -b`` (bcrypt unless ``flags`` say otherwise)."""
    create = ["-c"] if not os.path.exists(path) else []
    result = htpasswd(*(flags or ("-B",)), *create, "-b", path, user, password)
    assert result.returncode == 0, result.stderr


def bcrypt_line(user: str, password: str) -> str:
    """An htpasswd line made by ``htpasswd -nbB`` (printed, no file)."""
    result = htpasswd("-nbB", user, password)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture
def passwd(tmp_path) -> str:
    """An htpasswd file with alice and bob (bcrypt)."""
    path = str(tmp_path / "htpasswd")
    add(path, "alice", "wonder-land")
    add(path, "bob", "b0b's pässword")
    return path


def test_right_and_wrong_passwords(passwd: str) -> None:
    auth = HtpasswdAuth(passwd)
    assert auth.check("alice", "wonder-land")
    assert auth.check("bob", "b0b's pässword")
    assert not auth.check("alice", "wonder-lanD")
    assert not auth.check("alice", "b0b's pässword")
    assert not auth.check("alice", "")
    assert not auth.check("Alice", "wonder-land")
    assert not auth.check("alice", "wonder-land\x00")


def test_unknown_user_is_refused(passwd: str) -> None:
    auth = HtpasswdAuth(passwd)
    assert not auth.check("mallory", "wonder-land")
    assert not auth.check("", "")
    assert not auth.check("alice:", "wonder-land")


def test_unknown_user_costs_a_bcrypt_check(tmp_path) -> None:
    """An unknown user is checked against a dummy hash of the file's cost: no timing oracle."""
    path = str(tmp_path / "htpasswd")
    add(path, "alice", "pw", "-B", "-C", "10")
    auth = HtpasswdAuth(path)

    def fastest(user: str) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            assert not auth.check(user, "wrong")
            times.append(time.perf_counter() - start)
        return min(times)

    known, unknown = fastest("alice"), fastest("nobody")
    assert known > 0.005  # cost 10 really is slow
    assert unknown > known / 2, (known, unknown)


PASSWORDS = [
    "pw",
    "correct horse battery staple",
    "pässwörd-ünïcode-密码",
    "a:b:c",
    " spaced ",
    "x" * 72,
    "é" * 40,  # 80 bytes: bcrypt reads the first 72
    "y" * 100,
]


@pytest.mark.parametrize("password", PASSWORDS)
def test_agrees_with_apache(tmp_path, password: str) -> None:
    """Our verdict is the one of ``htpasswd -v``, including past bcrypt's 72 bytes."""
    path = str(tmp_path / "htpasswd")
    add(path, "carol", password)
    auth = HtpasswdAuth(path)
    assert auth.check("carol", password)
    for candidate in (password, password + "!", password[:-1]):
        apache = htpasswd("-vb", path, "carol", candidate).returncode == 0
        assert auth.check("carol", candidate) is apache, candidate


@pytest.mark.parametrize("prefix", ["$2y$", "$2b$", "$2a$"])
def test_bcrypt_variants(tmp_path, prefix: str) -> None:
    user, hashed = bcrypt_line("dave", "s3cret").split(":", 1)
    assert hashed.startswith("$2y$")
    path = tmp_path / "htpasswd"
    path.write_text(f"{user}:{prefix}{hashed[4:]}\n")
    auth = HtpasswdAuth(str(path))
    assert auth.check("dave", "s3cret")
    assert not auth.check("dave", "s3creT")


def test_comments_blank_lines_and_crlf(tmp_path) -> None:
    path = tmp_path / "htpasswd"
    lines = ["# made by htpasswd -B", "", bcrypt_line("alice", "one"), "   ", bcrypt_line("bob", "two")]
    path.write_bytes("\r\n".join(lines).encode() + b"\r\n")
    auth = HtpasswdAuth(str(path))
    assert auth.check("alice", "one")
    assert auth.check("bob", "two")
    assert not auth.check("# made by htpasswd -B", "")


@pytest.mark.parametrize(
    ("flags", "scheme"),
    [
        (("-m",), "MD5"),
        (("-s",), "SHA-1"),
        (("-d",), "crypt"),
        (("-p",), "plain-text"),
        (("-2",), "SHA-256"),
        (("-5",), "SHA-512"),
    ],
)
def test_non_bcrypt_entry_refused(tmp_path, flags: tuple[str, ...], scheme: str) -> None:
    path = str(tmp_path / "htpasswd")
    add(path, "alice", "pw")
    add(path, "bob", "pw", *flags)
    with pytest.raises(InvalidInput) as caught:
        HtpasswdAuth(path)
    message = str(caught.value)
    assert path in message
    assert "line 2: user bob has" in message
    assert scheme in message
    assert "only bcrypt is accepted: htpasswd -B" in message
    assert "pw" not in message.replace(path, "")


@pytest.mark.parametrize(
    ("contents", "expected"),
    [
        (b"GOOD\nalice\n", "line 2: expected USER:HASH"),
        (b"GOOD\n:$2y$05$abc\n", "line 2: expected USER:HASH"),
        (b"GOOD\n\nbob:\n", "line 3: expected USER:HASH"),
        (b"bob:$2y$05$tooshort\n", "line 1: user bob has a damaged bcrypt entry"),
        (b"bob:$2y$99$" + b"a" * 53 + b"\n", "line 1: user bob has a damaged bcrypt entry"),
        (b"GOOD\n# again\nGOOD\n", "line 3: user alice appears again (first on line 1)"),
        (b"GOOD\n\xff\xfe:x\n", "line 2: not UTF-8"),
        (b"", "has no users"),
        (b"# only a comment\n\n", "has no users"),
    ],
)
def test_malformed_file(tmp_path, contents: bytes, expected: str) -> None:
    path = tmp_path / "htpasswd"
    path.write_bytes(contents.replace(b"GOOD", bcrypt_line("alice", "pw").encode()))
    with pytest.raises(InvalidInput) as caught:
        HtpasswdAuth(str(path))
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_missing_or_unreadable_file(tmp_path) -> None:
    missing = str(tmp_path / "nope")
    with pytest.raises(InvalidInput, match="cannot read: No such file or directory") as caught:
        HtpasswdAuth(missing)
    assert missing in str(caught.value)
    with pytest.raises(InvalidInput, match="cannot read: Is a directory"):
        HtpasswdAuth(str(tmp_path))
    with pytest.raises(InvalidInput, match="not a regular file"):
        HtpasswdAuth("/dev/null")


def test_user_added_while_running(passwd: str) -> None:
    auth = HtpasswdAuth(passwd)
    assert not auth.check("carol", "new-here")
    add(passwd, "carol", "new-here")
    assert auth.check("carol", "new-here")
    assert auth.check("alice", "wonder-land")


def test_password_changed_while_running(passwd: str) -> None:
    """The file keeps its size and inode (bcrypt hashes have one length): the change is still seen."""
    auth = HtpasswdAuth(passwd)
    size = os.path.getsize(passwd)
    assert auth.check("alice", "wonder-land")
    add(passwd, "alice", "through-the-looking-glass")
    assert os.path.getsize(passwd) == size
    assert auth.check("alice", "through-the-looking-glass")
    assert not auth.check("alice", "wonder-land")


def test_user_deleted_while_running(passwd: str) -> None:
    auth = HtpasswdAuth(passwd)
    assert auth.check("bob", "b0b's pässword")
    assert htpasswd("-D", passwd, "bob").returncode == 0
    assert not auth.check("bob", "b0b's pässword")
    assert auth.check("alice", "wonder-land")


def test_broken_file_refuses_everyone_until_fixed(passwd: str, caplog) -> None:
    auth = HtpasswdAuth(passwd)
    good = pathlib.Path(passwd).read_bytes()
    with open(passwd, "ab") as file:
        file.write(b"mallory:$apr1$4uTvioIX$6jJFI7/AOkSnGiui9F8lg1\n")
    assert not auth.check("alice", "wonder-land")
    assert not auth.check("alice", "wonder-land")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, warnings
    assert "line 3: user mallory has an MD5" in warnings[0]
    assert "refusing every login" in warnings[0]
    with open(passwd, "wb") as file:
        file.write(good)
    assert auth.check("alice", "wonder-land")
    os.unlink(passwd)
    assert not auth.check("alice", "wonder-land")
    add(passwd, "alice", "back-again")
    assert auth.check("alice", "back-again")
    assert not auth.check("alice", "wonder-land")


def test_passwords_are_not_logged(passwd: str, caplog) -> None:
    caplog.set_level("DEBUG", logger="serversession")
    auth = HtpasswdAuth(passwd)
    auth.check("alice", "guess-one")
    add(passwd, "carol", "carols-secret")
    auth.check("carol", "carols-secret")
    auth.check("nobody", "guess-two")
    text = caplog.text
    assert "changed: 3 users" in text  # the log is captured at all
    for secret in ("guess-one", "carols-secret", "guess-two", "wonder-land"):
        assert secret not in text


# ---------------------------------------------------------------- make_authenticator


def test_make_authenticator(passwd: str) -> None:
    auth = make_authenticator(passwd, False, "login")
    assert isinstance(auth, HtpasswdAuth)
    assert isinstance(auth, Authenticator)
    assert auth.description == f"htpasswd file {passwd}"
    pam = make_authenticator(None, True, "serversession")
    assert isinstance(pam, PamAuth)
    assert isinstance(pam, Authenticator)
    assert pam.description == "PAM service serversession"
    with pytest.raises(InvalidInput, match="exclude each other"):
        make_authenticator(passwd, True, "login")
    with pytest.raises(InvalidInput, match="--htpasswd FILE or --pam"):
        make_authenticator(None, False, "login")
    with pytest.raises(InvalidInput, match="cannot read"):
        make_authenticator(passwd + ".missing", False, "login")


@pytest.mark.parametrize("service", ["", "../etc/passwd", "log\nin"])
def test_bad_pam_service_name(service: str) -> None:
    with pytest.raises(InvalidInput, match="invalid PAM service name"):
        PamAuth(service)


# ---------------------------------------------------------------- the Basic header


def basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (basic(b"alice:wonder-land"), ("alice", "wonder-land")),
        ("basic " + base64.b64encode(b"alice:pw").decode(), ("alice", "pw")),
        ("BASIC   " + base64.b64encode(b"alice:pw").decode() + "  ", ("alice", "pw")),
        (basic(b"alice:a:b:c"), ("alice", "a:b:c")),
        (basic(b":"), ("", "")),
        (basic(b"alice:"), ("alice", "")),
        (basic("jörg:pässwörd 密码".encode()), ("jörg", "pässwörd 密码")),
        (None, None),
        ("", None),
        ("Basic", None),
        ("Basic ", None),
        ("Bearer " + base64.b64encode(b"alice:pw").decode(), None),
        ("Digest username=alice", None),
        ("Basicx " + base64.b64encode(b"alice:pw").decode(), None),
        (basic(b"alice"), None),  # no colon
        (basic(b"\xff\xfe:\xfd"), None),  # not UTF-8
        (basic("alice:pw".encode("latin-1") + b"\xe9"), None),  # Latin-1, not UTF-8
        (basic(b"alice:p\x00w"), None),  # control characters are forbidden
        (basic(b"ali\tce:pw"), None),
        (basic(b"alice:pw\x7f"), None),
        ("Basic !!!!", None),
        ("Basic YWxpY2U6cHc", None),  # padding missing
        ("Basic YWxp Y2U6cHc=", None),
        ("Basic YWxpY2U6cHc=é", None),  # not ASCII
        (basic(b"alice:" + b"p" * 4000), None),  # over 4 KiB
    ],
)
def test_parse_basic(header: str | None, expected: tuple[str, str] | None) -> None:
    assert parse_basic(header) == expected


def test_parse_basic_size_limit() -> None:
    fits = basic(b"alice:" + b"p" * 3000)
    assert len(fits) <= 4096
    assert parse_basic(fits) == ("alice", "p" * 3000)


@given(st.text(max_size=300))
def test_parse_basic_never_raises_on_text(header: str) -> None:
    result = parse_basic(header)
    assert result is None or (isinstance(result[0], str) and isinstance(result[1], str))
    result = parse_basic("Basic " + header)
    assert result is None or len(result) == 2


@given(st.binary(max_size=300))
def test_parse_basic_never_raises_on_bytes(raw: bytes) -> None:
    result = parse_basic(basic(raw))
    if result is not None:
        assert f"{result[0]}:{result[1]}".encode() == raw
    result = parse_basic(raw.decode("latin-1"))
    assert result is None or raw.strip()[:6].lower() == b"basic "


_printable = st.characters(blacklist_categories=("Cc", "Cs"))


@given(st.text(_printable, max_size=40).filter(lambda u: ":" not in u), st.text(_printable, max_size=40))
def test_parse_basic_round_trip(user: str, password: str) -> None:
    assert parse_basic(basic(f"{user}:{password}".encode())) == (user, password)


# ---------------------------------------------------------------- PAM through pam_wrapper


SERVICE = "serversession-test"

PAM_CASES = [
    ("alice", "wonder-land"),  # right
    ("alice", "wonder-lanD"),  # wrong
    ("alice", ""),  # empty
    ("mallory", "wonder-land"),  # unknown user
    ("bob", "b0b-pw"),  # right password, but pam_matrix's account check allows bob another service
    ("carol", "pässwörd 密码"),  # right, not ASCII
    ("alice", "wonder-land\x00"),  # NUL: refused, not an exception
]

CHILD = textwrap.dedent(
    """
    import json, sys
    from serversession.server.auth import PamAuth, make_authenticator
    service, cases = json.loads(sys.argv[1])
    auth = make_authenticator(None, True, service)
    assert isinstance(auth, PamAuth)
    print(json.dumps({"description": auth.description, "results": [auth.check(u, p) for u, p in cases]}))
    """
)


@pytest.fixture(scope="module")
def pam_results(tmp_path_factory) -> Iterator[dict[str, object]]:
    """PamAuth's verdicts on PAM_CASES, from a child with pam_wrapper and pam_matrix."""
    directory = tmp_path_factory.mktemp("pam")
    env = pam_wrapper_env(
        directory, SERVICE, f"alice:wonder-land:{SERVICE}\nbob:b0b-pw:sshd\ncarol:pässwörd 密码:{SERVICE}\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps([SERVICE, PAM_CASES])],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
    yield json.loads(child.stdout.strip().splitlines()[-1])


def test_pam_description(pam_results: dict[str, object]) -> None:
    assert pam_results["description"] == f"PAM service {SERVICE}"


@pytest.mark.parametrize(
    ("index", "expected"),
    [(0, True), (1, False), (2, False), (3, False), (4, False), (5, True), (6, False)],
    ids=["right", "wrong", "empty", "unknown-user", "account-refused", "unicode", "nul"],
)
def test_pam(pam_results: dict[str, object], index: int, expected: bool) -> None:
    results = pam_results["results"]
    assert isinstance(results, list)
    assert len(results) == len(PAM_CASES)
    assert results[index] is expected, PAM_CASES[index]
