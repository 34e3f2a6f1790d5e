//! Bad input produces errors that name the argument/value or the file, never
//! panics; existing files are never overwritten without `force`; modes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use certgen::{demo, Ca, CaOptions, ClientOptions, DemoOptions, Duration, Error, OffsetDateTime, ServerOptions, Validity};

fn ca_in(dir: &Path) -> Ca {
    Ca::create(dir, &CaOptions::default()).expect("create CA")
}

fn msg<T: std::fmt::Debug>(r: certgen::Result<T>) -> String {
    r.expect_err("expected an error").to_string()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn days_zero_and_too_many_are_rejected_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let e = msg(Ca::create(dir.path().join("a"), &CaOptions { days: 0, ..CaOptions::default() }));
    assert!(e.contains("--days") && e.contains("\"0\""), "{e}");
    assert!(!dir.path().join("a/ca.key").exists(), "nothing written on bad input");
    let e = msg(Ca::create(dir.path().join("b"), &CaOptions { days: 40_000, ..CaOptions::default() }));
    assert!(e.contains("--days") && e.contains("40000"), "{e}");

    let ca = ca_in(dir.path());
    let mut so = ServerOptions::new("s", &["localhost"], &[]);
    so.validity = Validity::Days(0);
    assert!(msg(ca.issue_server(&so)).contains("--days"));
    let mut co = ClientOptions::new("c", "c");
    co.validity = Validity::Days(0);
    assert!(msg(ca.issue_client(&co)).contains("--days"));
    assert!(msg(ca.write_crl(0)).contains("--days"));
    assert!(!dir.path().join("s.crt").exists() && !dir.path().join("c.crt").exists());
}

#[test]
fn bad_names_dns_and_missing_sans_name_the_argument() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_in(dir.path());
    for (name, dns, want) in [("../evil", "localhost", "--name"), ("ca", "localhost", "--name"), ("ok", "not a host", "--dns"), ("ok", "10.0.0.1", "--dns")] {
        let e = msg(ca.issue_server(&ServerOptions::new(name, &[dns], &[])));
        assert!(e.contains(want), "{name} {dns}: {e}");
    }
    let e = msg(ca.issue_server(&ServerOptions::new("nosan", &[], &[])));
    assert!(e.contains("--dns") && e.contains("--ip"), "{e}");
    let e = msg(ca.issue_client(&ClientOptions::new("c", "")));
    assert!(e.contains("--cn"), "{e}");
    let e = msg(Ca::create(dir.path().join("x"), &CaOptions { common_name: "a\nb".into(), ..CaOptions::default() }));
    assert!(e.contains("--cn"), "{e}");
}

#[test]
fn unknown_key_type_names_flag_and_value() {
    let e = "rsa1024".parse::<certgen::KeyType>().unwrap_err().to_string();
    assert!(e.contains("--key") && e.contains("rsa1024"), "{e}");
}

#[test]
fn unreadable_or_broken_ca_dirs_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let e = msg(Ca::load(&missing));
    assert!(e.contains("nope") && e.contains("--ca"), "{e}");

    let file = dir.path().join("plainfile");
    fs::write(&file, b"x").unwrap();
    let e = msg(Ca::load(&file));
    assert!(e.contains("--ca") && e.contains("plainfile") && e.contains("not a directory"), "{e}");

    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let e = msg(Ca::load(&empty));
    assert!(e.contains("ca.crt"), "{e}");

    let good = dir.path().join("good");
    ca_in(&good);
    // Garbage certificate.
    let broken = dir.path().join("broken");
    ca_in(&broken);
    fs::write(broken.join("ca.crt"), b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
    let e = msg(Ca::load(&broken));
    assert!(e.contains("ca.crt"), "{e}");
    fs::write(broken.join("ca.crt"), b"hello").unwrap();
    let e = msg(Ca::load(&broken));
    assert!(e.contains("ca.crt"), "{e}");

    // Missing / mismatched key.
    let nokey = dir.path().join("nokey");
    ca_in(&nokey);
    fs::remove_file(nokey.join("ca.key")).unwrap();
    let e = msg(Ca::load(&nokey));
    assert!(e.contains("ca.key"), "{e}");
    let mixed = dir.path().join("mixed");
    ca_in(&mixed);
    fs::copy(good.join("ca.key"), mixed.join("ca.key")).unwrap();
    let e = msg(Ca::load(&mixed));
    assert!(e.contains("ca.key") && e.contains("does not match"), "{e}");
    fs::write(mixed.join("ca.key"), b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
    let e = msg(Ca::load(&mixed));
    assert!(e.contains("ca.key"), "{e}");

    // A leaf certificate is not a CA.
    let notca = dir.path().join("notca");
    let ca = ca_in(&notca);
    let leaf = ca.issue_server(&ServerOptions::new("leaf", &["x.test"], &[])).unwrap();
    fs::copy(&leaf.cert_path, notca.join("ca.crt")).unwrap();
    fs::copy(&leaf.key_path, notca.join("ca.key")).unwrap();
    let e = msg(Ca::load(&notca));
    assert!(e.contains("ca.crt") && e.contains("CA"), "{e}");

    // Corrupt index.
    let badidx = dir.path().join("badidx");
    let ca = ca_in(&badidx);
    fs::write(badidx.join("index.json"), b"[").unwrap();
    let e = msg(ca.issue_client(&ClientOptions::new("c", "c")));
    assert!(e.contains("index.json"), "{e}");
    assert!(!badidx.join("c.crt").exists(), "no orphan certificate when the index is unusable");
}

#[test]
fn out_dir_that_is_a_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_in(&dir.path().join("ca"));
    let file = dir.path().join("f");
    fs::write(&file, b"").unwrap();
    let mut co = ClientOptions::new("c", "c");
    co.out_dir = Some(file.clone());
    let e = msg(ca.issue_client(&co));
    assert!(e.contains("--out") && e.contains("not a directory"), "{e}");
    let e = msg(Ca::create(&file, &CaOptions::default()));
    assert!(e.contains("--out"), "{e}");
}

