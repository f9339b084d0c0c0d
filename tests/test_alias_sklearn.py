"""scikit-learn's own shipped tests that exercise joblib, run with joblite installed as
``joblib`` (install_as_joblib through JOBLITE_AS_JOBLIB, in a fresh interpreter).

The selection covers Parallel (``sklearn.utils.parallel``), Pipeline's ``memory=``,
forests (joblib's backend registry and ``get_active_backend``), bagging, searches,
cross-validation, the column transformer's auto-memmapping and trees pickled through
``joblib.numpy_pickle.NumpyPickler``. About half a minute on two cores.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap

import pytest

SELECTION = [
    "sklearn.utils.tests.test_parallel",
    "sklearn.tests.test_pipeline::test_pipeline_memory",
    "sklearn.tests.test_pipeline::test_make_pipeline_memory",
    "sklearn.tests.test_pipeline::test_feature_union_parallel",
    "sklearn.tests.test_pipeline::test_pipeline_memory_callbacks_second_fit_same_pipeline",
    "sklearn.model_selection.tests.test_search::test_search_with_2d_array",
    "sklearn.model_selection.tests.test_search::test_random_search_bad_cv",
    "sklearn.model_selection.tests.test_validation::test_cross_validate_many_jobs",
    "sklearn.model_selection.tests.test_validation::test_cross_validate_return_indices",
    "sklearn.ensemble.tests.test_forest::test_backend_respected",
    "sklearn.ensemble.tests.test_forest::test_parallel",
    "sklearn.ensemble.tests.test_forest::test_parallel_train",
    "sklearn.ensemble.tests.test_forest::test_pickle",
    "sklearn.ensemble.tests.test_bagging::test_parallel_classification",
    "sklearn.ensemble.tests.test_bagging::test_parallel_regression",
    "sklearn.tree.tests.test_tree::test_different_endianness_pickle",
    "sklearn.tree.tests.test_tree::test_different_bitness_joblib_pickle",
    "sklearn.compose.tests.test_column_transformer::test_column_transformer_auto_memmap",
]

RUNNER = """
    import sys
    import joblite
    import joblib
    assert joblib.__name__ == "joblite.alias.joblib", joblib
    import pytest
    sys.exit(pytest.main(sys.argv[1:]))
"""


def _shipped(selection: list[str]) -> list[str]:
    """The test ids of ``selection`` that the installed scikit-learn ships (older releases,
    such as the one CPython 3.9 gets, lack some tests), found in the sources without
    importing them (importing would bind the real joblib in this process)."""
    found = []
    for test_id in selection:
        module, _, name = test_id.partition("::")
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            continue
        if name:
            with open(spec.origin, encoding="utf-8") as source:
                if not re.search(rf"^def {re.escape(name)}\(", source.read(), re.M):
                    continue
        found.append(test_id)
    return found


def test_scikit_learns_joblib_tests_pass_on_the_alias(tmp_path):
    pytest.importorskip("sklearn")
    if importlib.util.find_spec("sklearn.utils.tests.test_parallel") is None:
        pytest.skip("this scikit-learn build does not ship its tests")
    selection = _shipped(SELECTION)
    # a release that renamed most of them would make this test say little: refuse that
    assert len(selection) >= len(SELECTION) - 3, sorted(set(SELECTION) - set(selection))
    env = {**os.environ, "JOBLITE_AS_JOBLIB": "1"}
    args = ["-q", "-p", "no:randomly", "-p", "no:cacheprovider", "-p", "no:asyncio"]
    args += ["-o", "addopts=", "-o", "filterwarnings=", "--timeout", "300", "-rfE"]
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(RUNNER), *args, "--pyargs", *selection],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,  # not this repository's conftest.py / pyproject.toml
        timeout=900,
    )
    tail = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, tail
    passed = re.search(r"(\d+) passed", proc.stdout)
    assert passed is not None and int(passed.group(1)) >= 25, tail
