"""Process backends: ``loky`` (the default) and ``multiprocessing``.

Both send each batch as one pickled payload (cloudpickle, large arrays through shared
memory, see ``_transport``) and keep their worker processes alive between calls. A
worker that dies turns into :class:`joblite.WorkerCrashedError`, and the next call
starts a fresh pool.
"""

from __future__ import annotations

import os
import pickle
import re
import signal
import sys
import threading
import warnings
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Optional

from ..exceptions import WorkerCrashedError
from . import _transport
from .base import BatchedCalls, ParallelBackendBase, cpu_count, nesting

# Idle workers live this long (seconds) before exiting, like joblib.
IDLE_WORKER_TIMEOUT = 300

_THREAD_LIMIT_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
# read by joblite's Rust core (see joblite.core_threads), named here to keep imports down
_CORE_THREADS_VAR = "JOBLITE_NUM_THREADS"


def _describe_exit_codes(codes: list[int]) -> str:
    described = []
    for code in sorted(set(codes)):
        if code < 0:
            try:
                described.append(f"killed by signal {signal.Signals(-code).name} ({code})")
            except ValueError:
                described.append(f"killed by signal {-code}")
        else:
            described.append(f"exited with status {code}")
    return ", ".join(described)


def crashed_error(
    error: BaseException, backend: str, codes: Optional[list[int]] = None
) -> Exception:
    """A :class:`WorkerCrashedError` that says how the worker died, when that is known."""
    what = ""
    if codes:
        what = _describe_exit_codes(codes)
    else:
        found = re.search(r"exit codes of the workers are \{(.*?)\}", str(error))
        if found:
            numbers = [int(n) for n in re.findall(r"\((-?\d+)\)", found.group(1))]
            what = _describe_exit_codes(numbers) if numbers else found.group(1)
    return WorkerCrashedError(
        f"A worker process of the {backend!r} backend died while running tasks"
        + (f" ({what})" if what else "")
        + ". Common causes: a segmentation fault in compiled code, the operating system"
        " killing the process for using too much memory, os._exit() or a signal sent to"
        " it. The remaining tasks were cancelled; the next Parallel call starts fresh"
        " workers."
    )


