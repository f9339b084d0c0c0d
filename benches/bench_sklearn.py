"""scikit-learn on joblib and on joblite installed as joblib, in the same run.

The alias replaces ``joblib`` for a whole process, so each side runs in a fresh interpreter
(one with ``JOBLITE_AS_JOBLIB=1``, one without) that times its workload itself: a warm-up
call, then the best of ``ROUNDS``. Workloads: (a) ``RandomForestClassifier(n_jobs=2)`` fit and
predict; (b) ``GridSearchCV(n_jobs=2)`` on a small model; (c) ``Pipeline(memory=...)`` refit
whose transformers are cache hits. Run with ``make benchmark ARGS="-k sklearn -s"``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("sklearn")

ROUNDS = 5
SIDES = ("joblib", "joblite-as-joblib")
_best: dict[tuple[str, str], float] = {}

WORKLOADS = {
    "forest": """
        from sklearn.datasets import make_classification
        from sklearn.ensemble import RandomForestClassifier
        X, y = make_classification(n_samples=2000, n_features=20, random_state=0)

        def work():
            model = RandomForestClassifier(n_estimators=50, n_jobs=2, random_state=0)
            model.fit(X, y)
            model.predict(X)
        """,
    "grid_search": """
        from sklearn.datasets import make_classification
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GridSearchCV
        X, y = make_classification(n_samples=600, n_features=20, random_state=0)

        def work():
            search = GridSearchCV(
                LogisticRegression(max_iter=200), {"C": [0.01, 0.1, 1.0, 10.0]}, cv=3, n_jobs=2
            )
            search.fit(X, y)
        """,
    "pipeline_memory": """
        import tempfile
        from sklearn.datasets import make_classification
        from sklearn.decomposition import PCA
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler
        X, y = make_classification(n_samples=20000, n_features=50, random_state=0)
        cache = tempfile.mkdtemp()
        pipe = Pipeline(
            [("scale", StandardScaler()), ("pca", PCA(20, random_state=0)),
             ("clf", LogisticRegression(max_iter=50))],
            memory=cache,
        )
        pipe.fit(X, y)  # fills the cache

        def work():  # a new final step: scaler and PCA come from the cache
            pipe.set_params(clf__C=pipe.get_params()["clf__C"] * 1.01)
            pipe.fit(X, y)
        """,
}

CHILD = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
if {alias}:
    import joblite
    joblite.install_as_joblib()
import joblib
{setup}
work()
best = float("inf")
for _ in range({rounds}):
    start = time.perf_counter()
    work()
    best = min(best, time.perf_counter() - start)
print(json.dumps({{"joblib": joblib.__name__, "seconds": best}}))
"""


def _run_child(workload: str, side: str) -> float:
    code = CHILD.format(
        alias=side != "joblib",
        setup=textwrap.dedent(WORKLOADS[workload]),
        rounds=ROUNDS,
    )
    env = {k: v for k, v in os.environ.items() if k != "JOBLITE_AS_JOBLIB"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    report = json.loads(out.strip().splitlines()[-1])
    expected = "joblib" if side == "joblib" else "joblite.alias.joblib"
    assert report["joblib"] == expected, report
    return float(report["seconds"])


@pytest.fixture(scope="module", autouse=True)
def print_ratios():
    yield
    lines = ["", "scikit-learn benchmark (best of rounds; joblib / joblite-as-joblib; > 1: faster)"]
    for workload in WORKLOADS:
        a, b = _best.get((workload, "joblite-as-joblib")), _best.get((workload, "joblib"))
        if a and b:
            lines.append(f"  {workload:<16} joblite {a:.4f}s  joblib {b:.4f}s  x{b / a:.2f}")
    print("\n".join(lines))


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_sklearn(benchmark, workload, side):
    benchmark.group = f"sklearn {workload}"
    seconds = benchmark.pedantic(_run_child, args=(workload, side), rounds=1, iterations=1)
    _best[(workload, side)] = seconds
    benchmark.extra_info["best_round_seconds"] = seconds
