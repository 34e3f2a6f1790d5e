//! Creating and loading a CA directory.
//!
//! A CA directory holds `ca.crt`, `ca.key` (0600), `index.json` and, once
//! `crl` ran, `crl.pem`. Leaf certificates are written next to them unless
//! the caller picks another output directory.
//!
//! [`Ca::create`] writes the files and then goes through [`Ca::load`], so
//! every freshly created CA exercises the exact code path a later `certgen
//! server --ca DIR` uses (DN re-encoding, key/cert match): a bug there shows
//! up at once, not on the second run.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;

use crate::error::{Error, Result};
use crate::files;
use crate::index::{self, Index};
use crate::keys::{self, KeyType};
use crate::validity::{Validity, DEFAULT_CA_DAYS};

/// Default CA common name.
pub const DEFAULT_CA_CN: &str = "xdplb local CA";

/// Options for [`Ca::create`].
#[derive(Clone, Debug)]
pub struct CaOptions {
    /// Subject common name.
    pub common_name: String,
    /// Lifetime in days (1..=36500).
    pub days: u32,
    /// CA key type.
    pub key_type: KeyType,
    /// Replace an existing CA in the directory (its index and CRL are reset).
    pub force: bool,
}

impl Default for CaOptions {
    fn default() -> Self {
        CaOptions { common_name: DEFAULT_CA_CN.to_owned(), days: DEFAULT_CA_DAYS, key_type: KeyType::default(), force: false }
    }
}

/// A loaded certificate authority: its directory, certificate and signer.
pub struct Ca {
    dir: PathBuf,
    cert_der: CertificateDer<'static>,
    subject: String,
    not_after: OffsetDateTime,
    /// subjectKeyIdentifier of ca.crt, reused as the CRL's
    /// authorityKeyIdentifier so the two always match.
    key_id: Option<Vec<u8>>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The signer holds the private key; never print it.
        f.debug_struct("Ca").field("dir", &self.dir).field("subject", &self.subject).field("not_after", &self.not_after).finish_non_exhaustive()
    }
}

impl Ca {
    /// Creates a self-signed CA in `dir` (created if missing): basicConstraints
    /// CA:true pathlen:0 (critical), keyUsage keyCertSign + cRLSign
    /// (critical), a fresh key of `opts.key_type`, an empty index.
    pub fn create(dir: impl AsRef<Path>, opts: &CaOptions) -> Result<Ca> {
        let dir = dir.as_ref();
        check_common_name("--cn", &opts.common_name)?;
        let (not_before, not_after) = Validity::Days(opts.days).resolve(OffsetDateTime::now_utc())?;
        files::ensure_dir(dir, "--out")?;
        let (cert_path, key_path) = (dir.join(files::CA_CERT), dir.join(files::CA_KEY));
        let (index_path, crl_path) = (dir.join(files::INDEX), dir.join(files::CRL));
        files::ensure_absent([&*cert_path, &*key_path, &*index_path, &*crl_path], opts.force)?;

        let key = keys::generate(opts.key_type)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, opts.common_name.as_str());
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(SerialNumber::from_slice(&index::random_serial()?));
        // pathlen:0 — this CA only ever signs leaves; an intermediate signed
        // by it (should its key leak) would be rejected by verifiers.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).map_err(Error::rcgen("self-sign CA certificate"))?;

