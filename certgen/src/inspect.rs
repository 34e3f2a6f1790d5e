//! `certgen inspect`: a human summary of certificates, CRLs and keys.
//!
//! Works on any PEM file (every section is reported: a chain, a CRL, a key)
//! and on a single DER certificate or CRL. The SHA-256 fingerprint is over
//! the DER, the same value as `openssl x509 -noout -fingerprint -sha256`.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use rcgen::{KeyPair, PublicKeyData};
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::PrivatePkcs8KeyDer;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, SubjectPublicKeyInfo};
use x509_parser::public_key::PublicKey;

use crate::ca::parse_cert;
use crate::error::{Error, Result};
use crate::files::looks_like_pem;
use crate::index::serial_hex;

/// One object found in the inspected file.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Inspected {
    /// An X.509 certificate.
    Certificate(CertInfo),
    /// A certificate revocation list.
    Crl(CrlInfo),
    /// A private key (the secret itself is never shown).
    PrivateKey(KeyInfo),
}

/// Summary of a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject DN, e.g. `CN=client1`.
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial, lowercase hex.
    pub serial: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// `ecdsa-p256`, `rsa2048`, … (certgen's `--key` names where possible).
    pub key_type: String,
    /// SANs as `DNS:name` / `IP:addr` / `URI:…` / `email:…`.
    pub sans: Vec<String>,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
    /// keyUsage bits, e.g. `Key Cert Sign`.
    pub key_usage: Vec<String>,
    /// Extended key usages: `serverAuth`, `clientAuth`, other OIDs.
    pub extended_key_usage: Vec<String>,
    /// SHA-256 of the DER certificate, colon-separated uppercase hex.
    pub sha256: String,
    /// SHA-256 of the SubjectPublicKeyInfo (pins; matches `inspect KEY`).
    pub spki_sha256: String,
}

/// Summary of a CRL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrlInfo {
    /// Issuer DN.
    pub issuer: String,
    /// CRL number, decimal.
    pub number: Option<String>,
    /// thisUpdate.
    pub this_update: OffsetDateTime,
    /// nextUpdate.
    pub next_update: Option<OffsetDateTime>,
    /// Revoked serials (lowercase hex) with revocation dates.
    pub revoked: Vec<(String, OffsetDateTime)>,
    /// SHA-256 of the DER CRL.
    pub sha256: String,
}

/// Summary of a private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// PEM label, e.g. `PRIVATE KEY` (PKCS#8).
    pub format: String,
    /// Key type, when certgen can read the key (PKCS#8 only).
    pub key_type: Option<String>,
    /// SHA-256 of the public key's SubjectPublicKeyInfo, to match it with
    /// a certificate's `spki_sha256`.
    pub spki_sha256: Option<String>,
}

/// Reads `path` and summarises every certificate, CRL and private key in it.
pub fn inspect(path: impl AsRef<Path>) -> Result<Vec<Inspected>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
    if !looks_like_pem(&bytes) {
        // DER: try certificate, then CRL.
        if let Ok(cert) = cert_info(path, &bytes) {
            return Ok(vec![Inspected::Certificate(cert)]);
        }
        return crl_info(path, &bytes).map(|c| vec![Inspected::Crl(c)]).map_err(|_| Error::bad_file(path, "neither a DER certificate nor a DER CRL"));
    }
    let mut out = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(&bytes) {
        let (kind, der) = section.map_err(|e| Error::bad_file(path, format!("bad PEM: {e}")))?;
        match kind {
            SectionKind::Certificate => out.push(Inspected::Certificate(cert_info(path, &der)?)),
            SectionKind::Crl => out.push(Inspected::Crl(crl_info(path, &der)?)),
            SectionKind::PrivateKey => out.push(Inspected::PrivateKey(pkcs8_info(&der))),
            SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey => out.push(Inspected::PrivateKey(KeyInfo {
                format: if kind == SectionKind::RsaPrivateKey { "RSA PRIVATE KEY (PKCS#1)".into() } else { "EC PRIVATE KEY (SEC1)".into() },
                key_type: None,
                spki_sha256: None,
            })),
            _ => {}
        }
    }
    if out.is_empty() {
        return Err(Error::bad_file(path, "no certificate, CRL or private key found"));
    }
    Ok(out)
}

