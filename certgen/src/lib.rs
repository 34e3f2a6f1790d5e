//! certgen: a small local certificate authority for xdplb's TLS tier.
//!
//! The `certgen` binary is a thin CLI over this library; alb's tests, the
//! integration tests and xtask call the library directly instead of
//! shelling out. Typical use:
//!
//! ```no_run
//! # fn main() -> certgen::Result<()> {
//! use certgen::{Ca, CaOptions, ClientOptions, ServerOptions};
//! let dir = std::path::Path::new("/tmp/pki");
//! let ca = Ca::create(dir, &CaOptions::default())?;
//! let ip = "127.0.0.1".parse().unwrap();
//! let server = ca.issue_server(&ServerOptions::new("server", &["localhost"], &[ip]))?;
//! let client = ca.issue_client(&ClientOptions::new("client1", "client1"))?;
//! ca.revoke(&client.cert_path)?;
//! let crl = ca.write_crl(30)?; // crl.der goes to WebPkiClientVerifier::with_crls
//! # let _ = (server, crl); Ok(()) }
//! ```
//!
//! Or the whole fixed set in one call: [`demo()`] (see [`demo`](mod@demo)
//! for the file list). Everything written is PEM: certificates 0644,
//! PKCS#8 keys 0600, never overwriting without `force`.
//! See `docs/certgen.md` for the CLI.

#![warn(missing_docs)]

mod ca;
mod crl;
pub mod demo;
mod error;
pub mod files;
mod index;
mod inspect;
mod issue;
mod keys;
mod validity;

pub use ca::{Ca, CaOptions, DEFAULT_CA_CN};
pub use crl::{CrlWritten, Revocation};
pub use demo::{demo, Demo, DemoFiles, DemoOptions};
pub use error::{Error, Result};
pub use files::{read_cert, read_certs, read_crls};
pub use index::{parse_serial, serial_hex, CertKind, Index, IndexEntry};
pub use inspect::{inspect, CertInfo, CrlInfo, Inspected, KeyInfo};
pub use issue::{ClientOptions, Issued, ServerOptions};
pub use keys::{generate as generate_key, load_key_pair, read_private_key, KeyType};
pub use validity::{Validity, CLOCK_SKEW, DEFAULT_CA_DAYS, DEFAULT_CRL_DAYS, DEFAULT_LEAF_DAYS, MAX_DAYS};

/// Re-exported so callers can name [`Validity::Window`] times without
/// adding `time` themselves.
pub use time::{Duration, OffsetDateTime};
