//! Key types, key generation and loading.
//!
//! Signing always goes through rcgen's `ring` backend; alb's rustls uses
//! aws-lc-rs, which loads the PKCS#8 keys written here just the same (the
//! certgen tests check it). ring cannot *generate* RSA keys,
//! so RSA keys come from the pure-Rust `rsa` crate (0.10, whose constant-time
//! bignum arithmetic fixed RUSTSEC-2023-0071) and are handed to rcgen as
//! PKCS#8 DER. We chose that over rcgen's `aws_lc_rs` feature because
//! aws-lc-sys compiles a large C library (minutes on the 2-core machines) and
//! would make rcgen switch backend workspace-wide through feature unification.
//! The root Cargo.toml builds the bignum crates with opt-level 3 in dev
//! builds so rsa4096 generation takes seconds, not minutes, in debug tests.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use rcgen::{KeyPair, SignatureAlgorithm};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::{Error, Result};

/// Supported key types. The default, ECDSA P-256, is fast to generate and
/// accepted by every TLS stack we test against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// ECDSA on NIST P-256 with SHA-256 signatures.
    #[default]
    EcdsaP256,
    /// ECDSA on NIST P-384 with SHA-384 signatures.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// RSA 2048-bit, PKCS#1 v1.5 SHA-256 signatures.
    Rsa2048,
    /// RSA 4096-bit, PKCS#1 v1.5 SHA-256 signatures.
    Rsa4096,
}

impl KeyType {
    /// All key types, in the order `--help` lists them.
    pub const ALL: [KeyType; 5] = [KeyType::EcdsaP256, KeyType::EcdsaP384, KeyType::Ed25519, KeyType::Rsa2048, KeyType::Rsa4096];

    /// The CLI spelling, e.g. `ecdsa-p256`.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
            KeyType::Ed25519 => "ed25519",
            KeyType::Rsa2048 => "rsa2048",
            KeyType::Rsa4096 => "rsa4096",
        }
    }

    /// The rcgen signature algorithm a key of this type signs with.
    pub(crate) fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyType::Ed25519 => &rcgen::PKCS_ED25519,
            KeyType::Rsa2048 | KeyType::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
        }
    }

    /// Whether TLS 1.2 RSA key exchange may use the key, which wants the
    /// keyEncipherment key usage bit on the leaf.
    pub(crate) fn is_rsa(self) -> bool {
        matches!(self, KeyType::Rsa2048 | KeyType::Rsa4096)
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        KeyType::ALL.into_iter().find(|k| k.name().eq_ignore_ascii_case(s)).ok_or_else(|| {
            let names: Vec<_> = KeyType::ALL.iter().map(|k| k.name()).collect();
            Error::invalid("--key", s, format!("unknown key type; expected one of {}", names.join(", ")))
        })
    }
}

/// Generates a fresh key pair of the given type.
pub fn generate(key_type: KeyType) -> Result<KeyPair> {
    let keygen_err = |e: rcgen::Error| Error::KeyGen { key_type: key_type.name(), reason: e.to_string() };
    match key_type {
        KeyType::EcdsaP256 | KeyType::EcdsaP384 => KeyPair::generate_for(key_type.algorithm()).map_err(keygen_err),
        KeyType::Ed25519 => {
            let v2 = KeyPair::generate_for(key_type.algorithm()).map_err(keygen_err)?;
            ed25519_as_pkcs8_v1(v2.serialized_der())
        }
        KeyType::Rsa2048 => generate_rsa(key_type, 2048),
        KeyType::Rsa4096 => generate_rsa(key_type, 4096),
    }
}

fn generate_rsa(key_type: KeyType, bits: usize) -> Result<KeyPair> {
    use rsa::pkcs8::EncodePrivateKey;
    let err = |reason: String| Error::KeyGen { key_type: key_type.name(), reason };
    let key = rsa::PrivateKey::new(&mut getrandom::SysRng, bits).map_err(|e| err(e.to_string()))?;
    let der = key.to_pkcs8_der().map_err(|e| err(e.to_string()))?;
    // ring re-validates the key (modulus size, CRT values) when it loads it,
    // so a bad key from the generator would surface here, not at signing.
    KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(der.as_bytes()), key_type.algorithm())
        .map_err(|e| err(format!("ring rejected the generated key: {e}")))
}

