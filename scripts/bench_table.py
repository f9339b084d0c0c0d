"""Write docs/benchmarks.md from a pytest-benchmark JSON file (``make benchmark`` does this).

    python scripts/bench_table.py .benchmarks/latest.json docs/benchmarks.md [README.md]

With README.md, the table between its ``<!-- bench-summary -->`` markers is replaced by the
rows of the same run for the cases listed in README_CASES (the ones a new user asks about).

Each benchmark group times joblite and joblib (and sometimes a lower limit such as
``np.load`` or a bare call) in the same run. The summary table pairs the joblite and joblib
rows of each case; the detail tables list every variant.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

LIBS = ("joblite", "joblib")

# (label in the README, start of the case name in the run; "|" adds a text the name must
# also contain)
README_CASES = [
    ("Memory: cache hit, small arguments", "memory hit: small args"),
    ("Memory: cache hit, 100 MiB array argument", "memory hit: 100 MiB array argument"),
    ("Parallel: 100k tiny tasks, processes (loky)", "parallel (a) 100k sqrt loky"),
    ("Parallel: 100k tiny tasks, threads", "parallel (a) 100k sqrt threading"),
    ("Parallel: 64 tasks returning 16 MiB arrays", "parallel (d)"),
    ("Parallel on Dask: 10k tiny tasks", "dask: 10k tiny tasks"),
    ("dump: arrays + 100k small objects", "mixed object dump"),
    ("load: arrays + 100k small objects", "mixed object load"),
    ("dump with lz4, float array", "dump compressed floats|(lz4"),
    ("dump with compress=3 (zlib), float array", "dump compressed floats|(zlib3"),
    ("load with compress=3 (zlib), float array", "load compressed floats|(zlib3"),
    ("hash: dict of 100k str keys", "hash: dict of 100k str keys"),
    ("hash: list of 10k small arrays", "hash: list of 10k small arrays"),
    ("hash: large float64 array", "hash: 1 GiB float64 array"),
]
README_START = "<!-- bench-summary"
README_END = "<!-- /bench-summary -->"

INTRO = """\
# Benchmarks

Every benchmark in `benches/` times joblite and joblib 1.6 side by side **in the same run**
(pytest-benchmark), often next to a lower limit (a bare call, `np.load`, `np.copyto`).
This page is written by `make benchmark` from that run's results; reproduce it with:

```bash
make benchmark                              # every benchmark in benches/, then this page
JOBLITE_BENCH_SCALE=0.1 make benchmark      # the same at a tenth of the hashing sizes
make benchmark ARGS="-k hash"               # one area (the page then shows only that area)
```

Times are the **minimum** over the rounds (the least disturbed by other processes on a
shared machine); *speed-up* is joblib's time divided by joblite's (above 1: joblite is
faster). The figures depend on the machine: the feature pages quote the runs they were
measured on.
"""


def _case(bench: dict[str, Any]) -> tuple[str, str]:
    """(case, variant): the variant is "joblite", "joblib" or another label; the case is
    the group plus whatever else the parameters say (e.g. ``load``, a folder)."""
    group = bench.get("group") or bench["name"].split("[")[0]
    param = str(bench.get("param") or "")
    parts = param.split("-") if param else []
    variant = next((p for p in parts if p in LIBS), None)
    if variant is None:
        return group, param or bench["name"]
    rest = [p for p in parts if p != variant and not p.startswith("/")]
    return (f"{group} ({', '.join(rest)})" if rest else group), variant


def _fmt(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def _cases(data: dict[str, Any]) -> dict[str, dict[str, float]]:
    cases: dict[str, dict[str, float]] = defaultdict(dict)
    for bench in data.get("benchmarks", []):
        case, variant = _case(bench)
        cases[case][variant] = float(bench["stats"]["min"])
    return cases


def readme_table(data: dict[str, Any]) -> str:
    """The README's rows: joblite, joblib and the speed-up of the chosen cases."""
    cases = _cases(data)
    lines = ["| case | joblite | joblib | speed-up |", "| --- | ---: | ---: | ---: |"]
    for label, pattern in README_CASES:
        prefix, *also = pattern.split("|")
        for case in sorted(cases):
            times = cases[case]
            wanted = case.startswith(prefix) and all(a in case for a in also)
            if wanted and "joblite" in times and "joblib" in times:
                ratio = times["joblib"] / times["joblite"]
                lines.append(
                    f"| {label} | {_fmt(times['joblite'])} | {_fmt(times['joblib'])} "
                    f"| x{ratio:.2f} |"
                )
                break
    when = data.get("datetime", "?")[:16].replace("T", " ")
    lines.append("")
    lines.append(
        f"Run of {when} UTC ({len(data.get('benchmarks', []))} benchmarks), minimum times; "
        "speed-up: joblib's time / joblite's."
    )
    return "\n".join(lines)


def update_readme(readme: str, data: dict[str, Any]) -> str:
    start = readme.index(README_START)
    start = readme.index("\n", start) + 1
    end = readme.index(README_END)
    return readme[:start] + readme_table(data) + "\n" + readme[end:]


def render(data: dict[str, Any]) -> str:
    cases = _cases(data)
    machine = data.get("machine_info", {})
    cpu = machine.get("cpu", {})
    lines = [INTRO]
    lines.append(
        f"Run of {data.get('datetime', '?')[:19].replace('T', ' ')} UTC: "
        f"{len(data.get('benchmarks', []))} benchmarks, Python "
        f"{machine.get('python_version', '?')}, {cpu.get('brand_raw', 'unknown CPU')}, "
        f"{cpu.get('count', '?')} logical CPUs.\n"
    )
    lines += [
        "## Summary",
        "",
        "| case | joblite | joblib | speed-up |",
        "| --- | ---: | ---: | ---: |",
    ]
    for case in sorted(cases):
        times = cases[case]
        if "joblite" in times and "joblib" in times:
            ratio = times["joblib"] / times["joblite"]
            lines.append(
                f"| {case} | {_fmt(times['joblite'])} | {_fmt(times['joblib'])} | x{ratio:.2f} |"
            )
    lines += ["", "## Every variant", ""]
    lines += ["| case | variant | min time | vs joblib |", "| --- | --- | ---: | ---: |"]
    for case in sorted(cases):
        times = cases[case]
        ref = times.get("joblib")
        for variant in sorted(times, key=lambda v: (v not in LIBS, v)):
            vs = f"x{ref / times[variant]:.2f}" if ref else "-"
            lines.append(f"| {case} | {variant} | {_fmt(times[variant])} | {vs} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    source, target = Path(argv[0]), Path(argv[1])
    data = json.loads(source.read_text(encoding="utf-8"))
    if not data.get("benchmarks"):
        print(f"bench_table: no benchmarks in {source}", file=sys.stderr)
        return 1
    target.write_text(render(data), encoding="utf-8")
    if len(argv) == 3:
        readme = Path(argv[2])
        readme.write_text(update_readme(readme.read_text(encoding="utf-8"), data), "utf-8")
    print(f"bench_table: {len(data['benchmarks'])} benchmarks -> {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
