//! `certgen` CLI: argument parsing and printing only; all work happens in
//! the certgen library so tests and xtask get identical behaviour.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use lb_common::report::{self, Exit};

use certgen::{
    files, Ca, CaOptions, ClientOptions, Inspected, Issued, KeyType, ServerOptions, Validity, DEFAULT_CA_CN, DEFAULT_CA_DAYS, DEFAULT_CRL_DAYS,
    DEFAULT_LEAF_DAYS,
};

const LONG_ABOUT: &str = "\
A small local certificate authority for xdplb's TLS tier (alb, its tests, the
demo and the benchmarks).

A CA lives in a directory: ca.crt, ca.key (0600), index.json (every serial
issued and revoked) and crl.pem. Leaf certificates are written next to them
as NAME.crt / NAME.key unless --out says otherwise. Nothing is ever
overwritten without --force. Keys are PKCS#8 PEM; certificates and CRLs PEM.

`certgen demo --out DIR` writes the complete set the lab demo and the tests
use (see docs/certgen.md).";

const EXAMPLES: &str = "\
Examples:
  certgen demo --out /tmp/xdplb-pki
  certgen ca --out pki --cn 'lab CA' --key ecdsa-p384
  certgen server --ca pki --name alb --dns alb.xdplb.test --ip 198.18.2.11 --ip fd00:198:18:2::11
  certgen client --ca pki --name alice --cn alice@lab
  certgen revoke --ca pki --cert pki/alice.crt && certgen crl --ca pki
  certgen inspect pki/alb.crt pki/crl.pem

Exit status: 0 done, 1 error, 2 usage error (see docs/certgen.md)";

#[derive(Parser, Debug)]
#[command(
    name = "certgen",
    version,
    about = "Local CA for xdplb: CA, server/client certificates, revocation, CRLs",
    long_about = LONG_ABOUT,
    after_help = EXAMPLES
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a self-signed CA (CA:TRUE pathlen:0, keyCertSign + cRLSign)
    #[command(after_help = "Example:\n  certgen ca --out pki --cn 'xdplb lab CA' --days 3650")]
    Ca(CaCmd),
    /// Issue a server certificate (EKU serverAuth) with DNS/IP SANs
    #[command(after_help = "Writes NAME.crt and NAME.key into the CA directory (or --out DIR) and records\n\
                      the serial in the CA's index.json.\n\n\
                      Example:\n  certgen server --ca pki --name alb --dns localhost --dns alb.xdplb.test \\\n    \
                      --ip 127.0.0.1 --ip ::1")]
    Server(ServerCmd),
    /// Issue a client certificate (EKU clientAuth) for mutual TLS
    #[command(after_help = "Example:\n  certgen client --ca pki --name client1 --cn client1")]
    Client(ClientCmd),
    /// Record a certificate as revoked in the CA's index (then run `crl`)
    #[command(after_help = "Example:\n  certgen revoke --ca pki --cert pki/client1.crt\n  certgen crl --ca pki")]
    Revoke(RevokeCmd),
    /// Write DIR/crl.pem listing every revoked serial (CRL number +1)
    #[command(after_help = "Example:\n  certgen crl --ca pki --days 7")]
    Crl(CrlCmd),
    /// Show subject, issuer, SANs, validity, serial, key type, SHA-256
    #[command(after_help = "Reads PEM (every certificate, CRL and key in the file) or DER.\n\n\
                      Example:\n  certgen inspect pki/server.crt pki/crl.pem")]
    Inspect(InspectCmd),
    /// Write the full demo/test set: CA, server, clients, revoked, expired, rogue
    #[command(after_help = "Files: ca.crt ca.key index.json crl.pem server.* client1.* client2.* revoked.*\n\
                      expired.* rogue.* rogue-ca/ca.crt rogue-ca/ca.key (see docs/certgen.md).\n\n\
                      Example:\n  certgen demo --out /tmp/xdplb-pki")]
    Demo(DemoCmd),
}

/// Key types, spelled as on the command line.
#[derive(ValueEnum, Clone, Copy, Debug)]
enum KeyArg {
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
    #[value(name = "ecdsa-p384")]
    EcdsaP384,
    #[value(name = "ed25519")]
    Ed25519,
    #[value(name = "rsa2048")]
    Rsa2048,
    #[value(name = "rsa4096")]
    Rsa4096,
}

