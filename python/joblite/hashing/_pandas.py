"""pandas objects by content: labels, dtypes, values, attrs; never their block layout.

A DataFrame is its column labels (in order), its index, each column's dtype and values, its
``attrs`` and the ``_metadata`` attributes its class declares. Columns are hashed one at a
time from views of their blocks (no copy of the frame); masked and pyarrow-backed columns are
hashed from their own buffers, the bytes under missing values left out.
"""

from __future__ import annotations

from typing import Any

from .. import _core
from ..exceptions import UnhashableError
from ._parallel import map_ordered
from ._registry import slot_state

__all__ = ["dataframe_content", "index_content", "register", "series_content", "values_content"]


def _values(array: Any) -> tuple:
    """Content of the values of a Series or an Index (a pandas ExtensionArray or ndarray)."""
    import numpy as np
    import pandas as pd

    dtype = array.dtype
    if isinstance(dtype, np.dtype) or isinstance(array, pd.arrays.NumpyExtensionArray):
        return ("numpy", np.asarray(array))  # a view of the block, never a copy
    if isinstance(dtype, pd.CategoricalDtype):
        return (
            "category",
            bool(dtype.ordered),
            index_content(dtype.categories),
            np.asarray(array.codes),
        )
    if isinstance(dtype, pd.DatetimeTZDtype):
        return ("datetimetz", str(dtype), np.asarray(array.asi8))
    storage = getattr(dtype, "storage", None)
    if isinstance(dtype, getattr(pd, "ArrowDtype", ())) or storage in ("pyarrow", "pyarrow_numpy"):
        from ._arrow import chunked_digest

        chunked = array.__arrow_array__()
        chunks = getattr(chunked, "chunks", [chunked])
        return ("arrow", repr(dtype), chunked_digest(chunks))
    mask = getattr(array, "_mask", None)
    data = getattr(array, "_data", None)
    if isinstance(mask, np.ndarray) and isinstance(data, np.ndarray):
        # nullable Int64 / Float64 / boolean: the value under a missing slot is not content
        if mask.any():
            data = np.where(mask, np.zeros((), dtype=data.dtype), data)
        return ("masked", repr(dtype), mask, data)
    if storage == "python":
        return ("extension", repr(dtype), np.asarray(array, dtype=object))
    return ("extension", repr(dtype), array)  # any other extension array: its reduction


def values_content(array: Any) -> tuple:
    """Content of a pandas ExtensionArray or ndarray of values (dtype and values)."""
    return _values(array)


_INT64_MIN, _INT64_SPAN = -(2**63), 2**64


def _progression(first: int, step: int, length: int) -> tuple:
    """The canonical content of int64 values ``first + i * step`` for ``i < length``
    (wrapping int64 arithmetic): one description per sequence of values, so a RangeIndex
    and an int64 Index holding the same values are the same content."""
    if length == 0:
        first, step = 0, 0
    elif length == 1:
        step = 0
    step = (step - _INT64_MIN) % _INT64_SPAN + _INT64_MIN
    return ("int64-progression", first, step, length)


def _index_values(index: Any) -> tuple:
    """Content of the values of a flat Index: an int64 arithmetic progression (a RangeIndex,
    and any int64 Index whose values are one) as first value, step and length; any other
    Index as its values."""
    import numpy as np
    import pandas as pd

    if isinstance(index, pd.RangeIndex):
        length = len(index)
        last = index.start + (length - 1) * index.step
        if length == 0 or all(
            _INT64_MIN <= v < _INT64_MIN + _INT64_SPAN for v in (index.start, last)
        ):
            return _progression(index.start, index.step, length)
        index = pd.Index(np.arange(index.start, index.stop, index.step, dtype=np.int64))
    values = _values(index.array)
    array = values[1]
    if values[0] == "numpy" and array.dtype == np.dtype(np.int64) and array.ndim == 1:
        contiguous: Any = np.ascontiguousarray(array)  # numpy's stubs lack the buffer protocol
        found = _core.int64_progression(contiguous)
        if found is not None:
            return _progression(found[0], found[1], len(array))
    return values


