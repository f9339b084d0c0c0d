"""The dispatch loop of one Parallel call: batching, back-pressure, ordering, errors.

Batches are handed to the backend while fewer than ``pre_dispatch`` are outstanding;
completions come back through one queue, in whatever thread the backend finishes them,
and are consumed here, in the caller's thread.
"""

from __future__ import annotations

import ast
import collections
import functools
import gc
import itertools
import multiprocessing
import operator
import queue
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from .._core import DelayedCall, run_call
from ..backends.base import BatchedCalls, tick
from ._progress import Reporter

# "auto" batches aim at this much work each: long enough that the per-batch cost
# (pickling, a pipe round-trip, waking the caller, which on a machine with as many
# workers as cores takes its CPU time from a worker) is noise, short enough to balance
# the load. Once the length of the input is known, a batch takes at most one worker's
# share of the tasks left (guided self-scheduling: the tail shrinks geometrically, so the
# workers finish together after few batches), but not below the tail size: a cloud of
# one-task batches costs more wake-ups than the imbalance it prevents.
TARGET_BATCH_SECONDS = 0.05
MIN_TAIL_BATCH_SECONDS = 0.005
MAX_AUTO_BATCH = 100_000
# While the input's length is unknown (a generator), a batch also takes at most this long
# to read: the parent builds the calls (``delayed(f)(x) for x in ...``) while the workers
# run the batches sent before, instead of reading 100k tiny calls before sending any.
READ_BATCH_SECONDS = 0.002
# reads of fewer tasks than this teach nothing about the reading speed (timer noise)
MIN_TIMED_READ = 64
# A batch's fixed cost of sending (``future.send_seconds``: shared arrays compared or
# written) is kept below this share of its work, so that it never rivals the tasks.
SEND_COST_SHARE = 0.1


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}
_OPS.update({ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv})


def eval_pre_dispatch(text: str, n_jobs: int) -> int:
    """Evaluate expressions like ``'2 * n_jobs'`` without ``eval``."""

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.Name) and node.id == "n_jobs":
            return n_jobs
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        raise ValueError(f"pre_dispatch={text!r} is not valid: use 'all', an int or 'k * n_jobs'")

    return max(int(walk(ast.parse(text, mode="eval"))), 1)


def _check_task(task: Any, index: int) -> None:
    kind = type(task)
    if (kind is not DelayedCall and kind is not tuple) or len(task) != 3 or not callable(task[0]):
        raise TypeError(
            f"Parallel expects delayed(f)(*args, **kwargs) calls, got {task!r} at position"
            f" {index}: wrap the function with joblite.delayed"
        )


class ParallelTimeoutError(multiprocessing.TimeoutError, TimeoutError):
    """A batch of a Parallel call outlived ``timeout``.

    Both the builtin :class:`TimeoutError` and :class:`multiprocessing.TimeoutError`
    (what joblib raises) catch it.
    """


def _warn_no_timeout(backend_name: str, timeout: float) -> None:
    warnings.warn(
        f"The backend class {backend_name!r} does not support timeout. You have set"
        f" 'timeout={timeout}' in Parallel but the 'timeout' parameter will not be used.",
        UserWarning,
        stacklevel=5,
    )


def _notify(done: queue.SimpleQueue, batch_id: int, _future: Any) -> None:
    done.put(batch_id)


@dataclass(frozen=True)
class CallPlan:
    """What one Parallel call does, fixed when it starts (built by ``Parallel``)."""

    n_jobs: int
    batch_size: Union[int, str]
    pre_dispatch: Union[int, str]
    timeout: Optional[float]
    return_as: str
    return_exceptions: bool
    verbose: int
    progress: bool
    callback: Optional[Callable[[Any], Any]]
    total: Optional[int]  # the caller's total=, shown while the input's length is unknown
    desc: Optional[str]
    label: str  # how messages name the Parallel object
    backend_name: str  # the backend's class name, for progress lines and warnings
    # Inside a `with Parallel(...)` block: the driver is configured already and stays so.
    managed: bool
    # Arguments of the driver's configure() besides n_jobs (temp_folder, max_nbytes, ...).
    driver_options: Mapping[str, Any]
    # After each batch, call the listener's print_progress (verbose, joblib's hook
    # overridden by a subclass or a patch of Parallel, or joblib's BatchCompletionCallBack
    # replaced).
    print_hook: bool


