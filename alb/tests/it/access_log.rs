//! The access log with real mTLS requests (curl with a client certificate):
//! each request is one JSON line naming the client, its verified identity,
//! the pool and backend, status, durations and bytes, and the trace id of
//! the `traceparent` the backend received; a client's valid `traceparent`
//! reaches the backend unchanged, a missing or invalid one is replaced.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;

const CLIENT_TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The `n`th line of the access log, parsed, once it is there (bounded wait).
fn line(path: &Path, n: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(l) = text.lines().nth(n) {
            return serde_json::from_str(l).unwrap_or_else(|e| panic!("line {n} is not JSON ({e}): {l}"));
        }
        assert!(Instant::now() < deadline, "no line {n} in the access log within 5 s: {text:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What the backend answered: its JSON (with the headers it saw) and the
/// number of body bytes curl received.
async fn request(c: &Certs, port: u16, extra: &[&str]) -> (Value, usize) {
    let mut a = tls_args(c, Some("client1"));
    a.extend(extra.iter().map(|s| s.to_string()));
    a.push(format!("https://127.0.0.1:{port}/echo"));
    let o = curl(a).await;
    assert!(o.ok, "{}", o.stderr);
    (serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", o.stdout)), o.stdout.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mtls_request_is_a_json_line_whose_trace_id_the_backend_received() {
    let c = certs();
    let b = backend("b1").await;
    let dir = tmp();
    let log = dir.path().join("access.log");
    let extra = format!("ca_location: {{ca}}\naccess_log: {{format: json, path: {}}}\n", path_str(&log));
    let alb = start_alb(dir.path(), &tls_config(&c, &[&b], &extra)).await;
    let port = alb.listen_addrs()[0].port();
    let backend_id = b.url().trim_start_matches("http://").to_owned();

    // No traceparent: alb makes one, the backend gets it, the line names it.
    let (seen, body_len) = request(&c, port, &[]).await;
    let sent = seen["headers"]["traceparent"].as_str().unwrap_or_else(|| panic!("the backend got no traceparent: {seen}")).to_owned();
    assert!(alb::trace::parse(sent.as_bytes()).is_some(), "{sent}");
    let l = line(&log, 0);
    assert_eq!(l["client"].as_str().unwrap().rsplit_once(':').unwrap().0, "127.0.0.1", "{l}");
    assert_eq!((l["identity"].as_str(), l["pool"].as_str(), l["backend"].as_str()), (Some("CN=client1"), Some("default"), Some(backend_id.as_str())), "{l}");
    assert_eq!((l["method"].as_str(), l["path"].as_str(), l["status"].as_u64()), (Some("GET"), Some("/echo"), Some(200)), "{l}");
    assert_eq!((l["bytes_in"].as_u64(), l["bytes_out"].as_u64()), (Some(0), Some(body_len as u64)), "{l}");
    let (total, upstream) = (l["duration_ms"].as_f64().unwrap(), l["upstream_ms"].as_f64().unwrap());
    assert!(upstream > 0.0 && total >= upstream, "{l}");
    assert_eq!(
        (l["traceparent"].as_str(), l["trace_id"].as_str(), l["trace_origin"].as_str()),
        (Some(sent.as_str()), Some(&sent[3..35]), Some("generated")),
        "{l}"
    );
    assert!(l["time"].as_str().is_some_and(|t| t.len() == 24 && t.ends_with('Z')), "{l}");

    // A client's valid one (with a body) goes through unchanged.
    let (seen, _) = request(&c, port, &["-H", &format!("traceparent: {CLIENT_TRACE}"), "--data", "hello"]).await;
    assert_eq!(seen["headers"]["traceparent"], CLIENT_TRACE, "{seen}");
    let l = line(&log, 1);
    assert_eq!((l["method"].as_str(), l["bytes_in"].as_u64()), (Some("POST"), Some(5)), "{l}");
    assert_eq!(
        (l["trace_id"].as_str(), l["traceparent"].as_str(), l["trace_origin"].as_str()),
        (Some(&CLIENT_TRACE[3..35]), Some(CLIENT_TRACE), Some("client")),
        "{l}"
    );

    // An invalid one (all-zero trace id) is replaced, with its tracestate.
    let bad = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
    let (seen, _) = request(&c, port, &["-H", &format!("traceparent: {bad}"), "-H", "tracestate: congo=t61rcWkgMzE"]).await;
    let sent = seen["headers"]["traceparent"].as_str().unwrap().to_owned();
    assert!(sent != bad && alb::trace::parse(sent.as_bytes()).is_some(), "{sent}");
    assert!(seen["headers"].get("tracestate").is_none(), "{seen}");
    let l = line(&log, 2);
    assert_eq!((l["traceparent"].as_str(), l["trace_origin"].as_str()), (Some(sent.as_str()), Some("replaced")), "{l}");

    // A request alb answers itself (no pool matches nothing here, so: a bad Host) is logged too.
    let mut a = tls_args(&c, Some("client1"));
    a.extend(s(&["-H", "Host: a@b", &format!("https://127.0.0.1:{port}/x")]));
    let _ = curl(a).await;
    let l = line(&log, 3);
    assert_eq!((l["status"].as_u64(), l["backend"].as_str(), l["upstream_ms"].as_f64()), (Some(400), None, None), "{l}");
    assert_eq!(l["trace_origin"], "generated", "{l}");
    alb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_access_log_the_client_traceparent_is_left_alone_and_none_is_made() {
    let c = certs();
    let b = backend("b1").await;
    let dir = tmp();
    let alb = start_alb(dir.path(), &tls_config(&c, &[&b], "ca_location: {ca}\n")).await;
    let port = alb.listen_addrs()[0].port();
    let (seen, _) = request(&c, port, &[]).await;
    assert!(seen["headers"].get("traceparent").is_none(), "{seen}");
    let (seen, _) = request(&c, port, &["-H", "traceparent: not-one"]).await;
    assert_eq!(seen["headers"]["traceparent"], "not-one", "{seen}");
    alb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_log_that_cannot_be_opened_refuses_the_config_naming_the_file() {
    let c = certs();
    let b = backend("b1").await;
    let dir = tmp();
    let yaml = tls_config(&c, &[&b], "access_log: {path: /nonexistent-dir/access.log}\n");
    let p = dir.path().join("alb.yaml");
    std::fs::write(&p, yaml).unwrap();
    let file = ConfigFile::new(&p);
    let cfg = alb::Config::load(&p).unwrap();
    let e = alb::start(cfg, Some(file)).await.err().expect("must be refused");
    let e = format!("{e:#}");
    assert!(e.contains("access_log.path") && e.contains("/nonexistent-dir/access.log"), "{e}");
}
