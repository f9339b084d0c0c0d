"""Hostile-file fuzzer for ``joblite.load`` (not a test: it runs for as long as asked).

Builds seed files (format-2 dumps of every codec, joblib 1.6 dumps of every compress option,
joblib <= 0.9 files), mutates them (seeded: bit flips, truncations, byte edits, forged index
fields with a valid checksum) and loads every mutant in a child interpreter under an
address-space limit, through one of the load paths (bytes, path, file object, unseekable
stream, mmap modes, safe mode, verify on/off). A child that dies on a signal, stops
answering, grows its peak memory far beyond the file, raises anything but
``CorruptFileError`` / ``UnsafeLoadError``, or (for format-2 files) loads a value other than
the original is reported, with the mutant kept for replay::

    .venv/bin/python scripts/fuzz_load.py --seed 1 --mutants 200 --out /tmp/fuzz
    .venv/bin/python scripts/fuzz_load.py --replay /tmp/fuzz/m000123.bin --mode path

Needs joblib installed (seed files) and the built extension.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

MODES = ["loads", "path", "fobj", "stream", "safe", "mmap_r", "mmap_c", "mmap_rplus", "noverify"]
MODES += ["mmap_r_verify"]
#: address space a child may add after importing, and the peak memory growth reported
LIMIT = 1 << 30
RSS_REPORT = 256 << 20


def values() -> list[Any]:
    """Small values covering every record kind the reader knows."""
    import numpy as np

    rec = np.zeros(5, dtype=[("a", ">i4"), ("b", ">f8")])
    rec["a"] = range(5)
    return [
        {"a": np.arange(50, dtype=np.int16), "s": "héllo", "t": (1, 2.5, None)},
        np.arange(3000, dtype=">f8").reshape(60, 50),
        [rec, np.array(["2020-01-01", "2021-06-30"], dtype="datetime64[D]")],
        {"f": np.asfortranarray(np.arange(24.0).reshape(4, 6)), "e": np.empty((0, 3))},
        [b"x" * 300, bytearray(b"yz" * 100), np.float32(2.5), {1, 2}, frozenset({"q"})],
        np.arange(70_000, dtype=np.uint8),  # its own chunk in compressed files
        {"obj": np.array([1, "a", None], dtype=object)},
    ]


def seeds(folder: str) -> list[tuple[str, int, bool]]:
    """Write the seed files: (path, index of its value, has checksums)."""
    import joblib
    import joblite

    out = []
    vals = values()
    for i, v in enumerate(vals):
        for codec in [0, "zlib", "gzip", "bz2", "xz", "lz4", "zstd", "lzma"]:
            p = os.path.join(folder, f"seed-jl-{i}-{codec}.bin")
            joblite.dump(v, p, compress=codec)
            out.append((p, i, codec != "lzma"))
        for codec in [0, 3, "gzip", "bz2", "xz", "lzma", "lz4"]:
            p = os.path.join(folder, f"seed-joblib-{i}-{codec}.pkl")
            joblib.dump(v, p, compress=codec)
            out.append((p, i, False))
    # joblib's own test files: 0.8 - 0.11 pickles of every compressor, 0.9's companion files
    # (copied beside the mutants, which name them); their values are not compared
    data_dir = os.path.join(os.path.dirname(joblib.__file__), "test", "data")
    for name in sorted(os.listdir(data_dir)):
        src = os.path.join(data_dir, name)
        if not name.startswith("joblib_") or not os.path.isfile(src):
            continue
        shutil.copyfile(src, os.path.join(folder, name))
        if ".npy" not in name:
            out.append((os.path.join(folder, name), -1, False))
    return out


def _index_at(data: bytes) -> int:
    return data.find(b"JOBLITE\x02")


def _reseal_index(buf: bytearray, start: int) -> None:
    """Recompute the XXH3 of the index starting at ``start`` (header stored as is)."""
    from joblite import _core

    n = struct.unpack_from("<Q", buf, start - 8)[0]
    if start + n > len(buf) or n < 72:
        return
    body = bytes(buf[start : start + n - 8])
    struct.pack_into("<Q", buf, start + n - 8, _core.xxh3_64(body))


SPECIAL = [0, 1, 2, 7, 63, 64, 65, 0xFFFF, 1 << 31, (1 << 32) - 1, 1 << 32, 1 << 62, 1 << 63]
SPECIAL += [(1 << 64) - 1, (1 << 64) - 2]


def mutate(data: bytes, rng: random.Random, checksummed: bool) -> tuple[bytes, str]:
    """One seeded mutation of ``data``, and its kind."""
    buf = bytearray(data)
    at = _index_at(data)
    kinds = ["flip", "flips", "trunc", "byte", "insert", "delete", "dup"]
    if checksummed and at >= 0 and data[:2] != b"\x78" and data[:2] != b"\x1f\x8b":
        kinds += ["index"] * 6  # forged field, valid checksum (none, lz4, zstd)
    if checksummed and data[:3] == b"\x80\x05\x8e" and at == 11:
        kinds += ["forge"] * 6  # pickle bytes changed, every checksum recomputed
    codec = _codec_of(data)
    if not checksummed and codec is not None:
        kinds += ["repack"] * 6  # the decoded pickle changed, the codec's framing valid
    if not checksummed and at < 0 and data[:1] == b"\x80":
        kinds += ["pickfield"] * 6
    kind = rng.choice(kinds)
    if kind == "forge":
        return forge_body(buf, at, rng), kind
    if kind == "repack":
        assert codec is not None
        raw = _CODECS[codec][1](data)
        inner, _ = mutate(raw, rng, False) if rng.random() < 0.4 else (pick_field(raw, rng), "")
        return _CODECS[codec][0](inner), kind
    if kind == "pickfield":
        return pick_field(data, rng), kind
    if kind == "flip":
        p = rng.randrange(len(buf))
        buf[p] ^= 1 << rng.randrange(8)
    elif kind == "flips":
        for _ in range(rng.randint(2, 8)):
            p = rng.randrange(len(buf))
            buf[p] ^= 1 << rng.randrange(8)
    elif kind == "trunc":
        return bytes(buf[: rng.randrange(len(buf))]), kind
    elif kind == "byte":
        buf[rng.randrange(len(buf))] = rng.choice([0, 0xFF, 0x7F, 0x80, rng.randrange(256)])
    elif kind == "insert":
        p = rng.randrange(len(buf))
        buf[p:p] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif kind == "delete":
        p = rng.randrange(len(buf))
        del buf[p : p + rng.randint(1, 16)]
    elif kind == "dup":
        p = rng.randrange(len(buf))
        buf[p:p] = buf[p : p + rng.randint(1, 64)]
    else:
        n = struct.unpack_from("<Q", buf, at - 8)[0]
        field = rng.randrange(8, max(9, (n - 8) // 8)) * 8  # a u64 (or part) of the tables
        if rng.random() < 0.3:
            field = rng.choice([16, 24, 32, 40, 48])
        value = rng.choice([*SPECIAL, rng.randrange(1 << 16), rng.randrange(1 << 40)])
        if rng.random() < 0.4:
            old = struct.unpack_from("<Q", buf, at + field)[0]
            value = (old + rng.choice([-1, 1, -64, 64, 4096, -4096])) % (1 << 64)
        if at + field + 8 <= at + n - 8:
            struct.pack_into("<Q", buf, at + field, value)
        _reseal_index(buf, at)
    return bytes(buf), kind


def _lz4(compress: bool) -> Any:
    import lz4.frame

    return lz4.frame.compress if compress else lz4.frame.decompress


_CODECS: dict[str, tuple[Any, Any]] = {
    "zlib": (lambda b: __import__("zlib").compress(b), lambda b: __import__("zlib").decompress(b)),
    "gzip": (lambda b: __import__("gzip").compress(b), lambda b: __import__("gzip").decompress(b)),
    "bz2": (lambda b: __import__("bz2").compress(b), lambda b: __import__("bz2").decompress(b)),
    "xz": (lambda b: __import__("lzma").compress(b), lambda b: __import__("lzma").decompress(b)),
    "lzma": (
        lambda b: __import__("lzma").compress(b, format=__import__("lzma").FORMAT_ALONE),
        lambda b: __import__("lzma").decompress(b),
    ),
    "lz4": (lambda b: _lz4(True)(b), lambda b: _lz4(False)(b)),
}


def _codec_of(data: bytes) -> Any:
    for prefix, name in [
        (b"\x78", "zlib"),
        (b"\x1f\x8b", "gzip"),
        (b"BZh", "bz2"),
        (b"\xfd7zXZ", "xz"),
        (b"\x5d\x00", "lzma"),
        (b"\x04\x22\x4d\x18", "lz4"),
    ]:
        if data.startswith(prefix):
            try:
                _CODECS[name][1](data)
            except Exception:
                return None
            return name
    return None


#: same-length replacements for the dtype strings and names of a joblib pickle
_STR_SWAPS = {
    2: ["V0", "S0", "U0", "O8", "M8", "m8", "V8", "b1", "c8", "<O", "|O", "f2", "O "],
    3: ["<V0", "|S0", "<U0", "|O8", "<M8", "<m8", "|V8", ">c8", "|b1", "<f2", "|V9", "F  "],
}
_INT_SPECIAL = [0, 1, -1, 2**31 - 1, -(2**31), 2**15, 255, 65535, 2**30]


def pick_field(data: bytes, rng: random.Random) -> bytes:
    """One integer or short string argument of the pickle (a wrapper's shape, order, dtype,
    alignment, ...) set to a hostile value, the rest unchanged."""
    import pickletools

    fields = []
    try:
        for op, arg, pos in pickletools.genops(data):
            if op.name in (
                "BININT1",
                "BININT2",
                "BININT",
                "LONG1",
                "SHORT_BINUNICODE",
                "BINUNICODE",
                "SHORT_BINSTRING",
                "BINSTRING",
                "SHORT_BINBYTES",
            ):
                fields.append((op.name, arg, pos))
            if op.name == "STOP":
                break
    except Exception:
        pass  # array bytes inline after a wrapper: the fields before them are enough
    if not fields:
        return data
    name, arg, pos = rng.choice(fields)
    buf = bytearray(data)
    if name == "BININT1":
        buf[pos + 1] = rng.choice([0, 1, 2, 255, rng.randrange(256)])
    elif name == "BININT2":
        struct.pack_into("<H", buf, pos + 1, rng.choice([0, 65535, rng.randrange(65536)]))
    elif name == "BININT":
        struct.pack_into("<i", buf, pos + 1, rng.choice(_INT_SPECIAL))
    elif name == "LONG1":
        n = buf[pos + 1]
        big = rng.choice([(1 << (8 * n - 1)) - 1, -(1 << (8 * n - 1)), 0, -1])
        buf[pos + 2 : pos + 2 + n] = big.to_bytes(n, "little", signed=True)
    else:
        text = arg.encode("latin-1", "replace") if isinstance(arg, str) else bytes(arg)
        head = {"SHORT_BINUNICODE": 2, "SHORT_BINSTRING": 2, "SHORT_BINBYTES": 2}.get(name, 5)
        swaps = _STR_SWAPS.get(len(text))
        if swaps and len(arg) == len(text):
            new = rng.choice(swaps).encode()
            buf[pos + head : pos + head + len(new)] = new
    return bytes(buf)


def forge_body(buf: bytearray, at: int, rng: random.Random) -> bytes:
    """Change bytes of one chunk of an uncompressed dump and recompute its XXH3 and the
    index's: damage no checksum can see (what a forger does)."""
    from joblite import _core

    n_chunks = struct.unpack_from("<Q", buf, at + 16)[0]
    if not n_chunks:
        return bytes(buf)
    k = rng.randrange(n_chunks)
    entry = at + 64 + 40 * k
    stored_off, stored_len = struct.unpack_from("<2Q", buf, entry)
    start = struct.unpack_from("<Q", buf, at + 48)[0] + stored_off
    for _ in range(rng.randint(1, 4)):
        p = start + rng.randrange(stored_len)
        if rng.random() < 0.5:
            buf[p] ^= 1 << rng.randrange(8)
        else:
            buf[p] = rng.choice([0x80, 0x97, 0x94, 0x2E, 0x28, 0x62, 0x52, 0xFF, 0x00])
    chunk = bytes(buf[start : start + stored_len])
    struct.pack_into("<Q", buf, entry + 32, _core.xxh3_64(chunk))
    _reseal_index(buf, at)
    return bytes(buf)


