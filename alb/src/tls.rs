//! TLS termination: the rustls server configuration, certificate choice by
//! SNI, client-certificate verification (CA, CRL, allowed identities) and
//! the classification of handshake failures into the reasons that are
//! logged and counted.
//!
//! The whole `ServerConfig` is rebuilt on reload and swapped in by the
//! server; a handshake in progress keeps the `Arc` it started with, so an
//! open connection is never disturbed by a certificate change.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};

use crate::config::{Config, MtlsMode};

/// The one crypto provider alb uses, chosen explicitly so rustls never has
/// to guess from crate features: aws-lc-rs. Profiling a full TLS 1.3
/// handshake put X25519 first (its two scalar multiplications), and
/// aws-lc's X25519 takes about half the time of ring's; the next cost,
/// SHA-384 in the key schedule, is the same generic code in both on CPUs
/// without SHA-512 instructions. Key-exchange groups and cipher suites are
/// pinned to what alb offered with ring (X25519, P-256, P-384; no
/// post-quantum hybrid), so clients negotiate exactly what they did before.
pub fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::aws_lc_rs::{self as aws, kx_group};
    Arc::new(CryptoProvider {
        // Without the fips feature this is the same list, in the same
        // order, as ring's.
        cipher_suites: aws::DEFAULT_CIPHER_SUITES.to_vec(),
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        ..aws::default_provider()
    })
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{}: no certificate in file", path.display());
    Ok(certs)
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn certified_key(cert: &Path, key: &Path, p: &CryptoProvider) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain = read_certs(cert)?;
    let signing = p.key_provider.load_private_key(read_key(key)?).map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
    let ck = CertifiedKey::new(chain, signing);
    // Catch a cert/key mismatch at load time rather than at the first
    // handshake.
    ck.keys_match().map_err(|e| anyhow::anyhow!("{} does not match {}: {e}", key.display(), cert.display()))?;
    Ok(Arc::new(ck))
}

fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, x)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Ok(Some(san)) = x.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                out.push(d.to_ascii_lowercase());
            }
        }
    }
    out
}

/// Picks the certificate by SNI: exact name, then `*.parent` wildcard, then
/// the default (`cert_location`, or the first of `certificates`).
#[derive(Debug)]
pub struct SniResolver {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    fn lookup(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        if let Some(name) = sni {
            let name = name.to_ascii_lowercase();
            if let Some(k) = self.by_name.get(&name) {
                return k.clone();
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(k) = self.by_name.get(&format!("*.{parent}")) {
                    return k.clone();
                }
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.lookup(hello.server_name()))
    }
}

/// What alb knows about a verified client certificate.
#[derive(Clone, Debug, Default)]
pub struct ClientIdentity {
    /// RFC 4514-style subject, e.g. `CN=client1`: the header value.
    pub subject: String,
    pub common_name: Option<String>,
    pub sans: Vec<String>,
}

impl ClientIdentity {
    pub fn from_der(der: &[u8]) -> Option<ClientIdentity> {
        let (_, x) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = x.subject().to_string();
        let common_name = x.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_string);
        let mut sans = Vec::new();
        if let Ok(Some(san)) = x.subject_alternative_name() {
            use x509_parser::extensions::GeneralName as G;
            for n in &san.value.general_names {
                match n {
                    G::DNSName(s) | G::RFC822Name(s) | G::URI(s) => sans.push(s.to_string()),
                    _ => {}
                }
            }
        }
        Some(ClientIdentity { subject, common_name, sans })
    }

    /// Whether any of CN, the whole subject or a SAN is in `allowed`.
    pub fn is_allowed(&self, allowed: &[String]) -> bool {
        allowed.iter().any(|a| a == &self.subject || self.common_name.as_deref() == Some(a.as_str()) || self.sans.iter().any(|s| s == a))
    }
}

/// Wraps webpki's verifier to add the allowed-identity check and to log
/// every rejection with its reason and the presented subject.
#[derive(Debug)]
struct IdentityVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    allowed: Vec<String>,
}