impl From<KeyArg> for KeyType {
    fn from(k: KeyArg) -> Self {
        match k {
            KeyArg::EcdsaP256 => KeyType::EcdsaP256,
            KeyArg::EcdsaP384 => KeyType::EcdsaP384,
            KeyArg::Ed25519 => KeyType::Ed25519,
            KeyArg::Rsa2048 => KeyType::Rsa2048,
            KeyArg::Rsa4096 => KeyType::Rsa4096,
        }
    }
}

#[derive(Args, Debug)]
struct CaCmd {
    /// Directory to create the CA in (created if missing)
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Subject common name
    #[arg(long, value_name = "NAME", default_value = DEFAULT_CA_CN)]
    cn: String,
    /// Lifetime in days
    #[arg(long, value_name = "N", allow_negative_numbers = true, default_value_t = DEFAULT_CA_DAYS)]
    days: u32,
    /// Key type
    #[arg(long, value_enum, default_value = "ecdsa-p256")]
    key: KeyArg,
    /// Replace an existing CA (resets its index and removes its CRL)
    #[arg(long)]
    force: bool,
}

#[derive(Args, Debug)]
struct ServerCmd {
    /// CA directory (from `certgen ca`)
    #[arg(long, value_name = "DIR")]
    ca: PathBuf,
    /// File stem: writes NAME.crt and NAME.key
    #[arg(long, value_name = "NAME")]
    name: String,
    /// DNS subjectAltName; repeat or comma-separate for several
    #[arg(long, value_name = "HOST", num_args = 1.., value_delimiter = ',')]
    dns: Vec<String>,
    /// IP subjectAltName (IPv4 or IPv6); repeat or comma-separate
    #[arg(long, value_name = "ADDR", num_args = 1.., value_delimiter = ',')]
    ip: Vec<IpAddr>,
    #[command(flatten)]
    leaf: LeafArgs,
}

#[derive(Args, Debug)]
struct ClientCmd {
    /// CA directory (from `certgen ca`)
    #[arg(long, value_name = "DIR")]
    ca: PathBuf,
    /// File stem: writes NAME.crt and NAME.key
    #[arg(long, value_name = "NAME")]
    name: String,
    /// Subject common name (the identity alb sees); defaults to --name
    #[arg(long, value_name = "CN")]
    cn: Option<String>,
    #[command(flatten)]
    leaf: LeafArgs,
}

#[derive(Args, Debug)]
struct LeafArgs {
    /// Lifetime in days (clamped to the CA's expiry)
    #[arg(long, value_name = "N", allow_negative_numbers = true, default_value_t = DEFAULT_LEAF_DAYS)]
    days: u32,
    /// Key type
    #[arg(long, value_enum, default_value = "ecdsa-p256")]
    key: KeyArg,
    /// Write NAME.crt/NAME.key here instead of the CA directory
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Replace existing NAME.crt/NAME.key
    #[arg(long)]
    force: bool,
}

#[derive(Args, Debug)]
struct RevokeCmd {
    /// CA directory
    #[arg(long, value_name = "DIR")]
    ca: PathBuf,
    /// Certificate file to revoke (must be issued by this CA)
    #[arg(long, value_name = "FILE", required_unless_present = "serial", conflicts_with = "serial")]
    cert: Option<PathBuf>,
    /// Serial to revoke (hex, as `certgen inspect` shows), if the file is gone
    #[arg(long, value_name = "HEX")]
    serial: Option<String>,
}

#[derive(Args, Debug)]
struct CrlCmd {
    /// CA directory
    #[arg(long, value_name = "DIR")]
    ca: PathBuf,
    /// Days until nextUpdate
    #[arg(long, value_name = "N", allow_negative_numbers = true, default_value_t = DEFAULT_CRL_DAYS)]
    days: u32,
}

#[derive(Args, Debug)]
struct InspectCmd {
    /// Certificate, CRL or key files (PEM or DER)
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
}

#[derive(Args, Debug)]
struct DemoCmd {
    /// Output directory (created if missing)
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Key type for every key in the set
    #[arg(long, value_enum, default_value = "ecdsa-p256")]
    key: KeyArg,
    /// Replace an existing demo set
    #[arg(long)]
    force: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A value clap let through but certgen refuses (`--days 0`) is
            // a usage error like clap's own.
            let usage = e.chain().any(|c| matches!(c.downcast_ref::<certgen::Error>(), Some(certgen::Error::InvalidArg { .. })));
            report::exit("certgen", e.as_ref(), if usage { Exit::Usage } else { Exit::Runtime })
        }
    }
}

fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Ca(a) => {
            let ca = Ca::create(&a.out, &CaOptions { common_name: a.cn, days: a.days, key_type: a.key.into(), force: a.force })?;
            println!("created CA \"{}\" ({}) valid until {}", ca.subject(), KeyType::from(a.key), ts(ca.not_after()));
            print_file(&ca.cert_path(), "CA certificate");
            print_file(&ca.key_path(), "CA private key");
            print_file(&ca.dir().join(files::INDEX), "serial index");
        }
        Cmd::Server(a) => {
            let ca = Ca::load(&a.ca)?;
            let mut o = ServerOptions::new(a.name, &[], &a.ip);
            o.dns = a.dns;
            apply_leaf(&a.leaf, &mut o.validity, &mut o.key_type, &mut o.out_dir, &mut o.force);
            print_issued(&ca.issue_server(&o)?);
        }
        Cmd::Client(a) => {
            let ca = Ca::load(&a.ca)?;
            let cn = a.cn.unwrap_or_else(|| a.name.clone());
            let mut o = ClientOptions::new(a.name, cn);
            apply_leaf(&a.leaf, &mut o.validity, &mut o.key_type, &mut o.out_dir, &mut o.force);
            print_issued(&ca.issue_client(&o)?);
        }
        Cmd::Revoke(a) => {
            let ca = Ca::load(&a.ca)?;
            let r = match (&a.cert, &a.serial) {
                (Some(cert), _) => ca.revoke(cert)?,
                (None, Some(serial)) => ca.revoke_serial(serial)?,
                (None, None) => anyhow::bail!("one of --cert or --serial is required"),
            };
            if r.already_revoked {
                println!("serial {} ({}) was already revoked at {}", r.serial, r.name, ts(r.revoked_at));
            } else {
                println!("revoked serial {} ({}) at {}", r.serial, r.name, ts(r.revoked_at));
            }
            println!("publish it with: certgen crl --ca {}", a.ca.display());
        }
        Cmd::Crl(a) => {
            let ca = Ca::load(&a.ca)?;
            let crl = ca.write_crl(a.days)?;
            println!("wrote CRL number {} listing {} revoked certificate(s), next update {}", crl.number, crl.revoked.len(), ts(crl.next_update));
            print_file(&crl.path, "CRL");
        }
        Cmd::Inspect(a) => {
            let many = a.files.len() > 1;
            for (i, path) in a.files.iter().enumerate() {
                let items: Vec<Inspected> = certgen::inspect(path)?;
                if many {
                    if i > 0 {
                        println!();
                    }
                    println!("== {} ==", path.display());
                }
                for item in items {
                    print!("{item}");
                }
            }
        }
        Cmd::Demo(a) => {
            let d = certgen::demo(&a.out, &certgen::DemoOptions { force: a.force, key_type: a.key.into() })?;
            println!("wrote demo set to {} ({} keys)", d.files.dir.display(), KeyType::from(a.key));
            for p in d.files.all() {
                let what = if p.extension().is_some_and(|e| e == files::KEY_EXT) { "private key" } else { "public" };
                print_file(p, what);
            }
            println!("CRL number {} revokes serial {} ({})", d.crl.number, d.revoked.serial, d.revoked.name);
        }
    }
    Ok(())
}

fn apply_leaf(a: &LeafArgs, validity: &mut Validity, key: &mut KeyType, out: &mut Option<PathBuf>, force: &mut bool) {
    *validity = Validity::Days(a.days);
    *key = a.key.into();
    out.clone_from(&a.out);
    *force = a.force;
}

fn print_issued(i: &Issued) {
    println!("issued {} certificate \"{}\" serial {} valid {} .. {}", i.kind, i.name, i.serial, ts(i.not_before), ts(i.not_after));
    print_file(&i.cert_path, "certificate");
    print_file(&i.key_path, "private key");
}

fn ts(t: certgen::OffsetDateTime) -> String {
    use time::format_description::well_known::Rfc3339;
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

fn print_file(path: &Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).map(|m| format!("{:04o}", m.permissions().mode() & 0o7777)).unwrap_or_else(|_| "????".into());
    println!("  {mode}  {}  ({what})", path.display());
}
