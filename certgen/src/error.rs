//! One error type for the whole crate.
//!
//! Every variant carries what a person needs to fix the problem without a
//! debugger: the offending argument and value, or the file and what was wrong
//! with it. Argument names are spelled as the CLI flags (`--days`, `--ip`)
//! because the CLI is a thin layer over this library and library callers map
//! them to their own fields easily.

use std::io;
use std::path::{Path, PathBuf};

/// Result alias used throughout certgen.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in certgen.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A caller-supplied value is unusable (bad `--days`, `--name`, `--dns`, …).
    #[error("invalid {arg} value {value:?}: {reason}")]
    InvalidArg {
        /// The CLI flag the value belongs to, e.g. `--days`.
        arg: &'static str,
        /// The value as given.
        value: String,
        /// Why it was rejected.
        reason: String,
    },

    /// A file we were asked to create already exists and `force` was not set.
    #[error("refusing to overwrite existing file {} (pass --force to replace it)", path.display())]
    Exists {
        /// The file that already exists.
        path: PathBuf,
    },

    /// An I/O operation on a named file or directory failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What we tried, e.g. "read CA certificate".
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying OS error.
        #[source]
        source: io::Error,
    },

    /// A file was readable but its content is not what it must be (bad PEM,
    /// not a CA, key does not match certificate, corrupt index, …).
    #[error("{}: {reason}", path.display())]
    BadFile {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// rcgen refused to build or sign something.
    #[error("{context}: {source}")]
    Rcgen {
        /// What we were doing.
        context: &'static str,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },

    /// Key generation failed (OS RNG or RSA prime search).
    #[error("{key_type} key generation failed: {reason}")]
    KeyGen {
        /// The key type being generated.
        key_type: &'static str,
        /// The backend's message.
        reason: String,
    },

    /// `revoke` was handed a certificate this CA did not issue.
    #[error("{} (serial {serial}) was not issued by the CA in {}: {reason}", cert.display(), ca_dir.display())]
    NotIssuedByCa {
        /// The certificate file given to `revoke`.
        cert: PathBuf,
        /// Its serial number (lowercase hex).
        serial: String,
        /// The CA directory.
        ca_dir: PathBuf,
        /// Which check failed.
        reason: &'static str,
    },
}

impl Error {
    pub(crate) fn invalid(arg: &'static str, value: impl ToString, reason: impl Into<String>) -> Self {
        Error::InvalidArg { arg, value: value.to_string(), reason: reason.into() }
    }

    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        Error::Io { action, path: path.to_path_buf(), source }
    }

    pub(crate) fn bad_file(path: &Path, reason: impl Into<String>) -> Self {
        Error::BadFile { path: path.to_path_buf(), reason: reason.into() }
    }

    pub(crate) fn rcgen(context: &'static str) -> impl FnOnce(rcgen::Error) -> Self {
        move |source| Error::Rcgen { context, source }
    }
}
