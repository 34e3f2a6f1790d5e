//! `certgen demo`: the fixed certificate set the lab demo, alb's tests and
//! the benchmarks use, so none of them has to script five certgen calls.
//!
//! Layout of `OUT/` (names are the constants below; [`DemoFiles`] has the
//! full paths):
//!
//! ```text
//! ca.crt ca.key index.json crl.pem   demo CA; crl.pem lists `revoked`
//! server.crt server.key              serverAuth; SANs: lab ALB IPs, loopback,
//!                                    localhost, alb.xdplb.test
//! client1.crt client1.key            clientAuth, CN=client1
//! client2.crt client2.key            clientAuth, CN=client2
//! revoked.crt revoked.key            clientAuth, CN=revoked, in crl.pem
//! expired.crt expired.key            clientAuth, CN=expired, validity in the past
//! rogue.crt rogue.key                clientAuth, CN=rogue, from the rogue CA
//! rogue-ca/ca.crt rogue-ca/ca.key    an unrelated CA (plus its index.json)
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use time::{Duration, OffsetDateTime};

use crate::ca::{Ca, CaOptions};
use crate::crl::CrlWritten;
use crate::error::Result;
use crate::files;
use crate::issue::{ClientOptions, Issued, ServerOptions};
use crate::keys::KeyType;
use crate::validity::{Validity, DEFAULT_CA_DAYS, DEFAULT_LEAF_DAYS};

/// Common name of the demo CA.
pub const DEMO_CA_CN: &str = "xdplb demo CA";
/// Common name of the unrelated CA that signs `rogue`.
pub const ROGUE_CA_CN: &str = "xdplb rogue CA";
/// Sub-directory holding the rogue CA.
pub const ROGUE_CA_DIR: &str = "rogue-ca";
/// Server certificate name (`server.crt`, `server.key`).
pub const SERVER: &str = "server";
/// First good client (`client1.crt`, CN=client1).
pub const CLIENT1: &str = "client1";
/// Second good client (`client2.crt`, CN=client2).
pub const CLIENT2: &str = "client2";
/// Client listed in the demo CRL.
pub const REVOKED: &str = "revoked";
/// Client whose validity lies entirely in the past.
pub const EXPIRED: &str = "expired";
/// Client signed by the rogue CA (written to OUT/, not OUT/rogue-ca/).
pub const ROGUE: &str = "rogue";
/// DNS SANs of the demo server certificate.
pub const SERVER_DNS: [&str; 2] = ["localhost", "alb.xdplb.test"];
/// IP SANs of the demo server certificate: the lab ALB addresses (v4 and
/// v6) and loopback.
pub const SERVER_IPS: [IpAddr; 8] = [
    IpAddr::V4(Ipv4Addr::new(198, 18, 2, 11)),
    IpAddr::V4(Ipv4Addr::new(198, 18, 2, 12)),
    IpAddr::V4(Ipv4Addr::new(198, 18, 2, 13)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x198, 0x18, 0x2, 0, 0, 0, 0x11)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x198, 0x18, 0x2, 0, 0, 0, 0x12)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x198, 0x18, 0x2, 0, 0, 0, 0x13)),
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];
/// Lifetime of the demo CRL. Longer than `certgen crl`'s default so a demo
/// directory kept around for months still verifies with CRL checks that
/// enforce nextUpdate.
pub const DEMO_CRL_DAYS: u32 = 365;

/// Options for [`demo`].
#[derive(Clone, Debug, Default)]
pub struct DemoOptions {
    /// Replace an existing demo set.
    pub force: bool,
    /// Key type for every key in the set (default ECDSA P-256).
    pub key_type: KeyType,
}

/// Paths of every file [`demo`] writes under its output directory.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // field names say it: `<name>_cert` / `<name>_key`
pub struct DemoFiles {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub index: PathBuf,
    pub crl: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client1_cert: PathBuf,
    pub client1_key: PathBuf,
    pub client2_cert: PathBuf,
    pub client2_key: PathBuf,
    pub revoked_cert: PathBuf,
    pub revoked_key: PathBuf,
    pub expired_cert: PathBuf,
    pub expired_key: PathBuf,
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
    pub rogue_ca_dir: PathBuf,
    pub rogue_ca_cert: PathBuf,
    pub rogue_ca_key: PathBuf,
}

