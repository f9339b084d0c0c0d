"""Arrow data by content: pyarrow objects and any producer of the Arrow PyCapsule interface.

Content is the schema (names, types, nullability, metadata) and the logical values; chunk
boundaries, slice offsets and the bytes under null slots are not. Each column is hashed as a
few byte streams (null positions, values, string lengths and bytes, child columns) that are
appended chunk by chunk, so a column hashes the same however it is chunked. Memory stays
within one chunk. The stream is read with pyarrow (imported only when such an object is
hashed); see docs/hash.md for why pyarrow rather than a reader in the Rust core.
"""

from __future__ import annotations

from typing import Any

from .. import _core
from ..exceptions import UnhashableError
from ._parallel import map_ordered

__all__ = [
    "arrow_content",
    "capsule_content",
    "chunked_digest",
    "polars_frame_content",
    "polars_series_content",
]


class _ColumnStreams:
    """The byte streams of one column, each fed chunk by chunk."""

    def __init__(self) -> None:
        self.streams: dict[str, Any] = {}
        self.rows: dict[str, int] = {}
        self.dictionaries: dict[str, Any] = {}

    def stream(self, key: str) -> Any:
        found = self.streams.get(key)
        if found is None:
            found = self.streams[key] = _core.StreamHasher()
        return found

    def feed(self, arr: Any, key: str = "") -> None:
        import numpy as np
        import pyarrow as pa

        t = arr.type
        n = len(arr)
        start = self.rows.get(key, 0)
        self.rows[key] = start + n
        if pa.types.is_null(t) or n == 0:
            return
        if isinstance(arr, pa.ExtensionArray):
            self.feed(arr.storage, key + ".s")
            return
        layout = _layout(t)
        if layout is not None:  # strings and binaries: read in the Rust core
            _core.arrow_feed_strings(
                layout,
                arr.buffers(),
                arr.offset,
                n,
                start,
                self.stream(key + "n"),
                self.stream(key + "l"),
                self.stream(key + "d"),
            )
            return
        if pa.types.is_dictionary(t) and _layout(t.value_type) is not None:
            self.feed_dictionary(arr, key, start)
            return
        if arr.null_count:
            nulls = arr.is_null().to_numpy(zero_copy_only=False)
            positions = np.flatnonzero(nulls).astype(np.int64) + start
            self.stream(key + "n").update(positions)
        else:
            nulls = None
        if pa.types.is_dictionary(t):  # other value types: the decoded values
            self.feed(arr.dictionary.take(arr.indices), key + ".d")
        elif pa.types.is_boolean(t):
            values = arr.fill_null(False).to_numpy(zero_copy_only=False)
            self.stream(key).update(np.ascontiguousarray(values).view(np.uint8))
        elif _fixed_width(t):
            width = t.bit_width // 8
            raw = np.frombuffer(arr.buffers()[1], dtype=np.uint8)
            raw = raw[arr.offset * width : (arr.offset + n) * width]
            if nulls is not None:
                raw = raw.reshape(n, width).copy()
                raw[nulls] = 0  # the bytes under a null slot are not content
            self.stream(key).update(raw)
        elif (pa.types.is_list(t) or pa.types.is_large_list(t)) and not pa.types.is_map(t):
            lengths = np.diff(arr.offsets.to_numpy()).astype(np.int64)
            if nulls is not None:
                lengths[nulls] = 0  # a null list's extent is not content
            self.stream(key + "l").update(lengths)
            self.feed(arr.flatten(), key + ".c")
        elif pa.types.is_fixed_size_list(t):
            self.feed(arr.flatten(), key + ".c")
        elif pa.types.is_struct(t):
            for i, child in enumerate(arr.flatten()):
                self.feed(child, f"{key}.{i}")
        else:  # maps, unions, run-end encoded, ...: value by value, slow but exact
            if pa.types.is_union(t):
                # which child a slot holds is content: 1 in child "a" is not 1 in child "b"
                # (from the buffer: pyarrow's ``type_codes`` ignores a slice's offset)
                codes = np.frombuffer(arr.buffers()[1], dtype=np.int8)
                self.stream(key + "t").update(codes[arr.offset : arr.offset + n])
            stream = self.stream(key + "p")
            for value in arr.to_pylist():
                stream.update(bytes.fromhex(_core.hash(value)))

    def feed_codes(self, indices: Any, dictionary: Any) -> None:
        """A dictionary column given as its integer codes and its dictionary (one array)."""
        n = len(indices)
        start = self.rows.get("", 0)
        self.rows[""] = start + n
        if n:
            self._feed_ids(indices, dictionary, "", start)

    def feed_dictionary(self, arr: Any, key: str, start: int) -> None:
        """A dictionary column of strings or binaries: null positions, the id of each value
        (ids numbered in order of first appearance in the column) and the distinct values in
        that order, so that neither chunking nor the dictionaries themselves matter."""
        self._feed_ids(arr.indices, arr.dictionary, key, start)

    def _feed_ids(self, indices: Any, dictionary: Any, key: str, start: int) -> None:
        import pyarrow as pa

        ids = self.dictionaries.get(key)
        if ids is None:
            ids = self.dictionaries[key] = _core.ArrowDictionaryIds()
        layout = _layout(dictionary.type)
        if layout is None:  # the callers only pass string/binary dictionaries
            raise TypeError(f"not a string/binary dictionary: {dictionary.type}")
        index_type = indices.type
        ids.feed(
            index_type.bit_width // 8,
            pa.types.is_signed_integer(index_type),
            indices.buffers(),
            indices.offset,
            len(indices),
            layout,
            dictionary.buffers(),
            dictionary.offset,
            len(dictionary),
            start,
            self.stream(key + "n"),
            self.stream(key + "i"),
            self.stream(key + ".dl"),
            self.stream(key + ".dd"),
        )

    def digest(self) -> tuple:
        return (
            self.rows.get("", 0),
            # a stream that received nothing is no content (it may exist or not depending
            # on where the chunks of a column begin)
            sorted((key, s.digest()) for key, s in self.streams.items() if s.length),
        )


