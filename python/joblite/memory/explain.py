"""Why a call misses: what :meth:`MemorizedFunc.explain_miss`, ``verbose > 10`` and
``joblite cache show`` report, from the digests each entry stores of its arguments.

An entry's metadata keeps ``arg_digests`` (one digest per parameter, as it entered the key)
and ``arg_parts`` (for a DataFrame, Series or dict argument, one digest per column, index or
key), so a miss is explained by comparing digests, never by loading or recomputing a result.
"""

from __future__ import annotations

import datetime
import difflib
import sys
from dataclasses import dataclass, field
from typing import Any, Optional

from ..exceptions import CorruptFileError
from ..hashing import hash as content_hash
from .identity import code_digest, code_source

__all__ = [
    "MissExplanation",
    "argument_parts",
    "changed_lines",
    "compare_arguments",
    "distance",
    "explain_call",
]

#: parts kept per argument (a frame with more columns is compared as a whole beyond these)
MAX_PARTS = 256
#: digests of parts are kept short: they only tell parts apart, they are not keys
PART_DIGEST_CHARS = 32
#: how many of a function's most recent entries an explanation compares a call with
EXPLAIN_ENTRIES = 20


def _digest(value: Any) -> str:
    return content_hash(value)[:PART_DIGEST_CHARS]


def argument_parts(value: Any) -> Optional[dict[str, str]]:
    """One digest per part of an argument worth naming in an explanation, or ``None``.

    DataFrame: ``index``, ``columns`` (labels and order) and ``column 'x'`` per column (its
    values and dtype, not its index). Series: ``index``, ``values``. dict with string or int
    keys: ``['key']`` per item. A part that cannot be hashed is left out.
    """
    pd = sys.modules.get("pandas")
    parts: dict[str, str] = {}
    try:
        if pd is not None and isinstance(value, pd.DataFrame):
            parts["index"] = _digest(value.index)
            parts["columns"] = _digest([repr(c) for c in value.columns])
            for i, label in enumerate(value.columns[:MAX_PARTS]):
                column = value.iloc[:, i].reset_index(drop=True)
                parts[f"column {label!r}"] = _digest(column)
            return parts
        if pd is not None and isinstance(value, pd.Series):
            parts["index"] = _digest(value.index)
            parts["values"] = _digest(value.reset_index(drop=True))
            return parts
    except Exception:  # a part pandas or the hash cannot give: no parts, the whole still counts
        return None
    if isinstance(value, dict) and 0 < len(value) <= MAX_PARTS:
        for k, v in value.items():
            if type(k) not in (str, int):
                return None
            try:
                parts[f"[{k!r}]"] = _digest(v)
            except Exception:
                continue
        return parts
    return None


def changed_lines(stored_code: str, current_code: str) -> tuple[int, ...]:
    """Line numbers (in the current source file) where the current code differs from the
    stored one; a deletion counts at the line after it."""
    _, old = code_source(stored_code)
    first, new = code_source(current_code)
    if not new:
        return ()
    lines: list[int] = []
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for tag, _i1, _i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        span = range(j1, j2) if j2 > j1 else range(j1, j1 + 1)
        lines.extend(first + j for j in span)
    return tuple(sorted(set(lines)))


def compare_arguments(
    current: dict[str, str],
    current_parts: dict[str, dict[str, str]],
    stored: dict[str, str],
    stored_parts: dict[str, dict[str, str]],
) -> dict[str, tuple[str, ...]]:
    """``{argument: differing parts}`` between a call and an entry (parts empty when the
    argument differs as a whole, or has no parts to name)."""
    out: dict[str, tuple[str, ...]] = {}
    for name in list(current) + [n for n in stored if n not in current]:
        if name not in stored:
            out[name] = ("new argument",)
            continue
        if name not in current:
            out[name] = ("argument no longer passed",)
            continue
        if current[name] == stored[name]:
            continue
        a = current_parts.get(name) or {}
        b = stored_parts.get(name) or {}
        details: list[str] = []
        if a and b:
            details += [f"{p} changed" for p in a if p in b and a[p] != b[p]]
            details += [f"{p} added" for p in a if p not in b]
            details += [f"{p} removed" for p in b if p not in a]
            if details == ["columns changed"]:
                details = ["column order changed"]
            else:
                details = [d for d in details if d != "columns changed"] or details
        out[name] = tuple(details)
    return out


def distance(diff: dict[str, tuple[str, ...]]) -> tuple[int, int]:
    """How far an entry is from a call: differing arguments, then differing parts."""
    return len(diff), sum(len(parts) for parts in diff.values())


