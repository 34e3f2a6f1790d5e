//! Certificates certgen issues are judged by rustls' webpki verifiers
//! (aws-lc-rs provider) exactly as alb will judge them.

use crate::tls_support::*;
use certgen::{demo, Ca, CaOptions, ClientOptions, DemoOptions, KeyType, ServerOptions};
use rustls::CertificateError;

fn demo_set() -> (tempfile::TempDir, certgen::Demo) {
    let dir = tempfile::tempdir().unwrap();
    let d = demo(dir.path(), &DemoOptions::default()).expect("demo set");
    (dir, d)
}

#[test]
fn server_cert_verifies_for_every_san_and_nothing_else() {
    let (_t, d) = demo_set();
    let ca = d.ca.cert_der();
    let cert = d.server.cert_der();
    for name in certgen::demo::SERVER_DNS {
        verify_server(ca, &cert, name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for ip in certgen::demo::SERVER_IPS {
        verify_server(ca, &cert, &ip.to_string()).unwrap_or_else(|e| panic!("{ip}: {e}"));
    }
    for wrong in ["other.xdplb.test", "198.18.2.14", "fd00:198:18:2::14", "10.0.0.1"] {
        let err = verify_server(ca, &cert, wrong).expect_err(wrong);
        assert!(is_wrong_name(&err), "{wrong}: {err:?}");
    }
}

#[test]
fn client_certs_verify_with_and_without_crl() {
    let (_t, d) = demo_set();
    let crls = vec![d.crl.der.clone()];
    for c in [&d.client1, &d.client2] {
        verify_client(d.ca.cert_der(), &c.cert_der(), &[]).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        verify_client(d.ca.cert_der(), &c.cert_der(), &crls).unwrap_or_else(|e| panic!("{} + CRL: {e}", c.name));
    }
}

#[test]
fn wrong_eku_is_rejected_both_ways() {
    let (_t, d) = demo_set();
    let ca = d.ca.cert_der();
    let err = verify_client(ca, &d.server.cert_der(), &[]).expect_err("server cert as client");
    assert!(is_wrong_purpose(&err), "{err:?}");
    // "client1" is not a SAN either, but webpki checks the EKU first; the
    // assertion pins that the *purpose* is what fails.
    let err = verify_server(ca, &d.client1.cert_der(), "localhost").expect_err("client cert as server");
    assert!(is_wrong_purpose(&err), "{err:?}");
}

#[test]
fn revoked_cert_is_rejected_only_with_the_crl() {
    let (_t, d) = demo_set();
    let ca = d.ca.cert_der();
    verify_client(ca, &d.revoked.cert_der(), &[]).expect("without CRL the revoked cert is still chain-valid");
    let err = verify_client(ca, &d.revoked.cert_der(), std::slice::from_ref(&d.crl.der)).expect_err("revoked with CRL");
    assert_eq!(cert_error(&err), &CertificateError::Revoked, "{err:?}");
    // The CRL written to disk is the one returned in memory.
    let from_disk = certgen::read_crls(&d.files.crl).unwrap();
    let err = verify_client(ca, &d.revoked.cert_der(), &from_disk).expect_err("revoked with CRL file");
    assert_eq!(cert_error(&err), &CertificateError::Revoked);
}

#[test]
fn expired_cert_is_rejected() {
    let (_t, d) = demo_set();
    let err = verify_client(d.ca.cert_der(), &d.expired.cert_der(), &[]).expect_err("expired");
    assert!(is_expired(&err), "{err:?}");
    assert!(d.expired.not_after < certgen::OffsetDateTime::now_utc());
}

#[test]
fn rogue_ca_cert_is_rejected_but_valid_under_its_own_ca() {
    let (_t, d) = demo_set();
    let err = verify_client(d.ca.cert_der(), &d.rogue.cert_der(), &[]).expect_err("rogue");
    assert_eq!(cert_error(&err), &CertificateError::UnknownIssuer, "{err:?}");
    // Control: the rogue cert itself is fine, only untrusted.
    verify_client(d.rogue_ca.cert_der(), &d.rogue.cert_der(), &[]).expect("rogue under rogue CA");
    let on_disk = certgen::read_cert(&d.files.rogue_ca_cert).unwrap();
    assert_eq!(&on_disk, d.rogue_ca.cert_der());
}

#[test]
fn mutual_tls_handshake_with_demo_set() {
    let (_t, d) = demo_set();
    let ca = d.ca.cert_der();
    let server = || (d.server.cert_der(), d.server.key_der());
    let crls = [d.crl.der.clone()];
    handshake(ca, server(), None, &[], "alb.xdplb.test").expect("server-only TLS");
    handshake(ca, server(), Some((d.client1.cert_der(), d.client1.key_der())), &crls, "198.18.2.11").expect("mTLS client1");
    let err =
        handshake(ca, server(), Some((d.revoked.cert_der(), d.revoked.key_der())), &crls, "localhost").expect_err("revoked client must fail the handshake");
    assert_eq!(cert_error(&err), &CertificateError::Revoked, "{err:?}");
    let err = handshake(ca, server(), Some((d.rogue.cert_der(), d.rogue.key_der())), &crls, "localhost").expect_err("rogue client must fail the handshake");
    assert_eq!(cert_error(&err), &CertificateError::UnknownIssuer, "{err:?}");
}

#[test]
fn files_on_disk_load_into_rustls() {
    let (_t, d) = demo_set();
    let ca = certgen::read_cert(&d.files.ca_cert).unwrap();
    let server = (certgen::read_cert(&d.files.server_cert).unwrap(), certgen::read_private_key(&d.files.server_key).unwrap());
    let client = (certgen::read_cert(&d.files.client2_cert).unwrap(), certgen::read_private_key(&d.files.client2_key).unwrap());
    let crls = certgen::read_crls(&d.files.crl).unwrap();
    handshake(&ca, server, Some(client), &crls, "::1").expect("mTLS from files");
}

#[test]
fn every_key_type_issues_working_chains() {
    for kt in KeyType::ALL {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::create(dir.path(), &CaOptions { key_type: kt, ..CaOptions::default() }).unwrap_or_else(|e| panic!("{kt} CA: {e}"));
        let mut so = ServerOptions::new("srv", &["localhost"], &["127.0.0.1".parse().unwrap()]);
        so.key_type = kt;
        let server = ca.issue_server(&so).unwrap_or_else(|e| panic!("{kt} server: {e}"));
        let mut co = ClientOptions::new("cli", "cli");
        co.key_type = kt;
        let client = ca.issue_client(&co).unwrap_or_else(|e| panic!("{kt} client: {e}"));
        let crl = ca.write_crl(1).unwrap();
        verify_server(ca.cert_der(), &server.cert_der(), "localhost").unwrap_or_else(|e| panic!("{kt}: {e}"));
        verify_client(ca.cert_der(), &client.cert_der(), std::slice::from_ref(&crl.der)).unwrap_or_else(|e| panic!("{kt}: {e}"));
        handshake(ca.cert_der(), (server.cert_der(), server.key_der()), Some((client.cert_der(), client.key_der())), &[crl.der], "127.0.0.1")
            .unwrap_or_else(|e| panic!("{kt} handshake: {e}"));
        let info = certgen::inspect(&server.cert_path).unwrap();
        let certgen::Inspected::Certificate(info) = &info[0] else { panic!("not a cert") };
        assert_eq!(info.key_type, kt.name(), "inspect reports the key type");
    }
}

#[test]
fn reloaded_ca_keeps_issuing_verifiable_certs_and_crl_numbers_increase() {
    let dir = tempfile::tempdir().unwrap();
    let first = Ca::create(dir.path(), &CaOptions::default()).unwrap();
    let a = first.issue_client(&ClientOptions::new("a", "a")).unwrap();
    drop(first);
    let ca = Ca::load(dir.path()).unwrap();
    let b = ca.issue_client(&ClientOptions::new("b", "b")).unwrap();
    let crl1 = ca.write_crl(7).unwrap();
    assert_eq!(crl1.number, 1);
    assert!(crl1.revoked.is_empty());
    for c in [&a, &b] {
        verify_client(ca.cert_der(), &c.cert_der(), std::slice::from_ref(&crl1.der)).unwrap();
    }
    let r = ca.revoke(&b.cert_path).unwrap();
    assert!(!r.already_revoked);
    assert!(ca.revoke(&b.cert_path).unwrap().already_revoked, "second revoke is a no-op");
    let crl2 = Ca::load(dir.path()).unwrap().write_crl(7).unwrap();
    assert_eq!(crl2.number, 2);
    assert_eq!(crl2.revoked, vec![b.serial.clone()]);
    verify_client(ca.cert_der(), &a.cert_der(), std::slice::from_ref(&crl2.der)).unwrap();
    let err = verify_client(ca.cert_der(), &b.cert_der(), std::slice::from_ref(&crl2.der)).unwrap_err();
    assert_eq!(cert_error(&err), &CertificateError::Revoked);
    let idx = ca.index().unwrap();
    assert_eq!(idx.crl_number, 2);
    assert_eq!(idx.certs.len(), 2);
    assert!(idx.find(&b.serial).unwrap().revoked_at.is_some());
    assert!(idx.find(&a.serial).unwrap().revoked_at.is_none());
}

#[test]
fn serials_are_random_positive_128_bit() {
    let (_t, d) = demo_set();
    let serials: Vec<&str> = [&d.server, &d.client1, &d.client2, &d.revoked, &d.expired].iter().map(|i| i.serial.as_str()).collect();
    for s in &serials {
        assert_eq!(s.len(), 32, "16 bytes: {s}");
        let first = u8::from_str_radix(&s[..2], 16).unwrap();
        assert!(first & 0x80 == 0 && first != 0, "positive, top bit clear: {s}");
    }
    let mut uniq = serials.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), serials.len());
}
