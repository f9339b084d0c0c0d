"""``joblite.use_logging``: verbose messages as stdlib logging records, here and in workers."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import joblite
import pytest
from joblite import Memory


@pytest.fixture
def logging_on():
    joblite.use_logging(True)
    yield
    joblite.use_logging(False)


def test_documented_switch_works_in_a_fresh_interpreter():
    code = (
        "import joblite, os; joblite.logger.use_logging(True); "
        "print(joblite.logging_enabled(), os.environ['JOBLITE_LOGGING']); "
        "joblite.use_logging(False); print(joblite.logging_enabled())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "20", "False"]


def test_memory_messages_are_one_record_per_event(tmp_path, caplog, capsys, logging_on):
    mem = Memory(tmp_path, verbose=11)
    square = mem.cache(lambda x: x * x)
    with caplog.at_level(logging.INFO, logger="joblite"):
        assert square(3) == 9  # a miss: "Calling ..." and the duration line
        assert square(3) == 9  # a hit: "Loading ..."
    records = [r for r in caplog.records if r.name == "joblite.memory"]
    assert len(records) == 3, [r.getMessage() for r in records]
    calling, done, loading = (r.getMessage() for r in records)
    assert "[Memory] Calling" in calling and "(3)" in calling  # one record, several lines
    assert "<lambda>" in done and "s, 0.0min" in done
    assert loading.startswith("[Memory]") and "Loading" in loading
    assert capsys.readouterr().out == ""  # nothing printed


def test_parallel_progress_lines_are_records(caplog, capsys, logging_on):
    with caplog.at_level(logging.INFO, logger="joblite"):
        out = joblite.Parallel(n_jobs=2, backend="threading", verbose=10)(
            joblite.delayed(abs)(-i) for i in range(5)
        )
    assert out == [0, 1, 2, 3, 4]
    messages = [r.getMessage() for r in caplog.records if r.name == "joblite.parallel"]
    assert messages[0].startswith("[Parallel(n_jobs=2)]: Using backend")
    assert messages[-1].startswith("[Parallel(n_jobs=2)]: Done") and "finished" in messages[-1]
    assert all("\n" not in m for m in messages)
    captured = capsys.readouterr()
    assert "Parallel(" not in captured.err + captured.out


def test_messages_are_printed_when_logging_is_off(tmp_path, caplog, capsys):
    mem = Memory(tmp_path, verbose=1)
    with caplog.at_level(logging.INFO, logger="joblite"):
        mem.cache(abs)(-2)
    assert "[Memory] Calling" in capsys.readouterr().out
    assert not [r for r in caplog.records if r.name.startswith("joblite")]


def test_level_is_checked():
    with pytest.raises(ValueError, match="level"):
        joblite.use_logging(True, level="loud")  # type: ignore[arg-type]


SCRIPT = """
import logging, sys
import joblite

def work(location, i):
    memory = joblite.Memory(location, verbose=1)
    return memory.cache(abs)(-i)

if __name__ == "__main__":
    joblite.use_logging(True)
    out = joblite.Parallel(n_jobs=2)(joblite.delayed(work)(sys.argv[1], i) for i in range(4))
    assert out == [0, 1, 2, 3], out
"""


def test_worker_processes_log_too(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(SCRIPT))
    res = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "[Memory] Calling" not in res.stdout  # nothing printed by the workers
    records = [line for line in res.stderr.splitlines() if line.startswith("INFO:joblite.memory:")]
    assert len(records) == 8, res.stderr  # per call: "Calling ..." and its duration
    assert res.stderr.count("[Memory] Calling builtins.abs...") == 4
    assert all(":LokyProcess-" in line for line in records)  # logged in the workers


LEFTOVER = """
import sys
from joblite._files import temp_name
with open(temp_name(sys.argv[1]), "wb") as f:  # a dump's temp file, then the writer dies
    f.write(b"partial")
"""


def test_persistence_events_are_records(tmp_path, caplog):
    subprocess.run([sys.executable, "-c", LEFTOVER, str(tmp_path / "x.joblite")], check=True)
    assert len(list(tmp_path.iterdir())) == 1
    with caplog.at_level(logging.DEBUG, logger="joblite"):
        joblite.dump([1, 2], tmp_path / "x.joblite")
        joblib = pytest.importorskip("joblib")
        joblib.dump({"a": 1}, tmp_path / "old.pkl")
        assert joblite.load(tmp_path / "old.pkl") == {"a": 1}
    records = [r for r in caplog.records if r.name == "joblite.persistence"]
    assert len(records) == 2, [r.getMessage() for r in records]
    swept, legacy = records
    assert swept.levelno == logging.INFO
    assert "removed 1 temporary file(s) left by interrupted writers" in swept.getMessage()
    assert legacy.levelno == logging.DEBUG and "old.pkl" in legacy.getMessage()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.pkl", "x.joblite"]
