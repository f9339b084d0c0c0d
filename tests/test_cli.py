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
    slow = next(v for k, v in funcs.items() if k.endswith(".slow"))
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


def test_list_shows_arguments_and_short_function_name(tmp_path, capsys):
    mem = Memory(tmp_path, verbose=0)

    @mem.cache
    def scale(x, factor=2, *rest, **named):
        return x * factor

    scale(3, factor="a-long-string-" * 10)
    scale(4)
    listing = run_json(capsys, "cache", "list", str(tmp_path), "--function", "scale")
    args = sorted((e["arguments"] for e in listing["entries"]), key=lambda a: a["x"])
    assert [a["x"] for a in args] == ["3", "4"]
    assert args[0]["factor"].startswith("'a-long-string-") and args[1]["factor"] == "2"
    assert main(["cache", "list", str(tmp_path), "--function", "scale"]) == 0
    text = capsys.readouterr().out
    assert "arguments" in text and "x=4, factor=2" in text
    long_line = next(line for line in text.splitlines() if "x=3" in line)
    assert "\u2026" in long_line and "a-long-string-" * 10 not in long_line  # cut short
    assert main(["cache", "list", str(tmp_path), "--function", "nosuch"]) == 1
    err = capsys.readouterr().err
    assert "no function 'nosuch'" in err and "scale" in err
    out = run_json(capsys, "cache", "clear", str(tmp_path), "--function", "scale")
    assert out["removed_entries"] == 2 and not scale.check_call_in_cache(4)


def test_joblib_cache_folder_is_recognised(tmp_path, capsys):
    joblib = pytest.importorskip("joblib")
    for location, root in [(str(tmp_path / "a"), tmp_path / "a" / "joblib"), (tmp_path / "b",) * 2]:
        mem = joblib.Memory(location, verbose=0)  # a str gets joblib/ appended, a Path does not
        mem.cache(np.sqrt)(np.arange(3.0))
        mem.cache(np.cumsum)(np.arange(3.0))
        for where in {str(location), str(root)}:
            assert main(["cache", "info", where]) == 1
            err = capsys.readouterr().err
            assert "no joblite cache" in err
            assert f"found a joblib cache at {str(root)!r}" in err
            assert "2 functions, 2 entries" in err


def test_bare_command_prints_help_and_version(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: joblite") and "cache" in out
    assert main(["cache"]) == 0
    assert "info,list,show,clear,prune" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    import joblite

    assert capsys.readouterr().out.strip() == f"joblite {joblite.__version__}"
    script = Path(sys.executable).with_name("joblite")  # the console script pip installed
    res = subprocess.run([str(script)], capture_output=True, text=True, check=True)
    assert res.stdout.startswith("usage: joblite")
