"""The Rust reader of Arrow string, binary, view and dictionary columns (``joblite.hashing``'s
Arrow handler), checked against a pure-Python reference of the documented streams
(docs/hash.md, "Arrow columns"), for layouts, slices, chunkings and nulls; and against
hostile buffers, which must raise ``ValueError``, never read outside their memory.
"""

from __future__ import annotations

import struct
import subprocess
import sys

import joblite
import numpy as np
import pytest
from joblite import _core

pa = pytest.importorskip("pyarrow")

from joblite.hashing._arrow import chunked_digest  # noqa: E402

# --- the reference: the streams written out from Python values -----------------------------


def leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _raw(value) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def reference_streams(values: list, dictionary: bool) -> dict[str, bytes]:
    """The streams docs/hash.md defines for a column holding ``values`` (None: null)."""
    nulls = b"".join(struct.pack("<Q", i) for i, v in enumerate(values) if v is None)
    present = [_raw(v) for v in values if v is not None]
    if not dictionary:
        return {
            "n": nulls,
            "l": b"".join(leb128(len(v)) for v in present),
            "d": b"".join(present),
        }
    ids: dict[bytes, int] = {}
    order = []
    for v in present:
        if v not in ids:
            ids[v] = len(ids)
            order.append(v)
    return {
        "n": nulls,
        "i": b"".join(leb128(ids[v]) for v in present),
        ".dl": b"".join(leb128(len(v)) for v in order),
        ".dd": b"".join(order),
    }


def reference_digest(values: list, dictionary: bool) -> tuple:
    digests = []
    for key, data in reference_streams(values, dictionary).items():
        if data:
            stream = _core.StreamHasher()
            stream.update(data)
            digests.append((key, stream.digest()))
    return (len(values), sorted(digests))


def chunks_of(chunked) -> list:
    return list(chunked.chunks) if isinstance(chunked, pa.ChunkedArray) else [chunked]


# --- the same data in many layouts ---------------------------------------------------------

VALUES = [
    "a",
    None,
    "",
    "héllo wörld, longer than twelve bytes",
    "b",
    None,
    "a",
    "exactly12byt",
    "thirteen byte",
    "",
    "a",
    "z" * 70_000,  # longer than the gathering block
    None,
    "b",
]
PLAIN_TYPES = ["string", "large_string", "string_view", "binary", "large_binary", "binary_view"]


def typed(values, name):
    t = getattr(pa, name)()
    if "binary" in name:
        values = [None if v is None else v.encode() for v in values]
    return pa.array(values, type=t)


def layouts(arr):
    """The array whole, in pieces of several sizes, and as slices of a larger array."""
    yield [arr]
    for size in (1, 2, 3, 5):
        yield [arr.slice(i, size) for i in range(0, len(arr), size)]
    padded = pa.concat_arrays([arr.slice(0, 3), arr, arr.slice(2, 4)])
    yield [padded.slice(3, len(arr))]
    yield [arr.slice(0, 0), arr.slice(0, 4), arr.slice(4, 0), arr.slice(4)]


@pytest.mark.parametrize("type_name", PLAIN_TYPES)
def test_string_columns_match_the_reference_in_every_layout(type_name):
    arr = typed(VALUES, type_name)
    expected = reference_digest(VALUES, dictionary=False)
    for chunks in layouts(arr):
        assert chunked_digest(chunks) == expected


@pytest.mark.parametrize("type_name", PLAIN_TYPES)
def test_string_columns_without_nulls_match_the_reference(type_name):
    values = [v for v in VALUES if v is not None]
    arr = typed(values, type_name)
    for chunks in layouts(arr):
        assert chunked_digest(chunks) == reference_digest(values, dictionary=False)


def test_views_pointing_into_several_buffers_and_out_of_order():
    # A string_view array built by pyarrow from pieces: several data buffers, views that
    # point back into earlier ones.
    parts = [typed(VALUES[i:] + VALUES[:i], "string_view") for i in range(4)]
    merged = pa.concat_arrays(parts)
    values = [v for i in range(4) for v in VALUES[i:] + VALUES[:i]]
    assert chunked_digest([merged]) == reference_digest(values, dictionary=False)
    # the same views in reverse order (no take kernel for views: reversed by hand)
    validity, views, *data = merged.buffers()
    assert len(data) > 1
    order = np.frombuffer(views, dtype="V16")[merged.offset : merged.offset + len(merged)]
    bits = np.unpackbits(np.frombuffer(validity, np.uint8), bitorder="little")
    valid = bits[merged.offset : merged.offset + len(merged)][::-1]
    reversed_buffers = [_buf(np.packbits(valid, bitorder="little")), _buf(order[::-1]), *data]
    backwards = pa.Array.from_buffers(pa.string_view(), len(merged), reversed_buffers)
    assert chunked_digest([backwards]) == reference_digest(values[::-1], dictionary=False)


