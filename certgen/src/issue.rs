//! Issuing server and client certificates from a [`Ca`].
//!
//! Profiles (what verifiers check, and why each bit is there):
//! - server: EKU serverAuth only, SANs exactly as given (DNS and IP); the CN
//!   repeats the first DNS name for humans only, verifiers ignore it.
//! - client: EKU clientAuth only, CN as given, no SANs.
//! - both: basicConstraints CA:FALSE, keyUsage digitalSignature (plus
//!   keyEncipherment for RSA server keys, which TLS 1.2 RSA key exchange
//!   wants), authorityKeyIdentifier = the CA's subjectKeyIdentifier,
//!   a random 127-bit serial, validity clamped to the CA's.
//!
//! A single EKU per certificate is deliberate: the tests prove that a
//! server certificate presented as a client certificate (and vice versa)
//! is refused, which would be impossible with both EKUs.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType, SerialNumber};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;

use crate::ca::{check_common_name, Ca};
use crate::error::{Error, Result};
use crate::files;
use crate::index::{self, CertKind, Index, IndexEntry};
use crate::keys::{self, KeyType};
use crate::validity::Validity;

/// Options for [`Ca::issue_server`].
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// File stem: writes `NAME.crt` and `NAME.key`.
    pub name: String,
    /// DNS subjectAltNames (`*.example` wildcards allowed).
    pub dns: Vec<String>,
    /// IP subjectAltNames.
    pub ips: Vec<IpAddr>,
    /// Validity; default 1 year.
    pub validity: Validity,
    /// Leaf key type; default ECDSA P-256.
    pub key_type: KeyType,
    /// Where to write the files; `None` means the CA directory.
    pub out_dir: Option<PathBuf>,
    /// Replace existing `NAME.crt`/`NAME.key`.
    pub force: bool,
}

impl ServerOptions {
    /// Defaults for everything but the name and SANs.
    pub fn new(name: impl Into<String>, dns: &[&str], ips: &[IpAddr]) -> Self {
        ServerOptions {
            name: name.into(),
            dns: dns.iter().map(|s| (*s).to_owned()).collect(),
            ips: ips.to_vec(),
            validity: Validity::default(),
            key_type: KeyType::default(),
            out_dir: None,
            force: false,
        }
    }
}

/// Options for [`Ca::issue_client`].
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// File stem: writes `NAME.crt` and `NAME.key`.
    pub name: String,
    /// Subject common name (what alb logs as the client identity).
    pub common_name: String,
    /// Validity; default 1 year.
    pub validity: Validity,
    /// Leaf key type; default ECDSA P-256.
    pub key_type: KeyType,
    /// Where to write the files; `None` means the CA directory.
    pub out_dir: Option<PathBuf>,
    /// Replace existing `NAME.crt`/`NAME.key`.
    pub force: bool,
}

impl ClientOptions {
    /// Defaults for everything but the name and CN.
    pub fn new(name: impl Into<String>, common_name: impl Into<String>) -> Self {
        ClientOptions {
            name: name.into(),
            common_name: common_name.into(),
            validity: Validity::default(),
            key_type: KeyType::default(),
            out_dir: None,
            force: false,
        }
    }
}

/// A certificate certgen just issued and wrote.
#[derive(Clone)]
pub struct Issued {
    /// The `--name` it was issued under.
    pub name: String,
    /// Server or client.
    pub kind: CertKind,
    /// Serial, lowercase hex (as in `index.json` and `certgen inspect`).
    pub serial: String,
    /// Where the certificate (PEM) was written.
    pub cert_path: PathBuf,
    /// Where the private key (PKCS#8 PEM, 0600) was written.
    pub key_path: PathBuf,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity (possibly clamped to the CA's).
    pub not_after: OffsetDateTime,
    cert_der: CertificateDer<'static>,
    key_pkcs8: Vec<u8>,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("serial", &self.serial)
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Issued {
    /// The certificate, ready for rustls.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert_der.clone()
    }

    /// The private key, ready for rustls.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_pkcs8.clone()))
    }
}

