"""How batches and results travel between the caller and process workers.

Both directions are pickled with cloudpickle (lambdas, closures and ``__main__``
functions work), except numpy arrays larger than ``max_nbytes``: those are written once
to a shared-memory folder with :func:`joblite.dump` and memory-mapped on the other side
with :func:`joblite.load`, so they never go through a pipe.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import importlib
import io
import os
import pickle
import shutil
import sys
import tempfile
import threading
import time
import uuid
import weakref
from typing import Any, Optional

import cloudpickle

from .. import _files
from .base import BatchedCalls, RemoteError, tick

_SHM = "/dev/shm"
_SHM_MIN_FREE = 2 * 1024**3  # use /dev/shm only when it has room for real work
_PREFIX = "joblite_"

_live_folders: set[str] = set()
_live_lock = threading.Lock()
_swept = False


def parse_nbytes(value: Any) -> Optional[int]:
    """``'1M'``-style sizes (K, M, G: powers of 1024) or ints to bytes; ``None`` stays."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"max_nbytes must be >= 0, got {value}")
        return value
    if isinstance(value, str):
        text = value.strip().upper()
        units = {"K": 1024, "M": 1024**2, "G": 1024**3}
        try:
            if text and text[-1] in units:
                return int(float(text[:-1]) * units[text[-1]])
            return int(text)
        except ValueError:
            pass
    raise ValueError(f"max_nbytes must be an int, None or a size like '1M', got {value!r}")


def _base_folder(temp_folder: Optional[str]) -> str:
    if temp_folder is None:
        temp_folder = os.environ.get("JOBLITE_TEMP_FOLDER") or os.environ.get("JOBLIB_TEMP_FOLDER")
    if temp_folder is not None:
        return os.path.expanduser(os.fspath(temp_folder))
    try:
        stat = os.statvfs(_SHM)
        if os.access(_SHM, os.W_OK) and stat.f_bavail * stat.f_frsize >= _SHM_MIN_FREE:
            return _SHM
    except OSError:
        pass
    return tempfile.gettempdir()


def _sweep_stale(base: str) -> None:
    """Remove folders left by joblite processes that were killed before cleaning up."""
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        if not name.startswith(_PREFIX):
            continue
        pid_text = name[len(_PREFIX) :].split("_", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        if not _files.pid_alive(int(pid_text)):
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)