# --- the child ------------------------------------------------------------------------------


class _Unseekable(io.RawIOBase):
    def __init__(self, data: bytes) -> None:
        self._f = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        chunk = self._f.read(min(len(b), 4099))
        b[: len(chunk)] = chunk
        return len(chunk)

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        raise OSError("unseekable")


def _same(a: Any, b: Any) -> bool:
    import numpy as np

    if isinstance(a, np.ndarray):
        if not isinstance(b, np.ndarray) or a.shape != b.shape:
            return False
        if a.dtype.kind == "O" or b.dtype.kind == "O":
            return a.dtype == b.dtype and all(_same(x, y) for x, y in zip(a.flat, b.flat))
        return a.dtype.newbyteorder("=") == b.dtype.newbyteorder("=") and bool(
            np.array_equal(np.asarray(a), np.asarray(b))
        )
    if isinstance(a, np.generic):
        return type(a) is type(b) and a == b
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


def _touch(v: Any) -> None:
    """Read every array's bytes (mapped pages included)."""
    import numpy as np

    if isinstance(v, np.ndarray):
        if v.dtype.kind != "O" and v.size:
            np.asarray(v).view(np.uint8).sum() if v.flags.c_contiguous else np.array(v)
    elif isinstance(v, dict):
        for x in v.values():
            _touch(x)
    elif isinstance(v, (list, tuple)):
        for x in v:
            _touch(x)


