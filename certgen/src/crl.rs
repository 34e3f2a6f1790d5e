//! Revocation and CRL publishing.
//!
//! `revoke` only records the revocation in `index.json`; `write_crl` turns
//! the index into `crl.pem`. Keeping them apart lets a caller revoke several
//! certificates and publish once, and makes the CRL a pure function of the
//! index (plus a fresh number and dates), so it can be regenerated any time,
//! e.g. before `nextUpdate` passes.

use std::path::{Path, PathBuf};

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use rustls_pki_types::CertificateRevocationListDer;
use time::OffsetDateTime;

use crate::ca::{parse_cert, Ca};
use crate::error::{Error, Result};
use crate::files;
use crate::index::{self, Index};
use crate::validity::{check_days, truncate, CLOCK_SKEW};

/// Outcome of [`Ca::revoke`] / [`Ca::revoke_serial`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// Serial, lowercase hex.
    pub serial: String,
    /// The name the certificate was issued under.
    pub name: String,
    /// When it was (first) revoked.
    pub revoked_at: OffsetDateTime,
    /// True if it had been revoked before; the index is then unchanged.
    pub already_revoked: bool,
}

/// What [`Ca::write_crl`] wrote.
#[derive(Clone, Debug)]
pub struct CrlWritten {
    /// `CA_DIR/crl.pem`.
    pub path: PathBuf,
    /// The CRL number (1 for the first CRL, then +1 each time).
    pub number: u64,
    /// Revoked serials listed, lowercase hex.
    pub revoked: Vec<String>,
    /// thisUpdate (backdated by the clock-skew allowance).
    pub this_update: OffsetDateTime,
    /// nextUpdate.
    pub next_update: OffsetDateTime,
    /// The CRL, ready for `WebPkiClientVerifier::builder(..).with_crls(..)`.
    pub der: CertificateRevocationListDer<'static>,
}

impl Ca {
    /// Marks the certificate in `cert_path` revoked in the index. The
    /// certificate must have been signed by this CA's key and be listed in
    /// its index. Call [`Ca::write_crl`] afterwards to publish.
    pub fn revoke(&self, cert_path: impl AsRef<Path>) -> Result<Revocation> {
        let cert_path = cert_path.as_ref();
        let der = files::read_cert(cert_path)?;
        let cert = parse_cert(cert_path, &der)?;
        let serial = index::serial_hex(cert.raw_serial());
        let not_ours = |reason| Error::NotIssuedByCa { cert: cert_path.to_path_buf(), serial: serial.clone(), ca_dir: self.dir().to_path_buf(), reason };
        let ca_cert = parse_cert(&self.cert_path(), self.cert_der())?;
        if cert.issuer().as_raw() != ca_cert.subject().as_raw() {
            return Err(not_ours("its issuer name differs from the CA's subject"));
        }
        // Same name is not enough (two demo runs make two "xdplb demo CA"s);
        // the signature decides.
        if cert.verify_signature(Some(ca_cert.public_key())).is_err() {
            return Err(not_ours("its signature does not verify with the CA's key"));
        }
        self.mark_revoked(&serial).map_err(|e| match e {
            Error::InvalidArg { .. } => not_ours("its serial is not in the CA's index.json"),
            other => other,
        })
    }

    /// Marks a serial (hex, `:` separators allowed) revoked in the index,
    /// for when the certificate file is gone. The serial must be indexed.
    pub fn revoke_serial(&self, serial: &str) -> Result<Revocation> {
        let hex = index::serial_hex(&index::parse_serial(serial)?);
        self.mark_revoked(&hex)
    }

    fn mark_revoked(&self, serial: &str) -> Result<Revocation> {
        let _lock = index::lock(self.dir())?;
        let mut idx = Index::load(self.dir())?;
        let entry = idx.certs.iter_mut().find(|e| e.serial == serial).ok_or_else(|| Error::invalid("--serial", serial, "not found in the CA's index.json"))?;
        let already_revoked = entry.revoked_at.is_some();
        let revoked_at = *entry.revoked_at.get_or_insert_with(|| truncate(OffsetDateTime::now_utc()));
        let out = Revocation { serial: serial.to_owned(), name: entry.name.clone(), revoked_at, already_revoked };
        if !already_revoked {
            idx.save(self.dir())?;
        }
        Ok(out)
    }

    /// Writes `crl.pem`, signed by the CA, listing every revoked serial in
    /// the index, with the next CRL number and `nextUpdate` `days` from now.
    pub fn write_crl(&self, days: u32) -> Result<CrlWritten> {
        let lifetime = check_days(days)?;
        let now = truncate(OffsetDateTime::now_utc());
        let (this_update, next_update) = (now - CLOCK_SKEW, now + lifetime);

        let _lock = index::lock(self.dir())?;
        let mut idx = Index::load(self.dir())?;
        let index_path = self.dir().join(files::INDEX);
        let number = idx.crl_number.checked_add(1).ok_or_else(|| Error::bad_file(&index_path, "crl_number overflow"))?;
        let mut revoked = Vec::new();
        let mut revoked_certs = Vec::new();
        for e in idx.revoked() {
            let bytes = index::parse_serial(&e.serial).map_err(|_| Error::bad_file(&index_path, format!("bad serial {:?}", e.serial)))?;
            let revoked_at = e.revoked_at.unwrap_or(now);
            revoked_certs.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&bytes),
                // thisUpdate is backdated; a revocation recorded seconds
                // ago must not appear to postdate the CRL that lists it.
                revocation_time: revoked_at.min(this_update),
                reason_code: None,
                invalidity_date: None,
            });
            revoked.push(e.serial.clone());
        }
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from(number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: match self.key_id() {
                Some(id) => KeyIdMethod::PreSpecified(id.to_vec()),
                None => KeyIdMethod::Sha256,
            },
        };
        let crl = params.signed_by(self.issuer()).map_err(Error::rcgen("sign CRL"))?;
        let pem = crl.pem().map_err(Error::rcgen("PEM-encode CRL"))?;
        // Bump the number before publishing: a crash in between skips a
        // number (allowed) instead of reusing one (not allowed).
        idx.crl_number = number;
        idx.save(self.dir())?;
        let path = self.crl_path();
        files::write_file(&path, pem.as_bytes(), files::PUBLIC_MODE, true)?;
        Ok(CrlWritten { path, number, revoked, this_update, next_update, der: crl.der().clone() })
    }
}
