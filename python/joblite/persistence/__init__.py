"""dump / load: persistence of Python objects holding large numpy arrays.

Files are joblite containers (``docs/format.md``): a protocol-5 pickle stream plus one
64-byte-aligned, checksummed, optionally compressed segment per numpy buffer. ``load`` also
reads every format joblib has written, without joblib installed.
"""

from __future__ import annotations

import os
from typing import Any, Optional

from ..exceptions import CorruptFileError
from . import codecs, joblib_compat
from .container import MAGIC, ContainerFile, write_bytes, write_file
from .files import open_regular

_MMAP_MODES = (None, "r", "r+", "c", "w+")


def dump(
    value: Any,
    filename: Any,
    compress: Any = 0,
    protocol: Optional[int] = None,
    *,
    fsync: bool = True,
) -> Any:
    """Persist an arbitrary Python object into one file.

    Numpy arrays are stored out of band, each in its own 64-byte-aligned segment, so that
    :func:`load` can memory-map them; everything is checksummed (blake3). Writing to a path is
    atomic: a temporary file in the same directory is written, fsynced and renamed over
    ``filename``, so a crash never leaves a partial file behind.

    Parameters
    ----------
    value : any Python object
        The object to store.
    filename : str, os.PathLike or binary file object
        Where to store it. With a file object the container is written to it at its
        current position (not atomically) and None is returned.
    compress : bool, int, str or (str, int), default 0
        ``False``/``0``: no compression. ``True`` or ``1``-``9``: lz4 (chunked and parallel,
        in Rust; lz4 has a single speed/ratio setting here, so every level gives the same
        output). A codec name, ``"lz4"``, ``"zlib"``, ``"gzip"``, ``"bz2"``, ``"lzma"`` or
        ``"xz"`` (level 3), the name of a compressor added with :func:`register_compressor`,
        or a ``(name, level)`` tuple. With the default 0, a file name ending in ``.lz4``,
        ``.z``, ``.gz``, ``.bz2``, ``.lzma`` or ``.xz`` (or a registered compressor's
        extension) picks that codec, as in joblib. Compression is applied per chunk (4 MiB
        for lz4, 1 MiB otherwise), on all cores.
    protocol : int, optional
        Accepted for joblib compatibility; the container always uses pickle protocol 5,
        which out-of-band buffers need.
    fsync : bool, default True
        Flush the file (and its folder) to the storage device before renaming it into
        place, so that even a power loss leaves the old file or the complete new one. On a
        disk this is most of the cost of a large dump; ``fsync=False`` skips it (joblib and
        ``np.save`` never flush) and keeps every guarantee against a killed process or a
        concurrent reader. Ignored for file objects.

    Returns
    -------
    list of str or None
        ``[filename]`` when writing to a path, None for a file object.

    Raises
    ------
    ValueError
        If ``compress`` names an unknown codec or level (the message lists accepted ones).

    Examples
    --------
    >>> import numpy as np, joblite, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "data.joblite")
    >>> joblite.dump({"x": np.arange(3)}, path, compress=True)  # doctest: +ELLIPSIS
    ['...data.joblite']
    >>> joblite.load(path)["x"]
    array([0, 1, 2])
    """
    if hasattr(filename, "write") and not isinstance(filename, (str, bytes, os.PathLike)):
        filename.write(write_bytes(value, codecs.resolve(compress)))
        return None
    if not isinstance(fsync, bool):
        raise TypeError(f"fsync must be True or False, got {fsync!r}")
    path = os.fsdecode(os.fspath(filename))
    write_file(value, path, codecs.resolve(compress, path), fsync)
    return [path]


