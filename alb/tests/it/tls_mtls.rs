//! Issue tests 1–3 against the real `alb` binary and curl: the seed's
//! config file, the mTLS rejection matrix, HTTP/2 + HTTP/1.1, WebSocket.

use std::collections::HashMap;

use crate::common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The seed's file with only its paths, ports and backends changed (and
/// the admin API moved to an ephemeral port so parallel tests don't clash).
fn seed_config(c: &Certs, bs: &[&Backend], extra: &str) -> String {
    let seed = include_str!("../../examples/seed-config.yaml");
    let mut y = seed
        .replace("host: localhost:3002", "host: 127.0.0.1:0")
        .replace("port: 3002", "port: 0")
        .replace("certs/ca.crt", &path_str(&c.f().ca_cert))
        .replace("certs/server.crt", &path_str(&c.f().server_cert))
        .replace("certs/server.key", &path_str(&c.f().server_key));
    let start = y.find("backend_servers:").unwrap();
    let end = y.find("waf:").unwrap();
    y.replace_range(start..end, &format!("backend_servers:\n{}", backends_yaml(bs)));
    format!("{y}admin:\n  listen: 127.0.0.1:0\n{extra}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_config_balances_over_https_with_client_cert() {
    let c = certs();
    let (b1, b2, b3) = (backend("b1").await, backend("b2").await, backend("b3").await);
    let dir = tmp();
    let p = dir.path().join("app_loadbalancer_config.yaml");
    std::fs::write(&p, seed_config(&c, &[&b1, &b2, &b3], "")).unwrap();
    let mut alb = AlbProcess::spawn(&p);
    let mut count: HashMap<String, usize> = HashMap::new();
    for _ in 0..9 {
        let mut a = tls_args(&c, Some("client1"));
        a.push(format!("https://localhost:{}/hello", alb.port));
        let o = curl(a).await;
        assert!(o.ok, "curl failed: {}", o.stderr);
        *count.entry(backend_of(&o.stdout)).or_default() += 1;
    }
    let expect: HashMap<String, usize> = [("b1", 3), ("b2", 3), ("b3", 3)].map(|(k, v)| (k.to_string(), v)).into();
    assert_eq!(count, expect, "round robin over three backends");
    // The seed requires mTLS: without a client certificate nothing passes.
    let mut a = tls_args(&c, None);
    a.push(format!("https://localhost:{}/", alb.port));
    assert!(!curl(a).await.ok);
    assert!(alb.wait_log(&["reason=no_cert"]).is_some());

    // SIGHUP reloads; SIGTERM drains and exits cleanly.
    let pid = alb.child.id().to_string();
    let kill = |sig: &str| std::process::Command::new("kill").args([sig, &pid]).status().unwrap();
    assert!(kill("-HUP").success());
    assert!(alb.wait_log(&["reloaded configuration"]).is_some(), "{:?}", alb.log.lock().unwrap());
    assert!(kill("-TERM").success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let status = loop {
        if let Some(st) = alb.child.try_wait().unwrap() {
            break st;
        }
        assert!(std::time::Instant::now() < deadline, "alb did not exit on SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(alb.wait_log(&["all connections drained"]).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_matrix_rejects_with_reason_and_passes_identity() {
    let c = certs();
    let b1 = backend("b1").await;
    let dir = tmp();
    let p = dir.path().join("alb.yaml");
    let extra = format!("mtls:\n  mode: required\n  crl: [{}]\n  allowed_identities: [client1]\n  identity_header: X-Client-Identity\n", path_str(&c.f().crl));
    std::fs::write(&p, seed_config(&c, &[&b1], &extra)).unwrap();
    let alb = AlbProcess::spawn(&p);
    let url = format!("https://127.0.0.1:{}/", alb.port);
    for (client, reason) in
        [(None, "no_cert"), (Some("rogue"), "unknown_ca"), (Some("expired"), "expired"), (Some("revoked"), "revoked"), (Some("client2"), "not_allowed")]
    {
        let mut a = tls_args(&c, client);
        a.push(url.clone());
        let o = curl(a).await;
        assert!(!o.ok, "{client:?} must be rejected, got {}", o.stdout);
        let line = alb.wait_log(&["rejected", &format!("reason={reason}")]);
        assert!(line.is_some(), "{client:?}: no log with reason={reason}: {:?}", alb.log.lock().unwrap());
    }
    assert_eq!(b1.hits.load(std::sync::atomic::Ordering::Relaxed), 0, "nothing rejected reached the backend");
    // Valid client: accepted, identity header set, forged copy replaced.
    let mut a = tls_args(&c, Some("client1"));
    a.extend(s(&["-H", "X-Client-Identity: CN=admin", "-H", "x-client-identity: CN=root", &url]));
    let o = curl(a).await;
    assert!(o.ok, "{}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["headers"]["x-client-identity"], "CN=client1", "{v}");
    let seen = b1.seen.lock().unwrap();
    assert!(seen.iter().all(|h| !h.values().any(|x| x.contains("admin") || x.contains("root"))), "{seen:?}");
    assert_eq!(seen.last().unwrap()["x-forwarded-proto"], "https");
    assert_eq!(seen.last().unwrap()["x-forwarded-for"], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_and_http11_via_alpn_and_websocket() {
    let c = certs();
    let b1 = backend("b1").await;
    let dir = tmp();
    let y = tls_config(&c, &[&b1], "");
    let alb = start_alb(dir.path(), &y).await;
    let port = alb.listen_addrs()[0].port();
    let url = format!("https://localhost:{port}/x?y=1");
    for (flag, want) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let mut a = tls_args(&c, None);
        a.extend(s(&[flag, "-o", "/dev/null", "-w", "%{http_version} %{http_code}", &url]));
        let o = curl(a).await;
        assert_eq!(o.stdout, format!("{want} 200"), "{flag}: {}", o.stderr);
    }
    let h = b1.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(h["host"], format!("localhost:{port}"), "h2 :authority becomes Host");
    assert_eq!(h["x-forwarded-host"], format!("localhost:{port}"));

    // WebSocket over TLS + HTTP/1.1.
    let mut t = tls_connect(&c, port, None, "localhost", &["http/1.1"]).await.unwrap();
    t.write_all(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        t.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.to_ascii_lowercase().contains("upgrade: websocket"), "{head}");
    for msg in ["hello", "second frame"] {
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![0x81, 0x80 | msg.len() as u8];
        f.extend_from_slice(&mask);
        f.extend(msg.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        t.write_all(&f).await.unwrap();
        let mut back = vec![0u8; 2 + msg.len()];
        tokio::time::timeout(std::time::Duration::from_secs(3), t.read_exact(&mut back)).await.expect("echo in time").unwrap();
        assert_eq!(&back[2..], msg.as_bytes());
        assert_eq!(back[0], 0x81);
    }
    alb.shutdown().await;
}

/// A client that lists the weaker suite first still gets the server's
/// choice: alb enforces its own order (AEAD, ECDHE; AES-256-GCM first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_cipher_order_wins() {
    use rustls::crypto::aws_lc_rs::{cipher_suite as cs, default_provider};
    use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
    let c = certs();
    let b1 = backend("b1").await;
    let dir = tmp();
    let y = tls_config(&c, &[&b1], "");
    let alb = start_alb(dir.path(), &y).await;
    let port = alb.listen_addrs()[0].port();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&c.f().ca_cert).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    for (version, client_order, want) in [
        (&rustls::version::TLS13, vec![cs::TLS13_AES_128_GCM_SHA256, cs::TLS13_AES_256_GCM_SHA384], rustls::CipherSuite::TLS13_AES_256_GCM_SHA384),
        (
            &rustls::version::TLS12,
            vec![
                cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
                cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            ],
            // The demo server key decides ECDSA or RSA; either way AES-256-GCM.
            rustls::CipherSuite::Unknown(0),
        ),
    ] {
        let provider = rustls::crypto::CryptoProvider { cipher_suites: client_order, ..default_provider() };
        let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(provider))
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg)).connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
        let got = tls.get_ref().1.negotiated_cipher_suite().unwrap().suite();
        if want == rustls::CipherSuite::Unknown(0) {
            assert!(
                matches!(got, rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384),
                "TLS 1.2: {got:?}"
            );
        } else {
            assert_eq!(got, want, "TLS 1.3");
        }
    }
}

/// `certificates:` picks the certificate by SNI; an unknown or absent name
/// gets the default (`cert_location`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_is_chosen_by_sni() {
    let c = certs();
    let ca = certgen::Ca::load(&c.f().dir).unwrap();
    let dir = tmp();
    let other = ca
        .issue_server(&certgen::ServerOptions { out_dir: Some(dir.path().to_owned()), ..certgen::ServerOptions::new("other", &["other.test"], &[]) })
        .unwrap();
    let b1 = backend("b1").await;
    let extra = format!("certificates:\n  - {{cert: {}, key: {}}}\n", path_str(&other.cert_path), path_str(&other.key_path));
    let y = tls_config(&c, &[&b1], &extra);
    let alb = start_alb(dir.path(), &y).await;
    let port = alb.listen_addrs()[0].port();
    let served = |t: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>| t.get_ref().1.peer_certificates().unwrap()[0].as_ref().to_vec();
    let der = |p: &std::path::Path| certgen::read_cert(p).unwrap().as_ref().to_vec();
    let t = tls_connect(&c, port, None, "other.test", &["http/1.1"]).await.unwrap();
    assert_eq!(served(&t), der(&other.cert_path), "SNI other.test gets its own certificate");
    let t = tls_connect(&c, port, None, "localhost", &["http/1.1"]).await.unwrap();
    assert_eq!(served(&t), der(&c.f().server_cert), "SNI localhost gets the default");
}

/// `mtls.mode: optional`: a client without a certificate is served without
/// an identity; one with a valid certificate gets its identity passed on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_mtls_serves_both_and_passes_the_identity_when_there_is_one() {
    let c = certs();
    let b1 = backend("b1").await;
    let dir = tmp();
    let y = tls_config(&c, &[&b1], "ca_location: {ca}\nmtls: {mode: optional}\n");
    let alb = start_alb(dir.path(), &y).await;
    let url = format!("https://localhost:{}/", alb.listen_addrs()[0].port());
    let mut anonymous = tls_args(&c, None);
    anonymous.extend(s(&["-H", "X-Client-Identity: CN=forged", &url]));
    let o = curl(anonymous).await;
    assert!(o.ok, "without a certificate: {}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert!(v["headers"].get("x-client-identity").is_none(), "no identity, and the forged one removed: {v}");
    let mut signed = tls_args(&c, Some("client1"));
    signed.push(url);
    let o = curl(signed).await;
    assert!(o.ok, "with a certificate: {}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["headers"]["x-client-identity"], "CN=client1", "{v}");
}
