//! The `certgen` binary end to end: every subcommand, its output files, and
//! its error messages (which must name the argument/value or file and never
//! be a panic).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_certgen");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("spawn certgen")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Runs and asserts success; returns stdout.
fn ok(args: &[&str]) -> String {
    let o = run(args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "certgen {args:?} failed:\n{out}\n{err}");
    out
}

/// Runs and asserts failure without a panic; returns stderr.
fn fails(args: &[&str]) -> String {
    let o = run(args);
    let (out, err) = text(&o);
    assert!(!o.status.success(), "certgen {args:?} should fail:\n{out}");
    assert!(!err.contains("panicked"), "certgen {args:?} panicked:\n{err}");
    assert!(matches!(o.status.code(), Some(1 | 2)), "exit code {:?}", o.status.code());
    err
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn help_teaches_with_examples() {
    let top = ok(&["--help"]);
    assert!(top.contains("Examples:") && top.contains("certgen demo --out"), "{top}");
    for sub in ["ca", "server", "client", "revoke", "crl", "inspect", "demo"] {
        let h = ok(&[sub, "--help"]);
        assert!(h.contains("Example"), "{sub} --help lacks an example:\n{h}");
    }
    let key_help = ok(&["ca", "--help"]);
    for kt in ["ecdsa-p256", "ecdsa-p384", "ed25519", "rsa2048", "rsa4096"] {
        assert!(key_help.contains(kt), "ca --help should list {kt}");
    }
    assert!(ok(&["--version"]).contains("certgen"));
}

#[test]
fn every_subcommand_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("pki");
    let out = ok(&["ca", "--out", s(&ca), "--cn", "cli test CA", "--days", "30", "--key", "ecdsa-p384"]);
    assert!(out.contains("CN=cli test CA") && out.contains("ca.crt"), "{out}");
    assert_eq!(mode(&ca.join("ca.key")), 0o600);

    // Repeated flags, several values after one flag, and comma lists.
    let out = ok(&[
        "server",
        "--ca",
        s(&ca),
        "--name",
        "web",
        "--dns",
        "a.test",
        "b.test",
        "--dns",
        "c.test,d.test",
        "--ip",
        "198.18.2.11",
        "--ip",
        "fd00:198:18:2::11,127.0.0.1",
    ]);
    assert!(out.contains("web.crt") && out.contains("web.key"), "{out}");
    let info = ok(&["inspect", s(&ca.join("web.crt"))]);
    for want in [
        "DNS:a.test",
        "DNS:b.test",
        "DNS:c.test",
        "DNS:d.test",
        "IP:198.18.2.11",
        "IP:fd00:198:18:2::11",
        "IP:127.0.0.1",
        "serverAuth",
        "issuer:       CN=cli test CA",
        "key type:     ecdsa-p256",
        "SHA-256:",
        "serial:",
        "not after:",
    ] {
        assert!(info.contains(want), "missing {want:?} in:\n{info}");
    }

    // Client with --cn, another with the CN defaulting to --name, one via --out.
    ok(&["client", "--ca", s(&ca), "--name", "alice", "--cn", "alice@lab", "--key", "ed25519"]);
    ok(&["client", "--ca", s(&ca), "--name", "bob", "--days", "2"]);
    let elsewhere = dir.path().join("elsewhere");
    ok(&["client", "--ca", s(&ca), "--name", "carol", "--out", s(&elsewhere)]);
    assert!(elsewhere.join("carol.crt").exists() && !ca.join("carol.crt").exists());
    let info = ok(&["inspect", s(&ca.join("alice.crt")), s(&ca.join("bob.crt"))]);
    assert!(info.contains("CN=alice@lab") && info.contains("CN=bob") && info.contains("clientAuth"), "{info}");
    assert!(info.contains("key type:     ed25519"), "{info}");

    // Revoke by file and by serial, publish, inspect the CRL.
    let out = ok(&["revoke", "--ca", s(&ca), "--cert", s(&ca.join("alice.crt"))]);
    assert!(out.contains("revoked serial") && out.contains("certgen crl"), "{out}");
    let again = ok(&["revoke", "--ca", s(&ca), "--cert", s(&ca.join("alice.crt"))]);
    assert!(again.contains("already revoked"), "{again}");
    let index: serde_json::Value = serde_json::from_slice(&fs::read(ca.join("index.json")).unwrap()).unwrap();
    let carol = index["certs"].as_array().unwrap().iter().find(|e| e["name"] == "carol").unwrap();
    let carol_serial = carol["serial"].as_str().unwrap().to_owned();
    ok(&["revoke", "--ca", s(&ca), "--serial", &carol_serial]);
    let out = ok(&["crl", "--ca", s(&ca), "--days", "7"]);
    assert!(out.contains("CRL number 1") && out.contains("2 revoked"), "{out}");
    let out = ok(&["crl", "--ca", s(&ca)]);
    assert!(out.contains("CRL number 2"), "{out}");
    let crl = ok(&["inspect", s(&ca.join("crl.pem"))]);
    assert!(crl.contains("CRL number:   2") && crl.contains(&carol_serial), "{crl}");

    // Keys inspect too, and match their certificate's public key.
    let key = ok(&["inspect", s(&ca.join("web.key"))]);
    let cert = ok(&["inspect", s(&ca.join("web.crt"))]);
    let spki = |t: &str| t.lines().find(|l| l.contains("SPKI SHA-256")).map(|l| l.split_once(':').unwrap().1.trim().to_owned());
    assert!(spki(&key).is_some() && spki(&key) == spki(&cert), "{key}\n{cert}");

    // Demo.
    let demo = dir.path().join("demo");
    let out = ok(&["demo", "--out", s(&demo)]);
    for f in ["ca.crt", "ca.key", "crl.pem", "server.crt", "client1.key", "client2.crt", "revoked.crt", "expired.crt", "rogue.crt", "rogue-ca/ca.crt"] {
        assert!(demo.join(f).exists(), "{f} missing");
        assert!(out.contains(f), "demo output should list {f}");
    }
    let expired = ok(&["inspect", s(&demo.join("expired.crt"))]);
    assert!(expired.contains("EXPIRED"), "{expired}");
}