def load_one(path: str, mode: str) -> Any:
    import joblite

    if mode == "loads":
        with open(path, "rb") as f:
            return joblite.loads(f.read())
    if mode == "path":
        return joblite.load(path)
    if mode == "fobj":
        with open(path, "rb") as f:
            return joblite.load(f)
    if mode == "stream":
        with open(path, "rb") as f:
            return joblite.load(_Unseekable(f.read()))
    if mode == "safe":
        return joblite.load(path, allow_pickle=False)
    if mode == "noverify":
        return joblite.load(path, verify=False)
    if mode == "mmap_r_verify":
        return joblite.load(path, mmap_mode="r", verify=True)
    mm = {"mmap_r": "r", "mmap_c": "c", "mmap_rplus": "r+"}[mode]
    if mm == "r+":
        tmp = path + ".rplus"
        shutil.copyfile(path, tmp)
        path = tmp
    return joblite.load(path, mmap_mode=mm)


def child(manifest: str, values_file: str) -> None:
    import resource
    import warnings

    import joblite
    import numpy  # noqa: F401
    from joblite import CorruptFileError, UnsafeLoadError

    warnings.simplefilter("ignore")
    with open(values_file, "rb") as f:
        expected = pickle.load(f)
    with open("/proc/self/status") as f:
        vm = next(int(x.split()[1]) * 1024 for x in f if x.startswith("VmSize"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + LIMIT, vm + LIMIT))
    assert joblite
    with open(manifest) as f:
        jobs = [json.loads(x) for x in f]
    for job in jobs:
        print(json.dumps({"start": job["id"]}), flush=True)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        got = None
        try:
            got = load_one(job["file"], job["mode"])
            _touch(got)
            try:
                if job["value"] < 0:
                    out = "loaded"  # joblib's own old files: not compared
                else:
                    out = "exact" if _same(expected[job["value"]], got) else "different"
            except Exception:
                out = "different"
        except CorruptFileError:
            out = "corrupt"
        except UnsafeLoadError:
            out = "unsafe"
        except MemoryError:
            out = "memory"
        except RecursionError:
            out = "recursion"
        except BaseException as e:
            out = f"other:{type(e).__name__}:{str(e)[:160]}"
        del got
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({"done": job["id"], "out": out, "rss": after - before}), flush=True)