/// DER prefix of ring's Ed25519 PKCS#8 v2 document (RFC 5958
/// OneAsymmetricKey, version 1, with the public key appended as `[1]`),
/// up to the 32-byte seed.
const ED25519_V2_PREFIX: [u8; 16] = [0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
/// The same for PKCS#8 v1 (RFC 5208, version 0, no public key): 48 bytes
/// in total, byte-identical to what `openssl genpkey -algorithm ed25519`
/// writes.
const ED25519_V1_PREFIX: [u8; 16] = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// ring emits Ed25519 keys as PKCS#8 v2, which OpenSSL 3.0 (Debian 12's)
/// refuses to load ("unsupported"). Re-wrap the seed as v1, which every
/// consumer reads; ring and rustls load v1 via `from_pkcs8_maybe_unchecked`.
fn ed25519_as_pkcs8_v1(v2: &[u8]) -> Result<KeyPair> {
    let err = |reason: &str| Error::KeyGen { key_type: KeyType::Ed25519.name(), reason: reason.to_owned() };
    let seed = match v2.split_at_checked(ED25519_V2_PREFIX.len()) {
        Some((prefix, rest)) if prefix == ED25519_V2_PREFIX && rest.len() >= 32 => &rest[..32],
        _ => return Err(err("unexpected PKCS#8 layout from ring")),
    };
    let mut v1 = Vec::with_capacity(48);
    v1.extend_from_slice(&ED25519_V1_PREFIX);
    v1.extend_from_slice(seed);
    KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(v1), &rcgen::PKCS_ED25519)
        .map_err(|e| err(&format!("ring rejected the PKCS#8 v1 key: {e}")))
}

/// Loads a PKCS#8 PEM private key (the only format certgen writes).
pub fn load_key_pair(path: &Path) -> Result<KeyPair> {
    let der = read_private_key(path)?;
    let PrivateKeyDer::Pkcs8(pkcs8) = der else {
        return Err(Error::bad_file(path, "private key is not PKCS#8 (\"BEGIN PRIVATE KEY\"); convert it with `openssl pkcs8 -topk8 -nocrypt`"));
    };
    KeyPair::try_from(&pkcs8)
        .map_err(|e| Error::bad_file(path, format!("unsupported or corrupt private key ({e}); certgen handles ECDSA P-256/P-384, Ed25519 and RSA")))
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1 PEM) from a file, in
/// the form rustls wants it.
pub fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("read private key", path, e))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| Error::bad_file(path, format!("no usable PEM private key: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_type_names_round_trip_and_unknown_names_the_flag() {
        for kt in KeyType::ALL {
            assert_eq!(kt.name().parse::<KeyType>().unwrap(), kt);
            assert_eq!(kt.to_string(), kt.name());
        }
        let err = "dsa1024".parse::<KeyType>().unwrap_err().to_string();
        assert!(err.contains("--key") && err.contains("dsa1024") && err.contains("ecdsa-p256"), "{err}");
    }

    #[test]
    fn generated_keys_use_the_right_algorithm() {
        // RSA is covered (slowly) by the integration tests.
        for kt in [KeyType::EcdsaP256, KeyType::EcdsaP384, KeyType::Ed25519] {
            let k = generate(kt).unwrap();
            assert!(k.algorithm() == kt.algorithm(), "{kt}");
        }
    }

    #[test]
    fn ed25519_keys_are_pkcs8_v1() {
        let k = generate(KeyType::Ed25519).unwrap();
        let der = k.serialized_der();
        assert_eq!(der.len(), 48);
        assert_eq!(der[..16], ED25519_V1_PREFIX);
        assert!(ed25519_as_pkcs8_v1(b"garbage").is_err());
    }
}