def _when(stamp: Optional[float]) -> str:
    if stamp is None:
        return "at an unknown time"
    return datetime.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class MissExplanation:
    """What a call of a cached function would do, and why it would not be served from the
    cache. Returned by :meth:`MemorizedFunc.explain_miss`; ``str()`` gives a readable account.

    Attributes
    ----------
    hit : bool
        The call would be served from the cache.
    reason : str
        ``"hit"``, ``"code changed"``, ``"arguments differ"``, ``"no entries"``,
        ``"expired"`` (past the Memory's ``age_limit``), ``"rejected"`` (by
        ``cache_validation_callback``), ``"not cached"`` (no entry, and no stored entry
        says what it was called with) or ``"disabled"`` (a Memory without location).
    function : str
        The function's name.
    key : str
        The entry key of this call.
    changed_lines : tuple of int
        For ``"code changed"``: the lines of the current source that differ from the code
        the entries were computed with.
    source_file : str
        Where those lines are (``""`` when unknown).
    arguments : dict
        For ``"arguments differ"``: ``{parameter name: parts that differ}`` against the
        nearest stored entry; parts are ``"column 'x' changed"``, ``"index changed"``,
        ``"['key'] changed"``, ... (empty when the argument differs as a whole).
    nearest : str or None
        Key of the entry compared with (of the most recent entries, the one that differs
        least); for ``"code changed"``, the most recent entry.
    nearest_time : float or None
        When that entry was stored (unix time).
    entries : int
        How many entries of the function the store holds.
    """

    hit: bool
    reason: str
    function: str
    key: str
    changed_lines: tuple[int, ...] = ()
    source_file: str = ""
    arguments: dict[str, tuple[str, ...]] = field(default_factory=dict)
    nearest: Optional[str] = None
    nearest_time: Optional[float] = None
    entries: int = 0

    def __str__(self) -> str:
        name = self.function
        if self.hit:
            return f"{name}: this call is in the cache (entry {self.key}); it will not recompute"
        if self.reason == "disabled":
            return f"{name}: this call will compute: the Memory has no location, nothing is cached"
        head = f"{name}: this call will compute (no entry {self.key})"
        if self.reason == "code changed":
            where = f" of {self.source_file}" if self.source_file else ""
            lines = ", ".join(str(n) for n in self.changed_lines[:20]) or "unknown"
            if len(self.changed_lines) > 20:
                lines += ", ..."
            since = (
                f" since its most recent entry ({self.nearest}) was stored "
                f"({_when(self.nearest_time)})"
                if self.nearest_time is not None
                else ""
            )
            return (
                f"{head}: the code of {name} changed{since}, at line(s) {lines}{where}; "
                f"the next call clears its {self.entries} cached result(s)"
            )
        if self.reason == "arguments differ":
            parts = []
            for arg, details in self.arguments.items():
                text = f"argument {arg.lstrip('*')!r}"
                parts.append(f"{text}: {', '.join(details)}" if details else f"{text} differs")
            return (
                f"{head}: compared with the nearest of the {self.entries} cached call(s) "
                f"(entry {self.nearest}, stored {_when(self.nearest_time)}), " + "; ".join(parts)
            )
        if self.reason == "no entries":
            return f"{head}: nothing is cached for {name} yet"
        if self.reason == "expired":
            return f"{head}: the entry is older than the Memory's age_limit"
        if self.reason == "rejected":
            return f"{head}: the entry is rejected by cache_validation_callback"
        return (
            f"{head}: none of its {self.entries} cached call(s) records its arguments "
            "(entries written by an older joblite, or by joblib)"
        )


def explain_call(cache: Any, key: str, keyed: tuple, named: dict[str, Any]) -> MissExplanation:
    """What a call of ``cache`` (a :class:`~.protocol.FunctionCache`) with this key would do,
    and why it would miss; computes, loads and removes nothing."""
    store = cache.store_backend
    fid = cache.func_id
    name = cache.identity.name
    assert cache.code is not None
    entries = sorted(store.iter_entries(fid), key=lambda e: e.created, reverse=True)
    latest = entries[0].created if entries else None
    stored_code = store.load_func_code(fid)
    if stored_code is not None and code_digest(stored_code) != code_digest(cache.code):
        where = cache.identity.where.rsplit(":", 1)[0]
        return MissExplanation(
            hit=False,
            reason="code changed",
            function=name,
            key=key,
            changed_lines=changed_lines(stored_code, cache.code),
            source_file=where,
            nearest=entries[0].key if entries else None,
            nearest_time=latest,
            entries=len(entries),
        )
    if store.contains_entry(fid, key):
        reason = "hit"
        if cache.limits.age_limit is not None and cache.limits.expired(fid, key, touch=False):
            reason = "expired"
        elif cache.cache_validation_callback is not None:
            try:
                ok = bool(cache.cache_validation_callback(store.load_metadata(fid, key)))
            except (KeyError, CorruptFileError):
                ok = False
            reason = "hit" if ok else "rejected"
        return MissExplanation(
            hit=reason == "hit", reason=reason, function=name, key=key, entries=len(entries)
        )
    if not entries:
        return MissExplanation(hit=False, reason="no entries", function=name, key=key)
    current = cache.binder.argument_digests(keyed)
    current_parts: dict[str, dict[str, str]] = {}
    best: Optional[tuple[dict, Any]] = None
    for entry in entries[:EXPLAIN_ENTRIES]:
        try:
            meta = store.load_metadata(fid, entry.key)
        except (KeyError, CorruptFileError, OSError):
            continue
        stored = meta.get("arg_digests")
        if not isinstance(stored, dict):
            continue
        stored_parts = meta.get("arg_parts") or {}
        if not current_parts and stored_parts:
            current_parts = {
                n: p for n, v in named.items() if n in stored_parts and (p := argument_parts(v))
            }
        diff = compare_arguments(current, current_parts, stored, stored_parts)
        if best is None or distance(diff) < distance(best[0]):
            best = (diff, entry)
    if best is None:
        return MissExplanation(
            hit=False, reason="not cached", function=name, key=key, entries=len(entries)
        )
    diff, entry = best
    return MissExplanation(
        hit=False,
        reason="arguments differ",
        function=name,
        key=key,
        arguments=diff,
        nearest=entry.key,
        nearest_time=entry.created,
        entries=len(entries),
    )
