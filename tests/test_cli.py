"""The ``joblite cache`` command line on real cache directories."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from joblite import Memory
from joblite.__main__ import main


def fill(location, n=4):
    mem = Memory(location, verbose=0, backend_options={"access_flush_interval": 0})

    @mem.cache
    def slow(i):
        time.sleep(0.02)
        return np.zeros(1000 * (i + 1))

    quick = mem.cache(np.sqrt)
    for i in range(n):
        slow(i)
    slow(0)
    slow(0)  # two hits on one entry
    quick(np.arange(4.0))
    mem.store_backend.flush()
    return slow, quick


def run_json(capsys, *argv):
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_json_and_text(tmp_path, capsys):
    fill(tmp_path)
    info = run_json(capsys, "cache", "info", str(tmp_path))
    funcs = {r["function"]: r for r in info["functions"]}
    slow = next(v for k, v in funcs.items() if k.endswith(".slow") or ".slow-L" in k)
    assert slow["entries"] == 4 and slow["hits"] == 2
    assert slow["bytes"] > 8000 * (1 + 2 + 3 + 4)
    assert slow["time_saved_seconds"] >= 2 * 0.02
    assert slow["oldest"] <= slow["newest"]
    assert funcs["numpy/sqrt"]["entries"] == 1
    assert info["total"]["entries"] == 5
    assert main(["cache", "info", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "numpy/sqrt" in text and "time saved" in text and "5 entries" in text


def test_list_and_clear_one_function(tmp_path, capsys):
    slow, quick = fill(tmp_path)
    listing = run_json(capsys, "cache", "list", str(tmp_path), "--function", "numpy/sqrt")
    assert [e["function"] for e in listing["entries"]] == ["numpy/sqrt"]
    out = run_json(capsys, "cache", "clear", str(tmp_path), "--function", "numpy/sqrt")
    assert out["removed_entries"] == 1
    assert not quick.check_call_in_cache(np.arange(4.0)) and slow.check_call_in_cache(1)
    assert main(["cache", "list", str(tmp_path)]) == 0
    assert "slow" in capsys.readouterr().out
    assert main(["cache", "clear", str(tmp_path)]) == 0
    assert "cleared 4 entries" in capsys.readouterr().out
    assert not slow.check_call_in_cache(1)


def test_prune_to_limits_and_leftovers(tmp_path, capsys):
    slow, _ = fill(tmp_path)
    func_dir = Path(slow.store_backend.func_dir(slow.func_id))
    stale = func_dir / "abc" / ".tmp-deadbeef-999999999-xyz"
    stale.mkdir(parents=True)
    (stale / "output.v1").write_bytes(b"partial")
    out = run_json(capsys, "cache", "prune", str(tmp_path), "--items-limit", "2")
    assert out["kept_entries"] == 2 and out["removed_entries"] == 3
    assert out["removed_leftovers"] == 1 and not stale.exists()
    assert slow.check_call_in_cache(0)  # the most recently used survives


def test_errors_are_clear(tmp_path, capsys):
    assert main(["cache", "info", str(tmp_path / "nowhere")]) == 1
    assert "no joblite cache" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["cache", "prune", str(tmp_path), "--age-limit", "soon"])
    assert "invalid age" in capsys.readouterr().err


def test_python_dash_m(tmp_path):
    fill(tmp_path, n=1)
    res = subprocess.run(
        [sys.executable, "-m", "joblite", "cache", "info", str(tmp_path), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(res.stdout)["total"]["entries"] == 2


def test_damaged_entry_reported_and_pruned(tmp_path, capsys):
    slow, _ = fill(tmp_path, n=2)
    meta = next(Path(slow.store_backend.func_dir(slow.func_id)).rglob("metadata.json"))
    meta.write_text(meta.read_text()[:10])
    assert main(["cache", "info", str(tmp_path)]) == 0
    assert "1 damaged entries" in capsys.readouterr().out
    out = run_json(capsys, "cache", "prune", str(tmp_path))
    assert out["removed_damaged"] == 1 and out["kept_entries"] == 2
