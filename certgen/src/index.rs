//! The CA's record of what it issued and revoked: `index.json` in the CA dir.
//!
//! A CRL can only list serials, and `revoke` is handed a certificate file
//! that may have been copied anywhere, so the CA keeps its own list instead
//! of scanning directories. JSON keeps it diff-able and readable by `jq`.
//! Mutations happen under an exclusive `flock` on `.certgen.lock`, so two
//! certgen runs (say xtask and a test) on one CA cannot lose an entry.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::files;

/// Current on-disk format version.
pub const INDEX_VERSION: u32 = 1;

/// What an issued certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertKind {
    /// serverAuth EKU, DNS/IP SANs.
    Server,
    /// clientAuth EKU.
    Client,
}

impl std::fmt::Display for CertKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CertKind::Server => "server",
            CertKind::Client => "client",
        })
    }
}

/// One issued certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Serial number, lowercase hex without leading zeros or colons.
    pub serial: String,
    /// The `--name` it was issued under (file stem).
    pub name: String,
    /// Server or client.
    pub kind: CertKind,
    /// Subject DN as text, for humans.
    pub subject: String,
    /// Where the certificate was written.
    pub cert_file: PathBuf,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// When `revoke` recorded the revocation; `None` while valid.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub revoked_at: Option<OffsetDateTime>,
}

/// The whole index file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// Format version, [`INDEX_VERSION`].
    pub version: u32,
    /// Number of the last CRL written (0: none yet). The next CRL gets +1,
    /// as RFC 5280 requires CRL numbers to increase monotonically.
    pub crl_number: u64,
    /// Every certificate issued, in issue order.
    pub certs: Vec<IndexEntry>,
}

impl Default for Index {
    fn default() -> Self {
        Index { version: INDEX_VERSION, crl_number: 0, certs: Vec::new() }
    }
}

impl Index {
    /// Loads `DIR/index.json`. A missing file is an empty index, so a CA
    /// made elsewhere (say with openssl) can be dropped into a directory.
    pub fn load(ca_dir: &Path) -> Result<Index> {
        let path = ca_dir.join(files::INDEX);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Index::default()),
            Err(e) => return Err(Error::io("read CA index", &path, e)),
        };
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| Error::bad_file(&path, format!("corrupt CA index: {e}")))?;
        if index.version != INDEX_VERSION {
            return Err(Error::bad_file(&path, format!("index version {} is not supported (expected {INDEX_VERSION})", index.version)));
        }
        Ok(index)
    }

    /// Atomically replaces `DIR/index.json`.
    pub(crate) fn save(&self, ca_dir: &Path) -> Result<()> {
        let path = ca_dir.join(files::INDEX);
        let mut json = serde_json::to_vec_pretty(self).map_err(|e| Error::bad_file(&path, e.to_string()))?;
        json.push(b'\n');
        files::write_file(&path, &json, files::PUBLIC_MODE, true)
    }

    /// The entry for a serial (lowercase hex, as [`serial_hex`] makes it).
    pub fn find(&self, serial: &str) -> Option<&IndexEntry> {
        self.certs.iter().find(|e| e.serial == serial)
    }

    /// Entries revoked so far.
    pub fn revoked(&self) -> impl Iterator<Item = &IndexEntry> {
        self.certs.iter().filter(|e| e.revoked_at.is_some())
    }
}

/// Held while the index is read-modified-written; released on drop (closing
/// the descriptor drops the flock, even if we panic or are killed).
#[derive(Debug)]
pub(crate) struct IndexLock {
    _file: File,
}

/// Takes the CA directory's exclusive lock, waiting for other holders.
pub(crate) fn lock(ca_dir: &Path) -> Result<IndexLock> {
    let path = ca_dir.join(files::LOCK);
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io("open lock file", &path, e))?;
    file.lock().map_err(|e| Error::io("lock", &path, e))?;
    Ok(IndexLock { _file: file })
}

/// Canonical text form of a serial: lowercase hex, leading zero bytes
/// stripped (DER may carry a 0x00 sign byte), `0` for zero.
pub fn serial_hex(bytes: &[u8]) -> String {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    if trimmed.is_empty() {
        return "0".to_owned();
    }
    trimmed.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a serial given as hex, optionally with `:` separators or `0x`.
pub fn parse_serial(s: &str) -> Result<Vec<u8>> {
    let bad = |why: &str| Error::invalid("--serial", s, why);
    let hex: String = s.trim().trim_start_matches("0x").chars().filter(|c| *c != ':').collect();
    if hex.is_empty() || hex.len() > 40 {
        return Err(bad("expected 1 to 20 bytes of hex"));
    }
    let padded = if hex.len() % 2 == 1 { format!("0{hex}") } else { hex };
    (0..padded.len()).step_by(2).map(|i| u8::from_str_radix(padded.get(i..i + 2).unwrap_or("zz"), 16).map_err(|_| bad("not hexadecimal"))).collect()
}

/// A fresh certificate serial: 16 random bytes with the top bit clear, so
/// it is positive and DER-encodes in exactly 16 bytes; the first byte is
/// also kept non-zero so every serial has the same length. That leaves
/// ~127 bits of entropy, far above the CA/B Forum's 64.
pub(crate) fn random_serial() -> Result<[u8; 16]> {
    let mut buf = [0u8; 16];
    loop {
        getrandom::fill(&mut buf).map_err(|e| Error::KeyGen { key_type: "serial", reason: e.to_string() })?;
        buf[0] &= 0x7f;
        if buf[0] != 0 {
            return Ok(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_hex_strips_sign_byte() {
        assert_eq!(serial_hex(&[0x00, 0x81, 0x02]), "8102");
        assert_eq!(serial_hex(&[0, 0]), "0");
        assert_eq!(serial_hex(&[0x7f]), "7f");
    }

    #[test]
    fn parse_serial_accepts_openssl_forms() {
        assert_eq!(parse_serial("0A:0b").unwrap(), vec![0x0a, 0x0b]);
        assert_eq!(parse_serial("0xabc").unwrap(), vec![0x0a, 0xbc]);
        assert!(parse_serial("xyz").is_err());
        assert!(parse_serial("").is_err());
        assert!(parse_serial("é1").is_err());
    }

    #[test]
    fn random_serials_are_positive_16_bytes_and_distinct() {
        let a = random_serial().unwrap();
        let b = random_serial().unwrap();
        assert_ne!(a, b);
        for s in [a, b] {
            assert!(s[0] & 0x80 == 0 && s[0] != 0, "{s:?}");
        }
    }

    #[test]
    fn index_round_trips_through_json() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Index::load(dir.path()).unwrap(), Index::default());
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let mut idx = Index { crl_number: 3, ..Index::default() };
        idx.certs.push(IndexEntry {
            serial: "01ab".into(),
            name: "x".into(),
            kind: CertKind::Client,
            subject: "CN=x".into(),
            cert_file: "x.crt".into(),
            not_before: now,
            not_after: now,
            revoked_at: Some(now),
        });
        idx.save(dir.path()).unwrap();
        assert_eq!(Index::load(dir.path()).unwrap(), idx);
        std::fs::write(dir.path().join(files::INDEX), b"{not json").unwrap();
        let err = Index::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("index.json") && err.contains("corrupt"), "{err}");
    }
}
