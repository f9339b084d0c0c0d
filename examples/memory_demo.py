"""Main job, memory section: a cached pipeline over a few hundred MB, run twice, then killed
part-way (SIGKILL) and resumed from the steps that had finished.

Run alone with ``python examples/memory_demo.py`` or through ``examples/main_job.py``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
from joblite import Memory, Parallel, delayed

N_SAMPLES = 24_000_000  # 192 MB of float64 per full-length array
STEPS = ["load_signal", "denoise", "spectra", "summarize"]
_RAN: set = set()  # steps whose body ran in this process (a miss), for the report


def load_signal(n: int, seed: int) -> np.ndarray:
    """Step 1: a long noisy signal (stands in for reading raw data)."""
    _RAN.add("load_signal")
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    return np.sin(t * 0.01) + 0.5 * np.sin(t * 0.0371) + rng.standard_normal(n)


def denoise(x: np.ndarray, width: int) -> np.ndarray:
    """Step 2: moving average (cumulative-sum trick)."""
    _RAN.add("denoise")
    c = np.cumsum(np.concatenate(([0.0], x)))
    out = np.empty_like(x)
    out[: len(x) - width + 1] = (c[width:] - c[:-width]) / width
    out[len(x) - width + 1 :] = x[len(x) - width + 1 :]
    return out


def _chunk_spectrum(chunk: np.ndarray) -> np.ndarray:
    return np.abs(np.fft.rfft(chunk * np.hanning(len(chunk))))


def spectra(x: np.ndarray, chunk: int) -> np.ndarray:
    """Step 3: windowed spectra of fixed-size chunks, on two threads (numpy frees the GIL)."""
    _RAN.add("spectra")
    pieces = [x[i : i + chunk] for i in range(0, len(x) - chunk + 1, chunk)]
    rows = Parallel(n_jobs=2, backend="threading")(delayed(_chunk_spectrum)(p) for p in pieces)
    return np.vstack(rows)


def summarize(spec: np.ndarray) -> dict:
    """Step 4: the strongest frequencies of the mean spectrum."""
    _RAN.add("summarize")
    mean = spec.mean(axis=0)
    peaks = np.argsort(mean[1:])[-3:][::-1] + 1
    return {"peak_bins": peaks.tolist(), "chunks": int(spec.shape[0])}


def run_pipeline(location: str, verbose_steps: bool = True, log=print) -> dict:
    """Run the four steps through one Memory; report per step whether it was cached."""
    mem = Memory(location, mmap_mode="r", verbose=0)
    steps = {name: mem.cache(globals()[name]) for name in STEPS}
    args = {
        "load_signal": (N_SAMPLES, 0),
        "denoise": (None, 101),
        "spectra": (None, 1 << 20),
        "summarize": (None,),
    }
    value = None
    for name in STEPS:
        step = steps[name]
        a = args[name] if value is None else (value, *args[name][1:])
        _RAN.discard(name)
        start = time.perf_counter()
        value = step(*a)
        took = time.perf_counter() - start
        cached = name not in _RAN
        if verbose_steps:
            log(
                f"  {name:<12} {'cache hit ' if cached else 'computed  '} {took:6.2f} s", flush=True
            )
    assert isinstance(value, dict)
    return value


def _worker(location: str) -> None:
    """Run the pipeline in a child process and tell the parent when each step finishes."""
    run_pipeline(location, log=lambda msg, flush=True: print(msg, flush=True))
    print("finished", flush=True)


def _child(location: str) -> subprocess.Popen:
    here = os.path.dirname(os.path.abspath(__file__))
    code = (
        f"import sys; sys.path.insert(0, {here!r}); "
        f"import memory_demo; memory_demo._worker({location!r})"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=dict(os.environ)
    )


def main() -> None:
    """Two runs of the pipeline, then a SIGKILLed run and its resumption."""
    root = tempfile.mkdtemp(prefix="joblite-memory-demo-")
    try:
        loc = os.path.join(root, "cache")
        print(f"pipeline: {' -> '.join(STEPS)} over {N_SAMPLES * 8 / 1e6:.0f} MB of float64")
        print("first run (cold cache):")
        t0 = time.perf_counter()
        first = run_pipeline(loc)
        cold = time.perf_counter() - t0
        print(f"  total {cold:.2f} s")
        print("second run (same inputs):")
        t0 = time.perf_counter()
        second = run_pipeline(loc)
        warm = time.perf_counter() - t0
        print(f"  total {warm:.2f} s  -> {cold - warm:.2f} s saved ({cold / max(warm, 1e-9):.0f}x)")
        print("  (a mapped earlier result as input is keyed by its stored digest: O(1))")
        assert first == second, "cached pipeline gave a different answer"

        crash_loc = os.path.join(root, "crash-cache")
        print("a run in a subprocess, killed with SIGKILL once 'denoise' is done:")
        child = _child(crash_loc)
        assert child.stdout is not None
        for line in child.stdout:
            print("  [child]" + line.rstrip()[1:])
            if line.strip().startswith("denoise"):
                time.sleep(0.3)  # let it get into 'spectra'
                child.send_signal(signal.SIGKILL)
                break
        child.wait()
        print(f"  child exit status {child.returncode} (killed)")
        print("re-run after the crash (a new process):")
        t0 = time.perf_counter()
        child = _child(crash_loc)
        out, _ = child.communicate(timeout=300)
        for line in out.splitlines():
            if line != "finished":
                print("  [child]" + line[1:])
        print(f"  total {time.perf_counter() - t0:.2f} s; finished steps were not recomputed")
        assert "finished" in out
        resumed = run_pipeline(crash_loc, verbose_steps=False)
        assert resumed == first, "resumed pipeline gave a different answer"
        print(f"  result {resumed} matches the uninterrupted run")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