class SharedFolder:
    """The folder of one Parallel call holding its large arrays, removed by :meth:`cleanup`.

    The same array object passed to many tasks (or, in a ``with Parallel(...)`` block, to
    consecutive calls) is written once, as long as its content is provably the one in the
    file: each time it is sent again it is compared byte for byte with the file (or, where
    workers may write into the file, with the content hash taken when it was written).
    Anything else, even one changed element, writes a new file: never stale data.

    In a ``with Parallel(...)`` block the folder outlives each call: :meth:`end_call`
    then deletes the files of the arrays the call did not send, and of those that no
    longer exist, so that a loop of calls over new arrays holds one call's arrays at most
    (joblib #1351: the folder grew by each call's arrays until the block ended).
    """

    def __init__(self, temp_folder: Optional[str] = None) -> None:
        global _swept
        base = _base_folder(temp_folder)
        if not _swept:
            _swept = True
            _sweep_stale(base)
        self.path = tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}_", dir=base)
        with _live_lock:
            _live_folders.add(self.path)
        # id(array) -> (a weak reference to the array, its file's content: a read-only
        # map or a hash, path, the tick() when the file was last known equal to the
        # array). Weak: the folder must not keep the caller's arrays alive between calls.
        self._stored: dict[int, tuple[Any, Any, str, int]] = {}
        # ids of the arrays sent since the last end_call()
        self._used: set[int] = set()
        # Seconds spent comparing and writing arrays so far: the cost of sending a batch
        # that does not grow with its number of tasks (auto-batching amortizes it).
        self.seconds = 0.0
        # Arrays sent so far, counted once per batch that refers to them (pickle memo).
        self.sent = 0

    def store(
        self, array: Any, mmap_mode: Any = "r", created: Optional[int] = None, owner: Any = None
    ) -> str:
        """The path of a file holding ``array``'s content (written when needed).

        ``created``: a :func:`~joblite.backends.base.tick` taken once every task sending
        the array existed. When the file was last found equal to the array after that,
        it holds the array as it was at a moment after those tasks were created (what a
        task may see, as when joblib pickles a batch after dispatching it): no compare.

        ``owner``: for a byte view of an Arrow buffer, the buffer. pyarrow makes a new
        Python object for the same memory each time a frame is pickled, so such views
        are known by the address and size of their memory, and the folder holds the
        buffer (that memory cannot be given to other data while it is known here).
        """
        self.sent += 1
        if owner is None:
            key: Any = id(array)
            same = self._same_object
        else:
            key = ("buffer", owner.address, owner.size)
            same = self._alive
        self._used.add(key)
        known = self._stored.get(key)
        if known is not None and same(known[0], array) and known[1] is not None:
            if created is not None and created < known[3]:
                return known[2]  # the common case, first and cheap
        start = time.perf_counter()
        try:
            return self._store(array, mmap_mode, key, known, same, owner)
        finally:
            self.seconds += time.perf_counter() - start

    @staticmethod
    def _same_object(ref: Any, array: Any) -> bool:
        return ref() is array

    @staticmethod
    def _alive(ref: Any, array: Any) -> bool:
        return ref() is not None

    def _store(
        self, array: Any, mmap_mode: Any, key: Any, known: Any, same: Any, owner: Any
    ) -> str:
        from ..hashing import hash as content_hash
        from ..persistence import dump, load

        # Workers can write into the file with "r+"/"w+": compare with a hash taken when
        # it was written. Otherwise the file never changes: compare with the file itself
        # (memory speed, and exact).
        by_hash = mmap_mode in ("r+", "w+")
        if known is not None and same(known[0], array) and known[1] is not None:
            ref, content, path, _ = known
            now = tick()
            if content_hash(array) == content if by_hash else _same_bytes(array, content):
                self._stored[key] = (ref, content, path, now)
                return path
        now = tick()
        path = os.path.join(self.path, f"{uuid.uuid4().hex}.arg")
        # lives for one call: never worth a flush to disk
        dump(_plain_array(array), path, fsync=False)
        content = None
        if array.flags.c_contiguous or array.flags.f_contiguous:
            content = content_hash(array) if by_hash else load(path, mmap_mode="r")
        # A file replaced by a newer one of the same array stays until end_call(): batches
        # already sent may still name it.
        ref = weakref.ref(array) if owner is None else functools.partial(_identity, owner)
        self._stored[key] = (ref, content, path, now)
        return path

    def end_call(self) -> None:
        """One call ended: delete the files no longer worth keeping for the next call.

        Every batch of the call is done, so no worker will map these files again. A
        file stays when its array still exists and the call sent it (the next call of a
        ``with Parallel(...)`` block that sends the same array again reuses it).
        """
        used, self._used = self._used, set()
        kept = {}
        for key, entry in self._stored.items():
            if key in used and entry[0]() is not None:
                kept[key] = entry
        keep_paths = {entry[2] for entry in kept.values()}
        self._stored = kept
        try:
            names = os.listdir(self.path)
        except OSError:
            return
        for name in names:
            path = os.path.join(self.path, name)
            if name.endswith(".arg") and path not in keep_paths:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def cleanup(self) -> None:
        self._stored.clear()
        shutil.rmtree(self.path, ignore_errors=True)
        with _live_lock:
            _live_folders.discard(self.path)


def _after_fork_in_child() -> None:
    """A forked child neither deletes its parent's folders at its exit nor waits on a lock
    a parent's thread held at the fork; its parent's map watcher does not run here."""
    global _live_lock, _maps_lock, _watcher
    _live_lock = threading.Lock()
    _live_folders.clear()
    _maps_lock = threading.Lock()
    _watcher = None


@atexit.register
def _cleanup_all() -> None:
    with _live_lock:
        folders = list(_live_folders)
        _live_folders.clear()
    for path in folders:
        shutil.rmtree(path, ignore_errors=True)


