"""Our container format (docs/format.md): writing and reading it on top of ``joblite._core``.

The object graph is pickled by the C pickler with protocol 5; every buffer numpy hands to
``buffer_callback`` becomes its own 64-byte-aligned segment, compressed (or not) in 1 MiB
chunks by Rust with the GIL released, and read back straight into fresh numpy memory or
memory-mapped in place.
"""

from __future__ import annotations

import hashlib
import io
import logging
import lzma
import os
import pickle
import re
import socket
import uuid
import zlib
from typing import Any, Optional

from .. import _core
from ..exceptions import CorruptFileError, UnsafeLoadError
from . import codecs
from .files import DAMAGE
from .safe import SafeGlobals

_log = logging.getLogger("joblite.persistence")

MAGIC: bytes = _core.CONTAINER_MAGIC
CHUNK_SIZE: int = _core.DEFAULT_CHUNK_SIZE
_FLAG_MAPPED_WRITABLE = 1  # marked by a writable map: uncompressed data not verified
_FLAG_LEGACY_MAPPED = 2  # joblite 0.1.0's mark: verified anyway (a bit flip can make it)
_LEGACY_HINT = (
    "; the file carries joblite 0.1.0's mark of a writable memory map (mmap_mode='r+'), "
    "whose writes change the data: load(..., verify=False) reads it unverified"
)
# struct format characters of plain numbers, whose bytes a shuffle can group
_NUMERIC_FORMATS = set("hHiIlLqQnNefdg")


def _shuffle_elem(view: memoryview) -> int:
    fmt = view.format.lstrip("@=<>!")
    if (fmt in _NUMERIC_FORMATS or fmt in ("Zf", "Zd", "Zg")) and 2 <= view.itemsize <= 64:
        return view.itemsize
    return 0


def _segment(data: Any, choice: codecs.Choice, shuffle: int) -> tuple:
    raw = memoryview(data).cast("B") if not isinstance(data, memoryview) else data
    chunks = None
    if choice.codec in (codecs.ZLIB, codecs.BZ2, codecs.LZMA, codecs.EXTERNAL):
        chunks = codecs.compress_chunks(choice.codec, choice.level, raw, CHUNK_SIZE, choice.name)
    return (raw, choice.codec, shuffle, chunks)


def serialize(value: Any, choice: codecs.Choice) -> list[tuple]:
    """Pickle ``value`` (protocol 5, buffers out of band) into the segments to write."""
    buffers: list[pickle.PickleBuffer] = []
    stream = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    segments = [_segment(stream, choice, 0)]
    for pb in buffers:
        view = memoryview(pb)
        try:
            raw = pb.raw()
        except BufferError:  # not contiguous: only a copy can be stored
            raw = memoryview(view.tobytes())
        shuffle = _shuffle_elem(view) if choice.codec == codecs.LZ4 else 0
        segments.append(_segment(raw, choice, shuffle))
    return segments


_TEMP_SUFFIX = ".joblite-tmp"
# temp names carry the writer's pid and host, so a later dump can tell abandoned ones
_HOST_TAG = hashlib.blake2s(socket.gethostname().encode(), digest_size=4).hexdigest()
_TEMP_RE = re.compile(r"^\..*\.[0-9a-f]{8}\.(\d+)-([0-9a-f]{8})" + re.escape(_TEMP_SUFFIX) + "$")


def _temp_name(path: str) -> str:
    head, tail = os.path.split(path)
    unique = f"{uuid.uuid4().hex[:8]}.{os.getpid()}-{_HOST_TAG}"
    return os.path.join(head, f".{tail[:80]}.{unique}{_TEMP_SUFFIX}")


def user_path_error(exc: OSError, tmp: str, path: str) -> OSError:
    """``exc``, raised while writing the temporary file ``tmp``, as an error about ``path``.

    The user never asked for the temporary file: the error names the path they gave, and
    keeps its type and errno (``ENOSPC`` for a full disk, ``EACCES``, ...).
    """
    if exc.errno is None:
        out = OSError(f"{path}: {exc}")
    else:
        # OSError(errno, ...) picks the subclass (PermissionError, FileNotFoundError, ...)
        out = OSError(exc.errno, exc.strerror or os.strerror(exc.errno), path)
    out.__cause__ = None
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


