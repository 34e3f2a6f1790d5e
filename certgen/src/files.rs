//! File names certgen uses, and the one place that writes and reads files.
//!
//! Writing rules (all in [`write_file`]):
//! - private keys are created with mode 0600 from the first byte on, so a key
//!   is never briefly readable by others; certificates, CRLs and the index get
//!   0644. Modes are set explicitly after creation so the umask cannot loosen
//!   or tighten them.
//! - without `force`, files are opened with `O_CREAT|O_EXCL`, so an existing
//!   file is never clobbered, even by a racing process.
//! - with `force` (and for files that are replaced by design: `index.json`,
//!   `crl.pem`) the new content goes to a temporary file in the same
//!   directory that is renamed over the target, so readers (a running alb
//!   reloading its CRL) never see a half-written file.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};

use crate::error::{Error, Result};

/// CA certificate (PEM) inside a CA directory.
pub const CA_CERT: &str = "ca.crt";
/// CA private key (PKCS#8 PEM, mode 0600) inside a CA directory.
pub const CA_KEY: &str = "ca.key";
/// Issued/revoked serial index (JSON) inside a CA directory.
pub const INDEX: &str = "index.json";
/// The CA's current CRL (PEM) inside a CA directory.
pub const CRL: &str = "crl.pem";
/// Lock file serialising index updates between concurrent certgen runs.
pub const LOCK: &str = ".certgen.lock";
/// Extension of issued leaf certificates: `NAME.crt`.
pub const CERT_EXT: &str = "crt";
/// Extension of issued leaf keys: `NAME.key`.
pub const KEY_EXT: &str = "key";

/// Mode of private key files.
pub const KEY_MODE: u32 = 0o600;
/// Mode of certificates, CRLs and the index.
pub const PUBLIC_MODE: u32 = 0o644;

/// Leaf names that would collide with the CA's own files.
pub(crate) const RESERVED_NAMES: [&str; 3] = ["ca", "crl", "index"];

/// `DIR/NAME.crt`
pub fn cert_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.{CERT_EXT}"))
}

/// `DIR/NAME.key`
pub fn key_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.{KEY_EXT}"))
}

/// Fails with [`Error::Exists`] naming the first of `paths` that exists,
/// unless `force`. Called before writing a set of files so that a refusal
/// leaves nothing half-written.
pub(crate) fn ensure_absent<'a>(paths: impl IntoIterator<Item = &'a Path>, force: bool) -> Result<()> {
    if force {
        return Ok(());
    }
    for p in paths {
        // symlink_metadata: a dangling symlink still counts as "exists".
        if p.symlink_metadata().is_ok() {
            return Err(Error::Exists { path: p.to_path_buf() });
        }
    }
    Ok(())
}

/// Writes `contents` to `path` with `mode`; see the module docs for the rules.
pub(crate) fn write_file(path: &Path, contents: &[u8], mode: u32, force: bool) -> Result<()> {
    if !force {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::Exists { path: path.to_path_buf() },
            _ => Error::io("create", path, e),
        })?;
        return finish(&mut f, path, contents, mode);
    }
    let file_name = path.file_name().ok_or_else(|| Error::invalid("path", path.display(), "has no file name"))?;
    let tmp = path.with_file_name(format!(".{}.tmp-{}", file_name.to_string_lossy(), std::process::id()));
    // A stale temp file from a crashed run of this same pid is ours to drop.
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    if let Err(e) = finish(&mut f, &tmp, contents, mode) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io("replace", path, e)
    })
}

fn finish(f: &mut fs::File, path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    f.write_all(contents).map_err(|e| Error::io("write", path, e))?;
    f.set_permissions(fs::Permissions::from_mode(mode)).map_err(|e| Error::io("set permissions on", path, e))?;
    f.sync_all().map_err(|e| Error::io("sync", path, e))
}

/// Creates `dir` (and parents) if missing; errors name the directory.
pub(crate) fn ensure_dir(dir: &Path, arg: &'static str) -> Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::invalid(arg, dir.display(), "exists and is not a directory")),
        Err(_) => fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e)),
    }
}

/// Reads every certificate in a PEM file (or a single DER certificate).
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = fs::read(path).map_err(|e| Error::io("read certificate", path, e))?;
    if !looks_like_pem(&bytes) {
        return Ok(vec![CertificateDer::from(bytes)]);
    }
    let certs = CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>().map_err(|e| Error::bad_file(path, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::bad_file(path, "no \"BEGIN CERTIFICATE\" section found"));
    }
    Ok(certs)
}

/// Reads the first certificate of a file; see [`read_certs`].
pub fn read_cert(path: &Path) -> Result<CertificateDer<'static>> {
    let mut certs = read_certs(path)?;
    Ok(certs.swap_remove(0))
}

/// Reads every CRL in a PEM file (or a single DER CRL), e.g. for
/// `WebPkiClientVerifier::builder(..).with_crls(..)`.
pub fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>> {
    let bytes = fs::read(path).map_err(|e| Error::io("read CRL", path, e))?;
    if !looks_like_pem(&bytes) {
        return Ok(vec![CertificateRevocationListDer::from(bytes)]);
    }
    let crls =
        CertificateRevocationListDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>().map_err(|e| Error::bad_file(path, format!("bad PEM: {e}")))?;
    if crls.is_empty() {
        return Err(Error::bad_file(path, "no \"BEGIN X509 CRL\" section found"));
    }
    Ok(crls)
}

/// PEM if it has a BEGIN line anywhere (PEM may be preceded by text, e.g.
/// openssl's "Bag Attributes") or does not start with DER's SEQUENCE tag
/// 0x30; otherwise DER. Text that is neither is then reported as bad PEM,
/// which is the more helpful message for a text file.
pub(crate) fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.first() != Some(&0x30) || bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_vs_der_detection() {
        assert!(looks_like_pem(b"-----BEGIN CERTIFICATE-----\n"));
        assert!(looks_like_pem(b"0 leading text\n-----BEGIN CERTIFICATE-----\n"));
        assert!(looks_like_pem(b"plain text"));
        assert!(looks_like_pem(b""));
        assert!(!looks_like_pem(&[0x30, 0x82, 0x01, 0x00]));
    }

    #[test]
    fn write_file_respects_force_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        write_file(&p, b"one", KEY_MODE, false).unwrap();
        let err = write_file(&p, b"two", KEY_MODE, false).unwrap_err();
        assert!(matches!(err, Error::Exists { .. }), "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"one");
        write_file(&p, b"three", PUBLIC_MODE, true).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"three");
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, PUBLIC_MODE);
        // A dangling symlink counts as existing: never write through it.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
        assert!(ensure_absent([link.as_path()], false).is_err());
        assert!(write_file(&link, b"x", KEY_MODE, false).is_err());
        assert!(!dir.path().join("nowhere").exists());
    }
}