@pytest.mark.parametrize("value_type", ["string", "large_string", "string_view", "binary"])
@pytest.mark.parametrize("index_type", ["int8", "uint8", "int16", "int32", "uint32", "int64"])
def test_dictionary_columns_match_the_reference(value_type, index_type):
    values = VALUES * 3
    arr = typed(values, value_type)
    encoded = arr.dictionary_encode()
    encoded = pa.DictionaryArray.from_arrays(
        encoded.indices.cast(getattr(pa, index_type)()), encoded.dictionary
    )
    expected = reference_digest(values, dictionary=True)
    for chunks in layouts(encoded):
        assert chunked_digest(chunks) == expected


def dictionary_array(indices, dictionary, value_type="string"):
    return pa.DictionaryArray.from_arrays(
        pa.array(indices, type=pa.int32()), typed(dictionary, value_type)
    )


@pytest.mark.parametrize("value_type", ["string", "string_view"])
def test_a_dictionary_column_is_its_values_whatever_the_dictionaries(value_type):
    values = ["x", "y", None, "x", "z", "y", None, "z"]
    expected = reference_digest(values, dictionary=True)
    forms = [
        [dictionary_array([0, 1, None, 0, 2, 1, None, 2], ["x", "y", "z"], value_type)],
        # unsorted, unused and duplicated entries; a null entry in place of a null index
        [dictionary_array([3, 1, 4, 0, 2, 1, 4, 5], ["x", "y", "z", "x", None, "z"], value_type)],
        # one dictionary per chunk, each numbering the values differently
        [
            dictionary_array([1, 0, None], ["y", "x"], value_type),
            dictionary_array([0, 2, 1], ["x", "y", "z"], value_type),
            dictionary_array([None, 0], ["z"], value_type),
        ],
    ]
    for chunks in forms:
        assert chunked_digest(chunks) == expected


@pytest.mark.parametrize(
    "other",
    [
        ["y", "x", None, "x", "z", "y", None, "z"],  # two values swapped
        ["x", "y", "x", None, "z", "y", None, "z"],  # a null moved
        ["x", "y", None, "x", "z", "y", None, "z", "x"],  # one more row
        ["x", "y", None, "x", "zz", "y", None, "z"],  # a value changed
        ["x", "y", "", "x", "z", "y", None, "z"],  # a null made empty
    ],
)
def test_different_dictionary_content_gives_a_different_key(other):
    base = ["x", "y", None, "x", "z", "y", None, "z"]
    assert reference_digest(other, True) != reference_digest(base, True)
    for build in (
        lambda v: pa.array(v).dictionary_encode(),
        lambda v: pa.array(v, type=pa.string_view()),
        lambda v: pa.array(v, type=pa.large_string()),
    ):
        assert chunked_digest([build(other)]) != chunked_digest([build(base)])


def test_splitting_bytes_between_values_changes_the_key():
    one = chunked_digest([pa.array(["ab", "c"])])
    assert one != chunked_digest([pa.array(["a", "bc"])])
    assert one != chunked_digest([pa.array(["abc", ""])])
    assert chunked_digest([pa.array(["", "a"])]) != chunked_digest([pa.array(["a", ""])])


def test_a_table_hashes_the_same_whatever_its_chunking_and_string_layout():
    table = pa.table(
        {
            "s": pa.array(VALUES * 10, type=pa.large_string()),
            "c": pa.array(VALUES * 10).dictionary_encode(),
        }
    )
    key = joblite.hash(table)
    rebatched = pa.Table.from_batches(table.to_batches(max_chunksize=7))
    assert joblite.hash(rebatched) == key
    assert joblite.hash(table.combine_chunks()) == key
    # a string_view column is another type: another key
    view = table.set_column(0, "s", table["s"].cast(pa.string_view()))
    assert joblite.hash(view) != key