# folders this process has swept clean (one listing each, not one per dump: a folder of 100k
# files would otherwise cost a directory scan on every dump into it)
_SWEPT: set[str] = set()
_SWEPT_MAX = 4096


def sweep_stale_temps(directory: str) -> list[str]:
    """Remove the temporary files that killed dumps left in ``directory``.

    Only files named like this host's dump temp files whose writing process no longer exists
    are removed: a dump in progress (in any process) is never touched. A folder is scanned
    once per process, and again only while it still holds another live writer's temp file.
    POSIX only.

    Returns
    -------
    list of str
        The paths removed.
    """
    removed: list[str] = []
    if os.name != "posix" or directory in _SWEPT:
        return removed
    try:
        entries = list(os.scandir(directory or "."))
    except OSError:
        return removed
    me = os.getpid()
    in_use = False
    for entry in entries:
        if not entry.name.endswith(_TEMP_SUFFIX):
            continue
        m = _TEMP_RE.match(entry.name)
        if m is None or m.group(2) != _HOST_TAG:
            continue
        pid = int(m.group(1))
        if pid == me or _pid_alive(pid):
            in_use = in_use or pid != me
            continue
        try:
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(entry.path)
    if removed:  # one record per sweep (logging only: dump never prints)
        _log.info(
            "dump: removed %d temporary file(s) left by interrupted dumps in %s",
            len(removed),
            directory or ".",
        )
    if not in_use:
        if len(_SWEPT) >= _SWEPT_MAX:  # bounded: Memory writes each entry in a new folder
            _SWEPT.clear()
        _SWEPT.add(directory)
    return removed


def write_file(value: Any, path: str, choice: codecs.Choice, fsync: bool = True) -> None:
    """Write ``value`` to ``path`` atomically: temp file in the same directory, fsync, rename.

    A reader (or a crash at any point) sees the old file, no file, or the complete new one.
    Without ``fsync`` the same holds for a killed process, but not for a power loss.
    """
    segments = serialize(value, choice)
    tmp = _temp_name(path)
    try:
        # O_EXCL: never clobber anything; mode 0o666 so the umask applies as for open()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
        os.close(os.open(tmp, flags, 0o666))
    except OSError as exc:
        raise user_path_error(exc, tmp, path) from None
    try:
        _core.write_container(tmp, segments, CHUNK_SIZE, fsync, codec_name=choice.name)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise user_path_error(exc, tmp, path) from None
        raise
    directory = os.path.dirname(os.path.abspath(path))
    if fsync:
        _fsync_dir(directory)
    sweep_stale_temps(directory)


def _fsync_dir(directory: str) -> None:
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(value: Any, choice: codecs.Choice) -> bytes:
    """The container holding ``value``, in memory."""
    segments = serialize(value, choice)
    out: bytes = _core.write_container(None, segments, CHUNK_SIZE, False, codec_name=choice.name)
    return out


def frombuffer(buf: Any, dtype: Any, shape: Any, order: Any, axis_order: Any = None) -> Any:
    """numpy's ``_frombuffer`` that keeps ``np.memmap`` buffers as ``np.memmap`` arrays."""
    import numpy as np

    base, readonly = buf, False
    if isinstance(buf, memoryview):
        base, readonly = buf.obj, buf.readonly
    dtype = np.dtype(dtype)
    if isinstance(base, np.memmap) and dtype.itemsize and base.size % dtype.itemsize == 0:
        arr = base.view(dtype)
    else:
        arr = np.frombuffer(buf, dtype=dtype)
    if order == "K" and axis_order is not None:
        arr = arr.reshape(shape, order="C").transpose(axis_order)
    else:
        arr = arr.reshape(shape, order=order)
    if readonly and arr.flags.writeable:
        arr.flags.writeable = False
    return arr