class AutoBatching:
    """What ``batch_size="auto"`` has learnt so far; kept by Parallel across its calls."""

    __slots__ = ("per_task", "read", "send", "shared")

    def __init__(self) -> None:
        self.per_task: Optional[float] = None  # seconds of work a task
        self.read: Optional[float] = None  # seconds to read a task from a generator
        self.send: Optional[float] = None  # seconds of sending a batch (shared arrays)
        self.shared = 0  # shared arrays the last batch referred to


class CallListener:
    """The one way a call reports back to the object that started it (joblib's counters,
    its ``print_progress`` hook, the call's start and end). This base does nothing."""

    def started(self, call: Dispatcher) -> None:
        """The call starts: ``call.reporter`` and ``call.shown_total`` are readable."""

    def counted(
        self,
        dispatched_tasks: int,
        dispatched_batches: int,
        completed_tasks: int,
        completed_batches: int,
    ) -> None:
        """joblib's counters changed (after dispatching or completing batches)."""

    def print_progress(self, size: int, dispatched_at: float, results: list) -> None:
        """A batch of ``size`` tasks, dispatched at ``dispatched_at`` (``time.monotonic()``),
        completed with ``results`` (called when ``CallPlan.print_hook`` is set)."""

    def input_ended(self) -> None:
        """Every task completed, but the input's end was found only after the last batch's
        ``print_progress`` (an input of unknown length): one more call, where
        ``Parallel._is_completed()`` is true (joblib's sequential path makes it too)."""

    def ended(self) -> None:
        """The call is over (results all returned, or it failed or was closed)."""


