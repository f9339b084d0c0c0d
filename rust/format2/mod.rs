//! Format 2 of joblite's files (docs/format.md): a joblib-readable pickle stream in a
//! standard codec's framing, with joblite's checksummed chunk index inside it.
//!
//! - [`pickle_scan`] turns the C pickler's protocol-5 output into the pieces of the stream;
//! - [`chunk`] compresses, checksums and decodes one chunk with each codec;
//! - [`deflate`] makes libdeflate's streams into pieces of one deflate stream (zlib, gzip);
//! - [`head`] frames the header unit (the pickle prefix holding the index) for each codec,
//!   and finds it again; [`head_stream`] finds where a bz2 / xz dump read from a stream ends;
//! - [`index`] is the index's layout and validation;
//! - [`layout`] places the records, padding and chunks of a dump, and sizes its header;
//! - [`source`] is where a dump's bytes come from (a file, memory), for every reader;
//! - [`write`] and [`read`] put it together, on all cores.

pub mod chunk;
pub mod deflate;
pub mod head;
pub mod head_stream;
pub mod index;
pub mod layout;
pub mod pickle_scan;
pub mod read;
pub mod source;
pub mod write;

/// The error type of format 2 is the core's one file-format error (`rust/error.rs`).
pub use crate::error::{corrupt, Error, Result};

/// The codec of a format-2 file (one per file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Codec {
    None = 0,
    Zlib = 1,
    Gzip = 2,
    Bz2 = 3,
    Xz = 4,
    Lz4 = 5,
    Zstd = 6,
}

impl Codec {
    pub fn from_id(id: u8) -> Option<Codec> {
        Some(match id {
            0 => Codec::None,
            1 => Codec::Zlib,
            2 => Codec::Gzip,
            3 => Codec::Bz2,
            4 => Codec::Xz,
            5 => Codec::Lz4,
            6 => Codec::Zstd,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Zlib => "zlib",
            Codec::Gzip => "gzip",
            Codec::Bz2 => "bz2",
            Codec::Xz => "xz",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }

    /// Most raw bytes one stored byte may decode to (a reader refuses chunk entries claiming
    /// more, so a small file cannot make it allocate much).
    pub fn max_expansion(self) -> u64 {
        match self {
            Codec::None => 1,
            Codec::Zlib | Codec::Gzip => 1032,
            Codec::Lz4 => 255,
            Codec::Zstd => 32 * 1024,
            Codec::Bz2 | Codec::Xz => 64 * 1024,
        }
    }

    /// Bytes after the last chunk: the final deflate block and the zlib / gzip trailer.
    pub fn trailer_len(self) -> u64 {
        match self {
            Codec::Zlib => 2 + 4,
            Codec::Gzip => 2 + 8,
            _ => 0,
        }
    }
}

/// XXH3-64 of a chunk's stored bytes.
pub fn checksum(data: &[u8]) -> u64 {
    twox_hash::XxHash3_64::oneshot(data)
}