def run_batch(jobs: list[dict], folder: str, values_file: str, timeout: float) -> list[dict]:
    """Run ``jobs`` in children; a dead or hung child's job is reported and the rest go on."""
    results: list[dict] = []
    todo = list(jobs)
    while todo:
        manifest = os.path.join(folder, "manifest.jsonl")
        with open(manifest, "w") as f:
            for j in todo:
                f.write(json.dumps(j) + "\n")
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", manifest, values_file],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: list[str] = []
        stamp = [time.monotonic()]

        def pump(p: Any = proc, out: list = lines, t: list = stamp) -> None:
            for line in p.stdout:
                out.append(line)
                t[0] = time.monotonic()

        th = threading.Thread(target=pump, daemon=True)
        th.start()
        hung = False
        while proc.poll() is None:
            time.sleep(0.05)
            if time.monotonic() - stamp[0] > timeout:
                hung = True
                proc.kill()
        th.join()
        err = proc.stderr.read()
        started = None
        by_id = {j["id"]: j for j in todo}
        finished = set()
        for line in lines:
            rec = json.loads(line)
            if "start" in rec:
                started = rec["start"]
            else:
                r = dict(by_id[rec["done"]], out=rec["out"], rss=rec["rss"])
                results.append(r)
                finished.add(rec["done"])
        if proc.returncode == 0:
            break
        if started is None or started in finished:
            raise RuntimeError(f"child failed outside a load: {err[-3000:]}")
        what = "hang" if hung else f"crash:rc={proc.returncode}"
        results.append(dict(by_id[started], out=what, rss=0, stderr=err[-1500:]))
        finished.add(started)
        todo = [j for j in todo if j["id"] not in finished]
    return results


