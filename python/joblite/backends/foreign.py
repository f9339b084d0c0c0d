"""Backends written for joblib's interface, driven through joblite's.

joblib's backends take a callable and a completion callback (``submit(func, callback)``
then ``retrieve_result_callback(out)``, or the older ``apply_async(func, callback)`` then
``retrieve_result(out)``) and are told about each call (``configure(n_jobs, parallel,
...)``, ``start_call``, ``stop_call``). :class:`JoblibInterfaceBackend` wraps such a backend
so that the dispatch loop sees a joblite backend handing out futures.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from concurrent.futures import Future
from typing import Any, Optional

from .base import BatchedCalls, Nesting, ParallelBackendBase


def speaks_joblib(backend: Any) -> bool:
    """Whether ``backend`` implements joblib's interface rather than joblite's."""
    if not isinstance(backend, ParallelBackendBase):
        return callable(getattr(backend, "submit", None)) or callable(
            getattr(backend, "apply_async", None)
        )
    cls = type(backend)
    if cls.submit is ParallelBackendBase.submit:
        return callable(getattr(cls, "apply_async", None))
    try:
        return "callback" in inspect.signature(cls.submit).parameters
    except (TypeError, ValueError):
        return False


def as_driver(backend: Any) -> ParallelBackendBase:
    """The joblite backend that runs the batches of ``backend`` (itself, or a wrapper)."""
    if speaks_joblib(backend):
        return JoblibInterfaceBackend(backend)
    if not isinstance(backend, ParallelBackendBase):
        raise TypeError(
            f"backend={backend!r} is neither a registered name nor a backend: implement"
            " joblite.ParallelBackendBase (submit) or joblib's interface (submit with a"
            " callback, or apply_async)"
        )
    return backend


def _get(job: Any, timeout: Optional[float] = None) -> Any:
    getter = getattr(job, "get", None)
    if getter is None:  # a concurrent.futures.Future
        return job.result(timeout)
    return getter(timeout=timeout) if timeout is not None else getter()


class JoblibInterfaceBackend(ParallelBackendBase):
    """Drives a backend written for joblib's ``ParallelBackendBase`` interface.

    Parameters
    ----------
    backend : object
        The joblib-style backend (an instance of a subclass of joblib's or joblite's
        ``ParallelBackendBase``, or any object with the same methods).
    """

    name = "joblib-interface"
    uses_processes = True  # abort_everything is the backend's to decide: always call it

    def __init__(self, backend: Any) -> None:
        level = getattr(backend, "nesting_level", None)
        super().__init__(level, getattr(backend, "inner_max_num_threads", None))
        self.backend = backend
        self.parallel: Any = None  # the Parallel driving this call (given to configure)
        self.default_n_jobs = getattr(backend, "default_n_jobs", 1)
        self.uses_threads = bool(getattr(backend, "uses_threads", False))
        self.supports_sharedmem = bool(getattr(backend, "supports_sharedmem", False))
        self.supports_inner_max_num_threads = bool(
            getattr(backend, "supports_inner_max_num_threads", False)
        )
        self._with_callback = bool(getattr(backend, "supports_retrieve_callback", False))
        own_submit = getattr(type(backend), "submit", None)
        # a subclass of joblite's class with only apply_async: call that
        self._use_apply_async = own_submit is None or own_submit is ParallelBackendBase.submit
        self._started = False

    def __repr__(self) -> str:
        return repr(self.backend)

    def effective_n_jobs(self, n_jobs: int) -> int:
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        return max(int(self.backend.effective_n_jobs(n_jobs)), 1)

    def configure(self, n_jobs: int = 1, **kwargs: Any) -> int:
        parallel = self.parallel
        options = {
            "prefer": getattr(parallel, "prefer", None),
            "require": getattr(parallel, "require", None),
            "temp_folder": kwargs.get("temp_folder"),
            "max_nbytes": kwargs.get("max_nbytes"),
            "mmap_mode": kwargs.get("mmap_mode"),
            "verbose": max(0, int(getattr(parallel, "verbose", 0)) - 50),
        }
        configured = self.backend.configure(n_jobs=n_jobs, parallel=parallel, **options)
        self.n_jobs = max(int(configured or 1), 1)
        return self.n_jobs

    def start_call(self) -> None:
        start = getattr(self.backend, "start_call", None)
        if start is not None:
            start()
        self._started = True

    def stop_call(self) -> None:
        if not self._started:
            return
        self._started = False
        stop = getattr(self.backend, "stop_call", None)
        if stop is not None:
            stop()

    def retrieval_context(self) -> Any:
        context = getattr(self.backend, "retrieval_context", None)
        return context() if context is not None else contextlib.nullcontext()

    def submit(self, batch: BatchedCalls, **kwargs: Any) -> Future:
        backend = self.backend
        result: Future = Future()
        schedule = backend.apply_async if self._use_apply_async else backend.submit
        if self._with_callback:

            def callback(out: Any) -> None:
                if not result.set_running_or_notify_cancel():
                    return
                try:
                    value = backend.retrieve_result_callback(out)
                except BaseException as error:  # handed to the caller through the future
                    result.set_exception(error)
                else:
                    result.set_result(value)

            schedule(batch, callback=callback)
            return result
        # Older backends: completion is known by waiting on what apply_async returned
        # (a pool's callback is not called on errors), one waiting thread per batch.
        job = schedule(batch, callback=None)

        def wait() -> None:
            try:
                retrieve = getattr(backend, "retrieve_result", None)
                value = retrieve(job) if retrieve is not None else _get(job)
            except BaseException as error:
                if result.set_running_or_notify_cancel():
                    result.set_exception(error)
            else:
                if result.set_running_or_notify_cancel():
                    result.set_result(value)

        threading.Thread(target=wait, name="joblite-joblib-backend", daemon=True).start()
        return result

    def terminate(self) -> None:
        self.stop_call()
        terminate = getattr(self.backend, "terminate", None)
        if terminate is not None:
            terminate()

    def abort_everything(self, ensure_ready: bool = True) -> None:
        abort = getattr(self.backend, "abort_everything", None)
        if abort is not None:
            abort(ensure_ready=ensure_ready)

    def get_nested_backend(self) -> Optional[Nesting]:
        # joblib's answer is a backend instance of its own; joblite's rule is the same
        # (threads at the first level, sequential below) with the cap on n_jobs.
        return ParallelBackendBase.get_nested_backend(self)