def test_nested_string_columns_match_their_flat_content():
    lists = pa.array([["a", None], None, ["bc"], []], type=pa.list_(pa.string_view()))
    same = pa.array([["a", None], None, ["bc"], []], type=pa.list_(pa.string_view()))
    split = pa.chunked_array([same.slice(0, 2), same.slice(2)])
    assert joblite.hash(pa.chunked_array([lists])) == joblite.hash(split)
    struct_arr = pa.array([{"k": "a"}, {"k": None}, {"k": "long string over twelve"}])
    assert joblite.hash(pa.chunked_array([struct_arr])) == joblite.hash(
        pa.chunked_array([struct_arr.slice(0, 1), struct_arr.slice(1)])
    )
    other = pa.array([{"k": "a"}, {"k": ""}, {"k": "long string over twelve"}])
    assert joblite.hash(struct_arr) != joblite.hash(other)


# --- polars ---------------------------------------------------------------------------------


def test_polars_strings_and_categoricals_are_chunk_layout_free():
    pl = pytest.importorskip("polars")
    values = [v for v in VALUES if v is None or len(v) < 100] * 5
    frame = pl.DataFrame(
        {"s": values, "c": pl.Series(values, dtype=pl.Categorical), "n": range(len(values))}
    )
    key = joblite.hash(frame)
    pieces = pl.concat([frame[:7], frame[7:30], frame[30:]], rechunk=False)
    assert pieces.n_chunks() == 3
    assert joblite.hash(pieces) == key
    changed = frame.with_columns(
        pl.col("c").cast(pl.String).str.replace("a", "A").cast(pl.Categorical)
    )
    assert joblite.hash(changed) != key
    assert joblite.hash(frame.with_columns(pl.col("s").str.replace("b", "B"))) != key


def test_polars_categoricals_do_not_depend_on_the_global_categories():
    pl = pytest.importorskip("polars")
    script = (
        "import joblite, polars as pl, sys\n"
        "if sys.argv[1] == 'other': pl.Series(['q', 'p', 'b', 'a'], dtype=pl.Categorical)\n"
        "c = pl.Series(['a', 'b', None, 'a'], dtype=pl.Categorical)\n"
        "print(joblite.hash(pl.DataFrame({'c': c})))\n"
    )
    keys = {
        subprocess.run(
            [sys.executable, "-c", script, order], capture_output=True, text=True, check=True
        ).stdout
        for order in ("plain", "other")
    }
    assert len(keys) == 1
    assert pl is not None


# --- hostile buffers ------------------------------------------------------------------------


def _hashers(n):
    return [_core.StreamHasher() for _ in range(n)]


def _buf(array: np.ndarray):
    return pa.py_buffer(np.ascontiguousarray(array).tobytes())


@pytest.mark.parametrize(
    "offsets",
    [
        [0, 3, 100],  # past the data
        [0, 3, 2],  # decreasing
        [-1, 3, 4],  # negative
        [0, 2**31 - 1, 4],  # huge
        [0, 3, 2**31 - 1],
    ],
)
@pytest.mark.parametrize("width", [32, 64])
@pytest.mark.parametrize("validity", [None, b"\x02", b"\x03"])
def test_offsets_outside_the_data_raise(offsets, width, validity):
    data = pa.py_buffer(b"abcde")
    dtype = np.int32 if width == 32 else np.int64
    buffers = [validity, _buf(np.array(offsets, dtype=dtype)), data]
    with pytest.raises(ValueError, match="malformed Arrow array"):
        _core.arrow_feed_strings(f"offsets{width}", buffers, 0, 2, 0, *_hashers(3))
    t = pa.string() if width == 32 else pa.large_string()
    try:  # where pyarrow's own (cheap) checks let the array be built, through the handler
        arr = pa.Array.from_buffers(t, 2, buffers[1:2] and [None, *buffers[1:]])
    except pa.ArrowInvalid:
        return
    with pytest.raises(ValueError, match="malformed Arrow array"):
        joblite.hash(pa.chunked_array([arr]))