def _identity(obj: Any) -> Any:
    return obj


def _memcmp() -> Any:
    try:
        libc = ctypes.CDLL(None) if sys.platform != "win32" else ctypes.cdll.msvcrt
        memcmp = libc.memcmp
    except (OSError, AttributeError):
        return None
    memcmp.restype = ctypes.c_int
    memcmp.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    return memcmp


_MEMCMP = _memcmp()
_COMPARE_CHUNK = 1 << 20


def _same_bytes(array: Any, mapped: Any) -> bool:
    """Whether two contiguous arrays of one layout hold the same bytes (NaNs included)."""
    if (
        array.shape != mapped.shape
        or array.dtype != mapped.dtype
        or array.strides != mapped.strides
        or not (array.flags.c_contiguous or array.flags.f_contiguous)
    ):
        return False
    if _MEMCMP is not None:  # ~10 GB/s, the GIL released by ctypes
        return _MEMCMP(array.ctypes.data, mapped.ctypes.data, array.nbytes) == 0
    import numpy as np

    left = array.reshape(-1, order="A").view(np.uint8)
    right = mapped.reshape(-1, order="A").view(np.uint8)
    return all(
        np.array_equal(left[i : i + _COMPARE_CHUNK], right[i : i + _COMPARE_CHUNK])
        for i in range(0, left.size, _COMPARE_CHUNK)
    )


def _plain_array(array: Any) -> Any:
    """An ``np.memmap`` as a plain array view: numpy pickles a memmap in native byte
    order whatever its dtype says, so a ``>i4`` map would come back as ``=i4``."""
    np = sys.modules.get("numpy")
    if np is not None and isinstance(array, np.memmap):
        return array.view(np.ndarray)
    return array


def _array_bytes(array: Any) -> tuple:
    import numpy as np

    array = np.ascontiguousarray(array)
    return (bytearray(array.view(np.uint8).reshape(-1)), array.dtype, array.shape)


def _array_from_bytes(data: bytearray, dtype: Any, shape: tuple) -> Any:
    """A writable array over ``data`` (a bytearray: no copy)."""
    import numpy as np

    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _is_large_array(obj: Any, max_nbytes: int) -> bool:
    np = sys.modules.get("numpy")
    if np is None or type(obj) not in (np.ndarray, np.memmap):
        return False
    return obj.nbytes > max_nbytes and not obj.dtype.hasobject


class _ArgumentPickler(cloudpickle.Pickler):
    def __init__(
        self,
        file: Any,
        folder: SharedFolder,
        max_nbytes: int,
        mmap_mode: Any,
        created: Optional[int] = None,
    ) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._folder = folder
        self._max_nbytes = max_nbytes
        self._mmap_mode = mmap_mode
        self._created = created

    def reducer_override(self, obj: Any) -> Any:
        if _is_large_array(obj, self._max_nbytes):
            path = self._folder.store(obj, self._mmap_mode, self._created)
            return load_argument, (path, self._mmap_mode)
        if _is_large_arrow_buffer(obj, self._max_nbytes):
            # The buffers of Arrow-backed data (pandas' str columns, pyarrow tables,
            # polars frames sent as Arrow) take the arrays' path: a read-only map
            # in the worker, wrapped again as a buffer without a copy.
            import numpy as np

            view = np.frombuffer(obj, dtype=np.uint8)
            path = self._folder.store(view, "r", self._created, owner=obj)
            return load_arrow_buffer, (path,)
        pandas_arrays = sys.modules.get("pandas.arrays")
        if pandas_arrays is not None and isinstance(
            obj, getattr(pandas_arrays, "ArrowExtensionArray", ())
        ):
            state = _pandas_arrow_state(obj, self._max_nbytes)
            if state is not None:
                return restore_state, (type(obj), state)
        polars = sys.modules.get("polars")
        if polars is not None and type(obj) in (polars.DataFrame, polars.Series):
            arrow = _polars_as_arrow(polars, obj)
            if arrow is not None:
                return polars_from_arrow, arrow
        return super().reducer_override(obj)