impl ClientCertVerifier for IdentityVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }
    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let subject = ClientIdentity::from_der(end_entity.as_ref()).unwrap_or_default();
        if let Err(e) = self.inner.verify_client_cert(end_entity, intermediates, now) {
            log::debug!("client certificate {:?} failed verification: {e}", subject.subject);
            return Err(e);
        }
        if !self.allowed.is_empty() && !subject.is_allowed(&self.allowed) {
            log::debug!("client certificate {:?} is valid but not allowed", subject.subject);
            return Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure));
        }
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Builds the server TLS configuration from `cfg`: TLS 1.3 and 1.2 only,
/// ALPN h2 (if enabled) and http/1.1, SNI certificates, client
/// verification per `mtls`.
pub fn server_config(cfg: &Config) -> anyhow::Result<Arc<ServerConfig>> {
    let p = provider();
    let mut by_name = HashMap::new();
    let mut default = None;
    if let (Some(c), Some(k)) = (&cfg.cert_location, &cfg.key_location) {
        default = Some(certified_key(c, k, &p)?);
    }
    for extra in &cfg.certificates {
        let ck = certified_key(&extra.cert, &extra.key, &p)?;
        let names = if extra.server_names.is_empty() { dns_names(&ck.cert[0]) } else { extra.server_names.iter().map(|n| n.to_ascii_lowercase()).collect() };
        for n in names {
            by_name.insert(n, ck.clone());
        }
        default.get_or_insert(ck);
    }
    let default = default.ok_or_else(|| anyhow::anyhow!("no server certificate configured"))?;
    let resolver = Arc::new(SniResolver { by_name, default });

    let builder = ServerConfig::builder_with_provider(p.clone()).with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match cfg.mtls_mode() {
        MtlsMode::Off => builder.with_no_client_auth(),
        mode => {
            let ca = cfg.client_ca().expect("validated: mTLS has a CA");
            let mut roots = RootCertStore::empty();
            for c in read_certs(ca)? {
                roots.add(c).map_err(|e| anyhow::anyhow!("{}: {e}", ca.display()))?;
            }
            let mut crls = Vec::new();
            for f in &cfg.mtls.crl {
                for c in CertificateRevocationListDer::pem_file_iter(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))? {
                    crls.push(c.map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?);
                }
            }
            let mut vb = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), p.clone());
            if !crls.is_empty() {
                // Only the leaf: the CA's own CRL is what certgen publishes;
                // requiring status for intermediates would need more CRLs.
                vb = vb.with_crls(crls).only_check_end_entity_revocation();
            }
            if mode == MtlsMode::Optional {
                vb = vb.allow_unauthenticated();
            }
            let inner = vb.build()?;
            builder.with_client_cert_verifier(Arc::new(IdentityVerifier { inner, allowed: cfg.mtls.allowed_identities.clone() }))
        }
    };
    let mut sc = builder.with_cert_resolver(resolver);
    // The server's order decides: the provider's suites are all AEAD with
    // ECDHE (TLS 1.3 first, AES-256-GCM before AES-128-GCM and ChaCha20), so
    // a client that lists a weaker suite first still gets the strongest both
    // support. TLS scanners rate "no server cipher order" as a weakness.
    sc.ignore_client_order = true;
    sc.alpn_protocols = if cfg.http2 { vec![b"h2".to_vec(), b"http/1.1".to_vec()] } else { vec![b"http/1.1".to_vec()] };
    Ok(Arc::new(sc))
}

/// Why a TLS handshake failed, as logged and as the `reason` label of
/// `alb_tls_handshake_failures_total`.
pub fn failure_reason(e: &std::io::Error) -> &'static str {
    let Some(re) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return match e.kind() {
            std::io::ErrorKind::TimedOut => "timeout",
            std::io::ErrorKind::UnexpectedEof => "eof",
            _ => "io",
        };
    };
    use rustls::Error as E;
    match re {
        E::NoCertificatesPresented => "no_cert",
        E::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => "unknown_ca",
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => "not_yet_valid",
            CertificateError::Revoked => "revoked",
            CertificateError::ApplicationVerificationFailure => "not_allowed",
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => "bad_purpose",
            _ => "bad_cert",
        },
        E::InvalidMessage(_) => "bad_message",
        E::PeerIncompatible(_) | E::NoApplicationProtocol => "incompatible",
        E::AlertReceived(_) => "alert_received",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_matching() {
        let id = ClientIdentity { subject: "CN=client1".into(), common_name: Some("client1".into()), sans: vec!["spiffe://x/y".into()] };
        assert!(id.is_allowed(&["client1".into()]));
        assert!(id.is_allowed(&["CN=client1".into()]));
        assert!(id.is_allowed(&["spiffe://x/y".into()]));
        assert!(!id.is_allowed(&["client2".into()]));
    }

    #[test]
    fn provider_offers_the_same_groups_and_suites_as_ring_did() {
        let p = provider();
        let groups: Vec<_> = p.kx_groups.iter().map(|g| g.name()).collect();
        use rustls::NamedGroup as G;
        assert_eq!(groups, [G::X25519, G::secp256r1, G::secp384r1]);
        let suites: Vec<_> = p.cipher_suites.iter().map(|s| s.suite()).collect();
        // ring's DEFAULT_CIPHER_SUITES in rustls 0.23 (with tls12), written
        // out: ring is no longer compiled to compare against.
        use rustls::CipherSuite as S;
        let ring = [
            S::TLS13_AES_256_GCM_SHA384,
            S::TLS13_AES_128_GCM_SHA256,
            S::TLS13_CHACHA20_POLY1305_SHA256,
            S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ];
        assert_eq!(suites, ring);
    }

    #[test]
    fn reasons() {
        let mk = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        assert_eq!(failure_reason(&mk(rustls::Error::NoCertificatesPresented)), "no_cert");
        assert_eq!(failure_reason(&mk(rustls::Error::InvalidCertificate(CertificateError::Revoked))), "revoked");
        assert_eq!(failure_reason(&std::io::Error::from(std::io::ErrorKind::TimedOut)), "timeout");
    }
}
