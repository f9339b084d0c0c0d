//! The error type of the Rust core's file formats: one variant per way reading or writing a
//! file goes wrong. Only the binding layer (`bindings/errors.rs`) turns these into Python
//! exceptions, each variant into exactly one exception type.

use std::io;

use thiserror::Error;

/// Everything that can go wrong reading or writing a file of one of our formats.
#[derive(Debug, Error)]
pub enum Error {
    /// The operating system refused (open, read, write, fsync): keeps the errno, if any.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The bytes end before the structure they declare does.
    #[error("{0}")]
    Truncated(String),
    /// Stored bytes do not match their checksum.
    #[error("{0}")]
    Checksum(String),
    /// The bytes are not a valid file of the format; the message says what is wrong.
    #[error("{0}")]
    Corrupt(String),
    /// A format version or feature this build cannot read.
    #[error("{0}")]
    Unsupported(String),
    /// The path names something that is not a regular file (directory, FIFO, device,
    /// socket): reading it could block forever or never end.
    #[error("{0}")]
    NotRegularFile(String),
    /// The caller asked for something impossible: a bad argument, not bad data.
    #[error("{0}")]
    InvalidArgument(String),
}

impl Error {
    /// Whether the error says the bytes are bad (rather than the OS or the caller).
    pub fn is_bad_data(&self) -> bool {
        matches!(
            self,
            Error::Truncated(_)
                | Error::Checksum(_)
                | Error::Corrupt(_)
                | Error::Unsupported(_)
                | Error::NotRegularFile(_)
        )
    }
}

/// `Result` with this module's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// `Err(Error::Corrupt(msg))`.
pub fn corrupt<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::Corrupt(msg.into()))
}

/// `Err(Error::InvalidArgument(msg))`.
pub fn invalid<T>(msg: impl Into<String>) -> Result<T> {
    Err(Error::InvalidArgument(msg.into()))
}

/// Whether an I/O error means the data ended early (a truncated file).
pub fn is_eof(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::UnexpectedEof
}