        let _lock = index::lock(dir)?;
        // Key first: if writing the certificate fails we have an orphan key
        // (harmless, refused next time without --force) rather than a
        // certificate whose key was never saved.
        files::write_file(&key_path, key.serialize_pem().as_bytes(), files::KEY_MODE, opts.force)?;
        files::write_file(&cert_path, cert.pem().as_bytes(), files::PUBLIC_MODE, opts.force)?;
        Index::default().save(dir)?;
        // A CRL signed by the replaced key would fail verification; drop it.
        if opts.force {
            match std::fs::remove_file(&crl_path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove stale CRL", &crl_path, e)),
            }
        }
        drop(_lock);
        Ca::load(dir)
    }

    /// Loads the CA in `dir`: reads `ca.crt` and `ca.key`, checks that the
    /// certificate is a CA allowed to sign certificates and that the key
    /// belongs to it.
    pub fn load(dir: impl AsRef<Path>) -> Result<Ca> {
        let dir = dir.as_ref();
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(Error::invalid("--ca", dir.display(), "is not a directory")),
            Err(e) => return Err(Error::io("open CA directory (--ca)", dir, e)),
        }
        let cert_path = dir.join(files::CA_CERT);
        let key_path = dir.join(files::CA_KEY);
        let cert_der = files::read_cert(&cert_path)?;
        let x509 = parse_cert(&cert_path, &cert_der)?;
        check_is_ca(&cert_path, &x509)?;
        let key = keys::load_key_pair(&key_path)?;
        if key.der_bytes() != &*x509.public_key().subject_public_key.data {
            return Err(Error::bad_file(&key_path, format!("private key does not match the public key in {}", cert_path.display())));
        }
        let key_id = x509.iter_extensions().find_map(|ext| match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        });
        let subject = x509.subject().to_string();
        let not_after = x509.validity().not_after.to_datetime();
        drop(x509);
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| Error::bad_file(&cert_path, format!("cannot use as issuer: {e}")))?;
        Ok(Ca { dir: dir.to_path_buf(), cert_der, subject, not_after, key_id, issuer })
    }

    /// The CA directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `DIR/ca.crt`
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(files::CA_CERT)
    }

    /// `DIR/ca.key`
    pub fn key_path(&self) -> PathBuf {
        self.dir.join(files::CA_KEY)
    }

    /// `DIR/crl.pem` (exists once [`Ca::write_crl`] ran).
    pub fn crl_path(&self) -> PathBuf {
        self.dir.join(files::CRL)
    }

    /// The CA certificate, e.g. for a `rustls::RootCertStore`.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Subject DN as text, e.g. `CN=xdplb local CA`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// End of the CA certificate's validity; leaves are clamped to it.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// The current index (re-read from disk).
    pub fn index(&self) -> Result<Index> {
        Index::load(&self.dir)
    }

    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    pub(crate) fn key_id(&self) -> Option<&[u8]> {
        self.key_id.as_deref()
    }
}

/// Parses DER with x509-parser; errors name the file.
pub(crate) fn parse_cert<'a>(path: &Path, der: &'a [u8]) -> Result<X509Certificate<'a>> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(Error::bad_file(path, "trailing data after the certificate")),
        Err(e) => Err(Error::bad_file(path, format!("not a valid X.509 certificate: {e}"))),
    }
}

fn check_is_ca(path: &Path, x509: &X509Certificate<'_>) -> Result<()> {
    let bad = |why: &str| Error::bad_file(path, format!("not usable as a CA certificate: {why}"));
    let bc = x509.basic_constraints().map_err(|e| bad(&format!("bad basicConstraints ({e})")))?;
    if !bc.is_some_and(|bc| bc.value.ca) {
        return Err(bad("basicConstraints CA:TRUE is missing"));
    }
    let ku = x509.key_usage().map_err(|e| bad(&format!("bad keyUsage ({e})")))?;
    if ku.is_some_and(|ku| !ku.value.key_cert_sign()) {
        return Err(bad("keyUsage lacks keyCertSign"));
    }
    // rcgen re-encodes the subject as the issuer of everything we sign; it
    // supports exactly one attribute per RDN (and would panic on an empty
    // RDN set), so refuse such names up front.
    for rdn in x509.subject().iter() {
        if rdn.iter().count() != 1 {
            return Err(bad("subject has a multi-valued or empty RDN, which certgen cannot re-encode"));
        }
    }
    Ok(())
}

/// Common names: non-empty, at most 64 characters (RFC 5280's
/// ub-common-name), no control characters.
pub(crate) fn check_common_name(arg: &'static str, cn: &str) -> Result<()> {
    if cn.trim().is_empty() {
        return Err(Error::invalid(arg, cn, "must not be empty"));
    }
    if cn.chars().count() > 64 {
        return Err(Error::invalid(arg, cn, "must be at most 64 characters"));
    }
    if cn.chars().any(char::is_control) {
        return Err(Error::invalid(arg, cn, "must not contain control characters"));
    }
    Ok(())
}