#[test]
fn revoke_refuses_foreign_and_unknown_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let d = demo(dir.path().join("one"), &DemoOptions::default()).unwrap();
    // Rogue: different issuer name.
    let e = msg(d.ca.revoke(&d.files.rogue_cert));
    assert!(e.contains("rogue.crt") && e.contains("issuer"), "{e}");
    // Same CA name, different key: a second demo set.
    let other = demo(dir.path().join("two"), &DemoOptions::default()).unwrap();
    let e = msg(d.ca.revoke(&other.files.client1_cert));
    assert!(e.contains("signature"), "{e}");
    // Unknown / malformed serials.
    let e = msg(d.ca.revoke_serial("01:02:03"));
    assert!(e.contains("--serial") && e.contains("010203"), "{e}");
    let e = msg(d.ca.revoke_serial("zz"));
    assert!(e.contains("--serial") && e.contains("zz"), "{e}");
    // Not a certificate at all.
    let e = msg(d.ca.revoke(&d.files.index));
    assert!(e.contains("index.json"), "{e}");
    let e = msg(d.ca.revoke(dir.path().join("missing.crt")));
    assert!(e.contains("missing.crt"), "{e}");
    // By serial works for an indexed one.
    let r = d.ca.revoke_serial(&d.client2.serial).unwrap();
    assert_eq!(r.name, "client2");
}

#[test]
fn validity_window_must_be_ordered_and_encodable() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_in(dir.path());
    let now = OffsetDateTime::now_utc();
    let mut co = ClientOptions::new("w", "w");
    co.validity = Validity::Window { not_before: now, not_after: now - Duration::hours(1) };
    assert!(msg(ca.issue_client(&co)).contains("not_before"));
    co.validity = Validity::Window { not_before: now - Duration::days(365 * 200), not_after: now };
    assert!(msg(ca.issue_client(&co)).contains("1950"));
}

#[test]
fn inspect_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let e = msg(certgen::inspect(dir.path().join("absent.pem")));
    assert!(e.contains("absent.pem"), "{e}");
    let junk = dir.path().join("junk.pem");
    fs::write(&junk, b"just text").unwrap();
    assert!(msg(certgen::inspect(&junk)).contains("junk.pem"));
    let der = dir.path().join("junk.der");
    fs::write(&der, [0x30, 0x03, 0x02, 0x01, 0x01]).unwrap();
    assert!(msg(certgen::inspect(&der)).contains("junk.der"));
}