/// What differs between the two profiles.
struct Profile {
    kind: CertKind,
    name: String,
    common_name: String,
    sans: Vec<SanType>,
    validity: Validity,
    key_type: KeyType,
    out_dir: Option<PathBuf>,
    force: bool,
}

impl Ca {
    /// Issues a server certificate (EKU serverAuth) for the given DNS names
    /// and IP addresses; at least one is required.
    pub fn issue_server(&self, opts: &ServerOptions) -> Result<Issued> {
        check_name(&opts.name)?;
        let mut sans = Vec::new();
        for dns in &opts.dns {
            check_dns_name(dns)?;
            let ia5 = dns.as_str().try_into().map_err(|e| Error::invalid("--dns", dns, format!("not an IA5 string: {e}")))?;
            push_unique(&mut sans, SanType::DnsName(ia5));
        }
        for ip in &opts.ips {
            push_unique(&mut sans, SanType::IpAddress(*ip));
        }
        if sans.is_empty() {
            return Err(Error::invalid("--dns/--ip", "(none)", "a server certificate needs at least one --dns or --ip"));
        }
        let common_name = opts.dns.first().cloned().unwrap_or_else(|| opts.name.clone());
        self.issue(Profile {
            kind: CertKind::Server,
            name: opts.name.clone(),
            common_name,
            sans,
            validity: opts.validity,
            key_type: opts.key_type,
            out_dir: opts.out_dir.clone(),
            force: opts.force,
        })
    }

    /// Issues a client certificate (EKU clientAuth) with the given CN.
    pub fn issue_client(&self, opts: &ClientOptions) -> Result<Issued> {
        check_name(&opts.name)?;
        check_common_name("--cn", &opts.common_name)?;
        self.issue(Profile {
            kind: CertKind::Client,
            name: opts.name.clone(),
            common_name: opts.common_name.clone(),
            sans: Vec::new(),
            validity: opts.validity,
            key_type: opts.key_type,
            out_dir: opts.out_dir.clone(),
            force: opts.force,
        })
    }

