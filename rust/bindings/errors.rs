//! The one place where errors of the Rust core's file formats become Python exceptions.
//!
//! Each [`Error`] variant maps to one exception type: bad data (truncated, failed checksum,
//! corrupt, unsupported version, declared sizes past the limits, not a regular file, not
//! this format) to `joblite.CorruptFileError` naming the file; an operating-system error to
//! `OSError` with its errno and the file name (so a full disk is
//! `OSError(ENOSPC, ..., path)`); a bad argument to `ValueError`. No other module maps a
//! core error: bindings call [`to_pyerr`].

use std::path::Path;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

use crate::error::Error;

/// The Python exception for `err`, which happened reading or writing `path` (None: bytes in
/// memory).
pub fn to_pyerr(py: Python<'_>, path: Option<&Path>, err: Error) -> PyErr {
    match err {
        Error::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            corrupt_error(py, path, &Error::from_read(e).to_string())
        }
        Error::Io(e) => os_error(path, &e),
        Error::Invalid(msg) => PyValueError::new_err(msg),
        bad @ (Error::Truncated(_)
        | Error::Checksum { .. }
        | Error::Corrupt(_)
        | Error::Unsupported(_)
        | Error::LimitExceeded { .. }
        | Error::NotThisFormat(_)
        | Error::NotRegularFile(_)) => corrupt_error(py, path, &bad.to_string()),
    }
}

/// `OSError(errno, strerror, filename)`: Python picks the subclass from the errno
/// (`FileNotFoundError`, `PermissionError`, ...), and `e.errno` / `e.filename` are set.
fn os_error(path: Option<&Path>, e: &std::io::Error) -> PyErr {
    let file = path.map(|p| p.as_os_str().to_os_string());
    match e.raw_os_error() {
        Some(code) => {
            let text = std::io::Error::from_raw_os_error(code).to_string();
            // "No space left on device (os error 28)" -> the strerror part only
            let strerror = text
                .rsplit_once(" (os error")
                .map_or(text.as_str(), |(head, _)| head)
                .to_string();
            PyOSError::new_err((code, strerror, file))
        }
        None => match file {
            Some(f) => PyOSError::new_err((e.to_string(), f)),
            None => PyOSError::new_err(e.to_string()),
        },
    }
}

/// `joblite.CorruptFileError(path, reason)` (defined in Python, raised from here).
pub fn corrupt_error(py: Python<'_>, path: Option<&Path>, reason: &str) -> PyErr {
    let make = || -> PyResult<PyErr> {
        let cls = py
            .import("joblite.exceptions")?
            .getattr("CorruptFileError")?;
        let obj = cls.call1((path.map(|p| p.to_path_buf()), reason))?;
        Ok(PyErr::from_value(obj))
    };
    make().unwrap_or_else(|e| e)
}