fn cert_info(path: &Path, der: &[u8]) -> Result<CertInfo> {
    let cert = parse_cert(path, der)?;
    let mut sans = Vec::new();
    let mut is_ca = false;
    let mut key_usage = Vec::new();
    let mut extended_key_usage = Vec::new();
    for ext in cert.iter_extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                sans.extend(san.general_names.iter().map(general_name));
            }
            ParsedExtension::BasicConstraints(bc) => is_ca = bc.ca,
            ParsedExtension::KeyUsage(ku) => key_usage = ku.to_string().split(", ").filter(|s| !s.is_empty()).map(String::from).collect(),
            ParsedExtension::ExtendedKeyUsage(eku) => {
                let flags = [
                    (eku.any, "any"),
                    (eku.server_auth, "serverAuth"),
                    (eku.client_auth, "clientAuth"),
                    (eku.code_signing, "codeSigning"),
                    (eku.email_protection, "emailProtection"),
                    (eku.time_stamping, "timeStamping"),
                    (eku.ocsp_signing, "OCSPSigning"),
                ];
                extended_key_usage.extend(flags.iter().filter(|(on, _)| *on).map(|(_, n)| (*n).to_owned()));
                extended_key_usage.extend(eku.other.iter().map(|oid| oid.to_id_string()));
            }
            _ => {}
        }
    }
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: serial_hex(cert.raw_serial()),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        key_type: key_type_name(cert.public_key()),
        sans,
        is_ca,
        key_usage,
        extended_key_usage,
        sha256: sha256_colon(der),
        spki_sha256: sha256_colon(cert.public_key().raw),
    })
}

fn crl_info(path: &Path, der: &[u8]) -> Result<CrlInfo> {
    let (_, crl) = x509_parser::parse_x509_crl(der).map_err(|e| Error::bad_file(path, format!("not a valid X.509 CRL: {e}")))?;
    Ok(CrlInfo {
        issuer: crl.issuer().to_string(),
        number: crl.crl_number().map(|n| n.to_string()),
        this_update: crl.last_update().to_datetime(),
        next_update: crl.next_update().map(|t| t.to_datetime()),
        revoked: crl.iter_revoked_certificates().map(|r| (serial_hex(r.raw_serial()), r.revocation_date.to_datetime())).collect(),
        sha256: sha256_colon(der),
    })
}

fn pkcs8_info(der: &[u8]) -> KeyInfo {
    let parsed = KeyPair::try_from(&PrivatePkcs8KeyDer::from(der)).ok();
    let spki = parsed.as_ref().map(|k| k.subject_public_key_info());
    KeyInfo {
        format: "PRIVATE KEY (PKCS#8)".into(),
        key_type: spki.as_deref().and_then(|s| SubjectPublicKeyInfo::from_der(s).ok()).map(|(_, s)| key_type_name(&s)),
        spki_sha256: spki.as_deref().map(sha256_colon),
    }
}

fn general_name(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DNSName(d) => format!("DNS:{d}"),
        GeneralName::IPAddress(b) => match b.len() {
            4 => format!("IP:{}", IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())),
            16 => format!("IP:{}", IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())),
            _ => format!("IP:<{} bytes>", b.len()),
        },
        GeneralName::URI(u) => format!("URI:{u}"),
        GeneralName::RFC822Name(e) => format!("email:{e}"),
        other => format!("{other:?}"),
    }
}

