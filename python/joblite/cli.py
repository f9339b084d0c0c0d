"""The ``joblite cache {info,list,clear,prune} LOCATION`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, Optional

from .store import EntryInfo, FileSystemStore, parse_bytes

__all__ = ["main"]


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - the loop always returns


def _human_time(t: Optional[float]) -> str:
    if t is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _human_duration(s: float) -> str:
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{s / 60:.1f}min"
    return f"{s / 3600:.1f}h"


def _parse_age(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    t = text.strip().lower()
    factor = units.get(t[-1:], None)
    number = t[:-1] if factor is not None else t
    try:
        value = float(number) * (factor or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid age {text!r}: use seconds or a number with s/m/h/d/w, e.g. 7d"
        ) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid age {text!r}: must not be negative")
    return value


def _parse_size(text: str) -> int:
    try:
        size = parse_bytes(text if not text.isdigit() else int(text))
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    assert size is not None
    return size


def _parse_items(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"invalid item count {text!r}: expected an int >= 0")
    return n


def _open_store(location: str, storage_options: Optional[str] = None) -> Any:
    """The store of a Memory location (the directory given to Memory, or its joblite/)."""
    if "://" in location:  # an fsspec URL: s3://bucket/prefix, memory://..., gcs://...
        from .store.remote import FsspecStore

        try:
            options = json.loads(storage_options) if storage_options else {}
        except ValueError as exc:
            raise ValueError(f"--storage-options is not valid JSON: {exc}") from None
        remote = FsspecStore()
        root = location.rstrip("/")
        if not root.endswith("/joblite"):
            root += "/joblite"
        remote.configure(root, backend_options={"storage_options": options})
        return remote
    path = os.path.abspath(os.path.expanduser(location))
    candidates = [os.path.join(path, "joblite"), path]
    for root in candidates:
        if os.path.isdir(root) and (root == candidates[0] or os.path.basename(root) == "joblite"):
            store = FileSystemStore()
            store.configure(root)
            return store
    raise FileNotFoundError(f"no joblite cache at {location!r} (expected {candidates[0]!r})")


def _summaries(entries: list[EntryInfo]) -> list[dict[str, Any]]:
    by_func: dict[str, list[EntryInfo]] = {}
    for e in entries:
        by_func.setdefault(e.func_id, []).append(e)
    rows = []
    for fid in sorted(by_func):
        es = by_func[fid]
        rows.append(
            {
                "function": fid,
                "entries": len(es),
                "bytes": sum(e.size for e in es),
                "hits": sum(e.hits for e in es),
                "oldest": min(e.created for e in es),
                "newest": max(e.created for e in es),
                "last_access": max(e.last_access for e in es),
                "compute_seconds": sum(e.duration or 0.0 for e in es),
                "time_saved_seconds": sum((e.duration or 0.0) * e.hits for e in es),
                "damaged": sum(1 for e in es if not e.metadata_ok),
            }
        )
    return rows


def _table(headers: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [len(h) for h in headers]
    for r in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, r)]

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    lines = [fmt(headers), fmt(["-" * w for w in widths])]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)


def _cmd_info(store: FileSystemStore, args: argparse.Namespace) -> dict[str, Any]:
    entries = list(store.iter_entries())
    rows = _summaries(entries)
    total = {
        "entries": len(entries),
        "bytes": sum(e.size for e in entries),
        "hits": sum(e.hits for e in entries),
        "time_saved_seconds": sum(r["time_saved_seconds"] for r in rows),
    }
    result = {"location": store.location, "functions": rows, "total": total}
    if not args.json:
        print(f"joblite cache at {store.location}")
        if not rows:
            print("(empty)")
            return result
        table = [
            [
                r["function"],
                str(r["entries"]),
                _human_bytes(r["bytes"]),
                str(r["hits"]),
                _human_time(r["oldest"]),
                _human_time(r["newest"]),
                _human_duration(r["time_saved_seconds"]),
            ]
            for r in rows
        ]
        headers = ["function", "entries", "size", "hits", "oldest", "newest", "time saved"]
        print(_table(headers, table, right={1, 2, 3, 6}))
        print(
            f"\n{total['entries']} entries, {_human_bytes(total['bytes'])}, "
            f"{total['hits']} hits, {_human_duration(total['time_saved_seconds'])} saved"
        )
        damaged = sum(r["damaged"] for r in rows)
        if damaged:
            print(f"{damaged} damaged entries (they will be recomputed; `prune` removes them)")
    return result


def _cmd_list(store: FileSystemStore, args: argparse.Namespace) -> dict[str, Any]:
    entries = sorted(store.iter_entries(args.function), key=lambda e: (e.func_id, -e.last_access))
    items = [
        {
            "function": e.func_id,
            "key": e.key,
            "bytes": e.size,
            "created": e.created,
            "last_access": e.last_access,
            "hits": e.hits,
            "duration_seconds": e.duration,
            "ok": e.metadata_ok,
        }
        for e in entries
    ]
    if not args.json:
        table = [
            [
                i["function"],
                i["key"][:12],
                _human_bytes(i["bytes"]),
                str(i["hits"]),
                "-" if i["duration_seconds"] is None else _human_duration(i["duration_seconds"]),
                _human_time(i["last_access"]),
                "" if i["ok"] else "damaged",
            ]
            for i in items
        ]
        headers = ["function", "key", "size", "hits", "compute", "last access", ""]
        print(_table(headers, table, right={2, 3, 4}) if table else "(no entries)")
    return {"location": store.location, "entries": items}


def _cmd_clear(store: FileSystemStore, args: argparse.Namespace) -> dict[str, Any]:
    entries = list(store.iter_entries(args.function))
    if args.function is not None:
        if args.function not in store.list_functions():
            raise FileNotFoundError(f"no function {args.function!r} in {store.location}")
        store.clear_func(args.function)
    else:
        store.clear()
    freed = sum(e.size for e in entries)
    if not args.json:
        what = args.function or "all functions"
        print(f"cleared {len(entries)} entries ({_human_bytes(freed)}) of {what}")
    return {"location": store.location, "removed_entries": len(entries), "freed_bytes": freed}


def _cmd_prune(store: FileSystemStore, args: argparse.Namespace) -> dict[str, Any]:
    leftovers = store.cleanup()
    damaged = [e for e in store.iter_entries() if not e.metadata_ok]
    store.remove_entries(damaged)
    removed, kept = store.reduce_size(args.bytes_limit, args.items_limit, args.age_limit)
    freed = sum(e.size for e in removed) + sum(e.size for e in damaged)
    result = {
        "location": store.location,
        "removed_entries": len(removed),
        "removed_damaged": len(damaged),
        "removed_leftovers": leftovers,
        "freed_bytes": freed,
        "kept_entries": len(kept),
        "kept_bytes": sum(e.size for e in kept),
    }
    if not args.json:
        print(
            f"removed {len(removed)} entries, {len(damaged)} damaged entries and "
            f"{leftovers} leftovers of interrupted writes ({_human_bytes(freed)} freed); "
            f"kept {len(kept)} entries ({_human_bytes(result['kept_bytes'])})"
        )
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="joblite", description="joblite command line tools")
    sub = parser.add_subparsers(dest="group", required=True)
    cache = sub.add_parser("cache", help="inspect and maintain a Memory cache (directory or URL)")
    cmds = cache.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = cmds.add_parser(name, help=help_text)
        p.add_argument("location", help="the directory or URL given to Memory (or its joblite/)")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument(
            "--storage-options",
            metavar="JSON",
            help="fsspec options for a URL location, e.g. '{\"anon\": false}'",
        )
        return p

    add("info", "per-function entries, size, hits, age and time saved")
    p = add("list", "one line per entry")
    p.add_argument("--function", help="only this function (as shown by info)")
    p = add("clear", "remove entries")
    p.add_argument("--function", help="only this function (as shown by info)")
    p = add("prune", "remove leftovers, damaged entries, and entries beyond the limits (LRU)")
    p.add_argument("--bytes-limit", type=_parse_size, help="e.g. 500M, 2G")
    p.add_argument("--items-limit", type=_parse_items, help="maximum number of entries")
    p.add_argument("--age-limit", type=_parse_age, help="e.g. 3600, 12h, 7d")
    return parser


_COMMANDS = {"info": _cmd_info, "list": _cmd_list, "clear": _cmd_clear, "prune": _cmd_prune}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        store = _open_store(args.location, args.storage_options)
        result = _COMMANDS[args.command](store, args)
    except (FileNotFoundError, NotADirectoryError, PermissionError, ValueError) as exc:
        print(f"joblite: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    return 0
