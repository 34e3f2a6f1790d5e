//! The `tls-clients` tool (tests/src/bin/tls-clients.rs) against alb
//! in-process on loopback (no root): each `--then` behaviour, its report
//! lines, `--until-stdin-closes`, and a bad argument. With alb's
//! `header_read` at 1 s the trickling clients also show alb cutting a
//! slowloris.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use xdplb_tests::{
    backend::Backend,
    tls_clients::{Line, Summary},
};

const TOOL: &str = env!("CARGO_BIN_EXE_tls-clients");

/// Runs the tool to its end and returns its summary.
fn run(common: &[String], args: &[&str]) -> Summary {
    let out = Command::new(TOOL).args(common).args(args).stdin(Stdio::null()).output().expect("tls-clients runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{args:?}: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    match Line::parse(stdout.lines().last().expect("a summary line")) {
        Ok(Line::Summary(s)) => s,
        other => panic!("{args:?}: last line is not a summary: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_behaviour_against_alb() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certgen::demo(dir.path().join("certs"), &certgen::DemoOptions::default()).unwrap().files;
    let backend = Backend::builder("b1").start().unwrap();
    let yaml = format!(
        "listen: [\"127.0.0.1:0\"]\ncert_location: {}\nkey_location: {}\nmtls: {{ mode: off }}\nadmin: {{ enabled: false }}\n\
         health: {{ enabled: false }}\ntimeouts: {{ header_read: 1s, idle: 1m }}\nbackend_servers:\n  - {}\n",
        certs.server_cert.display(),
        certs.server_key.display(),
        backend.url()
    );
    let alb = alb::start(alb::Config::parse(&yaml).unwrap(), None).await.unwrap();
    let common: Vec<String> =
        ["--connect", &alb.listen_addrs()[0].to_string(), "--ca", &certs.ca_cert.display().to_string(), "--progress-every", "100ms"].map(String::from).to_vec();

    let close = run(&common, &["--conns", "20", "--rate", "200", "--then", "close"]);
    assert_eq!((close.progress.handshakes, close.progress.failed, close.handshake_ms.count), (20, 0, 20), "{close:?}");
    assert!(close.handshake_ms.p50 > 0.0 && close.handshake_ms.p99 >= close.handshake_ms.p50, "{close:?}");

    let req = run(&common, &["--conns", "3", "--rate", "100", "--then", "request", "--duration", "3s"]);
    assert_eq!((req.progress.handshakes, req.request_ms.count), (3, 3), "{req:?}");

    // A request head one byte per 100 ms: alb closes each at its 1 s header-read timeout.
    let slow = run(&common, &["--conns", "4", "--rate", "100", "--then", "trickle", "--trickle-every", "100ms", "--duration", "10s"]);
    assert_eq!((slow.progress.server_closed, slow.server_close_s.count), (4, 4), "{slow:?}");
    assert!(slow.server_close_s.p50 > 0.8 && slow.server_close_s.max < 3.0, "{slow:?}");
    assert_eq!(backend.hits.load(std::sync::atomic::Ordering::Relaxed), 3, "only the three requests reached the backend");

    // Idle connections stay open until the tool's stdin closes.
    let mut idle = Command::new(TOOL)
        .args(&common)
        .args(["--conns", "5", "--rate", "100", "--then", "idle", "--until-stdin-closes", "--duration", "30s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(idle.stdout.take().unwrap()).lines();
    let started = Instant::now();
    loop {
        let line = lines.next().expect("a progress line").unwrap();
        if matches!(Line::parse(&line), Ok(Line::Progress(p)) if p.open == 5) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "5 connections not open: {line}");
    }
    drop(idle.stdin.take());
    let last = lines.map(Result::unwrap).last().expect("a summary after stdin closed");
    assert!(idle.wait().unwrap().success());
    match Line::parse(&last).unwrap() {
        Line::Summary(s) => assert_eq!((s.progress.open, s.progress.server_closed, s.progress.failed), (5, 0, 0), "{s:?}"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10), "stopped {:?} after start", started.elapsed());

    // A bad argument is one error line naming it.
    let bad = Command::new(TOOL).args(["--connect", "127.0.0.1:1", "--ca", "/nonexistent.pem", "--conns", "1"]).output().unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.starts_with("tls-clients: error: reading --ca /nonexistent.pem"), "{err}");
    alb.shutdown().await;
}
