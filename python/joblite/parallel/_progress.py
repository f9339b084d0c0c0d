"""What a Parallel call tells the outside world as it goes: joblib-style ``verbose`` lines,
a progress bar (tqdm when installed, a plain stderr line otherwise) and ``callback`` events.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable, NamedTuple, Optional

from ..logger import emit


class ProgressEvent(NamedTuple):
    """A batch of tasks of a Parallel call has completed (given to ``callback=``).

    Attributes
    ----------
    indices : range
        Positions, in the input, of the tasks that just completed.
    n_completed : int
        Tasks completed so far, this batch included.
    n_dispatched : int
        Tasks handed to workers so far.
    n_total : int or None
        Number of tasks of the call, ``None`` while the input is not fully consumed.
    elapsed : float
        Seconds since the call started.
    """

    indices: range
    n_completed: int
    n_dispatched: int
    n_total: Optional[int]
    elapsed: float


def short_format_time(seconds: float) -> str:
    """Right-aligned duration, in seconds below a minute and in minutes above."""
    if seconds > 60:
        return f"{seconds / 60:4.1f}min"
    return f" {seconds:5.1f}s"


class _PlainBar:
    """One self-rewriting stderr line, for when tqdm is not installed."""

    def __init__(self, total: Optional[int], desc: str = "Parallel") -> None:
        self.total = total
        self.desc = desc
        self.n = 0
        self._last = 0.0
        self._start = time.monotonic()

    def update(self, n: int) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= 0.1 or (self.total is not None and self.n >= self.total):
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = now - self._start
        if self.total:
            share = f"{self.n}/{self.total} ({100 * self.n // self.total}%)"
        else:
            share = f"{self.n} tasks"
        sys.stderr.write(f"\r{self.desc}: {share} | elapsed: {elapsed:.1f}s")
        sys.stderr.flush()

    def close(self) -> None:
        self._draw(time.monotonic())
        sys.stderr.write("\n")
        sys.stderr.flush()


def _make_bar(total: Optional[int], desc: str) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _PlainBar(total, desc)
    return tqdm(total=total, desc=desc, unit="task", file=sys.stderr)


class Reporter:
    """Prints and notifies about one Parallel call; silent and nearly free by default."""

    def __init__(
        self,
        verbose: int,
        name: str,
        progress: bool,
        callback: Optional[Callable[[ProgressEvent], Any]],
        desc: Optional[str] = None,
    ) -> None:
        self.verbose = verbose
        self.desc = "Parallel" if desc is None else str(desc)
        self.name = name
        self.progress = progress
        self.callback = callback
        self.active = bool(verbose or progress or callback)
        self._bar: Any = None
        self._start = time.monotonic()
        self._printed_scale = -1

    def print(self, message: str) -> None:
        if not self.verbose:
            return
        # joblib's streams (stderr, stdout above verbose 50), or one logging record
        stream = sys.stderr if self.verbose < 50 else sys.stdout
        emit(f"[{self.name}]: {message}", source="parallel", stream=stream)

    def start(self, backend_name: str, n_jobs: int, n_total: Optional[int]) -> None:
        self._start = time.monotonic()
        self.print(f"Using backend {backend_name} with {n_jobs} concurrent workers.")
        if self.progress:
            self._bar = _make_bar(n_total, self.desc)

    def completed(
        self, indices: range, n_completed: int, n_dispatched: int, n_total: Optional[int]
    ) -> None:
        elapsed = time.monotonic() - self._start
        if self._bar is not None:
            if n_total is not None and getattr(self._bar, "total", None) is None:
                self._bar.total = n_total
            self._bar.update(len(indices))
        if self.callback is not None:
            self.callback(ProgressEvent(indices, n_completed, n_dispatched, n_total, elapsed))

    def print_progress(self, n_completed: int, n_total: Optional[int]) -> None:
        """joblib's ``verbose`` line for ``n_completed`` tasks (not for the last one)."""
        if not self.verbose or (n_total is not None and n_completed >= n_total):
            return
        elapsed = time.monotonic() - self._start
        # More verbose prints more often: every batch above 10, else whenever the square
        # root of the completed count (scaled by verbosity) reaches a new integer.
        if self.verbose < 10:
            scale = int(math.sqrt(n_completed / (0.5 * (11 - self.verbose) ** 2)))
            if scale == self._printed_scale:
                return
            self._printed_scale = scale
        width = len(str(n_total)) if n_total else 3
        if n_total is not None:
            done = f"Done {n_completed:{width}d} out of {n_total:{width}d}"
        else:
            done = f"Done {n_completed:{width}d} tasks{' ' * (width + 2)}"
        self.print(f"{done} | elapsed: {short_format_time(elapsed)}")

    def finished(self, n_completed: int) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        width = len(str(n_completed))
        elapsed = time.monotonic() - self._start
        self.print(
            f"Done {n_completed:{width}d} out of {n_completed:{width}d} | elapsed: "
            f"{short_format_time(elapsed)} finished"
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