def index_content(index: Any) -> tuple:
    """Content of an Index: names, dtype and values (int64 values that form an arithmetic
    progression as first value, step and length, so a RangeIndex equals the same values in
    an int64 Index without being materialised), and the ``freq`` of a DatetimeIndex or
    TimedeltaIndex that has one."""
    import pandas as pd

    names = list(index.names)
    if isinstance(index, pd.MultiIndex):
        levels = [_values(index.get_level_values(i).array) for i in range(index.nlevels)]
        return ("MultiIndex", names, len(index), levels)
    freq = getattr(index, "freq", None)
    if freq is not None and isinstance(index, (pd.DatetimeIndex, pd.TimedeltaIndex)):
        # a frequency changes what pandas does with the index (`shift`, resampling,
        # statsmodels), and pickle keeps it: content, as the offset object it is
        return ("Index", names, _index_values(index), ("freq", freq))
    return ("Index", names, _index_values(index))


#: what pandas itself keeps in a frame's or a Series' ``__dict__`` (pandas 2 and 3)
_INTERNAL = frozenset(
    (
        "_mgr",
        "_attrs",
        "_flags",
        "_name",
        "_cache",
        "_item_cache",
        "_cacher",
        "_is_copy",
        "_metadata",
        "_typ",
        "_subtyp",
        "_references",
    )
)


def _metadata(obj: Any) -> dict:
    # a subclass (geopandas, ...) declares the attributes that are part of its value
    found = {name: getattr(obj, name, None) for name in getattr(type(obj), "_metadata", ())}
    # any other attribute set on the object (``df.unit = "m"``, a subclass's own state):
    # pickle drops it, but the cached function can read it, so it is content
    internal: frozenset = getattr(type(obj), "_internal_names_set", frozenset())
    for name, value in getattr(obj, "__dict__", {}).items():
        if name not in found and name not in internal and name not in _INTERNAL:
            found[name] = value
    for name, value in slot_state(obj, "pandas").items():
        found.setdefault(name, value)
    return found


def _flags(obj: Any, content: tuple) -> tuple:
    """``content``, with ``allows_duplicate_labels=False`` when set: pickle keeps the flag and
    pandas acts on it (an operation that would duplicate a label raises). The default adds
    nothing, so keys of frames without it do not change."""
    flags = getattr(obj, "flags", None)
    if flags is not None and getattr(flags, "allows_duplicate_labels", True) is False:
        return (*content, ("allows_duplicate_labels", False))
    return content


def series_content(series: Any) -> tuple:
    """Content of a Series: name, index, dtype, values, attrs, a non-default flag."""
    content = (
        series.name,
        index_content(series.index),
        _values(series.array),
        dict(series.attrs),
        _metadata(series),
    )
    return _flags(series, content)


def dataframe_content(frame: Any) -> tuple:
    """Content of a DataFrame: columns (labels in order), index, each column, attrs, a
    non-default flag."""
    unique = frame.columns.is_unique

    def digest(item: tuple[int, tuple[Any, Any]]) -> str:
        position, (label, column) = item
        try:
            return _core.hash(_values(column.array))
        except UnhashableError as exc:
            where = repr(label) if unique else f"{label!r}, at {position}"
            raise exc._under(f"[{where}]") from exc.__cause__

    # each column into a digest of its own, on the core threads at once for a tall frame
    def slow(item: tuple[int, tuple[Any, Any]]) -> bool:
        # columns read row by row (strings, categoricals, objects) start first
        return item[1][1].dtype.kind not in "iufcmMb"

    columns = map_ordered(digest, enumerate(frame.items()), len(frame), slow)
    content = (
        index_content(frame.columns),
        index_content(frame.index),
        columns,
        dict(frame.attrs),
        _metadata(frame),
    )
    return _flags(frame, content)


def register() -> None:
    """Register the handlers (called when pandas' first object is hashed)."""
    import pandas as pd

    from ._registry import register_hash_handler

    register_hash_handler(pd.DataFrame, dataframe_content)
    register_hash_handler(pd.Series, series_content)
    register_hash_handler(pd.Index, index_content)