def _is_large_arrow_buffer(obj: Any, max_nbytes: int) -> bool:
    pa = sys.modules.get("pyarrow")
    if pa is None or not isinstance(obj, pa.Buffer) or obj.size <= max_nbytes:
        return False
    return (
        "numpy" in sys.modules
    )  # the file is written as a byte array (pyarrow >= 16 has no numpy)


def _polars_as_arrow(polars: Any, frame: Any) -> Optional[tuple]:
    """Arguments of :func:`polars_from_arrow` giving ``frame`` back, or None.

    polars pickles a frame as one IPC byte string, copied into every batch; as Arrow
    data (no copy), its large buffers go through shared memory like numpy arrays. Only
    when the frame comes back from Arrow with the same schema (else: polars' pickle).
    """
    if frame.estimated_size() < 1 << 20:
        return None  # small: polars' own pickle is as good
    try:
        try:  # polars' own layout (string views): no conversion, no copy
            arrow = frame.to_arrow(compat_level=polars.CompatLevel.newest())
        except (AttributeError, TypeError):  # polars < 1.1
            arrow = frame.to_arrow()
        is_series = isinstance(frame, polars.Series)
        name = frame.name if is_series else None
        back = polars_from_arrow(arrow, name)
        if is_series:
            same = back.dtype == frame.dtype and back.name == frame.name
        else:
            same = back.schema == frame.schema
    except Exception:  # e.g. object columns: polars' pickle
        return None
    return (arrow, name) if same else None


def polars_from_arrow(arrow: Any, name: Optional[str]) -> Any:
    """A polars frame (``name`` None) or series from Arrow data, without a copy."""
    import polars

    frame: Any = polars.from_arrow(arrow)
    return frame if name is None else frame.alias(name)


def _pandas_arrow_state(array: Any, max_nbytes: int) -> Optional[dict]:
    """The pickled state of a large Arrow-backed pandas array, its chunks as they are.

    pandas' own pickle combines the chunks into a new Arrow array, a copy of the column
    at a new address each time: its buffers could never be recognised as already shared.
    """
    state = getattr(array, "__dict__", None)
    if not isinstance(state, dict) or "_pa_array" not in state or array.nbytes <= max_nbytes:
        return None
    state = dict(state)
    state["_cache"] = {}  # as pandas: cached properties are recomputed
    return state


def restore_state(cls: Any, state: dict) -> Any:
    """Worker side: an object of ``cls`` given ``state`` by its ``__setstate__``."""
    obj = cls.__new__(cls)
    obj.__setstate__(state)
    return obj


def load_arrow_buffer(path: str) -> Any:
    """Worker side: an Arrow buffer over the read-only map of a shared file."""
    pa: Any = importlib.import_module("pyarrow")  # typed Any: pyarrow ships no stubs
    return pa.py_buffer(load_argument(path, "r"))


class _ResultPickler(cloudpickle.Pickler):
    def __init__(self, file: Any, folder: str, max_nbytes: int) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._folder = folder
        self._max_nbytes = max_nbytes

    def reducer_override(self, obj: Any) -> Any:
        if _is_large_array(obj, self._max_nbytes):
            if type(obj) is not type(_plain_array(obj)):
                # A map of a worker's file (an argument given back) comes back as a plain
                # writable array in memory, as joblib does (numpy's own memmap pickle would
                # also lose a non-native byte order).
                return _array_from_bytes, _array_bytes(obj)
            from ..persistence import dump

            path = os.path.join(self._folder, f"{uuid.uuid4().hex}.res")
            dump(obj, path, fsync=False)
            return load_result, (path,)
        return super().reducer_override(obj)


def dumps_batch(
    batch: BatchedCalls,
    folder: Optional[SharedFolder],
    max_nbytes: Optional[int],
    mmap_mode: Any,
) -> bytes:
    """Pickle a batch for a process worker (large arrays into ``folder``)."""
    if folder is None or max_nbytes is None:
        return cloudpickle.dumps((batch, None, None), protocol=pickle.HIGHEST_PROTOCOL)
    buffer = io.BytesIO()
    pickler = _ArgumentPickler(buffer, folder, max_nbytes, mmap_mode, batch.created)
    pickler.dump((batch, folder.path, max_nbytes))
    return buffer.getvalue()