#[test]
fn cli_errors_name_argument_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("pki");
    ok(&["ca", "--out", s(&ca)]);

    let e = fails(&["server", "--ca", s(&ca), "--name", "x", "--ip", "300.1.2.3"]);
    assert!(e.contains("--ip") && e.contains("300.1.2.3"), "{e}");
    let e = fails(&["server", "--ca", s(&ca), "--name", "x", "--ip", "fd00::1::2"]);
    assert!(e.contains("--ip") && e.contains("fd00::1::2"), "{e}");
    let e = fails(&["ca", "--out", s(&dir.path().join("k")), "--key", "dsa"]);
    assert!(e.contains("--key") && e.contains("dsa") && e.contains("ecdsa-p256"), "{e}");
    let e = fails(&["client", "--ca", s(&ca), "--name", "x", "--days", "0"]);
    assert!(e.contains("--days") && e.contains("\"0\""), "{e}");
    let e = fails(&["ca", "--out", s(&dir.path().join("d")), "--days", "0"]);
    assert!(e.contains("--days"), "{e}");
    let e = fails(&["crl", "--ca", s(&ca), "--days", "0"]);
    assert!(e.contains("--days"), "{e}");
    let e = fails(&["client", "--ca", s(&ca), "--name", "x", "--days", "-3"]);
    assert!(e.contains("--days"), "{e}");
    let missing = dir.path().join("no-such-ca");
    let e = fails(&["client", "--ca", s(&missing), "--name", "x"]);
    assert!(e.contains("no-such-ca") && e.contains("--ca"), "{e}");
    let e = fails(&["server", "--ca", s(&ca), "--name", "x"]);
    assert!(e.contains("--dns") && e.contains("--ip"), "{e}");
    let e = fails(&["server", "--ca", s(&ca), "--name", "a/b", "--dns", "x.test"]);
    assert!(e.contains("--name") && e.contains("a/b"), "{e}");
    let e = fails(&["server", "--ca", s(&ca), "--name", "x", "--dns", "bad host"]);
    assert!(e.contains("--dns") && e.contains("bad host"), "{e}");
    let e = fails(&["revoke", "--ca", s(&ca)]);
    assert!(e.contains("--cert") || e.contains("--serial"), "{e}");
    let e = fails(&["revoke", "--ca", s(&ca), "--serial", "abcd"]);
    assert!(e.contains("--serial") && e.contains("abcd"), "{e}");
    let e = fails(&["inspect", s(&dir.path().join("nothing.pem"))]);
    assert!(e.contains("nothing.pem"), "{e}");
    fs::write(ca.join("ca.crt"), b"garbage").unwrap();
    let e = fails(&["client", "--ca", s(&ca), "--name", "x"]);
    assert!(e.contains("ca.crt"), "{e}");
}

