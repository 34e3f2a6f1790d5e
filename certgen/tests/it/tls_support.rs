//! Shared helpers: rustls' webpki verifiers (aws-lc-rs provider, explicitly)
//! and an in-memory TLS handshake, so tests prove certificates *and* keys
//! work with the stack alb uses.

use std::io::Read;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{CertificateError, ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

pub fn roots(ca: &CertificateDer<'static>) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).expect("CA certificate accepted as trust anchor");
    Arc::new(roots)
}

/// Verifies `cert` as a TLS server certificate for `name` (DNS or IP).
pub fn verify_server(ca: &CertificateDer<'static>, cert: &CertificateDer<'static>, name: &str) -> Result<(), rustls::Error> {
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(ca), provider()).build().expect("server verifier");
    let name = ServerName::try_from(name.to_owned()).expect("valid server name");
    verifier.verify_server_cert(cert, &[], &name, &[], UnixTime::now()).map(|_| ())
}

/// Verifies `cert` as a TLS client certificate, with `crls` loaded if any.
pub fn verify_client(
    ca: &CertificateDer<'static>,
    cert: &CertificateDer<'static>,
    crls: &[CertificateRevocationListDer<'static>],
) -> Result<(), rustls::Error> {
    let mut builder = WebPkiClientVerifier::builder_with_provider(roots(ca), provider());
    if !crls.is_empty() {
        builder = builder.with_crls(crls.iter().cloned());
    }
    let verifier = builder.build().expect("client verifier");
    verifier.verify_client_cert(cert, &[], UnixTime::now()).map(|_| ())
}

/// The certificate error inside a rustls error, for precise assertions.
pub fn cert_error(e: &rustls::Error) -> &CertificateError {
    match e {
        rustls::Error::InvalidCertificate(c) => c,
        other => panic!("expected InvalidCertificate, got {other:?}"),
    }
}

pub fn is_wrong_purpose(e: &rustls::Error) -> bool {
    matches!(cert_error(e), CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. })
}

pub fn is_expired(e: &rustls::Error) -> bool {
    matches!(cert_error(e), CertificateError::Expired | CertificateError::ExpiredContext { .. })
}

pub fn is_wrong_name(e: &rustls::Error) -> bool {
    matches!(cert_error(e), CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. })
}

/// A full in-memory TLS handshake (mutual when `client` is given); the
/// server requires a client certificate iff one is offered, and checks it
/// against `crls`.
pub fn handshake(
    ca: &CertificateDer<'static>,
    server: (CertificateDer<'static>, PrivateKeyDer<'static>),
    client: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
    crls: &[CertificateRevocationListDer<'static>],
    name: &str,
) -> Result<(), rustls::Error> {
    let server_cfg = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let server_cfg = if client.is_some() {
        let mut b = WebPkiClientVerifier::builder_with_provider(roots(ca), provider());
        if !crls.is_empty() {
            b = b.with_crls(crls.iter().cloned());
        }
        server_cfg.with_client_cert_verifier(b.build().expect("client verifier"))
    } else {
        server_cfg.with_no_client_auth()
    };
    let server_cfg = server_cfg.with_single_cert(vec![server.0], server.1)?;
    let client_cfg = ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?.with_root_certificates(roots(ca));
    let client_cfg = match client {
        Some((cert, key)) => client_cfg.with_client_auth_cert(vec![cert], key)?,
        None => client_cfg.with_no_client_auth(),
    };
    let name = ServerName::try_from(name.to_owned()).expect("valid server name");
    let mut c = ClientConnection::new(Arc::new(client_cfg), name)?;
    let mut s = ServerConnection::new(Arc::new(server_cfg))?;
    for _ in 0..10 {
        pump(&mut c, &mut s)?;
        pump(&mut s, &mut c)?;
        if !c.is_handshaking() && !s.is_handshaking() {
            // One more round so the server sees (and judges) everything the
            // client sent after it considered the handshake done.
            pump(&mut c, &mut s)?;
            return Ok(());
        }
    }
    panic!("handshake did not complete in 10 rounds");
}

fn pump<A, B, DA, DB>(from: &mut A, to: &mut B) -> Result<(), rustls::Error>
where
    A: std::ops::DerefMut<Target = rustls::ConnectionCommon<DA>>,
    B: std::ops::DerefMut<Target = rustls::ConnectionCommon<DB>>,
{
    let mut buf = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut buf).expect("write to Vec");
    }
    let mut rd = &buf[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).expect("read from slice");
        to.process_new_packets()?;
    }
    let mut sink = Vec::new();
    let _ = to.reader().read_to_end(&mut sink);
    Ok(())
}
