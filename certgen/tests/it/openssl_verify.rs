//! The same chains, judged by the real `openssl` CLI (a second, independent
//! X.509 implementation). Skipped, loudly, when `openssl` is not on PATH.

use std::path::Path;
use std::process::{Command, Output};

use certgen::{demo, Ca, CaOptions, ClientOptions, DemoOptions, Inspected, KeyType, ServerOptions};

fn have_openssl() -> bool {
    let ok = Command::new("openssl").arg("version").output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        eprintln!("SKIP: `openssl` not found on PATH; openssl cross-checks not run");
    }
    ok
}

fn openssl(args: &[&str]) -> Output {
    Command::new("openssl").args(args).output().expect("run openssl")
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// `openssl verify`; returns (success, combined output).
fn verify(ca: &Path, cert: &Path, extra: &[&str]) -> (bool, String) {
    let mut args = vec!["verify", "-CAfile", p(ca)];
    args.extend_from_slice(extra);
    args.push(p(cert));
    let out = openssl(&args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn assert_ok(ca: &Path, cert: &Path, extra: &[&str]) {
    let (ok, text) = verify(ca, cert, extra);
    assert!(ok, "openssl verify {extra:?} {}: {text}", cert.display());
    assert!(text.contains(": OK"), "{text}");
}

fn assert_fails(ca: &Path, cert: &Path, extra: &[&str], why: &str) {
    let (ok, text) = verify(ca, cert, extra);
    assert!(!ok, "openssl verify {extra:?} {} should fail: {text}", cert.display());
    assert!(text.contains(why), "expected {why:?} in: {text}");
}

#[test]
fn demo_chains_verify_with_openssl() {
    if !have_openssl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = demo(dir.path(), &DemoOptions::default()).unwrap();
    let f = &d.files;
    let crl = ["-crl_check", "-CRLfile", p(&f.crl)];

    // Server: purpose, every DNS and IP SAN.
    assert_ok(&f.ca_cert, &f.server_cert, &["-purpose", "sslserver"]);
    for host in certgen::demo::SERVER_DNS {
        assert_ok(&f.ca_cert, &f.server_cert, &["-purpose", "sslserver", "-verify_hostname", host]);
    }
    for ip in certgen::demo::SERVER_IPS {
        let ip = ip.to_string();
        assert_ok(&f.ca_cert, &f.server_cert, &["-purpose", "sslserver", "-verify_ip", &ip]);
    }
    assert_fails(&f.ca_cert, &f.server_cert, &["-purpose", "sslserver", "-verify_ip", "198.18.2.14"], "IP address mismatch");

    // Clients, with the CRL loaded.
    for cert in [&f.client1_cert, &f.client2_cert] {
        let mut args = vec!["-purpose", "sslclient"];
        args.extend_from_slice(&crl);
        assert_ok(&f.ca_cert, cert, &args);
    }
    // Wrong purpose both ways.
    assert_fails(&f.ca_cert, &f.server_cert, &["-purpose", "sslclient"], "unsuitable certificate purpose");
    assert_fails(&f.ca_cert, &f.client1_cert, &["-purpose", "sslserver"], "unsuitable certificate purpose");
    // Revoked: fine without the CRL, rejected with it.
    assert_ok(&f.ca_cert, &f.revoked_cert, &["-purpose", "sslclient"]);
    let mut args = vec!["-purpose", "sslclient"];
    args.extend_from_slice(&crl);
    assert_fails(&f.ca_cert, &f.revoked_cert, &args, "certificate revoked");
    // Expired and rogue.
    assert_fails(&f.ca_cert, &f.expired_cert, &["-purpose", "sslclient"], "certificate has expired");
    assert_fails(&f.ca_cert, &f.rogue_cert, &["-purpose", "sslclient"], "unable to get local issuer certificate");
    assert_ok(&f.rogue_ca_cert, &f.rogue_cert, &["-purpose", "sslclient"]);
}

#[test]
fn crl_and_ca_extensions_as_openssl_sees_them() {
    if !have_openssl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = demo(dir.path(), &DemoOptions::default()).unwrap();
    let f = &d.files;

    // CRL signature verifies against the CA, number and revoked serial.
    let out = openssl(&["crl", "-in", p(&f.crl), "-CAfile", p(&f.ca_cert), "-noout", "-text"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("verify OK"), "{text}");
    assert!(text.contains("X509v3 CRL Number:") && text.contains("\n                1\n"), "{text}");
    assert!(text.to_uppercase().contains(&d.revoked.serial.to_uppercase()), "{text}");
    // The revoked cert is listed in the CRL, the others are not.
    assert!(!text.to_uppercase().contains(&d.client1.serial.to_uppercase()));

    // CA profile.
    let out = openssl(&["x509", "-in", p(&f.ca_cert), "-noout", "-text"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("X509v3 Basic Constraints: critical"), "{text}");
    assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
    assert!(text.contains("X509v3 Key Usage: critical"), "{text}");
    assert!(text.contains("Certificate Sign, CRL Sign"), "{text}");

    // Fingerprint from `inspect` equals openssl's.
    let out = openssl(&["x509", "-in", p(&f.server_cert), "-noout", "-fingerprint", "-sha256"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let Inspected::Certificate(info) = &certgen::inspect(&f.server_cert).unwrap()[0] else { panic!("not a certificate") };
    assert!(text.contains(&info.sha256), "openssl: {text} inspect: {}", info.sha256);
    // Serial too.
    let out = openssl(&["x509", "-in", p(&f.server_cert), "-noout", "-serial"]);
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert_eq!(text.trim(), format!("serial={}", info.serial));
}

/// Every key file holds the private half of its certificate's public key.
#[test]
fn keys_match_certificates_per_openssl() {
    if !have_openssl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = demo(dir.path(), &DemoOptions::default()).unwrap();
    let f = &d.files;
    let pairs = [
        (&f.ca_cert, &f.ca_key),
        (&f.server_cert, &f.server_key),
        (&f.client1_cert, &f.client1_key),
        (&f.client2_cert, &f.client2_key),
        (&f.revoked_cert, &f.revoked_key),
        (&f.expired_cert, &f.expired_key),
        (&f.rogue_cert, &f.rogue_key),
        (&f.rogue_ca_cert, &f.rogue_ca_key),
    ];
    for (cert, key) in pairs {
        let from_cert = openssl(&["x509", "-in", p(cert), "-noout", "-pubkey"]);
        let from_key = openssl(&["pkey", "-in", p(key), "-pubout"]);
        assert!(from_cert.status.success() && from_key.status.success(), "{}", key.display());
        assert_eq!(from_cert.stdout, from_key.stdout, "{} vs {}", cert.display(), key.display());
    }
}

#[test]
fn every_key_type_verifies_with_openssl() {
    if !have_openssl() {
        return;
    }
    for kt in KeyType::ALL {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::create(dir.path(), &CaOptions { key_type: kt, ..CaOptions::default() }).unwrap();
        let mut so = ServerOptions::new("srv", &["svc.xdplb.test"], &["fd00::1".parse().unwrap()]);
        so.key_type = kt;
        let server = ca.issue_server(&so).unwrap();
        let mut co = ClientOptions::new("cli", "cli");
        co.key_type = kt;
        let client = ca.issue_client(&co).unwrap();
        ca.revoke(&client.cert_path).unwrap();
        let crl = ca.write_crl(1).unwrap();
        let cacert = ca.cert_path();
        assert_ok(&cacert, &server.cert_path, &["-purpose", "sslserver", "-verify_hostname", "svc.xdplb.test", "-verify_ip", "fd00::1"]);
        assert_ok(&cacert, &client.cert_path, &["-purpose", "sslclient"]);
        assert_fails(&cacert, &client.cert_path, &["-purpose", "sslclient", "-crl_check", "-CRLfile", p(&crl.path)], "certificate revoked");
        let out = openssl(&["pkey", "-in", p(&server.key_path), "-noout", "-text"]);
        assert!(out.status.success(), "{kt}: openssl cannot read key");
        for (cert, key) in [(&cacert, &ca.key_path()), (&client.cert_path, &client.key_path)] {
            let from_cert = openssl(&["x509", "-in", p(cert), "-noout", "-pubkey"]);
            let from_key = openssl(&["pkey", "-in", p(key), "-pubout"]);
            assert!(from_key.status.success(), "{kt}: openssl cannot read {}", key.display());
            assert_eq!(from_cert.stdout, from_key.stdout, "{kt}: {} vs {}", cert.display(), key.display());
        }
        if kt == KeyType::Rsa4096 {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("4096 bit"), "{text}");
        }
    }
}