impl DemoFiles {
    /// The paths for a demo set in `dir` (whether or not it exists yet),
    /// for consumers that read a set made earlier by `certgen demo`.
    pub fn in_dir(dir: impl AsRef<Path>) -> DemoFiles {
        let d = dir.as_ref();
        let rogue = d.join(ROGUE_CA_DIR);
        DemoFiles {
            dir: d.to_path_buf(),
            ca_cert: d.join(files::CA_CERT),
            ca_key: d.join(files::CA_KEY),
            index: d.join(files::INDEX),
            crl: d.join(files::CRL),
            server_cert: files::cert_path(d, SERVER),
            server_key: files::key_path(d, SERVER),
            client1_cert: files::cert_path(d, CLIENT1),
            client1_key: files::key_path(d, CLIENT1),
            client2_cert: files::cert_path(d, CLIENT2),
            client2_key: files::key_path(d, CLIENT2),
            revoked_cert: files::cert_path(d, REVOKED),
            revoked_key: files::key_path(d, REVOKED),
            expired_cert: files::cert_path(d, EXPIRED),
            expired_key: files::key_path(d, EXPIRED),
            rogue_cert: files::cert_path(d, ROGUE),
            rogue_key: files::key_path(d, ROGUE),
            rogue_ca_cert: rogue.join(files::CA_CERT),
            rogue_ca_key: rogue.join(files::CA_KEY),
            rogue_ca_dir: rogue,
        }
    }

    /// Every file path (not directories), in write order.
    pub fn all(&self) -> Vec<&Path> {
        vec![
            &self.ca_cert,
            &self.ca_key,
            &self.index,
            &self.crl,
            &self.server_cert,
            &self.server_key,
            &self.client1_cert,
            &self.client1_key,
            &self.client2_cert,
            &self.client2_key,
            &self.revoked_cert,
            &self.revoked_key,
            &self.expired_cert,
            &self.expired_key,
            &self.rogue_cert,
            &self.rogue_key,
            &self.rogue_ca_cert,
            &self.rogue_ca_key,
        ]
    }
}

/// Everything [`demo`] made, with in-memory DER for rustls.
#[derive(Debug)]
#[allow(missing_docs)] // one field per demo identity, named as the constants
pub struct Demo {
    pub files: DemoFiles,
    pub ca: Ca,
    pub rogue_ca: Ca,
    pub server: Issued,
    pub client1: Issued,
    pub client2: Issued,
    pub revoked: Issued,
    pub expired: Issued,
    pub rogue: Issued,
    pub crl: CrlWritten,
}

/// Writes the demo set into `out_dir` (created if missing). Refuses to
/// touch an existing set unless `opts.force`; the refusal names the first
/// existing file and writes nothing.
pub fn demo(out_dir: impl AsRef<Path>, opts: &DemoOptions) -> Result<Demo> {
    let out = out_dir.as_ref();
    let f = DemoFiles::in_dir(out);
    files::ensure_dir(out, "--out")?;
    files::ensure_absent(f.all(), opts.force)?;
    let kt = opts.key_type;

    let ca = Ca::create(out, &CaOptions { common_name: DEMO_CA_CN.into(), days: DEFAULT_CA_DAYS, key_type: kt, force: opts.force })?;
    let mut server = ServerOptions::new(SERVER, &SERVER_DNS, &SERVER_IPS);
    server.key_type = kt;
    server.force = opts.force;
    let server = ca.issue_server(&server)?;

    let client = |name: &str, validity: Validity| {
        let mut o = ClientOptions::new(name, name);
        o.validity = validity;
        o.key_type = kt;
        o.force = opts.force;
        o
    };
    let leaf = Validity::Days(DEFAULT_LEAF_DAYS);
    let client1 = ca.issue_client(&client(CLIENT1, leaf))?;
    let client2 = ca.issue_client(&client(CLIENT2, leaf))?;
    let revoked = ca.issue_client(&client(REVOKED, leaf))?;
    let now = OffsetDateTime::now_utc();
    let expired = ca.issue_client(&client(EXPIRED, Validity::Window { not_before: now - Duration::days(30), not_after: now - Duration::days(1) }))?;
    ca.revoke(&revoked.cert_path)?;
    let crl = ca.write_crl(DEMO_CRL_DAYS)?;

    let rogue_ca = Ca::create(&f.rogue_ca_dir, &CaOptions { common_name: ROGUE_CA_CN.into(), days: DEFAULT_CA_DAYS, key_type: kt, force: opts.force })?;
    let mut rogue = client(ROGUE, leaf);
    rogue.out_dir = Some(out.to_path_buf());
    let rogue = rogue_ca.issue_client(&rogue)?;

    Ok(Demo { files: f, ca, rogue_ca, server, client1, client2, revoked, expired, rogue, crl })
}
