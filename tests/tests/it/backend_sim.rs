//! The backend simulator (`tests/src/backend/`, the `lab-backend` binary)
//! over loopback, no privileges: its HTTP endpoints, the REQ/ACK echo, and
//! one test per knob that fails if the knob does nothing, set at start and
//! changed at runtime through the control endpoint. Every wait has a
//! deadline; outcomes are measured, never slept.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
    time::timeout,
};
use xdplb_tests::backend::{Backend, Delay, Settings, Stats};

const LIMIT: Duration = Duration::from_secs(5);
const ANY: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

fn sim(name: &str, settings: Settings) -> Backend {
    Backend::builder(name).tcp_echo(ANY).control(ANY).settings(settings).start().unwrap()
}

/// One HTTP/1.1 request on a fresh connection: (status, raw body).
async fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let exchange = async {
        let mut tcp = TcpStream::connect(addr).await?;
        let head = format!("{method} {path} HTTP/1.1\r\nhost: sim\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}", body.len());
        tcp.write_all(head.as_bytes()).await?;
        let mut raw = String::new();
        tcp.read_to_string(&mut raw).await?;
        anyhow::Ok(raw)
    };
    let raw = timeout(LIMIT, exchange).await.with_context(|| format!("{method} {path}: no answer within {LIMIT:?}"))??;
    let (head, body) = raw.split_once("\r\n\r\n").with_context(|| format!("{method} {path}: not an HTTP response: {raw:?}"))?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).with_context(|| format!("no status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(addr, "GET", path, "").await.unwrap()
}

/// POSTs `body` to the control endpoint and returns the knobs it answers.
async fn control(b: &Backend, path: &str, body: Value) -> Value {
    let (status, answer) = request(b.control_addrs[0], "POST", path, &body.to_string()).await.unwrap();
    assert_eq!(status, 200, "POST {path} {body}: {answer}");
    serde_json::from_str(&answer).unwrap()
}

async fn stats(b: &Backend) -> Value {
    let (status, body) = get(b.control_addrs[0], "/stats").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// An echo connection that has been answered once (so it is admitted and served).
async fn echo_conn(b: &Backend) -> BufReader<TcpStream> {
    let mut c = BufReader::new(TcpStream::connect(b.echo_addrs[0]).await.unwrap());
    assert_eq!(echo(&mut c, "REQ 0").await.unwrap(), "ACK 0");
    c
}

async fn echo(c: &mut BufReader<TcpStream>, line: &str) -> Result<String> {
    c.get_mut().write_all(format!("{line}\n").as_bytes()).await?;
    let mut answer = String::new();
    if timeout(LIMIT, c.read_line(&mut answer)).await.context("no echo answer in time")?? == 0 {
        bail!("closed without an answer");
    }
    Ok(answer.trim_end().to_owned())
}

/// Connects, sends a request line, and expects the connection to end
/// without a single byte back (refused or chaos-closed).
async fn closed_without_answer(addr: SocketAddr) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    // The write may fail once the server has closed; the read decides.
    let _ = tcp.write_all(b"REQ 1\n").await;
    let mut buf = [0u8; 64];
    match timeout(LIMIT, tcp.read(&mut buf)).await.expect("the connection stayed open") {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("expected no answer, got {:?}", String::from_utf8_lossy(&buf[..n])),
    }
}

/// Polls `counter` until it reads `want`, within the limit.
async fn wait_count(counter: &std::sync::atomic::AtomicU64, want: u64) {
    let deadline = Instant::now() + LIMIT;
    while Stats::get(counter) != want {
        assert!(Instant::now() < deadline, "counter stuck at {} (want {want})", Stats::get(counter));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn http_endpoints_name_health_sleep_stream_status() {
    let b = sim("be-http", Settings::default());
    assert_eq!(get(b.addr, "/").await, (200, "be-http\n".to_owned()));
    assert_eq!(get(b.addr, "/health").await, (200, "ok\n".to_owned()));
    assert_eq!(get(b.addr, "/status/503").await, (503, "be-http 503\n".to_owned()));
    assert_eq!(get(b.addr, "/status/99").await.0, 400);
    assert_eq!(get(b.addr, "/sleep?ms=abc").await.0, 400);
    assert_eq!(get(b.addr, "/stream?chunks=1&interval_ms=999999999").await.0, 400);
    // /echo is the request as JSON even on a name-answering backend (the client simulator reads it).
    let (status, body) = request(b.addr, "GET", "/echo", "").await.unwrap();
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((status, &echo["backend"], &echo["headers"]["host"], &echo["body_len"]), (200, &json!("be-http"), &json!("sim"), &json!(0)), "{echo}");
    // bytes_in counts every byte received (the control port's not): this request's head and body.
    let before = stats(&b).await["connections"]["bytes_in"].as_u64().unwrap();
    let (_, body) = request(b.addr, "POST", "/echo", "12345").await.unwrap();
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["body_len"], 5);
    let sent = "POST /echo HTTP/1.1\r\nhost: sim\r\nconnection: close\r\ncontent-length: 5\r\n\r\n12345".len() as u64;
    assert_eq!(stats(&b).await["connections"]["bytes_in"].as_u64().unwrap(), before + sent);

    let start = Instant::now();
    assert_eq!(get(b.addr, "/sleep?ms=300").await.0, 200);
    assert!(start.elapsed() >= Duration::from_millis(300), "/sleep?ms=300 answered after {:?}", start.elapsed());

    // The stream's chunks arrive spread over time, not in one piece at the end.
    let mut tcp = BufReader::new(TcpStream::connect(b.addr).await.unwrap());
    tcp.get_mut().write_all(b"GET /stream?chunks=3&interval_ms=150 HTTP/1.1\r\nhost: sim\r\n\r\n").await.unwrap();
    let mut arrivals = Vec::new();
    let mut line = String::new();
    while arrivals.len() < 3 {
        line.clear();
        assert!(timeout(LIMIT, tcp.read_line(&mut line)).await.unwrap().unwrap() > 0, "the stream ended early");
        if line.starts_with("be-http chunk") {
            arrivals.push((Instant::now(), line.trim_end().to_owned()));
        }
    }
    assert_eq!(arrivals[2].1, "be-http chunk 3/3");
    let spread = arrivals[2].0 - arrivals[0].0;
    assert!(spread >= Duration::from_millis(300), "3 chunks 150 ms apart arrived within {spread:?}");

    let s = stats(&b).await;
    assert_eq!(s["requests"]["/status/503"]["503"], 1, "{s}");
    assert_eq!(s["requests"]["/sleep"]["200"], 1, "{s}");
    assert_eq!(s["requests"]["/stream"]["200"], 1, "{s}");
}

#[tokio::test]
async fn echo_answers_req_with_ack_and_counts_lines() {
    let b = sim("be-echo", Settings::default());
    let mut c = echo_conn(&b).await;
    for n in 1..=5 {
        assert_eq!(echo(&mut c, &format!("REQ {n}")).await.unwrap(), format!("ACK {n}"));
    }
    assert_eq!(echo(&mut c, "PING").await.unwrap(), "PONG");
    assert!(echo(&mut c, "HELLO").await.unwrap().starts_with("ERR expected \"REQ <n>\""));
    assert_eq!(echo(&mut c, "REQ 6").await.unwrap(), "ACK 6", "an ERR keeps the connection");
    let long = format!("REQ {}", "x".repeat(2000));
    assert!(echo(&mut c, &long).await.unwrap().starts_with("ERR line longer than 1024 bytes"));
    let s = stats(&b).await;
    assert_eq!((s["echo"]["lines"].as_u64(), s["echo"]["errors"].as_u64()), (Some(8), Some(2)), "{s}");
}

#[tokio::test]
async fn delay_fixed_at_start_and_a_range_at_runtime() {
    let b = sim("be-delay", Settings { delay: Delay::Fixed(Duration::from_millis(250)), ..Settings::default() });
    let start = Instant::now();
    assert_eq!(get(b.addr, "/").await.0, 200);
    assert!(start.elapsed() >= Duration::from_millis(250), "HTTP answered after {:?}", start.elapsed());
    let mut c = BufReader::new(TcpStream::connect(b.echo_addrs[0]).await.unwrap());
    let start = Instant::now();
    assert_eq!(echo(&mut c, "REQ 1").await.unwrap(), "ACK 1");
    assert!(start.elapsed() >= Duration::from_millis(250), "ACK after {:?}", start.elapsed());

    let knobs = control(&b, "/delay", json!({"delay": "300ms..400ms"})).await;
    assert_eq!(knobs["delay"], "300ms..400ms");
    for n in 2..5 {
        let start = Instant::now();
        assert_eq!(echo(&mut c, &format!("REQ {n}")).await.unwrap(), format!("ACK {n}"));
        assert!(start.elapsed() >= Duration::from_millis(300), "ACK after {:?} on the open connection", start.elapsed());
    }
}

#[tokio::test]
async fn max_conns_refuses_the_next_connection_and_counts_it() {
    let b = sim("be-max", Settings::default());
    assert_eq!(control(&b, "/max-conns", json!({"max": 2})).await["max_conns"], 2);
    let first = echo_conn(&b).await;
    let _second = echo_conn(&b).await;
    closed_without_answer(b.echo_addrs[0]).await;
    closed_without_answer(b.addr).await;
    let s = stats(&b).await;
    assert_eq!((s["connections"]["refused"].as_u64(), s["connections"]["active"].as_u64()), (Some(2), Some(2)), "{s}");
    // A freed slot takes a new connection.
    drop(first);
    wait_count(&b.stats.active, 1).await;
    let _third = echo_conn(&b).await;
    assert_eq!(Stats::get(&b.stats.refused), 2);
}

#[tokio::test]
async fn idle_timeout_closes_idle_connections_not_pending_answers() {
    let b = sim("be-idle", Settings { idle_timeout: Some(Duration::from_millis(300)), ..Settings::default() });
    let mut c = echo_conn(&b).await;
    let start = Instant::now();
    let mut buf = [0u8; 16];
    assert_eq!(timeout(LIMIT, c.read(&mut buf)).await.expect("an idle connection stayed open").unwrap(), 0);
    assert!(start.elapsed() >= Duration::from_millis(300), "closed after {:?}", start.elapsed());
    wait_count(&b.stats.idle_closed, 1).await;

    // An answer delayed past the idle timeout is not idleness.
    control(&b, "/delay", json!({"delay": "700ms"})).await;
    let mut c = BufReader::new(TcpStream::connect(b.echo_addrs[0]).await.unwrap());
    assert_eq!(echo(&mut c, "REQ 1").await.unwrap(), "ACK 1");
    assert_eq!(timeout(LIMIT, c.read(&mut buf)).await.expect("idle after its answer, it stayed open").unwrap(), 0);
    wait_count(&b.stats.idle_closed, 2).await;

    // Changed at runtime, the timeout applies to a connection opened before:
    // off, then 200 ms, and the open connection goes within the limit.
    control(&b, "/delay", json!({"delay": "0s"})).await;
    assert_eq!(control(&b, "/idle-timeout", json!({"timeout": "off"})).await["idle_timeout"], "off");
    let mut c = echo_conn(&b).await;
    assert_eq!(control(&b, "/idle-timeout", json!({"timeout": "200ms"})).await["idle_timeout"], "200ms");
    assert_eq!(timeout(LIMIT, c.read(&mut buf)).await.expect("the new timeout did not apply").unwrap(), 0);
    wait_count(&b.stats.idle_closed, 3).await;
}

#[tokio::test]
async fn chaos_100_closes_every_connection_without_an_answer() {
    let b = sim("be-chaos", Settings::default());
    assert_eq!(control(&b, "/chaos", json!({"percent": 100})).await["chaos_pct"], 100);
    for _ in 0..10 {
        closed_without_answer(b.echo_addrs[0]).await;
        closed_without_answer(b.addr).await;
    }
    assert_eq!(Stats::get(&b.stats.chaos_closed), 20);
    control(&b, "/chaos", json!({"percent": 0})).await;
    assert_eq!(get(b.addr, "/").await.0, 200);
    echo_conn(&b).await;
    assert_eq!(stats(&b).await["connections"]["chaos_closed"], 20);
}

#[tokio::test]
async fn hang_accepts_and_never_answers_until_turned_off() {
    let b = sim("be-hang", Settings::default());
    assert_eq!(control(&b, "/hang", json!({"enabled": true})).await["hang"], true);
    let mut tcp = TcpStream::connect(b.addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: sim\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut c = BufReader::new(TcpStream::connect(b.echo_addrs[0]).await.unwrap());
    c.get_mut().write_all(b"REQ 1\n").await.unwrap();
    let mut buf = [0u8; 64];
    assert!(timeout(Duration::from_millis(500), tcp.read(&mut buf)).await.is_err(), "a hung backend answered HTTP");
    assert!(timeout(Duration::from_millis(100), c.read(&mut buf)).await.is_err(), "a hung backend answered REQ");
    // Open, not closed: both are still active, and the control port still answers.
    assert_eq!(stats(&b).await["connections"]["active"], 2);
    control(&b, "/hang", json!({"enabled": false})).await;
    let mut raw = String::new();
    timeout(LIMIT, tcp.read_to_string(&mut raw)).await.unwrap().unwrap();
    assert!(raw.starts_with("HTTP/1.1 200") && raw.ends_with("be-hang\n"), "{raw}");
    let mut line = String::new();
    timeout(LIMIT, c.read_line(&mut line)).await.unwrap().unwrap();
    assert_eq!(line, "ACK 1\n");
}

#[tokio::test]
async fn health_forced_down_answers_503_and_up_again() {
    let b = sim("be-health", Settings::default());
    assert_eq!(control(&b, "/health", json!({"state": "down"})).await["health"], "down");
    assert_eq!(get(b.addr, "/health").await, (503, "down\n".to_owned()));
    assert_eq!(get(b.addr, "/").await.0, 200, "only the health check fails");
    control(&b, "/health", json!({"state": "up"})).await;
    assert_eq!(get(b.addr, "/health").await.0, 200);
    let s = stats(&b).await;
    assert_eq!((s["requests"]["/health"]["503"].as_u64(), s["requests"]["/health"]["200"].as_u64()), (Some(1), Some(1)), "{s}");
}

#[tokio::test]
async fn control_refuses_bad_requests_and_changes_nothing() {
    let b = sim("be-ctl", Settings::default());
    let before = stats(&b).await["knobs"].clone();
    let bad = [
        ("POST", "/delay", r#"{"delay": "fast"}"#, 400, "is not a duration"),
        ("POST", "/delay", r#"{"delay": "200ms..10ms"}"#, 400, "above its high end"),
        ("POST", "/delay", "50ms", 400, "not JSON"),
        ("POST", "/chaos", r#"{"percent": 101}"#, 400, "0..=100"),
        ("POST", "/chaos", r#"{"pct": 5}"#, 400, "unknown field \\\"pct\\\""),
        ("POST", "/hang", r#"{"enabled": "yes"}"#, 400, "true or false"),
        ("POST", "/health", r#"{"state": "sideways"}"#, 400, "neither"),
        ("POST", "/idle-timeout", r#"{"timeout": "5"}"#, 400, "missing unit"),
        ("GET", "/delay", "", 405, "takes POST"),
        ("POST", "/stats", "", 405, "takes GET"),
        ("POST", "/nope", "", 404, "no control endpoint /nope"),
    ];
    for (method, path, body, want, says) in bad {
        let (status, answer) = request(b.control_addrs[0], method, path, body).await.unwrap();
        assert!(status == want && answer.contains(says), "{method} {path} {body}: {status} {answer}");
    }
    let big = format!(r#"{{"delay": "{}"}}"#, "1".repeat(5000));
    assert_eq!(request(b.control_addrs[0], "POST", "/delay", &big).await.unwrap().0, 413);
    assert_eq!(stats(&b).await["knobs"], before);
}

/// The binary: every knob flag lands in the knobs `GET /stats` reports, and
/// a bad flag is refused with a message naming it.
#[tokio::test]
async fn lab_backend_flags_set_the_knobs() {
    let bin = env!("CARGO_BIN_EXE_lab-backend");
    let flags = ["--delay", "20ms..30ms", "--max-conns", "7", "--idle-timeout", "9s", "--chaos", "5", "--health", "down"];
    let mut child = tokio::process::Command::new(bin)
        .args(["--name", "be-bin", "--listen", "127.0.0.1:0", "--tcp-echo", "127.0.0.1:0", "--control", "127.0.0.1:0"])
        .args(flags)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    timeout(LIMIT, stderr.read_line(&mut line)).await.unwrap().unwrap();
    let control: SocketAddr = line.split("control on [").nth(1).and_then(|s| s.split(']').next()).and_then(|s| s.parse().ok()).expect(&line);
    let (status, body) = get(control, "/stats").await;
    assert_eq!(status, 200);
    let knobs = &serde_json::from_str::<Value>(&body).unwrap()["knobs"];
    assert_eq!(knobs, &json!({"delay": "20ms..30ms", "max_conns": 7, "idle_timeout": "9s", "chaos_pct": 5, "hang": false, "health": "down"}));
    child.kill().await.unwrap();

    let out = std::process::Command::new(bin).args(["--name", "x", "--listen", "127.0.0.1:0", "--delay", "200ms..10ms"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--delay") && err.contains("above its high end"), "{err}");
}