/// certgen's `--key` name for a public key, or a descriptive fallback.
pub(crate) fn key_type_name(spki: &SubjectPublicKeyInfo<'_>) -> String {
    let alg = spki.algorithm.algorithm.to_id_string();
    let param = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
    match (alg.as_str(), param.as_deref()) {
        ("1.2.840.10045.2.1", Some("1.2.840.10045.3.1.7")) => "ecdsa-p256".into(),
        ("1.2.840.10045.2.1", Some("1.3.132.0.34")) => "ecdsa-p384".into(),
        ("1.2.840.10045.2.1", Some("1.3.132.0.35")) => "ecdsa-p521".into(),
        ("1.3.101.112", _) => "ed25519".into(),
        ("1.2.840.113549.1.1.1", _) => match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => format!("rsa{}", bit_len(rsa.modulus)),
            _ => "rsa (unparseable modulus)".into(),
        },
        (alg, _) => format!("unknown ({alg})"),
    }
}

fn bit_len(big_endian: &[u8]) -> usize {
    let trimmed: Vec<u8> = big_endian.iter().copied().skip_while(|b| *b == 0).collect();
    match trimmed.first() {
        Some(first) => trimmed.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

fn sha256_colon(data: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

fn status(not_before: OffsetDateTime, not_after: OffsetDateTime) -> &'static str {
    let now = OffsetDateTime::now_utc();
    if now < not_before {
        "NOT YET VALID"
    } else if now > not_after {
        "EXPIRED"
    } else {
        "valid now"
    }
}

impl fmt::Display for Inspected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Inspected::Certificate(c) => c.fmt(f),
            Inspected::Crl(c) => c.fmt(f),
            Inspected::PrivateKey(k) => k.fmt(f),
        }
    }
}

impl fmt::Display for CertInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Certificate{}", if self.is_ca { " (CA)" } else { "" })?;
        writeln!(f, "  subject:      {}", self.subject)?;
        writeln!(f, "  issuer:       {}", self.issuer)?;
        writeln!(f, "  serial:       {}", self.serial)?;
        writeln!(f, "  not before:   {}", fmt_time(self.not_before))?;
        writeln!(f, "  not after:    {} ({})", fmt_time(self.not_after), status(self.not_before, self.not_after))?;
        writeln!(f, "  key type:     {}", self.key_type)?;
        let none = || "(none)".to_owned();
        let list = |v: &[String]| if v.is_empty() { none() } else { v.join(", ") };
        writeln!(f, "  SANs:         {}", list(&self.sans))?;
        writeln!(f, "  key usage:    {}", list(&self.key_usage))?;
        writeln!(f, "  ext key use:  {}", list(&self.extended_key_usage))?;
        writeln!(f, "  SHA-256:      {}", self.sha256)?;
        writeln!(f, "  SPKI SHA-256: {}", self.spki_sha256)
    }
}

impl fmt::Display for CrlInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "CRL")?;
        writeln!(f, "  issuer:       {}", self.issuer)?;
        writeln!(f, "  CRL number:   {}", self.number.as_deref().unwrap_or("(none)"))?;
        writeln!(f, "  this update:  {}", fmt_time(self.this_update))?;
        match self.next_update {
            Some(t) => writeln!(f, "  next update:  {} ({})", fmt_time(t), status(self.this_update, t))?,
            None => writeln!(f, "  next update:  (none)")?,
        }
        writeln!(f, "  revoked:      {}", self.revoked.len())?;
        for (serial, at) in &self.revoked {
            writeln!(f, "    {serial} at {}", fmt_time(*at))?;
        }
        writeln!(f, "  SHA-256:      {}", self.sha256)
    }
}

impl fmt::Display for KeyInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Private key")?;
        writeln!(f, "  format:       {}", self.format)?;
        writeln!(f, "  key type:     {}", self.key_type.as_deref().unwrap_or("(not readable by certgen)"))?;
        if let Some(s) = &self.spki_sha256 {
            writeln!(f, "  SPKI SHA-256: {s}")?;
        }
        Ok(())
    }
}