class _ProcessBackend(ParallelBackendBase):
    """What both process backends share: payloads, shared memory, crash reports."""

    uses_processes = True
    supports_inner_max_num_threads = True
    default_n_jobs = 1

    def __init__(
        self,
        nesting_level: Optional[int] = None,
        inner_max_num_threads: Optional[int] = None,
        initializer: Optional[Callable[..., Any]] = None,
        initargs: tuple = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(nesting_level, inner_max_num_threads, **kwargs)
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable, got {initializer!r}")
        self.initializer = initializer
        self.initargs = tuple(initargs)
        self._executor: Any = None
        self._folder: Optional[_transport.SharedFolder] = None
        self._temp_folder: Optional[str] = None
        self._max_nbytes: Optional[int] = None
        self._mmap_mode: Any = "r"

    def __getstate__(self) -> dict[str, Any]:
        # A copy (a pickled Parallel that has run) starts without this process's pool and
        # shared folder, as a fresh backend: it makes its own when it is configured.
        state = self.__dict__.copy()
        state["_executor"] = None
        state["_folder"] = None
        return state

    def effective_n_jobs(self, n_jobs: int) -> int:
        """joblib's rule, and 1 (with joblib's warning) where workers cannot start here."""
        n_jobs = super().effective_n_jobs(n_jobs)
        reason = self._nesting_refusal()
        if reason is None:
            return n_jobs
        if n_jobs != 1:
            warnings.warn(f"{reason}, setting n_jobs=1", UserWarning, stacklevel=3)
        return 1

    def _nesting_refusal(self) -> Optional[str]:
        """Why worker processes cannot be started here, or None (joblib's nesting rules)."""
        return None

    def worker_env(self, n_jobs: int) -> dict[str, str]:
        """Environment capping BLAS/OpenMP threads so workers x threads <= cores."""
        explicit = self.inner_max_num_threads
        n_threads = explicit or max(cpu_count() // n_jobs, 1)
        names = (*_THREAD_LIMIT_VARS, _CORE_THREADS_VAR)  # joblite's own core threads too
        env = {name: str(n_threads) for name in names}
        if explicit is None:  # as joblib: a limit set in this process's environment stays
            env.update({name: os.environ[name] for name in names if name in os.environ})
        return env

    def configure(
        self,
        n_jobs: int = 1,
        temp_folder: Optional[str] = None,
        max_nbytes: Any = "1M",
        mmap_mode: Any = "r",
        timeout: Optional[float] = None,
        **kwargs: Any,
    ) -> int:
        n_jobs = self.effective_n_jobs(n_jobs)
        self.n_jobs = n_jobs
        self._temp_folder = temp_folder
        self._max_nbytes = _transport.parse_nbytes(max_nbytes)
        self._mmap_mode = mmap_mode
        self._executor = self._get_executor(n_jobs, self.worker_env(n_jobs))
        if timeout is not None:
            # Starting processes must not count against the tasks' timeout: wait for
            # the workers to answer before the clock starts.
            futures = [self._executor.submit(int) for _ in range(n_jobs)]
            for future in futures:
                future.result()
        return n_jobs

    def submit(self, batch: BatchedCalls, **kwargs: Any) -> Future:
        if self._executor is None:
            raise RuntimeError(f"{type(self).__name__}.submit called before configure")
        if self._folder is None and self._max_nbytes is not None:
            self._folder = _transport.SharedFolder(self._temp_folder)
        sent_before = self._folder.seconds if self._folder is not None else 0.0
        arrays_before = self._folder.sent if self._folder is not None else 0
        try:
            payload = _transport.dumps_batch(batch, self._folder, self._max_nbytes, self._mmap_mode)
        except (pickle.PicklingError, TypeError, AttributeError) as error:
            raise pickle.PicklingError(
                f"Could not pickle the task to send it to the workers: {error}"
            ) from error
        except (OSError, MemoryError):
            raise  # writing shared arrays failed (e.g. /dev/shm full): say so, as it is
        except Exception as error:  # raised by a __reduce__ of the user's
            raise pickle.PicklingError(
                f"Could not pickle the task to send it to the workers: {error!r}"
            ) from error
        try:
            future = self._executor.submit(_transport.run_payload, payload)
        except (BrokenProcessPool, RuntimeError) as error:
            raise self._crashed(error) from error
        if self._folder is not None:  # see ParallelBackendBase.retrieve: send_seconds
            future.send_seconds = self._folder.seconds - sent_before  # type: ignore[attr-defined]
            future.shared_arrays = self._folder.sent - arrays_before  # type: ignore[attr-defined]
        return future

    def retrieve(self, future: Future) -> list:
        try:
            data = future.result()
        except BrokenProcessPool as error:
            raise self._crashed(error) from error
        results, future.duration = _transport.loads_outcome(data)  # type: ignore[attr-defined]
        return results

    def stop_call(self) -> None:
        # In a `with Parallel(...)` block the folder lives on: keep only what the next
        # call may reuse (joblib #1351).
        if self._folder is not None:
            self._folder.end_call()

    def terminate(self) -> None:
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def abort_everything(self, ensure_ready: bool = True) -> None:
        self._kill_executor()
        self._executor = None
        self.terminate()
        if ensure_ready:  # the same backend runs the next call of a `with Parallel` block
            self._executor = self._get_executor(self.n_jobs, self.worker_env(self.n_jobs))

    def _initializer_key(self) -> tuple:
        """What decides, with n_jobs and the environment, whether workers can be reused."""
        return (self.initializer, self.initargs)

    def _crashed(self, error: BaseException) -> Exception:
        codes = self._exit_codes()
        self._kill_executor()
        self._executor = None
        return crashed_error(error, self.name, codes)

    def _exit_codes(self) -> list[int]:
        # Let the pool's manager thread finish reaping its workers first, so the exit
        # codes are recorded (two threads reaping one child would lose the status).
        manager = getattr(self._executor, "_executor_manager_thread", None)
        if manager is not None and manager is not threading.current_thread():
            manager.join(timeout=5)
        processes = getattr(self._executor, "_processes", None) or {}
        codes = [p.exitcode for p in list(processes.values()) if p.exitcode is not None]
        # Workers the pool itself terminated after the crash show SIGTERM: not the cause.
        return [c for c in codes if c != -signal.SIGTERM] or codes

    def _get_executor(self, n_jobs: int, env: dict[str, str]) -> Any:
        raise NotImplementedError

    def _kill_executor(self) -> None:
        raise NotImplementedError


# One executor per backend kind and process, reused across calls while its settings
# (n_jobs, worker environment) stay the same.
_executors: dict[str, tuple[Any, Any]] = {}
_executors_lock = threading.Lock()
# a forked child's executors of its parent, never used nor shut down there
_inherited: list[Any] = []


def _after_fork_in_child() -> None:
    """A forked child starts its own workers: its parent's executors have no threads here
    (a call queued on one waited forever), and shutting one down could stop the parent's
    workers. They are kept, unused, for good; the lock may have been held at the fork."""
    global _executors_lock
    _executors_lock = threading.Lock()
    _inherited.extend(executor for executor, _ in _executors.values())
    _executors.clear()
    _forget_parents_workers()


def _forget_parents_workers() -> None:
    """Drop the parent's worker processes from :mod:`multiprocessing`'s table of children in
    a forked child: they are not its children, and the child's exit (multiprocessing's exit
    handler, Python 3.9 and 3.10 at least) would otherwise terminate the daemon ones, the
    parent's workers, under the parent's running call."""
    import multiprocessing.process as mp_process

    children = getattr(mp_process, "_children", None)
    if not isinstance(children, set):
        return
    pid = os.getpid()
    for child in list(children):
        if getattr(child, "_parent_pid", pid) != pid:
            children.discard(child)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _is_usable(executor: Any) -> bool:
    flags = getattr(executor, "_flags", None)
    if flags is not None:
        return not (flags.broken or flags.shutdown)
    return not (getattr(executor, "_broken", False) or getattr(executor, "_shutdown_thread", False))


def _same_key(old: Any, new: Any) -> bool:
    # loky's reuse rule: workers are reused when the settings compare equal (initargs
    # included, so the same manager proxy reuses them and another one does not).
    try:
        return bool(old == new)
    except Exception:  # e.g. numpy arrays in initargs: no truth value, so never equal
        return False


def _cached_executor(kind: str, key: Any, create: Any) -> Any:
    with _executors_lock:
        entry = _executors.get(kind)
        if entry is not None and _same_key(entry[1], key) and _is_usable(entry[0]):
            return entry[0]
        if entry is not None:
            entry[0].shutdown(wait=False)
        executor = create()
        _executors[kind] = (executor, key)
        return executor


def _forget_executor(kind: str, executor: Any) -> None:
    with _executors_lock:
        entry = _executors.get(kind)
        if entry is not None and entry[0] is executor:
            del _executors[kind]


class LokyBackend(_ProcessBackend):
    """Worker processes managed by loky: robust to crashes, no ``__main__`` guard needed.

    The executor is joblite's own (not loky's process-wide reusable one), so joblib and
    joblite used in one program do not keep restarting each other's workers.
    """

    name = "loky"

    def __init__(self, *args: Any, idle_worker_timeout: float = IDLE_WORKER_TIMEOUT, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # joblib's option of the same name: idle workers exit after this many seconds
        self.idle_worker_timeout = idle_worker_timeout

    def _nesting_refusal(self) -> Optional[str]:
        parent = nesting()
        if parent is None or parent[2] == 0:
            return None
        kind = parent[3] if len(parent) > 3 else None
        if kind == "multiprocessing":
            return "Loky-backed parallel loops cannot be called in a multiprocessing"
        if (
            kind in ("threading", "dask")
            and threading.current_thread() is not threading.main_thread()
        ):
            return "Loky-backed parallel loops cannot be nested below threads"
        return None

    def _get_executor(self, n_jobs: int, env: dict[str, str]) -> Any:
        def create() -> Any:
            from loky import ProcessPoolExecutor

            return ProcessPoolExecutor(
                max_workers=n_jobs,
                timeout=self.idle_worker_timeout,
                env=env,
                initializer=self.initializer,
                initargs=self.initargs,
            )

        key = (n_jobs, tuple(sorted(env.items())), self.idle_worker_timeout)
        return _cached_executor("loky", key + self._initializer_key(), create)

    def _kill_executor(self) -> None:
        executor = self._executor
        if executor is None:
            return
        _forget_executor("loky", executor)
        executor.shutdown(wait=False, kill_workers=True)


def _init_worker(
    env: dict[str, str], initializer: Optional[Callable[..., Any]] = None, initargs: tuple = ()
) -> None:
    os.environ.update(env)
    core = sys.modules.get("joblite._core")
    if core is not None:  # forked with the core loaded: a limit set in the parent is inherited
        core.set_thread_limit(int(env[_CORE_THREADS_VAR]))
    if "numpy" in sys.modules:  # forked after numpy started its thread pools
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=int(env["OMP_NUM_THREADS"]))
    if initializer is not None:
        initializer(*initargs)


_RECYCLING: Any = None


def _recycling_executor() -> Any:
    """:class:`concurrent.futures.ProcessPoolExecutor` that replaces every worker that exits
    after its ``max_tasks_per_child`` tasks.

    CPython (3.11 to 3.13, gh-115634) skips the replacement when a task completed earlier
    left an "idle worker" credit, though that worker may itself have exited since: with
    ``1 < max_tasks_per_child`` and more tasks than that per worker, the pool shrinks to no
    worker and the call waits forever. Here a missing worker is always started.
    """
    global _RECYCLING
    if _RECYCLING is None:
        from concurrent.futures import ProcessPoolExecutor

        class RecyclingProcessPoolExecutor(ProcessPoolExecutor):
            def _adjust_process_count(self) -> None:
                spawn = getattr(self, "_spawn_process", None)
                if not hasattr(self, "_processes") or spawn is None:  # a Python that changed
                    super()._adjust_process_count()  # type: ignore[misc]
                    return
                processes = self._processes
                if processes is None:
                    # shut down (``shutdown(wait=False)``) while the pool's manager thread was
                    # still handling a recycled worker: nothing to replace (CPython's own code
                    # raised ``TypeError: len(None)`` in that thread here)
                    return
                if len(processes) < self._max_workers:  # type: ignore[attr-defined]
                    spawn()
                else:
                    self._idle_worker_semaphore.acquire(blocking=False)  # type: ignore[attr-defined]

        _RECYCLING = RecyclingProcessPoolExecutor
    return _RECYCLING


class MultiprocessingBackend(_ProcessBackend):
    """Worker processes from the standard library (:mod:`multiprocessing`'s default
    start method), through :class:`concurrent.futures.ProcessPoolExecutor`."""

    name = "multiprocessing"
    # as joblib: BLAS threads are capped at cores // n_jobs, but not settable
    supports_inner_max_num_threads = False

    def __init__(
        self, *args: Any, context: Any = None, maxtasksperchild: Optional[int] = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.context = context  # a multiprocessing context (default: the default one)
        # joblib's worker recycling (multiprocessing.Pool's maxtasksperchild): a worker
        # exits after that many batches and a fresh one takes its place
        if maxtasksperchild is not None:
            if isinstance(maxtasksperchild, bool) or not isinstance(maxtasksperchild, int):
                raise TypeError(f"maxtasksperchild must be an int, got {maxtasksperchild!r}")
            if maxtasksperchild < 1:
                raise ValueError(f"maxtasksperchild must be >= 1, got {maxtasksperchild}")
            if sys.version_info < (3, 11):
                raise ValueError(
                    "maxtasksperchild needs Python 3.11 or later with joblite's"
                    " multiprocessing backend (concurrent.futures' max_tasks_per_child)"
                )
        self.maxtasksperchild = maxtasksperchild

    def _nesting_refusal(self) -> Optional[str]:
        parent = nesting()
        if parent is None or parent[2] == 0:
            return None
        kind = parent[3] if len(parent) > 3 else None
        if kind == "loky":
            return "Multiprocessing-backed parallel loops cannot be nested, below loky"
        if kind in ("threading", "dask"):
            return "Multiprocessing-backed parallel loops cannot be nested below threads"
        return "Multiprocessing-backed parallel loops cannot be nested"

    def _get_executor(self, n_jobs: int, env: dict[str, str]) -> Any:
        import multiprocessing

        context = self.context if self.context is not None else multiprocessing.get_context()
        recycle: dict[str, int] = {}
        if self.maxtasksperchild is not None:
            recycle["max_tasks_per_child"] = self.maxtasksperchild
            if context.get_start_method() == "fork":  # refused by concurrent.futures
                methods = multiprocessing.get_all_start_methods()
                context = multiprocessing.get_context(
                    "forkserver" if "forkserver" in methods else "spawn"
                )

        def create() -> Any:
            from concurrent.futures import ProcessPoolExecutor

            cls = _recycling_executor() if recycle else ProcessPoolExecutor
            return cls(
                max_workers=n_jobs,
                mp_context=context,
                initializer=_init_worker,
                initargs=(env, self.initializer, self.initargs),
                **recycle,
            )

        key = (
            n_jobs,
            tuple(sorted(env.items())),
            context,
            self.maxtasksperchild,
            *self._initializer_key(),
        )
        return _cached_executor("multiprocessing", key, create)

    def _kill_executor(self) -> None:
        executor = self._executor
        if executor is None:
            return
        _forget_executor("multiprocessing", executor)
        processes = getattr(executor, "_processes", None) or {}
        for process in list(processes.values()):
            try:
                process.kill()
            except (OSError, ValueError, AttributeError):
                pass
        executor.shutdown(wait=False, cancel_futures=True)
