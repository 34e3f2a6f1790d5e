//! Issue test 4 (and health/admin): algorithms end to end, a backend
//! killed mid-load, retry rules, active checks, 503 when nothing is up,
//! the admin API and metrics. Plain HTTP listeners keep these fast; TLS is
//! covered in tls_mtls.rs.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::*;
use hyper::StatusCode;

fn http_config(bs: &[&Backend], extra: &str) -> String {
    format!(
        "protocol: http\nlisten: [\"127.0.0.1:0\"]\nadmin: {{listen: \"127.0.0.1:0\"}}\nhealth: {{enabled: false}}\nbackend_servers:\n{}{extra}",
        backends_yaml(bs)
    )
}

async fn tally(addr: std::net::SocketAddr, n: usize) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for _ in 0..n {
        let (st, body) = http(addr, "GET", "/", "").await;
        assert_eq!(st, StatusCode::OK, "{body}");
        *m.entry(backend_of(&body)).or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_algorithm_distributes_through_alb() {
    let (b1, b2, b3) = (backend("b1").await, backend("b2").await, backend("b3").await);
    let weighted = format!(
        "protocol: http\nlisten: [\"127.0.0.1:0\"]\nadmin: {{enabled: false}}\nhealth: {{enabled: false}}\n\
         algorithm: weighted_round_robin\nbackend_servers:\n  - {{url: \"{}\", weight: 3}}\n  - {}\n  - {}\n",
        b1.url(),
        b2.url(),
        b3.url()
    );
    let dir = tmp();
    let alb = start_alb(dir.path(), &weighted).await;
    let t = tally(alb.listen_addrs()[0], 50).await;
    assert_eq!((t["b1"], t["b2"], t["b3"]), (30, 10, 10), "{t:?}");
    alb.shutdown().await;

    for alg in ["round_robin", "least_connections", "random", "p2c", "ip_hash", "maglev", "maglev_src"] {
        let dir = tmp();
        let alb = start_alb(dir.path(), &http_config(&[&b1, &b2, &b3], &format!("algorithm: {alg}\n"))).await;
        let t = tally(alb.listen_addrs()[0], 60).await;
        match alg {
            // One client IP: all requests stick to one backend.
            "ip_hash" | "maglev_src" => assert_eq!(t.len(), 1, "{alg}: {t:?}"),
            "round_robin" | "least_connections" => {
                // Sequential requests: nothing in flight, so ties rotate.
                assert!(t.values().all(|&n| n == 20), "{alg}: {t:?}")
            }
            // maglev: each request is a new connection (a new source
            // port), so a new 5-tuple to hash.
            _ => assert!(t.len() == 3 && t.values().all(|&n| n >= 8), "{alg}: {t:?}"),
        }
        alb.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backend_is_ejected_and_no_get_fails() {
    init_log();
    let (b1, b2, b3) = (backend("b1").await, backend("b2").await, backend("b3").await);
    let dir = tmp();
    let y = http_config(&[&b1, &b2, &b3], "passive_health: {failures: 2, cooldown: 30s}\n");
    let alb = start_alb(dir.path(), &y).await;
    let addr = alb.listen_addrs()[0];
    // Workers keep sending until they have each made 40 requests after the
    // kill (bounded: at most 2000 requests each), so the kill always lands
    // mid-load however fast or slow the machine is.
    let after_kill = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for w in 0..4 {
        let after_kill = after_kill.clone();
        tasks.push(tokio::spawn(async move {
            let mut codes = Vec::new();
            let mut since_kill = 0;
            for i in 0..2000 {
                // Mix of fresh and kept-alive client connections.
                let (st, body) = http(addr, "GET", &format!("/w{w}/{i}"), "").await;
                codes.push((st, body));
                if after_kill.load(Ordering::SeqCst) {
                    since_kill += 1;
                    if since_kill >= 40 {
                        break;
                    }
                }
            }
            codes
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while b2.hits.load(Ordering::Relaxed) < 5 {
        assert!(Instant::now() < deadline, "b2 never served traffic");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    b2.kill();
    // abort() takes effect at the task's next await; let it land.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let killed_at = b2.hits.load(Ordering::Relaxed);
    after_kill.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    for t in tasks {
        for (st, body) in t.await.unwrap() {
            if st != StatusCode::OK {
                failures.push((st, body));
            }
        }
    }
    assert!(failures.is_empty(), "idempotent requests failed: {failures:?}");
    let pool = alb.state.pools()[0].clone();
    let b2s = pool.snapshot().into_iter().find(|b| b.authority == b2.addr.to_string()).unwrap();
    assert!(b2s.is_ejected(), "killed backend ejected");
    assert_eq!(b2.hits.load(Ordering::Relaxed), killed_at);
    let m = alb.state.metrics.render();
    assert!(m.contains("alb_backend_ejections_total"), "{m}");
    alb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_never_retried_after_send_but_get_is() {
    let (good, dropper) = (backend("good").await, dropper("dropper").await);
    let dir = tmp();
    // passive off so the dropper stays in rotation for the whole test.
    let y = http_config(&[&dropper, &good], "passive_health: {enabled: false}\n");
    let alb = start_alb(dir.path(), &y).await;
    let addr = alb.listen_addrs()[0];
    let mut codes = Vec::new();
    for _ in 0..2 {
        codes.push(http(addr, "POST", "/drop", "payload").await.0);
    }
    codes.sort();
    // Round robin: one POST went to the good backend (answered), one to
    // the dropper, which read it and hung up: 502, never resent.
    assert_eq!(codes, vec![StatusCode::OK, StatusCode::BAD_GATEWAY]);
    assert_eq!(good.posts.load(Ordering::Relaxed), 1, "the dropped POST was not retried");
    assert_eq!(dropper.posts.load(Ordering::Relaxed), 1);
    // GET with the same fate is retried on the other backend.
    for _ in 0..2 {
        let (st, body) = http(addr, "GET", "/drop", "").await;
        assert_eq!(st, StatusCode::OK, "{body}");
        assert_eq!(backend_of(&body), "good");
    }
    alb.shutdown().await;

    // A POST whose connect failed never left alb: retried.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let y = format!(
        "protocol: http\nlisten: [\"127.0.0.1:0\"]\nadmin: {{enabled: false}}\nhealth: {{enabled: false}}\nbackend_servers:\n  - http://{dead}\n  - {}\n",
        good.url()
    );
    let dir = tmp();
    let alb = start_alb(dir.path(), &y).await;
    for _ in 0..2 {
        let (st, body) = http(alb.listen_addrs()[0], "POST", "/", "x").await;
        assert_eq!((st, backend_of(&body)), (StatusCode::OK, "good".to_string()));
    }
    alb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_healthy_backend_gives_503_json() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dir = tmp();
    let y = format!(
        "protocol: http\nlisten: [\"127.0.0.1:0\"]\nadmin: {{enabled: false}}\nhealth: {{enabled: false}}\npassive_health: {{failures: 1}}\nbackend_servers: [\"http://{dead}\"]\n"
    );
    let alb = start_alb(dir.path(), &y).await;
    let (st, _) = http(alb.listen_addrs()[0], "GET", "/", "").await;
    assert_eq!(st, StatusCode::BAD_GATEWAY, "the only backend refused");
    let (st, body) = http(alb.listen_addrs()[0], "GET", "/", "").await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "no healthy backend");
    alb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_checks_take_backend_out_and_back() {
    let (b1, b2) = (backend("b1").await, backend("b2").await);
    let dir = tmp();
    let y = format!(
        "protocol: http\nlisten: [\"127.0.0.1:0\"]\nadmin: {{enabled: false}}\n\
         health: {{path: /healthz, interval: 200ms, timeout: 150ms, rise: 2, fall: 2}}\nbackend_servers:\n{}",
        backends_yaml(&[&b1, &b2])
    );
    let alb = start_alb(dir.path(), &y).await;
    let addr = alb.listen_addrs()[0];
    b2.health_ok.store(false, Ordering::Relaxed);
    let pool = alb.state.pools()[0].clone();
    let wait = |up: bool| {
        let pool = pool.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if pool.snapshot()[1].is_healthy() == up {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            false
        }
    };
    assert!(wait(false).await, "b2 marked down");
    let t = tally(addr, 6).await;
    assert_eq!(t.get("b1"), Some(&6), "{t:?}");
    b2.health_ok.store(true, Ordering::Relaxed);
    assert!(wait(true).await, "b2 back up");
    let t = tally(addr, 6).await;
    assert_eq!(t.get("b2"), Some(&3), "{t:?}");
    alb.shutdown().await;
}

async fn admin_req(admin: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (StatusCode, String) {
    http(admin, method, path, body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_add_drain_remove_and_metrics() {
    let (b1, b2) = (backend("b1").await, backend("b2").await);
    let dir = tmp();
    let alb = start_alb(dir.path(), &http_config(&[&b1], "")).await;
    let (addr, admin) = (alb.listen_addrs()[0], alb.admin_addr().unwrap());
    let (st, body) = admin_req(admin, "GET", "/api/health", "").await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert!(body.contains(&b1.addr.to_string()));

    let add = format!("{{\"url\": \"{}\", \"id\": \"new\"}}", b2.url());
    let (st, body) = admin_req(admin, "POST", "/api/backends", &add).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let (st, _) = admin_req(admin, "POST", "/api/backends", &add).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (st, body) = admin_req(admin, "POST", "/api/backends", "{\"url\": \"ftp://x\"}").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    let t = tally(addr, 4).await;
    assert_eq!(t.get("b2"), Some(&2), "added backend gets traffic: {t:?}");

    // Drain: a slow request in flight on b2 completes, then b2 goes away.
    let slows: Vec<_> = (0..2).map(|_| tokio::spawn(async move { http(addr, "GET", "/slow", "").await })).collect();
    // Wait (bounded) until the slow request is in flight on b2 (it stays
    // there for 400 ms); a fixed sleep would race a loaded machine.
    let in_flight = || alb.state.pools()[0].snapshot()[1].in_flight.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(3);
    while in_flight() != 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(in_flight(), 1);
    let (st, _) = admin_req(admin, "DELETE", "/api/backends/new", "").await;
    assert_eq!(st, StatusCode::ACCEPTED);
    let mut got = Vec::new();
    for s in slows {
        let (st, body) = s.await.unwrap();
        assert_eq!(st, StatusCode::OK, "in-flight request finished during drain");
        got.push(backend_of(&body));
    }
    got.sort();
    assert_eq!(got, ["b1", "b2"]);
    let t = tally(addr, 4).await;
    assert_eq!(t.get("b1"), Some(&4), "{t:?}");
    let deadline = Instant::now() + Duration::from_secs(3);
    while alb.state.pools()[0].snapshot().len() != 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(alb.state.pools()[0].snapshot().len(), 1, "removed after drain");
    let (st, _) = admin_req(admin, "DELETE", "/api/backends/new", "").await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    tokio::time::sleep(Duration::from_millis(150)).await;
    let (st, m) = admin_req(admin, "GET", "/metrics", "").await;
    assert_eq!(st, StatusCode::OK);
    for name in [
        "alb_requests_total{backend=\"new\",method=\"GET\",pool=\"default\",status=\"200\"}",
        "alb_request_duration_seconds_bucket",
        "alb_active_connections",
        "alb_backend_healthy{backend=",
    ] {
        assert!(m.contains(name), "missing {name} in\n{m}");
    }
    alb.shutdown().await;
}

/// Backend connections are pooled again once a response body has been
/// read to its end, whether its length was given (Content-Length) or not
/// (chunked): sequential requests share one backend connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_connection_reused_after_sized_and_chunked_bodies() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let be = l.local_addr().unwrap();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    // A raw HTTP/1.1 backend: answers alternately with a sized and a
    // chunked body, on as many requests per connection as it gets.
    tokio::spawn(async move {
        loop {
            let (mut tcp, _) = l.accept().await.unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (mut buf, mut n, mut i) = (Vec::new(), [0u8; 4096], 0);
                loop {
                    let Ok(k) = tcp.read(&mut n).await else { return };
                    if k == 0 {
                        return;
                    }
                    buf.extend_from_slice(&n[..k]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let resp: &[u8] = if i % 2 == 0 {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nsized"
                        } else {
                            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n7\r\nchunked\r\n0\r\n\r\n"
                        };
                        i += 1;
                        if tcp.write_all(resp).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    let dir = tmp();
    let y = format!("protocol: http\nlisten: [\"127.0.0.1:0\"]\nadmin: {{enabled: false}}\nhealth: {{enabled: false}}\nbackend_servers: [\"http://{be}\"]\n");
    let alb = start_alb(dir.path(), &y).await;
    for i in 0..6 {
        let (st, body) = http(alb.listen_addrs()[0], "GET", "/", "").await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(body, if i % 2 == 0 { "sized" } else { "chunked" });
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one pooled backend connection");
    assert_eq!(alb.state.upstream.idle_count(), 1);
    alb.shutdown().await;
}

/// The dashboard at `/` of the admin listener, `/api/stats` from the
/// metrics, and changes from a web page of another origin refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_dashboard_stats_and_foreign_origins() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let b1 = backend("b1").await;
    let dir = tmp();
    let alb = start_alb(dir.path(), &http_config(&[&b1], "")).await;
    let (addr, admin) = (alb.listen_addrs()[0], alb.admin_addr().unwrap());
    let (st, page) = admin_req(admin, "GET", "/", "").await;
    assert!(st == StatusCode::OK && page.contains("/dashboard/page.js"), "{page}");
    let (_, first) = admin_req(admin, "GET", "/api/stats", "").await;
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert!(first["rates"].is_null(), "{first}");
    tally(addr, 3).await;
    let (_, stats) = admin_req(admin, "GET", "/api/stats", "").await;
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["counters"]["requests"]["200"], 3, "{stats}");
    assert_eq!(stats["latency_total"]["count"], 3, "{stats}");

    let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
    let body = format!("{{\"url\": \"{}\", \"id\": \"x\"}}", b1.url());
    let req = format!(
        "POST /api/backends HTTP/1.1\r\nHost: {admin}\r\nOrigin: http://evil.example\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert_eq!(alb.state.pools()[0].snapshot().len(), 1, "nothing added");
    alb.shutdown().await;
}