# Worker side: read-only maps stay open across batches, because mapping an array again
# costs more than summing it (page faults). A watcher thread drops a map within a second
# of the caller deleting its file, so idle workers never pin shared memory.
_maps: dict[str, Any] = {}
_maps_lock = threading.Lock()
_watcher: Optional[threading.Thread] = None
# the arrays the batch being unpickled was given (see run_payload)
_batch_arrays: list[Any] = []


def _watch_maps() -> None:
    while True:
        time.sleep(1.0)
        with _maps_lock:
            for path in [p for p in _maps if not os.path.exists(p)]:
                del _maps[path]


def load_argument(path: str, mmap_mode: Any) -> Any:
    """Worker side: map a shared argument (once per batch anyway: pickle memo)."""
    global _watcher
    from ..persistence import load

    if mmap_mode != "r":  # writable or private maps must not be shared between tasks
        # The data is already in the file: "w+" (create) means "r+" (read-write) here.
        array = load(path, mmap_mode="r+" if mmap_mode == "w+" else mmap_mode)
        _batch_arrays.append(array)
        return array
    with _maps_lock:
        array = _maps.get(path)
    if array is None:
        array = load(path, mmap_mode="r")
        with _maps_lock:
            _maps[path] = array
        if _watcher is None:
            _watcher = threading.Thread(target=_watch_maps, name="joblite-maps", daemon=True)
            _watcher.start()
    _batch_arrays.append(array)
    return array


def load_result(path: str) -> Any:
    """Caller side: map a large result privately (writable) and unlink its file."""
    import numpy as np

    from ..persistence import load

    try:
        return np.asarray(load(path, mmap_mode="c"))
    finally:
        os.unlink(path)


def run_payload(payload: bytes) -> bytes:
    """Worker entry point: run one pickled batch, return its pickled outcome."""
    start = time.perf_counter()
    _batch_arrays.clear()
    try:
        batch, folder, max_nbytes = pickle.loads(payload)
        # two or more shared arrays: the batch runs its calls grouped by array (cache
        # locality, see BatchedCalls._grouped)
        shared = {id(a) for a in _batch_arrays} if len(_batch_arrays) > 1 else None
    finally:
        _batch_arrays.clear()
    try:
        results = batch(RemoteError.capture, shared)
        # with return_exceptions, say whether the caller must look for errors to unwrap
        has_errors = batch.return_exceptions and any(type(r) is RemoteError for r in results)
        outcome: tuple[bool, Any, float] = (True, (results, has_errors), 0.0)
    except BaseException as error:
        outcome = (False, RemoteError.capture(error), 0.0)
    outcome = (outcome[0], outcome[1], time.perf_counter() - start)
    return dumps_outcome(outcome, folder, max_nbytes)


def dumps_outcome(
    outcome: tuple[bool, Any, float], folder: Optional[str], max_nbytes: Any
) -> bytes:
    try:
        if folder is None or max_nbytes is None:
            return cloudpickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
        buffer = io.BytesIO()
        _ResultPickler(buffer, folder, max_nbytes).dump(outcome)
        return buffer.getvalue()
    except Exception as error:
        if outcome[0]:
            reason = f"a result of this batch could not be sent back: {error!r}"
        else:
            failed = outcome[1]
            try:  # the same type with its message, when that much can travel
                clone = type(failed.error)(*failed.error.args)
                return cloudpickle.dumps((False, RemoteError(clone, failed.text), outcome[2]))
            except Exception:
                pass
            reason = f"{type(failed.error).__name__}: {failed.error}\n{failed.text}"
        return cloudpickle.dumps((False, RemoteError(RuntimeError(reason), ""), outcome[2]))


def loads_outcome(data: bytes) -> tuple[list, float]:
    """Caller side: the batch's results and worker seconds, or raise its error."""
    ok, value, seconds = pickle.loads(data)
    if not ok:
        raise value.unwrap()
    results, has_errors = value
    if has_errors:
        results = [item.unwrap() if type(item) is RemoteError else item for item in results]
    return results, seconds


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
