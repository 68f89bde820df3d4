"""Files the user names (smb.conf, password, hosts, htpasswd, TLS): checked before they are read.

A FIFO, a device such as ``/dev/zero`` or a huge file would hang the program or fill its
memory; a directory or an unreadable file would fail deep inside a library. Each is one clear
error instead. The file is opened without blocking (a FIFO with no writer would otherwise
block the open itself), checked on the open descriptor (no race between check and read) and
read with a size bound. Every problem is the operation failing (exit 1), as a missing file is.
"""

from __future__ import annotations

import errno
import os
import stat

from .errors import SourceUnavailable

MAX_CONFIG_BYTES = 16 << 20  # smb.conf, htpasswd files, hosts files
MAX_SECRET_BYTES = 64 << 10  # password files, TLS keys and certificates


def check_regular_file(path: str, what: str, max_bytes: int = MAX_CONFIG_BYTES) -> None:
    """Raise a one-line error unless ``path`` is a readable regular file of at most ``max_bytes``.

    For files read by a library (Samba's smb.conf parser, the TLS stack) rather than by us.
    """
    os.close(_open_checked(path, what, max_bytes))


def read_bytes(path: str, what: str, max_bytes: int = MAX_CONFIG_BYTES) -> bytes:
    """The content of the regular file ``path``, checked as :func:`check_regular_file` does."""
    fd = _open_checked(path, what, max_bytes)
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew between the check and the read
        raise SourceUnavailable(f"{what} {path} is larger than {max_bytes} bytes")
    return data


def read_text(path: str, what: str, max_bytes: int = MAX_CONFIG_BYTES) -> str:
    """The UTF-8 text of the regular file ``path`` (see :func:`read_bytes`)."""
    try:
        return read_bytes(path, what, max_bytes).decode("utf-8")
    except UnicodeDecodeError:
        raise SourceUnavailable(f"{what} {path} is not UTF-8 text") from None


def _open_checked(path: str, what: str, max_bytes: int) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SourceUnavailable(f"{what} not found: {path}") from None
    except PermissionError:
        raise SourceUnavailable(f"{what} is not readable: {path} (permission denied)") from None
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket, or a FIFO opened for writing only
            raise SourceUnavailable(f"{what} {path} is not a regular file") from None
        raise SourceUnavailable(f"{what} cannot be opened: {path} ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise SourceUnavailable(f"{what} {path} is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise SourceUnavailable(f"{what} {path} is not a regular file (a FIFO, device or socket)")
        if info.st_size > max_bytes:
            raise SourceUnavailable(f"{what} {path} is larger than {max_bytes} bytes")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd
