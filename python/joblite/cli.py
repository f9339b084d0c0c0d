"""The ``joblite`` command line: ``joblite cache {info,list,show,clear,prune} LOCATION``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, Optional

from .memory.explain import EXPLAIN_ENTRIES, compare_arguments, distance
from .store import EntryInfo, FileSystemStore, parse_age, parse_bytes

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
    try:
        age = parse_age(text)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"invalid age {text!r}: {exc}") from None
    assert age is not None
    return age


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
    raise FileNotFoundError(_describe_missing_cache(location, path, candidates[0]))


def _describe_missing_cache(location: str, path: str, expected: str) -> str:
    """Why ``path`` holds no joblite cache, saying what is there instead (e.g. joblib's)."""
    message = f"no joblite cache at {location!r} (expected {expected!r})"
    if not os.path.exists(path):
        return message + ": the directory does not exist"
    joblib_root = None
    for root in (os.path.join(path, "joblib"), path):
        if os.path.isdir(root) and _looks_like_joblib_cache(root):
            joblib_root = root
            break
    if joblib_root is None:
        return message
    functions, entries = _count_joblib_cache(joblib_root)
    return (
        f"{message}; found a joblib cache at {joblib_root!r} ({_plural(functions, 'function')}, "
        f"{_plural(entries, 'entry', 'entries')}): joblite.Memory keeps its own entries apart, "
        "under <location>/joblite, and never reads joblib's; use joblib.Memory to inspect "
        "or clear that one"
    )


def _plural(n: int, one: str, many: Optional[str] = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _looks_like_joblib_cache(root: str) -> bool:
    """joblib's layout: ``<module>/<function>/func_code.py`` below ``<location>/joblib``."""
    try:
        with os.scandir(root) as modules:
            for module in modules:
                if not module.is_dir() or module.name.startswith("."):
                    continue
                with os.scandir(module.path) as funcs:
                    for func in funcs:
                        if os.path.isfile(os.path.join(func.path, "func_code.py")):
                            return True
    except OSError:
        pass
    return False


def _count_joblib_cache(root: str) -> tuple[int, int]:
    functions = entries = 0
    for _, dirnames, filenames in os.walk(root):
        if "func_code.py" in filenames:
            functions += 1
        if "output.pkl" in filenames:
            entries += 1
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    return functions, entries


def _match_functions(store: FileSystemStore, name: Optional[str]) -> Optional[list[str]]:
    """Function ids ``--function NAME`` selects: the full id, its qualname or its short name.

    ``None`` when no ``--function`` was given (every function); ``FileNotFoundError``
    naming the functions that exist when nothing matches.
    """
    if name is None:
        return None
    functions = store.list_functions()
    if name in functions:
        return [name]
    matches = [
        fid
        for fid in functions
        if fid.rpartition("/")[2] == name or fid.rpartition("/")[2].rpartition(".")[2] == name
    ]
    if not matches:
        known = ", ".join(sorted(functions)) or "none"
        raise FileNotFoundError(
            f"no function {name!r} in {store.location} (functions there: {known})"
        )
    return sorted(matches)


def _short_args(meta: dict[str, Any], width: int = 60) -> str:
    """``x=array([0, 1]), y='a'``: the call's arguments as recorded, cut to ``width``."""
    args = meta.get("input_args")
    if not isinstance(args, dict):
        return "-"
    parts = [
        f"{k}{v}" if k.startswith("*") else f"{k}={v}"
        for k, v in args.items()
        if not (k.startswith("*") and v in ("()", "[]", "{}"))  # empty *args / **kwargs
    ]
    text = ", ".join(parts)
    return text if len(text) <= width else text[: width - 1] + "\u2026"


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
    func_ids = _match_functions(store, args.function)
    found: list[EntryInfo] = []
    for fid in func_ids if func_ids is not None else [None]:
        found.extend(store.iter_entries(fid))
    entries = sorted(found, key=lambda e: (e.func_id, -e.last_access))
    items: list[dict[str, Any]] = []
    for e in entries:
        try:
            meta = store.load_metadata(e.func_id, e.key) if e.metadata_ok else {}
        except (KeyError, OSError, ValueError):
            meta = {}
        recorded = meta.get("input_args")
        items.append(
            {
                "function": e.func_id,
                "key": e.key,
                "arguments": recorded if isinstance(recorded, dict) else None,
                "bytes": e.size,
                "created": e.created,
                "last_access": e.last_access,
                "hits": e.hits,
                "duration_seconds": e.duration,
                "ok": e.metadata_ok,
            }
        )
    if not args.json:
        table = [
            [
                e.func_id,
                e.key[:12],
                _short_args({"input_args": i["arguments"]}),
                _human_bytes(e.size),
                str(e.hits),
                "-" if e.duration is None else _human_duration(e.duration),
                _human_time(e.last_access),
                "" if e.metadata_ok else "damaged",
            ]
            for e, i in zip(entries, items)
        ]
        headers = ["function", "key", "arguments", "size", "hits", "compute", "last access", ""]
        print(_table(headers, table, right={3, 4, 5}) if table else "(no entries)")
    return {"location": store.location, "entries": items}


def _find_entry(store: FileSystemStore, spec: str) -> EntryInfo:
    """The entry ``FUNCTION_ID/KEY`` or ``KEY`` (a unique prefix of 6+ characters will do)."""
    fid, _, key = spec.rpartition("/")
    if len(key) < 6:
        raise ValueError(f"entry {spec!r}: give KEY or FUNCTION/KEY, as `list` shows them")
    candidates = [e for e in store.iter_entries(fid or None) if e.key.startswith(key)]
    if not candidates:
        raise FileNotFoundError(f"no entry {spec!r} in {store.location}")
    if len(candidates) > 1:
        shown = ", ".join(f"{e.func_id}/{e.key}" for e in candidates[:5])
        raise ValueError(f"entry {spec!r} matches {len(candidates)} entries ({shown}): say more")
    return candidates[0]


def _cmd_show(store: FileSystemStore, args: argparse.Namespace) -> dict[str, Any]:
    entry = _find_entry(store, args.entry)
    fid = entry.func_id
    try:
        meta = store.load_metadata(fid, entry.key)
    except (KeyError, OSError, ValueError):
        meta = {}
    raw_digests = meta.get("arg_digests")
    digests: Optional[dict[str, str]] = raw_digests if isinstance(raw_digests, dict) else None
    raw_parts = meta.get("arg_parts")
    parts: dict[str, dict[str, str]] = raw_parts if isinstance(raw_parts, dict) else {}
    # what tells this entry apart from its function's other recent entries (the same view
    # as MemorizedFunc.explain_miss: by parameter, and by column, index or key inside)
    differences: list[dict[str, Any]] = []
    if digests is not None:
        others = sorted(
            (e for e in store.iter_entries(fid) if e.key != entry.key),
            key=lambda e: e.created,
            reverse=True,
        )
        for other in others[:EXPLAIN_ENTRIES]:
            try:
                other_meta = store.load_metadata(fid, other.key)
            except (KeyError, OSError, ValueError):
                continue
            theirs = other_meta.get("arg_digests")
            if not isinstance(theirs, dict):
                continue
            diff = compare_arguments(digests, parts, theirs, other_meta.get("arg_parts") or {})
            differences.append(
                {"key": other.key, "created": other.created, "arguments": dict(diff)}
            )
        differences.sort(key=lambda d: distance(d["arguments"]))
    code = store.load_func_code(fid) or ""
    code_lines = [line for line in code.splitlines() if not line.startswith("# joblite code ")]
    result = {
        "function": fid,
        "key": entry.key,
        "bytes": entry.size,
        "created": entry.created,
        "last_access": entry.last_access,
        "hits": entry.hits,
        "duration_seconds": entry.duration,
        "arguments": meta.get("input_args"),
        "argument_digests": digests,
        "argument_parts": parts,
        "differences": differences,
        "code": "\n".join(code_lines),
    }
    if not args.json:
        print(f"entry {fid}/{entry.key}")
        print(
            f"  stored {_human_time(entry.created)}, {_human_bytes(entry.size)}, "
            f"{entry.hits} hits, computed in "
            f"{'-' if entry.duration is None else _human_duration(entry.duration)}"
        )
        recorded = meta.get("input_args")
        if isinstance(recorded, dict):
            print("  arguments:")
            for name, text in recorded.items():
                digest = (digests or {}).get(name)
                lines = str(text).splitlines() or [""]
                if len(lines) > 1:  # a frame's repr: its first line is enough here
                    text = f"{lines[0].strip()} ... ({len(lines)} lines)"
                print(f"    {name} = {text}" + (f"  [{digest[:12]}]" if digest else ""))
                for part, part_digest in (parts.get(name) or {}).items():
                    print(f"      {part}  [{str(part_digest)[:12]}]")
        if digests is None:
            print("  (no argument digests: an entry written by an older joblite)")
        elif differences:
            print("  compared with the other entries of the function:")
            for d in differences[:5]:
                what = (
                    "; ".join(
                        f"{n.lstrip('*')}: {', '.join(v)}" if v else f"{n.lstrip('*')} differs"
                        for n, v in d["arguments"].items()
                    )
                    or "same arguments (another code version)"
                )
                print(f"    {d['key'][:12]} ({_human_time(d['created'])}): {what}")
        if code_lines:
            print("  code:")
            for line in code_lines[:40]:
                print(f"    {line}")
    return result


def _cmd_clear(store: FileSystemStore, args: argparse.Namespace) -> dict[str, Any]:
    func_ids = _match_functions(store, args.function)
    if func_ids is not None and len(func_ids) > 1:
        raise ValueError(
            f"--function {args.function!r} matches {len(func_ids)} functions "
            f"({', '.join(func_ids)}): give the full name"
        )
    entries = list(store.iter_entries(func_ids[0] if func_ids else None))
    if func_ids:
        store.clear_func(func_ids[0])
    else:
        store.clear()
    freed = sum(e.size for e in entries)
    if not args.json:
        what = func_ids[0] if func_ids else "all functions"
        print(f"cleared {len(entries)} entries ({_human_bytes(freed)}) of {what}")
    return {"location": store.location, "removed_entries": len(entries), "freed_bytes": freed}


def _cmd_prune(store: FileSystemStore, args: argparse.Namespace) -> dict[str, Any]:
    leftovers = store.cleanup()
    damaged = [e for e in store.iter_entries() if not e.metadata_ok]
    store.remove_entries(damaged)
    removed, kept = store.reduce_size(args.bytes_limit, args.items_limit, args.age_limit)
    freed = sum(e.size for e in removed) + sum(e.size for e in damaged)
    result: dict[str, Any] = {
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
            f"kept {len(kept)} entries ({_human_bytes(sum(e.size for e in kept))})"
        )
    return result


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="joblite",
        description="joblite command line tools: inspect and maintain Memory caches.",
        epilog="Example: joblite cache info ./cachedir",
    )
    parser.add_argument("--version", action="version", version=f"joblite {__version__}")
    sub = parser.add_subparsers(dest="group", metavar="{cache}")
    cache = sub.add_parser("cache", help="inspect and maintain a Memory cache (directory or URL)")
    cmds = cache.add_subparsers(dest="command", metavar="{info,list,show,clear,prune}")
    parser.set_defaults(help_of=parser)
    cache.set_defaults(help_of=cache)

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
    p = add("list", "one line per entry, with its arguments")
    p.add_argument(
        "--function", help="only this function: its full name as info shows it, or a short name"
    )
    p = add("show", "one entry: its arguments and what tells it apart from the others")
    p.add_argument("entry", help="KEY or FUNCTION/KEY as `list` shows them (a prefix will do)")
    p = add("clear", "remove entries")
    p.add_argument(
        "--function", help="only this function: its full name as info shows it, or a short name"
    )
    p = add("prune", "remove leftovers, damaged entries, and entries beyond the limits (LRU)")
    p.add_argument("--bytes-limit", type=_parse_size, help="e.g. 500M, 2G")
    p.add_argument("--items-limit", type=_parse_items, help="maximum number of entries")
    p.add_argument("--age-limit", type=_parse_age, help="e.g. 3600, 12h, 7d")
    return parser


_COMMANDS = {
    "info": _cmd_info,
    "list": _cmd_list,
    "show": _cmd_show,
    "clear": _cmd_clear,
    "prune": _cmd_prune,
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    if getattr(args, "command", None) is None:  # bare `joblite` or `joblite cache`
        args.help_of.print_help()
        return 0
    try:
        store = _open_store(args.location, args.storage_options)
        result = _COMMANDS[args.command](store, args)
    except (FileNotFoundError, NotADirectoryError, PermissionError, ValueError) as exc:
        print(f"joblite: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    return 0
