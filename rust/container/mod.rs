//! The joblite container file format (format 1.x): segments, chunk tables, checksums.
//!
//! Layout (all integers little-endian; `docs/format.md` is the full specification):
//!
//! ```text
//! header (64 B) | segment 0 (pickle stream) | pad | segment 1 | pad | ... | table | trailer (56 B)
//! ```
//!
//! Every segment starts at a multiple of [`ALIGN`] so an uncompressed one can be memory-mapped
//! in place. The table lists each segment's codec, offsets and the blake3 digest of every raw
//! chunk; the trailer points at the table and carries the digest of header and table, so a
//! writer can stream segments without knowing their sizes up front.
//!
//! The reader never trusts a declared size: every offset and length is checked against the
//! file's real size (and, for compressed chunks, against the codec's maximum expansion) before
//! anything is allocated.
//!
//! One job a module: [`layout`] (constants, table types, parsing and encoding of header and
//! table), [`sources`] (what bytes are read from), [`read`] (segments into memory, verified),
//! [`write`] (a whole container, and the writable-map mark). Errors are [`crate::error::Error`].

pub mod layout;
pub mod read;
pub mod sources;
pub mod write;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

pub use layout::{
    has_magic, mapped_writable_mark, parse_segments, read_table, ChunkEntry, Codec, Segment,
    SegmentKind, Table, ALIGN, END_MAGIC, FLAG_LEGACY_MAPPED, FLAG_MAPPED_WRITABLE, HEADER_LEN,
    MAGIC, MAX_CODEC_NAME_LEN, TRAILER_LEN, VERSION_MAJOR, VERSION_MINOR,
};
pub use read::{read_segments, read_stored_chunk, verify_segment, verify_stored_segments, ReadJob};
pub use sources::{FileSource, Source};
pub use write::{
    mark_mapped_writable, max_output_len, write_container, write_container_named, SegmentData,
};