def load(
    filename: Any,
    mmap_mode: Optional[str] = None,
    *,
    allow_pickle: bool = True,
    verify: Optional[bool] = None,
) -> Any:
    """Reconstruct a Python object from a file written by :func:`dump` or by joblib.

    .. warning:: With the default ``allow_pickle=True`` this runs pickle, which can execute
       arbitrary code: only load files you trust, or pass ``allow_pickle=False``.

    Parameters
    ----------
    filename : str, os.PathLike or binary file object
        The file. joblite containers and every joblib format (0.8 - 1.6, compressed or
        not) are recognised by their first bytes.
    mmap_mode : {None, 'r', 'r+', 'c', 'w+'}, optional
        Memory-map arrays instead of reading them. Uncompressed arrays come back as
        ``np.memmap`` views of the file, in O(1) (nothing is read). Compressed arrays cannot
        be mapped: they are decompressed in parallel into ordinary in-memory arrays.
        ``'w+'`` acts as ``'r+'`` (it would otherwise wipe the file), as in joblib. With
        ``'r+'``, writes go to the file; the file is then marked so later loads stop
        verifying its uncompressed data, which the writes change. A compressed joblib file
        is always read into memory.
    allow_pickle : bool, default True
        ``False`` is the safe mode: only numpy arrays of non-object dtype and builtin
        containers/scalars are loaded; anything that would import or call other code raises
        :class:`joblite.UnsafeLoadError` naming it.
    verify : bool, optional
        Check the blake3 digest of every data chunk. By default everything that is read is
        verified (full loads, and compressed arrays under ``mmap_mode``): one extra pass
        over the stored bytes, overlapped with reading on all cores. Memory-mapped arrays
        are not verified unless ``verify=True`` (that reads the whole file, losing the point
        of mapping); ``verify=False`` skips all data checks. The pickle stream and the
        segment table are always verified.

    Returns
    -------
    object
        The stored object.

    Raises
    ------
    joblite.CorruptFileError
        The file is empty, truncated, damaged (checksum mismatch), not a joblite/joblib file,
        or not a regular file (a directory, FIFO, device or socket is refused without
        reading it); the message names the file and what is wrong.
    joblite.UnsafeLoadError
        ``allow_pickle=False`` met something it refuses.
    FileNotFoundError
        No such file.
    """
    if mmap_mode not in _MMAP_MODES:
        raise ValueError(f"mmap_mode must be one of {_MMAP_MODES}, got {mmap_mode!r}")
    if hasattr(filename, "read") and not isinstance(filename, (str, bytes, os.PathLike)):
        return loads(filename.read(), allow_pickle=allow_pickle)
    path = os.fsdecode(os.fspath(filename))
    with open_regular(path) as f:  # a FIFO, device or directory is refused, never read
        head = f.read(16)
        if not head:
            raise CorruptFileError(path, "file is empty")
        if not head.startswith(MAGIC):
            return joblib_compat.load(path, None, head, mmap_mode, not allow_pickle, f)
    return ContainerFile(path).load(mmap_mode, allow_pickle, verify)


def dumps(value: Any, compress: Any = 0) -> bytes:
    """Serialize ``value`` into a joblite container in memory (see :func:`dump`).

    Parameters
    ----------
    value : any Python object
        The object to store.
    compress : bool, int, str or (str, int), default 0
        As for :func:`dump` (there is no file name to pick a codec from).

    Returns
    -------
    bytes
        The container.
    """
    return write_bytes(value, codecs.resolve(compress))


def loads(data: Any, *, allow_pickle: bool = True) -> Any:
    """Reconstruct an object from :func:`dumps` output (or the bytes of a joblib file).

    .. warning:: With ``allow_pickle=True`` (the default) only load trusted data.

    Parameters
    ----------
    data : bytes-like
        The container bytes (bytes, bytearray, memoryview, mmap).
    allow_pickle : bool, default True
        ``False`` is the safe mode of :func:`load`.

    Returns
    -------
    object
        The stored object; arrays are fresh copies, independent of ``data``.

    Raises
    ------
    joblite.CorruptFileError
        The data is empty, truncated, damaged or not a container (``path`` is None).
    """
    view = memoryview(data)
    if view.nbytes == 0:
        raise CorruptFileError(None, "data is empty")
    head = bytes(view[:16])
    if head.startswith(MAGIC):
        return ContainerFile(None, view).load(None, allow_pickle, True)
    return joblib_compat.load(None, bytes(view), head, None, not allow_pickle)


def register_compressor(compressor_name: str, compressor: Any, force: bool = False) -> None:
    """Register a custom compressor; see :func:`joblite.compressor.register_compressor`."""
    from ..compressor import register_compressor as register

    register(compressor_name, compressor, force)


__all__ = ["dump", "dumps", "load", "loads", "register_compressor"]