def bad(r: dict) -> bool:
    out = r["out"]
    if out in ("exact", "corrupt", "unsafe", "loaded"):
        return out == "unsafe" and r["mode"] != "safe"
    if out == "different":  # mapped arrays are checked only with verify=True (by design)
        unchecked = r["mode"] in ("mmap_r", "mmap_c", "mmap_rplus", "noverify")
        return bool(r["checksummed"]) and not unchecked
    if out.startswith("other:ModuleNotFoundError") or out.startswith("other:AttributeError"):
        return False  # a damaged global name, passed through as joblib does
    if out.startswith("other:FileNotFoundError") and r["seed"].startswith("joblib_0."):
        return False  # a joblib <= 0.9 companion file's damaged name, as joblib raises it
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mutants", type=int, default=100, help="mutants per seed file")
    ap.add_argument("--out", default=None, help="folder to keep the findings")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--only", default=None, help="seed files whose name contains this")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    folder = args.out or tempfile.mkdtemp(prefix="joblite-fuzz-")
    os.makedirs(folder, exist_ok=True)
    values_file = os.path.join(folder, "values.pkl")
    with open(values_file, "wb") as f:
        pickle.dump(values(), f)
    rng = random.Random(args.seed)
    jobs = []
    for path, vi, checksummed in seeds(folder):
        if args.only and args.only not in path:
            continue
        with open(path, "rb") as f:
            data = f.read()
        for _ in range(args.mutants):
            m, kind = mutate(data, rng, checksummed)
            name = os.path.join(folder, f"m{len(jobs):06d}.bin")
            with open(name, "wb") as f:
                f.write(m)
            mode = rng.choice(MODES)
            jobs.append(
                dict(
                    id=len(jobs),
                    file=name,
                    seed=os.path.basename(path),
                    mode=mode,
                    value=vi,
                    checksummed=checksummed and kind != "forge",
                    kind=kind,
                    size=len(m),
                )
            )
    t0 = time.monotonic()
    results = run_batch(jobs, folder, values_file, args.timeout)
    findings = [r for r in results if bad(r) or r["rss"] > max(RSS_REPORT, 64 * r["size"])]
    counts: dict[str, int] = {}
    for r in results:
        key = r["out"].split(":")[0] if not r["out"].startswith("crash") else r["out"]
        counts[key] = counts.get(key, 0) + 1
    print(json.dumps(counts), f"{len(results)} loads in {time.monotonic() - t0:.0f} s")
    with open(os.path.join(folder, "findings.json"), "w") as f:
        json.dump(findings, f, indent=1)
    for r in findings:
        print(r["file"], r["seed"], r["mode"], r["out"], r["rss"])
    if not args.out:
        keep = {r["file"] for r in findings}
        for name in os.listdir(folder):
            p = os.path.join(folder, name)
            if name.startswith("m") and p not in keep:
                os.unlink(p)
    sys.exit(1 if findings else 0)


if __name__ == "__main__":
    main()
