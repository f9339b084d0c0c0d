"""``joblib._parallel_backends``: the backend classes, joblite's, under joblib's names.

Backends written against this module (joblibspark's ``SparkDistributedBackend``, ...)
subclass joblite's :class:`~joblite.ParallelBackendBase` and implement joblib's
``apply_async(func, callback)``: joblite drives them through that interface.
"""

from __future__ import annotations

from typing import Any

from ...backends import ParallelBackendBase
from ...backends.processes import LokyBackend, MultiprocessingBackend
from ...backends.sequential import SequentialBackend
from ...backends.threads import ThreadingBackend

__all__ = [
    "AutoBatchingMixin",
    "FallbackToBackend",
    "LokyBackend",
    "MultiprocessingBackend",
    "ParallelBackendBase",
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
