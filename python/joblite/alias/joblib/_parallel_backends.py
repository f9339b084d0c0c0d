"""``joblib._parallel_backends``: the backend classes, joblite's, under joblib's names.

Backends written against this module (joblibspark's ``SparkDistributedBackend``, ...)
subclass joblite's :class:`~joblite.ParallelBackendBase` and implement joblib's
``apply_async(func, callback)``: joblite drives them through that interface.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from ...backends import ParallelBackendBase
from ...backends.processes import LokyBackend
from ...backends.processes import MultiprocessingBackend as _JobliteMultiprocessing
from ...backends.sequential import SequentialBackend
from ...backends.threads import ThreadingBackend

__all__ = [
    "AutoBatchingMixin",
    "FallbackToBackend",
    "LokyBackend",
    "MultiprocessingBackend",
    "ParallelBackendBase",
    "PoolManagerMixin",
    "SequentialBackend",
    "ThreadingBackend",
]


class AutoBatchingMixin:
    """joblib's mixin for automatic batch sizes. joblite's dispatch loop sizes batches
    itself for every backend, so these are joblib's attributes with nothing to do."""

    MIN_IDEAL_BATCH_DURATION = 0.2
    MAX_IDEAL_BATCH_DURATION = 2
    _DEFAULT_EFFECTIVE_BATCH_SIZE = 1
    _DEFAULT_SMOOTHED_BATCH_DURATION = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._effective_batch_size = self._DEFAULT_EFFECTIVE_BATCH_SIZE
        self._smoothed_batch_duration = self._DEFAULT_SMOOTHED_BATCH_DURATION

    def compute_batch_size(self) -> int:
        """The batch size joblib would use next (joblite's loop decides its own)."""
        return int(self._effective_batch_size)

    def batch_completed(self, batch_size: int, duration: float) -> None:
        """joblib's callback after each batch (unused by joblite's loop)."""

    def reset_batch_stats(self) -> None:
        """Forget the batch statistics."""
        self._effective_batch_size = self._DEFAULT_EFFECTIVE_BATCH_SIZE
        self._smoothed_batch_duration = self._DEFAULT_SMOOTHED_BATCH_DURATION


class FallbackToBackend(Exception):
    """Raised by a backend's ``configure`` to hand the call to another backend."""

    def __init__(self, backend: Any) -> None:
        super().__init__(backend)
        self.backend = backend


class PoolManagerMixin:
    """joblib's mixin for backends that run batches on a ``multiprocessing.Pool``-like
    object a subclass's ``configure`` puts in ``self._pool`` (Ray's ``RayBackend``)."""

    _pool: Any = None

    def _get_pool(self) -> Any:
        return self._pool

    def apply_async(self, func: Any, callback: Any = None) -> Any:
        """Schedule ``func`` on the pool (joblib's older backend interface)."""
        return self._get_pool().apply_async(func, callback=callback)

    def terminate(self) -> None:
        """Close the pool."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
            pool.terminate()


class MultiprocessingBackend(PoolManagerMixin, _JobliteMultiprocessing):
    """joblite's multiprocessing backend; a subclass that builds its own pool in
    ``configure`` (as Ray's does) has its batches run on that pool instead."""

    def submit(self, batch: Any, **kwargs: Any) -> Future:
        pool = self._pool
        if pool is None:
            return super().submit(batch, **kwargs)
        future: Future = Future()
        future.set_running_or_notify_cancel()
        pool.apply_async(batch, callback=future.set_result, error_callback=future.set_exception)
        future.from_pool = True  # type: ignore[attr-defined]
        return future

    def retrieve(self, future: Future) -> list:
        if getattr(future, "from_pool", False):
            return future.result()  # type: ignore[no-any-return]
        return super().retrieve(future)

    def terminate(self) -> None:
        PoolManagerMixin.terminate(self)
        _JobliteMultiprocessing.terminate(self)