#[test]
fn existing_files_are_never_overwritten_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca_in(dir.path());
    let ca_pem = fs::read(ca.cert_path()).unwrap();
    let err = Ca::create(dir.path(), &CaOptions::default()).unwrap_err();
    assert!(matches!(&err, Error::Exists { path } if path.ends_with("ca.crt")), "{err}");
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(fs::read(ca.cert_path()).unwrap(), ca_pem, "CA untouched");

    let first = ca.issue_client(&ClientOptions::new("c", "c")).unwrap();
    let (cert, key) = (fs::read(&first.cert_path).unwrap(), fs::read(&first.key_path).unwrap());
    let e = msg(ca.issue_client(&ClientOptions::new("c", "c")));
    assert!(e.contains("c.crt") && e.contains("--force"), "{e}");
    // Only the key exists (say a crash between the two writes): still refused,
    // and the refusal names the key.
    fs::remove_file(&first.cert_path).unwrap();
    let e = msg(ca.issue_client(&ClientOptions::new("c", "c")));
    assert!(e.contains("c.key"), "{e}");
    fs::write(&first.cert_path, &cert).unwrap();
    assert_eq!(fs::read(&first.key_path).unwrap(), key);
    assert_eq!(ca.index().unwrap().certs.len(), 1, "refusals leave the index alone");

    let mut again = ClientOptions::new("c", "c");
    again.force = true;
    let second = ca.issue_client(&again).unwrap();
    assert_ne!(fs::read(&second.cert_path).unwrap(), cert, "--force replaced the certificate");
    assert_ne!(fs::read(&second.key_path).unwrap(), key, "--force replaced the key");
    assert_eq!(mode(&second.key_path), 0o600);
    assert_eq!(mode(&second.cert_path), 0o644);

    // CA re-creation with force resets index and drops the stale CRL.
    ca.write_crl(1).unwrap();
    let new_ca = Ca::create(dir.path(), &CaOptions { force: true, ..CaOptions::default() }).unwrap();
    assert_ne!(new_ca.cert_der(), ca.cert_der());
    assert!(new_ca.index().unwrap().certs.is_empty());
    assert!(!new_ca.crl_path().exists());
}

#[test]
fn demo_refuses_to_overwrite_and_force_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let d = demo(dir.path(), &DemoOptions::default()).unwrap();
    let before = fs::read(&d.files.client1_cert).unwrap();
    let err = demo(dir.path(), &DemoOptions::default()).unwrap_err();
    assert!(matches!(&err, Error::Exists { path } if path.ends_with("ca.crt")), "{err}");
    assert_eq!(fs::read(&d.files.client1_cert).unwrap(), before);
    // A single leftover file is enough to refuse, and it is the one named.
    let lone = tempfile::tempdir().unwrap();
    fs::create_dir(lone.path().join("rogue-ca")).unwrap();
    fs::write(lone.path().join("rogue-ca/ca.key"), b"x").unwrap();
    let e = msg(demo(lone.path(), &DemoOptions::default()));
    assert!(e.contains("rogue-ca/ca.key"), "{e}");
    assert!(!lone.path().join("ca.crt").exists(), "refusal wrote nothing");

    let d2 = demo(dir.path(), &DemoOptions { force: true, ..DemoOptions::default() }).unwrap();
    assert_ne!(fs::read(&d2.files.client1_cert).unwrap(), before);
    assert_eq!(d2.crl.number, 1, "fresh CA, fresh CRL numbering");
}

#[test]
fn file_modes_keys_0600_everything_else_0644() {
    let dir = tempfile::tempdir().unwrap();
    let d = demo(dir.path(), &DemoOptions::default()).unwrap();
    for p in d.files.all() {
        let want = if p.extension().is_some_and(|e| e == "key") { 0o600 } else { 0o644 };
        assert_eq!(mode(p), want, "{}", p.display());
    }
    assert_eq!(mode(&d.files.rogue_ca_dir.join("index.json")), 0o644);
    // No temp files left behind by the atomic replaces.
    let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().contains(".tmp-")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn leaf_validity_is_clamped_to_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::create(dir.path(), &CaOptions { days: 2, ..CaOptions::default() }).unwrap();
    let mut co = ClientOptions::new("c", "c");
    co.validity = Validity::Days(365);
    let c = ca.issue_client(&co).unwrap();
    assert_eq!(c.not_after, ca.not_after());
    assert!(c.not_before < OffsetDateTime::now_utc() - Duration::minutes(4), "backdated for clock skew");
}

#[test]
fn der_files_are_read_and_inspected() {
    let dir = tempfile::tempdir().unwrap();
    let d = demo(dir.path(), &DemoOptions::default()).unwrap();
    let der = dir.path().join("client1.der");
    fs::write(&der, d.client1.cert_der()).unwrap();
    assert_eq!(certgen::read_cert(&der).unwrap(), d.client1.cert_der());
    let certgen::Inspected::Certificate(info) = &certgen::inspect(&der).unwrap()[0] else { panic!("DER certificate not recognised") };
    assert_eq!(info.serial, d.client1.serial);
    let crl = dir.path().join("crl.der");
    fs::write(&crl, &d.crl.der).unwrap();
    let certgen::Inspected::Crl(info) = &certgen::inspect(&crl).unwrap()[0] else { panic!("DER CRL not recognised") };
    assert_eq!(info.revoked.len(), 1);
    assert_eq!(info.revoked[0].0, d.revoked.serial);
    assert_eq!(info.number.as_deref(), Some("1"));
}
