"""Opening files for reading (only regular files, never blocking on anything else), and
the exceptions that damaged bytes make an unpickler or a decoder raise."""

from __future__ import annotations

import lzma
import os
import pickle
import stat
import struct
import zlib
from typing import BinaryIO

from ..exceptions import CorruptFileError


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def open_regular(path: str) -> BinaryIO:
    """Open ``path`` for binary reading, refusing anything that is not a regular file.

    The file is opened without blocking (a FIFO with no writer would otherwise wait forever)
    and checked on the open descriptor, so the path cannot be swapped in between.

    Raises
    ------
    joblite.CorruptFileError
        ``path`` is a directory, FIFO, device or socket.
    OSError
        The file cannot be opened (``FileNotFoundError``, ``PermissionError``, ...).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        # a socket cannot be opened (ENXIO), a directory on some systems (EISDIR): say what
        # the path is rather than what open() thought of it
        try:
            mode = os.stat(path).st_mode
        except OSError:
            raise exc from None
        if stat.S_ISREG(mode):
            raise
        raise CorruptFileError(
            path, f"is {kind_of(mode)}, not a regular file: not a joblite or joblib file"
        ) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise CorruptFileError(
                path, f"is {kind_of(mode)}, not a regular file: not a joblite or joblib file"
            )
        if flags & getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_regular(path: str) -> None:
    """Raise :class:`~joblite.CorruptFileError` unless ``path`` is a regular file."""
    open_regular(path).close()


#: what damaged bytes make the unpickler or a decoder raise; anything else (a warning turned
#: into an error, an exception of the user's own classes, a global that cannot be imported)
#: is not a sign of damage and passes through
DAMAGE = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    struct.error,
    OverflowError,
    RecursionError,
    SystemError,  # numpy's C code on arguments no writer makes ("bad argument to internal")
    zlib.error,
    lzma.LZMAError,
)