def test_short_buffers_raise_before_reading():
    offsets = _buf(np.array([0, 1, 2], dtype=np.int32))
    data = pa.py_buffer(b"ab")
    kind = "offsets32"
    with pytest.raises(ValueError, match="shorter than the array"):
        _core.arrow_feed_strings(kind, [None, offsets, data], 0, 3, 0, *_hashers(3))
    with pytest.raises(ValueError, match="shorter than the array"):
        _core.arrow_feed_strings(kind, [None, offsets, data], 2**62, 2, 0, *_hashers(3))
    with pytest.raises(ValueError, match="validity"):
        _core.arrow_feed_strings(kind, [b"", offsets, data], 0, 2, 0, *_hashers(3))
    with pytest.raises(ValueError, match="shorter than the array"):
        _core.arrow_feed_strings("views", [None, b"\0" * 31, data], 0, 2, 0, *_hashers(3))
    with pytest.raises(ValueError, match="unknown string layout"):
        _core.arrow_feed_strings("utf16", [None, offsets, data], 0, 2, 0, *_hashers(3))
    with pytest.raises(ValueError):
        _core.arrow_feed_strings(kind, [None], 0, 2, 0, *_hashers(3))
    # one hasher given twice: refused, not aliased
    same = _core.StreamHasher()
    with pytest.raises(RuntimeError):
        _core.arrow_feed_strings(kind, [None, offsets, data], 0, 2, 0, same, same, same)
    done = _core.StreamHasher()
    done.digest()
    with pytest.raises(ValueError, match="digest"):
        _core.arrow_feed_strings(kind, [None, offsets, data], 0, 2, 0, done, *_hashers(2))


def view(length: int, buffer_index: int = 0, offset: int = 0, inline: bytes = b"") -> bytes:
    if length <= 12:
        return struct.pack("<i", length) + inline.ljust(12, b"\0")
    return struct.pack("<i4sii", length, b"pref", buffer_index, offset)


@pytest.mark.parametrize(
    "bad",
    [
        view(20, buffer_index=0, offset=0),  # past the end of a 16-byte buffer
        view(14, buffer_index=0, offset=10),
        view(13, buffer_index=1, offset=0),  # a buffer that does not exist
        view(13, buffer_index=-1, offset=0),
        view(13, buffer_index=0, offset=-4),
        struct.pack("<i12s", -5, b""),  # negative length
        view(2**31 - 1, buffer_index=0, offset=2**31 - 1),
    ],
)
def test_views_pointing_outside_their_buffers_raise(bad):
    good = view(3, inline=b"abc")
    data = pa.py_buffer(b"0123456789abcdef")
    arr = pa.Array.from_buffers(pa.string_view(), 2, [None, pa.py_buffer(good + bad), data])
    with pytest.raises(ValueError, match="malformed Arrow array"):
        chunked_digest([arr])


def test_view_buffers_are_read_where_the_view_says():
    data = pa.py_buffer(b"0123456789abcdefghij")
    views = view(3, inline=b"abc") + view(15, offset=5)
    arr = pa.Array.from_buffers(pa.string_view(), 2, [None, pa.py_buffer(views), data])
    assert chunked_digest([arr]) == reference_digest(["abc", "56789abcdefghij"], False)


@pytest.mark.parametrize("index", [3, -1, 127, 2**31 - 1])
def test_dictionary_indices_out_of_range_raise(index):
    indices = pa.array([0, index, 1], type=pa.int32())
    dictionary = pa.array(["a", "b", "c"])
    arr = pa.DictionaryArray.from_arrays(indices, dictionary, safe=False)
    with pytest.raises(ValueError, match="malformed Arrow array: dictionary index out of range"):
        chunked_digest([arr])


def test_dictionary_index_buffers_are_checked():
    ids = _core.ArrowDictionaryIds()
    dictionary = pa.array(["a", "b"])
    args = ("offsets32", dictionary.buffers(), 0, 2, 0, *_hashers(4))
    with pytest.raises(ValueError, match="index width"):
        ids.feed(3, False, [None, b"\0" * 9], 0, 3, *args)
    with pytest.raises(ValueError, match="shorter than the array"):
        ids.feed(4, False, [None, b"\0" * 8], 0, 3, *args)
    with pytest.raises(ValueError, match="shorter than the array"):
        ids.feed(4, False, [None, b"\0" * 8], 2**62, 1, *args)
    with pytest.raises(ValueError, match="validity"):
        ids.feed(1, False, [b"", b"\0" * 8], 0, 8, *args)
    ids.feed(1, False, [None, b"\x00\x01\x00"], 0, 3, *args)  # well formed: accepted


