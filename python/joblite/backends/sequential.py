"""The sequential backend: every batch runs at once in the calling thread."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Optional

from .base import BatchedCalls, Nesting, ParallelBackendBase, nesting


class SequentialBackend(ParallelBackendBase):
    """Runs the tasks one after the other in the caller (n_jobs is always 1)."""

    name = "sequential"
    supports_sharedmem = True
    uses_threads = True
    supports_timeout = False

    def effective_n_jobs(self, n_jobs: int) -> int:
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        return 1

    def submit(self, batch: BatchedCalls, **kwargs: Any) -> Future:
        future: Future = Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(batch())
        except BaseException as error:  # handed to the caller through the future
            future.set_exception(error)
        return future

    def get_nested_backend(self) -> Optional[Nesting]:
        # Running sequentially changes nothing for inner calls: keep what was active.
        return nesting()