def _layout(t: Any) -> str | None:
    """How the Rust core reads an array of type ``t`` (None: not a string/binary type)."""
    import pyarrow as pa

    if pa.types.is_string(t) or pa.types.is_binary(t):
        return "offsets32"
    if pa.types.is_large_string(t) or pa.types.is_large_binary(t):
        return "offsets64"
    if pa.types.is_string_view(t) or pa.types.is_binary_view(t):
        return "views"
    return None


def _fixed_width(t: Any) -> bool:
    try:
        width = t.bit_width
    except ValueError:  # not a fixed-width type
        return False
    return bool(width) and width % 8 == 0


def chunked_digest(chunks: Any) -> tuple:
    """The content of one column given as an iterable of ``pyarrow.Array`` chunks."""
    streams = _ColumnStreams()
    for chunk in chunks:
        streams.feed(chunk)
    return streams.digest()


def _type(t: Any) -> Any:
    """A type's identity: its string, plus what the string leaves out (the metadata of
    nested fields, an extension type's parameters)."""
    import pyarrow as pa

    extra: list = []
    if isinstance(t, pa.ExtensionType):
        extra.append(("ext", t.extension_name, t.__arrow_ext_serialize__(), _type(t.storage_type)))
    for i in range(t.num_fields):
        child = t.field(i)
        if child.metadata or child.type.num_fields or isinstance(child.type, pa.ExtensionType):
            extra.append((i, _field(child)))
    return (str(t), extra) if extra else str(t)


def _field(field: Any) -> tuple:
    metadata = dict(field.metadata) if field.metadata else None
    return (field.name, _type(field.type), field.nullable, metadata)


def _table(schema: Any, batches: Any, dictionaries: dict | None = None) -> tuple:
    """Content of a table; ``dictionaries`` maps a column's position to the dictionary its
    batches' integer arrays index (a dictionary column given as codes and values)."""
    columns = [_ColumnStreams() for _ in schema]

    def feed(i: int, arrays: Any) -> None:
        column = columns[i]
        for array in arrays:
            if dictionaries and i in dictionaries:
                column.feed_codes(array, dictionaries[i])
            else:
                column.feed(array)

    def slow(item: tuple[int, Any]) -> bool:
        # row loops on one thread (fixed-width columns hash on all the core threads)
        return bool(dictionaries and item[0] in dictionaries) or _has_row_loops(
            schema.field(item[0]).type
        )

    # Each column has streams of its own: a tall table's columns are fed on the core threads
    # at once (a list of batches column by column, a stream batch by batch), and the digests
    # are the same as one after another.
    if isinstance(batches, list):
        rows = sum(len(batch) for batch in batches)
        items = [(i, [batch.column(i) for batch in batches]) for i in range(len(columns))]
        map_ordered(lambda item: feed(*item), items, rows, slow)
    else:
        for batch in batches:
            items = [(i, [array]) for i, array in enumerate(batch.columns)]
            map_ordered(lambda item: feed(*item), items, len(batch), slow)
    metadata = dict(schema.metadata) if schema.metadata else None
    return (
        "table",
        [_field(f) for f in schema],
        metadata,
        [c.digest() for c in columns],
    )