def test_polars_categorical_codes_path_gives_the_export_key():
    """A tall frame's Categorical columns are read as codes and categories: the same content
    (and key) as polars' own Arrow export, chunked or not, with nulls, whatever other strings
    the global categories hold."""
    pl = pytest.importorskip("polars")
    from joblite.hashing import _arrow

    pl.Series(["q", "v3", "p", "zz"], dtype=pl.Categorical)  # other entries, other order
    n = _arrow._CATEGORICAL_CODES_ROWS + 1000
    values = [None if i % 13 == 0 else f"v{(i * 7) % 41}" for i in range(n)]
    frame = pl.DataFrame(
        {
            "c": pl.Series(values, dtype=pl.Categorical),
            "s": values,
            "d": pl.Series(values, dtype=pl.Categorical).cast(pl.String).cast(pl.Categorical),
            "i": range(n),
        }
    )
    exported = _arrow.capsule_content(frame)
    assert _arrow._polars_table(frame) == exported
    chunked = pl.concat([frame[:1000], frame[1000:20000], frame[20000:]], rechunk=False)
    assert _arrow._polars_table(chunked) == exported
    assert joblite.hash(chunked) == joblite.hash(frame)
    changed = frame.with_columns(pl.col("c").cast(pl.String).fill_null("v1").cast(pl.Categorical))
    assert _arrow._polars_table(changed) == _arrow.capsule_content(changed)
    assert joblite.hash(changed) != joblite.hash(frame)
    series = frame["c"]
    assert joblite.hash(series) == joblite.hash(series.rechunk())
    assert joblite.hash(series) != joblite.hash(frame["d"].alias("c").cast(pl.String))


def test_buffers_reused_between_calls_start_empty():
    """The Rust reader keeps its gathering buffers per thread: a view column (which fills one)
    followed by a dictionary column (whose sinks take it) must not carry bytes over."""
    views = typed(VALUES * 50, "string_view")
    encoded = pa.array(["x", "y", "x"]).dictionary_encode()
    for _ in range(3):
        assert chunked_digest([views]) == reference_digest(VALUES * 50, dictionary=False)
        assert chunked_digest([encoded]) == reference_digest(["x", "y", "x"], dictionary=True)


def _long_dictionary_column(n_rows: int, n_values: int, late: int | None, index_type: str) -> list:
    """Row ``i`` holds ``v{i % n_values}``, except that ``v-late`` first appears at row
    ``late``; numbered by a shuffled dictionary, so ids and indices differ."""
    values = [f"v{i % n_values}" for i in range(n_rows)]
    if late is not None:
        values[late] = values[-1] = "v-late"
    order = sorted(set(values), reverse=True)  # not the order of first appearance
    position = {v: k for k, v in enumerate(order)}
    indices = pa.array([position[v] for v in values]).cast(getattr(pa, index_type)())
    return values, pa.DictionaryArray.from_arrays(indices, pa.array(order))


@pytest.mark.parametrize("index_type", ["int8", "uint8", "int16", "uint32", "int64"])
@pytest.mark.parametrize("late", [None, 3, 9_000, 12_287])
def test_long_dictionary_columns_match_the_reference(index_type, late):
    # more rows than the Rust reader looks up as one block (4096), a value first met late
    values, arr = _long_dictionary_column(12_288, 7, late, index_type)
    expected = reference_digest(values, dictionary=True)
    assert chunked_digest([arr]) == expected
    # chunks with dictionaries of their own, cut inside a block
    cuts = [0, 5_000, 5_001, 10_000, len(values)]
    chunks = [arr.slice(a, b - a) for a, b in zip(cuts, cuts[1:])]
    assert chunked_digest([pa.array(c.to_pylist()).dictionary_encode() for c in chunks]) == expected
    assert chunked_digest(chunks) == expected


@pytest.mark.parametrize("index_type", ["int16", "int32", "uint32"])
def test_long_dictionary_columns_with_ids_of_two_bytes_match_the_reference(index_type):
    values, arr = _long_dictionary_column(20_000, 300, 15_000, index_type)
    assert chunked_digest([arr]) == reference_digest(values, dictionary=True)
    with_nulls = pa.DictionaryArray.from_arrays(
        pa.array([None if i % 1000 == 7 else k for i, k in enumerate(arr.indices.to_pylist())]),
        arr.dictionary,
    )
    values = [None if i % 1000 == 7 else v for i, v in enumerate(values)]
    assert chunked_digest([with_nulls]) == reference_digest(values, dictionary=True)


