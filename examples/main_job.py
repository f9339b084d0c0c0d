"""The main job: joblite on real-sized data, next to joblib, one section per capability.

Run with ``make demo`` (sets everything up first). Each section lives in its own module beside
this file and prints its own figures; ``--only NAME`` runs one section.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

SECTIONS = [
    ("hash", "hash_demo", "content hashing of 1 GiB of arrays and a large nested structure"),
    ("persistence", "persistence_demo", "dump / load of large arrays, compressed and mmap"),
    ("memory", "memory_demo", "a cached pipeline run twice, then killed and resumed"),
    ("parallel", "parallel_demo", "Parallel on tiny tasks and on large arrays"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=[name for name, _, _ in SECTIONS])
    # Each section runs in a fresh interpreter (this script with --section), so one section's
    # worker pools, trackers and caches do not disturb the next one's figures.
    parser.add_argument("--section", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    if args.section:
        importlib.import_module(args.section).main()
        return 0
    import joblite

    print(f"joblite {joblite.__version__} main job\n")
    for name, module, what in SECTIONS:
        if args.only and args.only != name:
            continue
        if importlib.util.find_spec(module) is None:
            print(f"=== {name}: not built yet, skipped\n")
            continue
        print(f"=== {name}: {what}", flush=True)
        start = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--section", module], check=True)
        print(f"=== {name} done in {time.perf_counter() - start:.1f} s\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