class Dispatcher:
    """Runs one call of a :class:`joblite.Parallel` over an iterable of delayed calls."""

    def __init__(
        self,
        plan: CallPlan,
        driver: Any,
        iterable: Iterable[Any],
        listener: Optional[CallListener] = None,
        auto: Optional[AutoBatching] = None,
        mapped: Optional[tuple[Callable[..., Any], bool]] = None,
    ) -> None:
        self.plan = plan
        self.backend = driver
        self.listener = listener if listener is not None else CallListener()
        self.auto = auto if auto is not None else AutoBatching()
        self.iterable = iterable
        # Parallel.map: (function, single): the input holds the calls' arguments (the
        # argument itself when single, else a tuple of them), not delayed calls.
        self.mapped = mapped
        try:
            self.n_total: Optional[int] = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            self.n_total = None
        # the caller's total=, shown while the length of the input is unknown
        self._given_total: Optional[int] = plan.total
        self.reporter = Reporter(plan.verbose, plan.label, plan.progress, plan.callback, plan.desc)
        self.hook = plan.print_hook
        self.n_dispatched = 0
        self.n_completed = 0
        self.n_dispatched_batches = 0
        self.n_completed_batches = 0
        self.listener.started(self)
        self._count()
        # the batch the timeout watches (the oldest outstanding) and since when
        self._head = -1
        self._head_since = 0.0
        # Tasks read from an input of unknown length but not dispatched yet: see _take.
        self._ahead: list = []
        # (number of tasks read from the input so far, tick() right after that read)
        self._reads: collections.deque = collections.deque()
        self._n_read = 0
        # A list or tuple holds every task before the call starts, and reading it runs no
        # code of the caller: one tick for all of them.
        self._input_tick = tick() if type(iterable) in (list, tuple) else None

    @property
    def shown_total(self) -> Optional[int]:
        """What progress reports show as the total: the length once known, else total=."""
        return self.n_total if self.n_total is not None else self._given_total

    def _count(self) -> None:
        self.listener.counted(
            self.n_dispatched, self.n_dispatched_batches, self.n_completed, self.n_completed_batches
        )

    # -- public entry points -------------------------------------------------------

    def run_to_list(self) -> list:
        try:
            out: list = []
            for results in self._batches(ordered=True, bounded=False):
                if results is not None:
                    out.extend(results)
            return out
        finally:
            self.listener.ended()

    def run_generator(self) -> Iterator[Any]:
        try:
            ordered = self.plan.return_as == "generator"
            for results in self._batches(ordered=ordered, bounded=True):
                if results is None:
                    yield None  # the priming step of Parallel.__call__: batches are out
                else:
                    yield from results
        finally:
            self.listener.ended()

    # -- the loop --------------------------------------------------------------------

    def _batches(self, ordered: bool, bounded: bool) -> Iterator[Optional[list]]:
        """Lists of results, batch by batch; first a ``None`` once work is dispatched."""
        plan = self.plan
        if plan.n_jobs == 1:
            yield from self._sequential()
            return
        backend = self.backend
        if not plan.managed:
            n_jobs = backend.configure(n_jobs=plan.n_jobs, **plan.driver_options)
        else:
            n_jobs = plan.n_jobs
        limit = self._limit(n_jobs)
        nested = backend.get_nested_backend()
        done: queue.SimpleQueue = queue.SimpleQueue()
        inflight: dict[int, tuple[int, int, Any, float]] = {}
        ready: dict[int, list] = {}
        next_id = next_yield = 0
        exhausted = False
        # a print_progress call made before the input's end was known (see input_ended)
        hooked_early = False
        last_progress = time.monotonic()
        primed = True
        started = False
        try:
            iterator = iter(self.iterable)
            backend.start_call()
            started = True
            if plan.timeout is not None and not backend.supports_timeout:
                _warn_no_timeout(plan.backend_name, plan.timeout)
            self.reporter.start(plan.backend_name, n_jobs, self.shown_total)
            while True:
                # The cyclic collector is paused while tasks are read and dispatched: the
                # tuples of 100k tiny tasks alive at once made it run full collections
                # (~40% of such a call); split into batches (BatchedCalls), they are gone
                # before it runs again. Never paused across a yield (the caller's code).
                collect = gc.isenabled()
                if collect:
                    gc.disable()
                try:
                    while not exhausted and len(inflight) + (len(ready) if bounded else 0) < limit:
                        items = self._take(iterator, n_jobs)
                        if not items:
                            exhausted = True
                            self.n_total = self.n_dispatched
                            break
                        size = len(items)
                        if self.mapped is None:
                            _check_task(items[0], self.n_dispatched)
                            batch = BatchedCalls(items, nested, plan.return_exceptions)
                        else:
                            batch = BatchedCalls.of_function(
                                *self.mapped, items, nested, plan.return_exceptions
                            )
                        del items  # the tasks now live in the batch alone
                        batch.created = self._created(self.n_dispatched + size)
                        future = backend.submit(batch)
                        del batch
                        inflight[next_id] = (self.n_dispatched, size, future, time.monotonic())
                        future.add_done_callback(functools.partial(_notify, done, next_id))
                        next_id += 1
                        self.n_dispatched += size
                        self.n_dispatched_batches = next_id
                        self._count()
                finally:
                    if collect:
                        gc.enable()
                if primed:
                    primed = False
                    yield None
                if not inflight:
                    break
                with backend.retrieval_context():
                    batch_id = self._wait(done, inflight, last_progress)
                last_progress = time.monotonic()
                start, size, future, dispatched_at = inflight.pop(batch_id)
                results = backend.retrieve(future)
                self._learn(
                    size,
                    getattr(future, "duration", None),
                    last_progress - dispatched_at,
                    getattr(future, "send_seconds", None),
                    getattr(future, "shared_arrays", None),
                )
                self.n_completed += size
                self.n_completed_batches += 1
                self._count()
                if self.reporter.active:
                    indices = range(start, start + size)
                    self.reporter.completed(
                        indices, self.n_completed, self.n_dispatched, self.shown_total
                    )
                if self.hook:
                    self.listener.print_progress(size, dispatched_at, results)
                    hooked_early = self.n_total is None
                if not ordered:
                    yield results
                    continue
                ready[batch_id] = results
                while next_yield in ready:
                    yield ready.pop(next_yield)
                    next_yield += 1
            self.reporter.finished(self.n_completed)
            if hooked_early:
                self.listener.input_ended()
        except BaseException as error:
            self._abort(error, [entry[2] for entry in inflight.values()])
            raise
        finally:
            self.reporter.close()
            if started:
                backend.stop_call()
            if not plan.managed:
                backend.terminate()

    def _sequential(self) -> Iterator[Optional[list]]:
        plan = self.plan
        report = self.reporter.active
        hook = self.hook
        if plan.timeout is not None:
            _warn_no_timeout("SequentialBackend", plan.timeout)
        self.reporter.start("SequentialBackend", 1, self.shown_total)
        yield None
        # An int batch_size reads that many tasks before running them, as joblib does.
        size = plan.batch_size if isinstance(plan.batch_size, int) else 1
        try:
            if size == 1 and not (report or hook):
                yield from self._sequential_plain()
                return
            iterator = iter(self.iterable)
            hooked_early = False  # see input_ended
            while True:
                tasks = list(itertools.islice(iterator, size))
                if not tasks:
                    break
                start = self.n_dispatched
                for offset, task in enumerate(tasks):
                    _check_task(task, start + offset)
                self.n_dispatched += len(tasks)
                self.n_dispatched_batches += 1
                self._count()
                dispatched_at = time.monotonic()
                results = []
                for task in tasks:
                    if plan.return_exceptions:
                        try:
                            results.append(run_call(task))
                        except Exception as error:
                            results.append(error)
                    else:
                        results.append(run_call(task))
                self.n_completed += len(tasks)
                self.n_completed_batches += 1
                self._count()
                if report:
                    self.reporter.completed(
                        range(start, self.n_completed),
                        self.n_completed,
                        self.n_dispatched,
                        self.shown_total,
                    )
                if hook:
                    self.listener.print_progress(len(tasks), dispatched_at, results)
                    hooked_early = self.n_total is None
                yield results
            self.n_total = self.n_completed
            self.reporter.finished(self.n_completed)
            if hooked_early:
                self.listener.input_ended()
        finally:
            self.reporter.close()

    def _sequential_plain(self) -> Iterator[Optional[list]]:
        """One task at a time, nothing to report: the cheapest loop (n_jobs=1, tiny tasks)."""
        return_exceptions = self.plan.return_exceptions
        index = -1
        try:
            for index, task in enumerate(self.iterable):
                _check_task(task, index)
                if return_exceptions:
                    try:
                        result = run_call(task)
                    except Exception as error:
                        result = error
                else:
                    result = run_call(task)
                yield [result]
        finally:
            # joblib's counters, set once: nobody reads them during a plain call
            done = index + 1
            self.n_dispatched = self.n_completed = done
            self.n_dispatched_batches = self.n_completed_batches = done
            self._count()
        self.n_total = done
        self.reporter.finished(done)

    # -- helpers ---------------------------------------------------------------------

    def _limit(self, n_jobs: int) -> int:
        pre_dispatch = self.plan.pre_dispatch
        if pre_dispatch == "all":
            return 1 << 62
        if isinstance(pre_dispatch, str):
            return max(eval_pre_dispatch(pre_dispatch, n_jobs), n_jobs)
        if isinstance(pre_dispatch, int) and pre_dispatch > 0:
            return max(pre_dispatch, 1)
        raise ValueError(
            f"pre_dispatch must be 'all', an int > 0 or an expression, got {pre_dispatch!r}"
        )

    def _take(self, iterator: Iterator[Any], n_jobs: int) -> list:
        """The tasks of the next batch (an empty list once the input is consumed).

        With ``batch_size="auto"`` and an input of unknown length (a generator), read up to
        ``n_jobs`` batches ahead, as joblib does: when the input ends within that window its
        length becomes known, and the last batches shrink so that every worker gets a share
        of the tail instead of one worker running the last big batch alone.
        """
        size = self._batch_size(n_jobs)
        if self.n_total is not None or self.plan.batch_size != "auto":
            if self._ahead:
                items, self._ahead = self._ahead[:size], self._ahead[size:]
                return items
            return self._read(iterator, size)
        ahead = self._ahead
        missing = size * n_jobs - len(ahead)
        if missing > 0:
            more = self._read(iterator, missing)
            ahead.extend(more)
            if len(more) < missing:  # the input ended: its length is known now
                self.n_total = self.n_dispatched + len(ahead)
                size = self._batch_size(n_jobs)
        items, self._ahead = ahead[:size], ahead[size:]
        return items

    def _read(self, iterator: Iterator[Any], count: int) -> list:
        if self.n_total is not None or self.plan.batch_size != "auto":
            items = list(itertools.islice(iterator, count))
        else:  # learn how fast the caller's generator gives tasks: see READ_BATCH_SECONDS
            start = time.perf_counter()
            items = list(itertools.islice(iterator, count))
            if len(items) >= MIN_TIMED_READ:
                measured = (time.perf_counter() - start) / len(items)
                old = self.auto.read
                self.auto.read = measured if old is None else 0.5 * old + 0.5 * measured
        if items:
            self._n_read += len(items)
            self._reads.append((self._n_read, self._input_tick or tick()))
        return items

    def _created(self, n_tasks: int) -> int:
        """The tick taken right after the input gave its first ``n_tasks`` tasks."""
        reads = self._reads
        while reads[0][0] < n_tasks:
            reads.popleft()
        return reads[0][1]

    def _batch_size(self, n_jobs: int) -> int:
        size = self.plan.batch_size
        if size != "auto":
            return int(size)
        per_task = self.auto.per_task
        if per_task is None:
            return 1
        per_task = max(per_task, 1e-9)
        size = int(TARGET_BATCH_SECONDS / per_task)
        send = self.auto.send
        if send:  # e.g. large shared arrays compared with their files for each batch
            size = max(size, int(send / (SEND_COST_SHARE * per_task)))
        elif self.n_total is None and self.auto.read:  # a generator: READ_BATCH_SECONDS
            size = min(size, max(int(READ_BATCH_SECONDS / self.auto.read), MIN_TIMED_READ))
        if self.n_total is not None:  # guided self-scheduling, see TARGET_BATCH_SECONDS
            remaining = self.n_total - self.n_dispatched
            share = -(-remaining // n_jobs)
            # batches that share several large arrays run grouped by array in the worker
            # (cache locality): each extra batch reads every array from memory again, so
            # their tail stops shrinking at a full batch
            tail = MIN_TAIL_BATCH_SECONDS
            if self.auto.shared >= 2:
                tail = TARGET_BATCH_SECONDS
            size = min(size, max(share, int(tail / per_task)))
        return max(1, min(size, MAX_AUTO_BATCH))

    def _learn(
        self,
        size: int,
        worker_seconds: Optional[float],
        wall_seconds: float,
        send_seconds: Optional[float] = None,
        shared_arrays: Optional[int] = None,
    ) -> None:
        if self.plan.batch_size != "auto":
            return
        seconds = worker_seconds if worker_seconds is not None else wall_seconds
        measured = seconds / size
        auto = self.auto
        old = auto.per_task
        auto.per_task = measured if old is None else 0.5 * old + 0.5 * measured
        if shared_arrays is not None:
            auto.shared = shared_arrays
        if send_seconds is not None:
            old = auto.send
            auto.send = send_seconds if old is None else 0.5 * old + 0.5 * send_seconds

    def _wait(self, done: queue.SimpleQueue, inflight: dict, last_progress: float) -> int:
        timeout = self.plan.timeout
        if timeout is None or not self.backend.supports_timeout:
            return done.get()
        # As joblib: the oldest outstanding batch gets `timeout` seconds from when it
        # became the oldest (its dispatch, or the completion before), however many other
        # batches complete meanwhile.
        while True:
            head = min(inflight)
            if head != self._head:
                self._head = head
                self._head_since = max(inflight[head][3], last_progress)
            deadline = self._head_since + timeout
            try:
                remaining = deadline - time.monotonic()
                if remaining <= 0 and not inflight[head][2].done():
                    raise queue.Empty  # late even if other completions wait in the queue
                return done.get(timeout=max(remaining, 0.001))
            except queue.Empty:
                if time.monotonic() >= deadline and not inflight[head][2].done():
                    raise ParallelTimeoutError(
                        f"a batch of tasks of {self.plan.label} ran for more than"
                        f" timeout={timeout} s"
                    ) from None

    def _abort(self, error: BaseException, futures: list) -> None:
        backend = self.backend
        backend.cancel(futures)
        # A generator closed early (a `break` on the first good result) kills its running
        # batches too, as joblib does: left running, they kept the workers busy, so the next
        # call and the interpreter's exit waited for work whose results nobody reads.
        still_running = any(not future.done() for future in futures)
        if not backend.uses_processes:
            # threads cannot be killed: the running batches end on their own, on workers
            # that the next calls no longer queue behind
            if still_running and getattr(backend, "uses_threads", False):
                backend.abort_everything(ensure_ready=self.plan.managed)
            return
        interrupted = not isinstance(error, (Exception, GeneratorExit))
        if interrupted or still_running:
            # in a `with Parallel(...)` block the next call reuses this backend
            backend.abort_everything(ensure_ready=self.plan.managed)