#[test]
fn cli_refuses_overwrite_and_force_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("pki");
    ok(&["ca", "--out", s(&ca)]);
    let e = fails(&["ca", "--out", s(&ca)]);
    assert!(e.contains("ca.crt") && e.contains("--force"), "{e}");
    ok(&["client", "--ca", s(&ca), "--name", "c"]);
    let before = fs::read(ca.join("c.crt")).unwrap();
    let e = fails(&["client", "--ca", s(&ca), "--name", "c"]);
    assert!(e.contains("c.crt") && e.contains("--force"), "{e}");
    assert_eq!(fs::read(ca.join("c.crt")).unwrap(), before);
    ok(&["client", "--ca", s(&ca), "--name", "c", "--force"]);
    assert_ne!(fs::read(ca.join("c.crt")).unwrap(), before);
    let demo = dir.path().join("demo");
    ok(&["demo", "--out", s(&demo)]);
    let e = fails(&["demo", "--out", s(&demo)]);
    assert!(e.contains("ca.crt") && e.contains("--force"), "{e}");
    ok(&["demo", "--out", s(&demo), "--force"]);
}

/// Modes are explicit, not inherited from the umask: a permissive umask
/// must not expose keys, a strict one must not hide certificates.
#[test]
fn file_modes_ignore_the_umask() {
    let dir = tempfile::tempdir().unwrap();
    for umask in ["000", "077"] {
        let out = dir.path().join(format!("umask{umask}"));
        let status = Command::new("sh").args(["-c", &format!("umask {umask} && exec \"$0\" demo --out \"$1\""), BIN, s(&out)]).status().unwrap();
        assert!(status.success());
        let files = certgen::DemoFiles::in_dir(&out);
        for p in files.all() {
            let want = if p.extension().is_some_and(|e| e == "key") { 0o600 } else { 0o644 };
            assert_eq!(mode(p), want, "umask {umask}: {}", p.display());
        }
    }
}

/// The shared error report (docs/certgen.md): `certgen: error: …`, one line
/// per cause, no backtrace even with RUST_BACKTRACE=1; 2 for usage errors
/// (clap's and refused argument values), 1 for the rest.
#[test]
fn error_report_and_exit_status() {
    let run_bt = |args: &[&str]| Command::new(BIN).args(args).env("RUST_BACKTRACE", "1").output().expect("spawn certgen");
    let o = run_bt(&["server", "--ca", "/nonexistent/pki", "--name", "web"]);
    let (_, err) = text(&o);
    assert_eq!(err, "certgen: error: cannot open CA directory (--ca) /nonexistent/pki: No such file or directory (os error 2)\n");
    assert_eq!(o.status.code(), Some(1), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let o = run_bt(&["ca", "--out", s(&dir.path().join("pki")), "--days", "0"]);
    let (_, err) = text(&o);
    assert!(err.starts_with("certgen: error: invalid --days value \"0\": ") && err.lines().count() == 1, "{err}");
    assert!(!err.contains("stack backtrace") && !err.contains("Caused by"), "{err}");
    assert_eq!(o.status.code(), Some(2), "a refused argument value is a usage error: {err}");
    assert_eq!(run_bt(&["ca", "--bogus"]).status.code(), Some(2));
}
