//! The rustls client setup of the lab's TLS tools (`tls-clients` and
//! `lab-client`): trust the CA file, optionally present a client
//! certificate, offer some ALPN protocols, no session resumption (every
//! connection pays a full handshake, as a new client would). Errors name
//! the flag (`--ca`, `--cert`, `--key`) and the file.

use std::{path::Path, sync::Arc};

use anyhow::{bail, Context as _, Result};
use rustls::pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer};

/// A client certificate chain and its key (PEM files).
#[derive(Clone, Copy, Debug)]
pub struct Identity<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
}

pub fn client_config(ca: &Path, identity: Option<Identity<'_>>, alpn: &[&str]) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca).with_context(|| format!("reading --ca {}", ca.display()))?;
    for cert in certs {
        roots
            .add(cert.with_context(|| format!("--ca {}: bad PEM", ca.display()))?)
            .with_context(|| format!("--ca {}: not a usable CA certificate", ca.display()))?;
    }
    if roots.is_empty() {
        bail!("--ca {}: no certificate in the file", ca.display());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?.with_root_certificates(roots);
    let mut cfg = match identity {
        Some(Identity { cert, key }) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("reading --cert {}", cert.display()))?
                .collect::<Result<_, _>>()
                .with_context(|| format!("--cert {}: bad PEM", cert.display()))?;
            if chain.is_empty() {
                bail!("--cert {}: no certificate in the file", cert.display());
            }
            let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading --key {}", key.display()))?;
            builder.with_client_auth_cert(chain, key).context("--cert/--key do not form a usable client identity")?
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(cfg)
}
