//! The one error type of the Rust core's file formats (format 2 reading and writing, lz4
//! frame streams): one variant per way reading or writing a file goes wrong. Only the
//! binding layer (`bindings/errors.rs`) turns these into Python exceptions, each variant
//! into exactly one exception type.

use std::io;

use thiserror::Error;

/// Everything that can go wrong reading or writing a file of one of our formats.
#[derive(Debug, Error)]
pub enum Error {
    /// The operating system refused (open, read, write, fsync): keeps the errno, if any.
    /// An `UnexpectedEof` read is turned into [`Error::Truncated`] by [`Error::from_read`].
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The bytes end before the structure they declare does; the text says where.
    #[error("truncated: {0}")]
    Truncated(String),
    /// Stored bytes do not match their checksum: `what` names them (e.g. "the chunk at raw
    /// offset 123"), `hint` says what else may explain it (may be empty).
    #[error("checksum mismatch in {what}: the file is damaged{hint}")]
    Checksum { what: String, hint: &'static str },
    /// The bytes are not a valid file of the format; the text says what is wrong.
    #[error("{0}")]
    Corrupt(String),
    /// A format version or feature this build cannot read.
    #[error("{0}")]
    Unsupported(String),
    /// The file declares more than may be believed or allocated: `what` (e.g. "an index")
    /// of `declared` bytes, where at most `limit` can be (None: the allocation failed).
    #[error("{}", limit_text(what, *declared, *limit))]
    LimitExceeded {
        what: &'static str,
        declared: u64,
        limit: Option<u64>,
    },
    /// The bytes are a well-formed file, but not of this format as framed (e.g. a
    /// decompressed dump: a plain pickle stream to us). Readers answer "not ours" for it.
    #[error("{0}")]
    NotThisFormat(String),
    /// The path names something that is not a regular file (directory, FIFO, device,
    /// socket): reading it could block forever or never end.
    #[error("is {0}, not a regular file: not a joblite or joblib file")]
    NotRegularFile(&'static str),
    /// The caller asked for something impossible: a bad argument, not bad data.
    #[error("{0}")]
    Invalid(String),
}

fn limit_text(what: &str, declared: u64, limit: Option<u64>) -> String {
    match limit {
        Some(limit) => format!(
            "the file declares {what} of {declared} bytes where at most {limit} can be: it is \
             damaged or hostile"
        ),
        None => format!(
            "cannot allocate the {declared} bytes of {what} the file declares (it is damaged \
             or hostile, or larger than this machine's memory)"
        ),
    }
}

impl Error {
    /// Whether the error says the bytes are bad (rather than the OS or the caller).
    pub fn is_bad_data(&self) -> bool {
        !matches!(self, Error::Io(_) | Error::Invalid(_))
    }

    /// An I/O error of a read of declared bytes: end of data there means truncation.
    pub fn from_read(e: io::Error) -> Error {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Error::Truncated("data ends early".into())
        } else {
            Error::Io(e)
        }
    }
}

/// `Result` with this module's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// `Error::Corrupt(msg)`.
pub fn corrupt(msg: impl Into<String>) -> Error {
    Error::Corrupt(msg.into())
}

/// `Error::Invalid(msg)`.
pub fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

/// `Error::Truncated(msg)` (the text says where; "truncated: " is prefixed).
pub fn truncated(msg: impl Into<String>) -> Error {
    Error::Truncated(msg.into())
}

/// A vector of `n` zero bytes, or [`Error::LimitExceeded`] when memory is short: an
/// allocation sized by a file must fail, never abort the process.
pub fn try_zeroed(n: usize, what: &'static str) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::LimitExceeded {
        what,
        declared: n as u64,
        limit: None,
    })?;
    v.resize(n, 0);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_went_wrong() {
        let e = Error::from_read(io::ErrorKind::UnexpectedEof.into());
        assert_eq!(e.to_string(), "truncated: data ends early");
        assert!(e.is_bad_data());
        let e = Error::from_read(io::Error::from_raw_os_error(28));
        assert!(matches!(e, Error::Io(_)) && !e.is_bad_data());
        let e = Error::LimitExceeded {
            what: "an index",
            declared: 10,
            limit: Some(5),
        };
        assert!(e
            .to_string()
            .contains("an index of 10 bytes where at most 5"));
        assert!(!invalid("x").is_bad_data());
        assert!(try_zeroed(usize::MAX / 2, "a test buffer").is_err());
        assert_eq!(try_zeroed(3, "a test buffer").unwrap(), vec![0, 0, 0]);
    }
}