    fn issue(&self, p: Profile) -> Result<Issued> {
        let now = OffsetDateTime::now_utc();
        if now > self.not_after() {
            return Err(Error::bad_file(&self.cert_path(), format!("CA certificate expired at {}; create a new CA", self.not_after())));
        }
        let (not_before, mut not_after) = p.validity.resolve(now)?;
        // A leaf outliving its CA is useless and confuses people reading
        // `inspect` output; clamp instead of failing.
        not_after = not_after.min(self.not_after());
        if not_before >= not_after {
            return Err(Error::invalid("--days", format!("{not_before} .. {not_after}"), "validity window is empty after clamping to the CA's expiry"));
        }
        let out_dir = p.out_dir.clone().unwrap_or_else(|| self.dir().to_path_buf());
        files::ensure_dir(&out_dir, "--out")?;
        let cert_path = files::cert_path(&out_dir, &p.name);
        let key_path = files::key_path(&out_dir, &p.name);
        files::ensure_absent([&*cert_path, &*key_path], p.force)?;

        let key = keys::generate(p.key_type)?;
        let serial = index::random_serial()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, p.common_name.as_str());
        params.subject_alt_names = p.sans;
        params.not_before = not_before;
        params.not_after = not_after;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if p.kind == CertKind::Server && p.key_type.is_rsa() {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        params.extended_key_usages = vec![match p.kind {
            CertKind::Server => ExtendedKeyUsagePurpose::ServerAuth,
            CertKind::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        let cert = params.signed_by(&key, self.issuer()).map_err(Error::rcgen("sign certificate"))?;

        let _lock = index::lock(self.dir())?;
        let mut idx = Index::load(self.dir())?;
        let serial_hex = index::serial_hex(&serial);
        if idx.find(&serial_hex).is_some() {
            // 2^-127 odds; refuse rather than corrupt the index.
            return Err(Error::bad_file(&self.dir().join(files::INDEX), format!("serial {serial_hex} already issued")));
        }
        files::write_file(&key_path, key.serialize_pem().as_bytes(), files::KEY_MODE, p.force)?;
        files::write_file(&cert_path, cert.pem().as_bytes(), files::PUBLIC_MODE, p.force)?;
        idx.certs.push(IndexEntry {
            serial: serial_hex.clone(),
            name: p.name.clone(),
            kind: p.kind,
            subject: format!("CN={}", p.common_name),
            cert_file: index_path_for(&cert_path, p.out_dir.is_none()),
            not_before,
            not_after,
            revoked_at: None,
        });
        idx.save(self.dir())?;
        Ok(Issued {
            name: p.name,
            kind: p.kind,
            serial: serial_hex,
            cert_path,
            key_path,
            not_before,
            not_after,
            cert_der: cert.der().clone(),
            key_pkcs8: key.serialize_der(),
        })
    }
}

/// Inside the CA dir we record just the file name (the dir can move);
/// elsewhere an absolute path.
fn index_path_for(cert_path: &Path, in_ca_dir: bool) -> PathBuf {
    if in_ca_dir {
        if let Some(name) = cert_path.file_name() {
            return PathBuf::from(name);
        }
    }
    std::path::absolute(cert_path).unwrap_or_else(|_| cert_path.to_path_buf())
}

fn push_unique(sans: &mut Vec<SanType>, san: SanType) {
    if !sans.contains(&san) {
        sans.push(san);
    }
}

/// `--name` becomes a file name: `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`, and not
/// one of the CA's own stems (`ca`, `crl`, `index`).
pub(crate) fn check_name(name: &str) -> Result<()> {
    let bad = |why: &str| Error::invalid("--name", name, why);
    let mut chars = name.chars();
    match chars.next() {
        None => return Err(bad("must not be empty")),
        Some(c) if !c.is_ascii_alphanumeric() => return Err(bad("must start with a letter or digit")),
        Some(_) => {}
    }
    if name.len() > 64 {
        return Err(bad("must be at most 64 characters"));
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
        return Err(bad("may only contain letters, digits, '.', '_' and '-' (it becomes a file name)"));
    }
    if files::RESERVED_NAMES.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return Err(bad("is reserved for the CA's own files"));
    }
    Ok(())
}

/// A DNS SAN: LDH labels of 1..=63 characters (underscore tolerated, as
/// webpki does), at most 253 in total, optionally a leading `*.` wildcard.
/// IP addresses are refused with a hint, because a DNS SAN holding an IP
/// never matches an IP-based connection.
pub(crate) fn check_dns_name(name: &str) -> Result<()> {
    let bad = |why: &str| Error::invalid("--dns", name, why);
    if name.parse::<IpAddr>().is_ok() {
        return Err(bad("is an IP address; pass it with --ip"));
    }
    if name.is_empty() || name.len() > 253 {
        return Err(bad("must be 1 to 253 characters"));
    }
    if !name.is_ascii() {
        return Err(bad("must be ASCII (use the punycode xn-- form for IDNs)"));
    }
    let rest = name.strip_prefix("*.").unwrap_or(name);
    for label in rest.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("each label must be 1 to 63 characters (no empty labels or trailing dot)"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("labels must not start or end with '-'"));
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(bad("labels may only contain letters, digits, '-' and '_'"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_file_safe() {
        for ok in ["server", "client1", "a.b_c-d", "X"] {
            check_name(ok).unwrap();
        }
        for bad in ["", "../x", "a/b", ".hidden", "-x", "ca", "CRL", "index", "a b", "é", &"a".repeat(65)] {
            let err = check_name(bad).unwrap_err().to_string();
            assert!(err.contains("--name"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn dns_names_are_validated() {
        for ok in ["localhost", "alb.xdplb.test", "*.xdplb.test", "a-b.c", "_acme.x"] {
            check_dns_name(ok).unwrap();
        }
        for bad in ["", "1.2.3.4", "::1", "a..b", "a.", "-a.b", "a-.b", "a b", "ü.de", "*", "a.*.b"] {
            let err = check_dns_name(bad).unwrap_err().to_string();
            assert!(err.contains("--dns") && err.contains(&format!("{bad:?}")), "{bad:?}: {err}");
        }
    }
}