def _has_row_loops(t: Any) -> bool:
    """Whether a column of type ``t`` is read row by row (strings, binaries, dictionaries,
    nested types) rather than hashed as whole buffers."""
    import pyarrow as pa

    return (
        _layout(t) is not None
        or pa.types.is_dictionary(t)
        or pa.types.is_nested(t)
        or pa.types.is_boolean(t)
    )


def _array(chunked: Any, field: Any = None) -> tuple:
    head = _field(field) if field is not None else _type(chunked.type)
    return ("array", head, chunked_digest(chunked.chunks))


def arrow_content(obj: Any) -> tuple:
    """Content of a pyarrow Table, RecordBatch, ChunkedArray or Array."""
    import pyarrow as pa

    if isinstance(obj, pa.Table):
        return _table(obj.schema, obj.to_batches())
    if isinstance(obj, pa.RecordBatch):
        return _table(obj.schema, [obj])
    if isinstance(obj, pa.ChunkedArray):
        return _array(obj)
    if isinstance(obj, pa.Array):
        return _array(pa.chunked_array([obj], type=obj.type))
    return capsule_content(obj)


def capsule_content(obj: Any) -> tuple:
    """Content of any producer of the Arrow PyCapsule interface (polars, duckdb, ...)."""
    try:
        import pyarrow as pa
    except ImportError as exc:  # handler_for only picks this handler when pyarrow is there
        raise UnhashableError(f"hashing a {type(obj).__name__} by content needs pyarrow") from exc
    if hasattr(obj, "__arrow_c_stream__"):
        if _is_struct_stream(obj):
            reader = pa.RecordBatchReader.from_stream(obj)
            return _table(reader.schema, reader)
        return _array(pa.chunked_array(obj), _schema_field(obj))
    return _array(pa.chunked_array([pa.array(obj)]), _schema_field(obj))


def _schema_field(obj: Any) -> Any:
    """The field (name, nullability, metadata) an array producer declares, if it does."""
    import pyarrow as pa

    if not hasattr(obj, "__arrow_c_schema__"):
        return None
    return pa.Field._import_from_c_capsule(obj.__arrow_c_schema__())


def polars_series_content(series: Any) -> tuple:
    """Content of a polars Series: its one-column frame, so that its name and the field
    metadata polars writes there (an ``Enum``'s categories) are content; a bare array
    stream carries neither."""
    return polars_frame_content(series.to_frame())


def polars_frame_content(frame: Any) -> tuple:
    """Content of a polars DataFrame: its Arrow stream, except that a column of dtype
    ``Object`` (which polars exports as the objects' memory addresses: a key that changes with
    every run, and that a new object at a freed address would share) is its Python values."""
    import polars as pl

    objects = [name for name, dtype in frame.schema.items() if dtype == pl.Object]
    if not objects:
        return _polars_table(frame)
    return (
        "polars-objects",
        _polars_table(frame.drop(objects)),
        [(frame.columns.index(name), name, frame[name].to_list()) for name in objects],
    )


#: frames at least this tall read their ``Categorical`` columns as codes and categories
_CATEGORICAL_CODES_ROWS = 1 << 15


def _polars_table(frame: Any) -> tuple:
    """A polars frame's Arrow stream. The export of a ``Categorical`` column re-encodes every
    row against a dictionary of its own; for a tall frame it is cheaper to export the codes
    (the column's physical ``UInt32`` values) and read them against the categories: the
    streams are the same (a dictionary column is its values, whatever its dictionary), and
    so is the key. The categories are polars' mapping for the dtype (the global one unless
    named), so this path is taken only while the mapping is no larger than the frame."""
    import polars as pl
    import pyarrow as pa

    codes = [
        name
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.Categorical) and not isinstance(dtype, pl.Enum)
    ]
    if not codes or frame.height < _CATEGORICAL_CODES_ROWS:
        return capsule_content(frame)
    dictionaries = {}
    for name in codes:
        mapping = getattr(frame.schema[name], "categories", None)  # polars >= 1.32
        if mapping is None or not hasattr(mapping, "to_series"):
            return capsule_content(frame)
        categories = mapping.to_series()
        if len(categories) > frame.height:
            return capsule_content(frame)
        dictionaries[frame.columns.index(name)] = pa.chunked_array(categories).combine_chunks()
    schema = pa.RecordBatchReader.from_stream(frame.head(0)).schema
    physical = frame.with_columns(pl.col(codes).to_physical())
    return _table(schema, pa.RecordBatchReader.from_stream(physical), dictionaries)


def _is_struct_stream(obj: Any) -> bool:
    """Whether a stream without a schema capsule carries a table (a struct of columns)."""
    import pyarrow as pa

    try:
        reader = pa.RecordBatchReader.from_stream(obj)
    except (TypeError, ValueError, pa.ArrowInvalid):
        return False
    reader.close()
    return True