@pytest.mark.parametrize(
    ("index_type", "index"),
    [
        (t, k)
        for t in ["int8", "uint8", "int32", "uint32", "int64", "uint64"]
        for k in [3, 7, -1, 127, 255, 256, 2**31, -(2**40)]
        if np.iinfo(t).min <= k <= np.iinfo(t).max
    ],
)
def test_dictionary_indices_out_of_range_in_a_late_block_raise(index_type, index):
    # a small dictionary (fewer than 256 entries: the block table path) met in full in the
    # first block, then a bad index late in the column
    indices = np.array([i % 3 for i in range(10_000)], dtype=index_type)
    indices[9_000] = index
    arr = pa.DictionaryArray.from_arrays(
        pa.array(indices, type=pa.from_numpy_dtype(indices.dtype)),
        pa.array(["a", "b", "c"]),
        safe=False,
    )
    with pytest.raises(ValueError, match="malformed Arrow array: dictionary index out of range"):
        chunked_digest([arr])


@pytest.mark.parametrize("type_name", PLAIN_TYPES)
@pytest.mark.parametrize("nulls", [False, True])
def test_tall_string_columns_match_the_reference(type_name, nulls):
    # tall enough (2**16 rows and more) for the Rust reader to write lengths and bytes on two
    # threads at once; short values (inline in a view) and long ones
    values = [("v" * (i % 29)) + str(i) for i in range(70_000)]
    if nulls:
        values = [None if i % 11 == 3 else v for i, v in enumerate(values)]
    arr = typed(values, type_name)
    expected = reference_digest(values, dictionary=False)
    assert chunked_digest([arr]) == expected
    assert chunked_digest([arr.slice(0, 65_537), arr.slice(65_537)]) == expected
    assert chunked_digest([arr.slice(1)]) != expected


def test_tall_string_columns_with_decreasing_offsets_raise():
    arr = pa.array([str(i) for i in range(70_000)])
    offsets = bytearray(arr.buffers()[1])
    offsets[4 * 50_000 : 4 * 50_001] = (1).to_bytes(4, "little")  # one offset goes back
    broken = pa.Array.from_buffers(
        pa.string(), len(arr), [None, pa.py_buffer(bytes(offsets)), arr.buffers()[2]]
    )
    with pytest.raises(ValueError, match="malformed Arrow array"):
        chunked_digest([broken])


def _sized(sizes: list[int]) -> list:
    return [("x" * size)[:-1] + chr(97 + i % 26) if size else "" for i, size in enumerate(sizes)]


@pytest.mark.parametrize("type_name", PLAIN_TYPES)
@pytest.mark.parametrize("case", ["long lengths", "large values", "empty"])
def test_tall_columns_of_long_large_and_empty_values_match_the_reference(type_name, case):
    # The readers take lengths below 0x80 a block of rows at a time and gather a views
    # array's bytes in blocks of 1 MiB / 2**16 rows: blocks that hold lengths of two LEB128
    # bytes (127, 128, 300) next to blocks that do not, values that end a byte block or are
    # larger than one, and rows of empty values only (row-bounded blocks) must all give the
    # streams of the reference.
    n = 70_000
    if case == "long lengths":
        sizes = [i % 100 for i in range(n)]
        sizes[20_000:24_096] = [i % 200 for i in range(4096)]
        sizes[5], sizes[6], sizes[69_999] = 127, 128, 300
    elif case == "large values":
        sizes = [(i * 7) % 90 for i in range(n)]
        sizes[30_000], sizes[30_001], sizes[30_003] = (1 << 20) + 5, 1 << 20, (1 << 20) - 1
        sizes[n - 1] = (1 << 20) + 1
    else:
        sizes = [0] * n
        sizes[66_000] = 3
    values = _sized(sizes)
    arr = typed(values, type_name)
    expected = reference_digest(values, dictionary=False)
    assert chunked_digest([arr]) == expected
    assert chunked_digest([arr.slice(0, 30_001), arr.slice(30_001)]) == expected
    changed = list(values)
    changed[66_000] = "abd" if case == "empty" else changed[66_000] + "!"
    assert chunked_digest([typed(changed, type_name)]) != expected


def test_tall_views_with_a_late_bad_view_raise():
    # a negative length and a view outside its buffer past the first gathered block
    good = view(3, inline=b"abc")
    data = pa.py_buffer(b"0123456789abcdef")
    for bad in (struct.pack("<i12s", -5, b""), view(20, buffer_index=0, offset=0)):
        views = good * 70_000 + bad + good * 10
        arr = pa.Array.from_buffers(pa.string_view(), 70_011, [None, pa.py_buffer(views), data])
        with pytest.raises(ValueError, match="malformed Arrow array"):
            chunked_digest([arr])