def _empty(n: int) -> Any:
    """``n`` writable bytes, not zero-filled: their pages cost memory only once written."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is optional for arrays-free data
        return bytearray(n)
    return np.empty(n, dtype=np.uint8)


def native_order(arr: Any) -> Any:
    """``arr`` in the host's byte order (a swapped copy when it is not): joblib's
    ``ensure_native_byte_order``."""
    from .joblib_compat import ensure_native  # joblib's rule, structured dtypes included

    return ensure_native(arr)


def _frombuffer_native(*args: Any) -> Any:
    return native_order(frombuffer(*args))


class _Unpickler(pickle.Unpickler):
    """The C unpickler, with numpy's array reconstructor swapped for :func:`frombuffer` (or
    one that also swaps to native byte order) and, in safe mode, every other global checked
    against :mod:`.safe`."""

    def __init__(
        self, file: Any, buffers: list, safe: Optional[SafeGlobals], native: bool = False
    ) -> None:
        super().__init__(file, buffers=buffers)
        self._safe = safe
        self._native = native

    def find_class(self, module: str, name: str) -> Any:
        if self._safe is not None:
            found = self._safe.find_class(module, name)
            if self._native and name == "_frombuffer":
                return lambda *args: native_order(found(*args))
            return found
        if name == "_frombuffer" and module in ("numpy.core.numeric", "numpy._core.numeric"):
            return _frombuffer_native if self._native else frombuffer
        return super().find_class(module, name)


class ContainerFile:
    """Reads one container (a file or bytes) back into the object it holds."""

    def __init__(self, path: Optional[str], data: Any = None) -> None:
        self.path = path
        if path is not None:
            self.reader = _core.ContainerReader.open(path)
        else:
            self.reader = _core.ContainerReader.from_buffer(data)
        self.segments = self.reader.segments()
        self.codec_name: Optional[str] = self.reader.codec_name
        if any(seg[0] == codecs.EXTERNAL for seg in self.segments):
            codecs.registered(self.codec_name, path)  # a clear error before reading anything

    def _corrupt(self, reason: str) -> CorruptFileError:
        return CorruptFileError(self.path, reason)

    def _decode_stdlib(self, index: int, codec: int, dst: Any, verify: bool) -> None:
        out = memoryview(dst).cast("B")
        jobs = []
        pos = 0
        for k, (_off, stored, raw) in enumerate(self.reader.chunks(index)):
            jobs.append((k, stored, raw, pos))
            pos += raw

        def one(job: tuple) -> None:
            k, stored, raw, at = job
            data = self.reader.read_stored(index, k, verify)  # digest of the stored bytes
            if stored != raw:
                data = codecs.decompress(codec, data, raw, self.codec_name)
            out[at : at + raw] = data

        # a registered codec may raise anything on damaged input
        errors: Any = Exception
        if codec != codecs.EXTERNAL:
            errors = (ValueError, OSError, EOFError, zlib.error, lzma.LZMAError)
        try:
            list(codecs.pool().map(one, jobs))
        except CorruptFileError:
            raise
        except errors as exc:
            raise self._corrupt(f"segment {index}: compressed data is damaged ({exc})") from exc

    def _read(self, targets: list, verify: bool) -> None:
        fast = []
        for index, dst in targets:
            codec = self.segments[index][0]
            if codec in (codecs.NONE, codecs.LZ4):
                fast.append((index, dst))
            else:
                self._decode_stdlib(index, codec, dst, verify)
        if fast:
            self.reader.read_into(fast, verify)

    def load(
        self,
        mmap_mode: Optional[str],
        allow_pickle: bool,
        verify: Optional[bool],
        native: bool = False,
    ) -> Any:
        """Unpickle the object; see :func:`joblite.load` for ``mmap_mode`` and ``verify``;
        ``native`` swaps arrays to the host's byte order."""
        try:
            return self._load(mmap_mode, allow_pickle, verify, native)
        except CorruptFileError as exc:
            if self.reader.flags & _FLAG_LEGACY_MAPPED and "checksum" in exc.reason:
                raise CorruptFileError(self.path, exc.reason + _LEGACY_HINT) from exc
            raise

    def _load(
        self, mmap_mode: Optional[str], allow_pickle: bool, verify: Optional[bool], native: bool
    ) -> Any:
        segs = self.segments
        # Stored bytes are checked before any output is allocated: a damaged chunk claiming a
        # large decoded size then costs nothing. (Uncompressed data is as large as it claims,
        # bounded by the file; it is verified while it is read.)
        compressed = [i for i, s in enumerate(segs) if s[0] != codecs.NONE and s[4]]
        if verify is False:
            compressed = [i for i in compressed if i == 0]  # the pickle stream, always
        if compressed:
            self.reader.verify_stored(compressed)
        stream = _empty(segs[0][4])
        self._read([(0, stream)], True)  # the pickle stream is always verified
        mapped_writable = bool(self.reader.flags & _FLAG_MAPPED_WRITABLE)
        buffers: list[Any] = []
        if len(segs) > 1:
            buffers = self._read_buffers(mmap_mode, verify, mapped_writable)
        return unpickle_stream(stream, buffers, self.path, allow_pickle, mmap_mode, native)

    def _read_buffers(
        self, mmap_mode: Optional[str], verify: Optional[bool], mapped_writable: bool
    ) -> list:
        import numpy as np

        # what is read is verified unless verify=False; what is mapped only if verify=True
        verify_read = verify is not False
        verify_mapped = verify is True and not mapped_writable
        segs = self.segments
        mm = None
        if mmap_mode is not None and self.path is not None:
            if any(s[0] == codecs.NONE and s[4] > 0 for s in segs[1:]):
                mode = "r+" if mmap_mode == "w+" else mmap_mode
                if mode == "r+":
                    _core.mark_mapped_writable(self.path)
                    mapped_writable = True
                mm = np.memmap(self.path, dtype=np.uint8, mode=mode)
        buffers: list[Any] = []
        targets: list[tuple[int, Any]] = []
        unverified: list[tuple[int, Any]] = []
        for index, (codec, _shuffle, offset, _stored, raw) in enumerate(segs[1:], 1):
            if mm is not None and codec == codecs.NONE:
                if raw:
                    view = mm[offset : offset + raw]
                    view.offset = offset  # where this array's bytes start in the file
                else:  # a slice of nothing is no longer a memmap
                    view = np.memmap(self.path, np.uint8, mm.mode, offset, (0,))
                buffers.append(view)
                if verify_mapped:
                    self.reader.verify(index, view)
                continue
            dst = np.empty(raw, dtype=np.uint8)
            # mmap_mode='r' promises read-only arrays, decompressed ones included
            buffers.append(memoryview(dst).toreadonly() if mmap_mode == "r" else dst)
            if codec == codecs.NONE and mapped_writable:
                unverified.append((index, dst))
            else:
                targets.append((index, dst))
        self._read(targets, verify_read)
        self._read(unverified, False)
        return buffers


def unpickle_stream(
    stream: Any,
    buffers: list[Any],
    path: Optional[str],
    allow_pickle: bool,
    mmap_mode: Optional[str],
    native: bool,
) -> Any:
    """Rebuild a dump's object from its verified pickle stream and buffers (both formats).

    The stream passed its checksum, so an unpickling error means a forged file (or a bug):
    it still comes out as ``CorruptFileError`` naming ``path``, never a raw KeyError.
    """
    try:
        if allow_pickle and mmap_mode is None and not native:
            return pickle.loads(stream, buffers=buffers)
        safe = None if allow_pickle else SafeGlobals()
        value = _Unpickler(io.BytesIO(stream), buffers, safe, native).load()
        if safe is not None:
            safe.check()
        return value
    except (Warning, UnsafeLoadError, CorruptFileError, ImportError, AttributeError):
        raise  # a global that cannot be imported is no damage (a class that moved)
    except DAMAGE as exc:
        reason = f"the pickle stream is not valid ({type(exc).__name__}: {exc})"
        raise CorruptFileError(path, reason) from exc
