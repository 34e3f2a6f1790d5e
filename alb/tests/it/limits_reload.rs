//! Issue tests 5 and 6: slowloris, 431, garbage ClientHello, allowlist,
//! rate limit; certificate reload with an open connection, a refused bad
//! reload, graceful shutdown.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::*;
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_cut_at_header_timeout() {
    let c = certs();
    let b = backend("b1").await;
    let dir = tmp();
    let alb = start_alb(dir.path(), &tls_config(&c, &[&b], "timeouts: {header_read: 1s}\n")).await;
    let port = alb.listen_addrs()[0].port();
    let t = tls_connect(&c, port, None, "localhost", &["http/1.1"]).await.unwrap();
    let (mut rd, mut wr) = tokio::io::split(t);
    let start = Instant::now();
    let trickle = tokio::spawn(async move {
        let head = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        for b in head.iter().take(60) {
            if wr.write_all(&[*b]).await.is_err() || wr.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buf = [0u8; 512];
    let r = tokio::time::timeout(Duration::from_secs(5), rd.read(&mut buf)).await;
    let elapsed = start.elapsed();
    trickle.abort();
    match r {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => {
            // hyper may answer 408 before closing; that is a cut too.
            let s = String::from_utf8_lossy(&buf[..n]);
            assert!(s.starts_with("HTTP/1.1 408"), "unexpected answer {s}");
        }
        Err(_) => panic!("slowloris connection still open after 5 s"),
    }
    assert!(elapsed >= Duration::from_millis(800) && elapsed < Duration::from_millis(2500), "{elapsed:?}");
    assert_eq!(b.hits.load(Ordering::Relaxed), 0);
    alb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_header_431_and_garbage_hello_isolated() {
    let c = certs();
    let b = backend("b1").await;
    let dir = tmp();
    let alb = start_alb(dir.path(), &tls_config(&c, &[&b], "limits: {max_header_bytes: 16384}\n")).await;
    let port = alb.listen_addrs()[0].port();
    let url = format!("https://localhost:{port}/");
    let big = format!("X-Big: {}", "a".repeat(20_000));
    for flag in ["--http1.1", "--http2"] {
        let mut a = tls_args(&c, None);
        a.extend(s(&[flag, "-o", "/dev/null", "-w", "%{http_code}", "-H", &big, &url]));
        let o = curl(a).await;
        assert_eq!(o.stdout, "431", "{flag}: {}", o.stderr);
    }
    // Garbage instead of a ClientHello, while a good client keeps working.
    let mut garbage = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut ok_client = tls_connect(&c, port, None, "localhost", &["http/1.1"]).await.unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01garbage").await.unwrap();
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(Duration::from_secs(3), garbage.read(&mut buf)).await.expect("closed in time");
    // rustls may send an alert before closing; then EOF.
    if let Ok(n) = r {
        if n > 0 {
            assert_eq!(buf[0], 0x15, "only a TLS alert may come back");
            let n2 = tokio::time::timeout(Duration::from_secs(3), garbage.read(&mut buf)).await.unwrap();
            assert!(matches!(n2, Ok(0) | Err(_)));
        }
    }
    // alb counts the failure before it closes the socket, so the close
    // the client just saw is already in the metrics.
    let m = alb.state.metrics.render();
    assert!(m.contains("alb_tls_handshake_failures_total{reason=\"bad_message\"} 1"), "{m}");
    ok_client.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), ok_client.read_to_end(&mut resp)).await.unwrap().ok();
    assert!(resp.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&resp));
    alb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlist_closes_before_tls_and_rate_limit_429() {
    let c = certs();
    let b = backend("b1").await;
    let dir = tmp();
    let alb = start_alb(dir.path(), &tls_config(&c, &[&b], "waf: {allowedIPs: [10.0.0.0/8], allowedPorts: [\"*\"]}\n")).await;
    let mut a = tls_args(&c, None);
    a.push(format!("https://localhost:{}/", alb.listen_addrs()[0].port()));
    let o = curl(a).await;
    assert!(!o.ok);
    let m = alb.state.metrics.render();
    assert!(m.contains("alb_allowlist_denied_total{reason=\"source_ip\"} 1"), "{m}");
    assert!(!m.contains("alb_tls_handshake_failures_total{"), "closed before any TLS: {m}");
    alb.shutdown().await;

    let dir = tmp();
    let alb = start_alb(dir.path(), &tls_config(&c, &[&b], "waf: {allowedPorts: [1]}\n")).await;
    let mut a = tls_args(&c, None);
    a.push(format!("https://localhost:{}/", alb.listen_addrs()[0].port()));
    assert!(!curl(a).await.ok);
    assert!(alb.state.metrics.render().contains("alb_allowlist_denied_total{reason=\"port\"} 1"));
    alb.shutdown().await;

    let dir = tmp();
    let alb = start_alb(dir.path(), &tls_config(&c, &[&b], "limits: {rate_limit_rps: 1, rate_limit_burst: 2}\n")).await;
    let mut t = h1_over(tls_connect(&c, alb.listen_addrs()[0].port(), None, "localhost", &["http/1.1"]).await.unwrap()).await;
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(get_on(&mut t, "/").await.0);
    }
    assert_eq!(codes, [StatusCode::OK, StatusCode::OK, StatusCode::TOO_MANY_REQUESTS]);
    alb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_certificate_and_keeps_open_connection() {
    let c = certs();
    let b = backend("b1").await;
    let dir = tmp();
    let y = tls_config(&c, &[&b], "reload: {poll_interval: 100ms}\n");
    let alb = start_alb(dir.path(), &y).await;
    let port = alb.listen_addrs()[0].port();
    let old_der = c.demo.server.cert_der();
    let open = tls_connect(&c, port, None, "localhost", &["http/1.1"]).await.unwrap();
    assert_eq!(open.get_ref().1.peer_certificates().unwrap()[0], old_der);
    let mut open = h1_over(open).await;
    assert_eq!(get_on(&mut open, "/").await.0, StatusCode::OK);

    // A new server certificate from the same CA, renamed into place.
    let newdir = dir.path().join("new");
    let mut o = certgen::ServerOptions::new("server", &["localhost"], &["127.0.0.1".parse().unwrap()]);
    o.out_dir = Some(newdir.clone());
    let issued = c.demo.ca.issue_server(&o).unwrap();
    let new_der = issued.cert_der();
    assert_ne!(new_der, old_der);
    std::fs::rename(&issued.key_path, &c.f().server_key).unwrap();
    std::fs::rename(&issued.cert_path, &c.f().server_cert).unwrap();

    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen_new = false;
    while Instant::now() < deadline {
        let t = tls_connect(&c, port, None, "localhost", &[]).await.unwrap();
        if t.get_ref().1.peer_certificates().unwrap()[0] == new_der {
            seen_new = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen_new, "new handshakes get the new certificate");
    assert_eq!(get_on(&mut open, "/").await.0, StatusCode::OK, "old connection still works");

    // A broken file is refused; alb keeps serving with what it has.
    std::fs::write(dir.path().join("alb.yaml"), format!("{y}\nunknown_thing: 1\n")).unwrap();
    let e = alb.reload().unwrap_err().to_string();
    assert!(e.contains("unknown_thing"), "{e}");
    assert_eq!(get_on(&mut open, "/").await.0, StatusCode::OK);
    assert!(alb.state.metrics.render().contains("alb_reloads_total{result=\"error\"}"));
    alb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_in_flight() {
    let b = backend("b1").await;
    let dir = tmp();
    let y = format!(
        "protocol: http\nlisten: [\"127.0.0.1:0\"]\nadmin: {{enabled: false}}\nhealth: {{enabled: false}}\ntimeouts: {{drain: 3s}}\nbackend_servers: [\"{}\"]\n",
        b.url()
    );
    let alb = start_alb(dir.path(), &y).await;
    let addr = alb.listen_addrs()[0];
    let slow = tokio::spawn(async move { http(addr, "GET", "/slow", "").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    let left = alb.shutdown().await;
    assert_eq!(left, 0);
    assert!(start.elapsed() < Duration::from_secs(2));
    let (st, body) = slow.await.unwrap();
    assert_eq!((st, backend_of(&body)), (StatusCode::OK, "b1".to_string()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(TcpStream::connect(addr).await.is_err(), "no longer accepting");
}

/// Before its first request a connection waits in a stage of its own
/// (no HTTP state yet, for memory): it is closed after `timeouts.idle`, a
/// request that comes within it is served, and a shutdown closes it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_without_a_request_is_closed_at_idle_timeout() {
    let c = certs();
    let b = backend("b1").await;
    let dir = tmp();
    let alb = start_alb(dir.path(), &tls_config(&c, &[&b], "timeouts: {idle: 400ms}\n")).await;
    let port = alb.listen_addrs()[0].port();
    let mut silent = tls_connect(&c, port, None, "localhost", &["http/1.1"]).await.unwrap();
    let mut late = tls_connect(&c, port, None, "localhost", &["http/1.1"]).await.unwrap();
    let start = Instant::now();
    // Within the idle timeout: the first request, sent late, is answered.
    tokio::time::sleep(Duration::from_millis(200)).await;
    late.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), late.read_to_end(&mut resp)).await.expect("answered in time").ok();
    assert!(resp.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&resp));
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(Duration::from_secs(3), silent.read(&mut buf)).await.expect("silent connection closed");
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    assert!(start.elapsed() >= Duration::from_millis(350), "closed after {:?}", start.elapsed());
    // A shutdown ends a waiting connection without waiting for the drain timeout.
    let mut waiting = tls_connect(&c, port, None, "localhost", &["http/1.1"]).await.unwrap();
    let stop = Instant::now();
    let left = alb.shutdown().await;
    assert_eq!(left, 0, "a connection without a request was left to the drain timeout");
    assert!(stop.elapsed() < Duration::from_secs(2), "{:?}", stop.elapsed());
    let r = tokio::time::timeout(Duration::from_secs(3), waiting.read(&mut buf)).await.expect("closed on shutdown");
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keepalive_connection_is_closed() {
    let c = certs();
    let b = backend("b1").await;
    let dir = tmp();
    let alb = start_alb(dir.path(), &tls_config(&c, &[&b], "timeouts: {idle: 300ms}\n")).await;
    let mut t = tls_connect(&c, alb.listen_addrs()[0].port(), None, "localhost", &["http/1.1"]).await.unwrap();
    t.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let start = Instant::now();
    let mut total = Vec::new();
    let mut buf = [0u8; 4096];
    // Reads the response, then must see EOF once the connection idles.
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match t.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => total.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "idle connection not closed");
    assert!(total.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&total));
    assert!(start.elapsed() >= Duration::from_millis(250), "{:?}", start.elapsed());
    alb.shutdown().await;
}
