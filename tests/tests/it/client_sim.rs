//! The client simulator (`tests/src/client/`, the `lab-client` binary)
//! over loopback, no privileges: each client kind's behaviour as the
//! backend simulator counts it, https over HTTP/1.1 and h2 with a client
//! certificate through alb in process (the identity arriving at the
//! backend), and the binary's JSON output and flag errors. Runs are
//! bounded by `max_total`; every wait has a deadline.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    process::Command,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use xdplb_tests::{
    backend::{Backend, Reply, Settings, Stats},
    client::{
        https::{Alpn, HttpsParams},
        kind::Mix,
        results::{KindReport, Report},
        run,
        tcp::TcpParams,
        tls::{client_config, Identity},
        Plan,
    },
};

const ANY: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);
const TOOL: &str = env!("CARGO_BIN_EXE_lab-client");

fn sim(settings: Settings) -> Backend {
    Backend::builder("be1").tcp_echo(ANY).control(ANY).settings(settings).start().unwrap()
}

fn tcp(b: &Backend) -> TcpParams {
    TcpParams {
        target: b.echo_addrs[0],
        timeout: Duration::from_secs(5),
        iterations: "3".parse().unwrap(),
        think: "1ms".parse().unwrap(),
        stream_for: "300ms".parse().unwrap(),
        stream_every: "5ms".parse().unwrap(),
        idle_for: "10s".parse().unwrap(),
        slow_pause: "60ms".parse().unwrap(),
    }
}

fn plan(mix: &str, total: u64, tcp: Option<TcpParams>, https: Option<HttpsParams>) -> Plan {
    Plan {
        mix: mix.parse::<Mix>().unwrap(),
        rate: 100.0,
        duration: Duration::from_secs(5),
        max_concurrent: 100,
        max_total: total,
        grace: Duration::from_secs(2),
        tcp,
        https,
    }
}

async fn go(plan: Plan) -> Report {
    run(plan, std::future::pending(), |_| {}).await.unwrap()
}

fn kind<'a>(r: &'a Report, name: &str) -> &'a KindReport {
    r.kinds.get(name).unwrap_or_else(|| panic!("no {name} in {r:?}"))
}

/// Polls the backend's counters until `ok` holds (5 s at most).
async fn until(b: &Backend, what: &str, ok: impl Fn(&Stats) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ok(&b.stats) {
        assert!(Instant::now() < deadline, "{what}: backend stats {}", b.stats_json());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn real_and_fire_and_forget_as_the_backend_sees_them() {
    let b = sim(Settings::default());
    let r = go(plan("real=1", 4, Some(tcp(&b)), None)).await;
    let real = kind(&r, "real");
    assert_eq!((real.started, real.completed, real.failed_total(), real.exchanges, real.samples), (4, 4, 0, 12, 12), "{real:?}");
    // Four connections, three REQ/ACK exchanges each, all closed.
    until(&b, "real", |s| Stats::get(&s.accepted) == 4 && Stats::get(&s.echo_lines) == 12 && Stats::get(&s.active) == 0).await;

    let b = sim(Settings::default());
    let r = go(plan("fire_and_forget=1", 3, Some(tcp(&b)), None)).await;
    let ff = kind(&r, "fire_and_forget");
    assert_eq!((ff.completed, ff.exchanges, ff.bytes_sent), (3, 0, 15), "never reads an answer: {ff:?}");
    // Each PING arrived (and was answered to a closed socket), each connection is gone.
    until(&b, "fire_and_forget", |s| Stats::get(&s.echo_lines) == 3 && Stats::get(&s.active) == 0 && Stats::get(&s.bytes_in) == 15).await;
    assert_eq!(Stats::get(&b.stats.echo_errors), 0);
}

#[tokio::test]
async fn stream_sends_lines_without_waiting() {
    let b = sim(Settings::default());
    let r = go(plan("stream=1", 2, Some(tcp(&b)), None)).await;
    let st = kind(&r, "stream");
    assert_eq!((st.completed, st.failed_total()), (2, 0), "{st:?}");
    // 300 ms at one line per 5 ms: dozens of lines per connection.
    assert!(st.exchanges >= 40, "{st:?}");
    until(&b, "stream", |s| Stats::get(&s.echo_lines) == st.exchanges && Stats::get(&s.bytes_in) == st.bytes_sent && Stats::get(&s.accepted) == 2).await;
}

#[tokio::test]
async fn idle_sends_nothing_until_the_idle_timeout_closes_it() {
    let b = sim(Settings { idle_timeout: Some(Duration::from_millis(200)), ..Settings::default() });
    let started = Instant::now();
    let r = go(plan("idle=1", 2, Some(tcp(&b)), None)).await;
    let idle = kind(&r, "idle");
    assert_eq!((idle.completed, idle.closed_by_peer, idle.bytes_sent), (2, 2, 0), "{idle:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "the backend's close ended the 10 s hold");
    until(&b, "idle", |s| Stats::get(&s.idle_closed) == 2).await;
    assert_eq!((Stats::get(&b.stats.bytes_in), Stats::get(&b.stats.echo_lines)), (0, 0));
}

#[tokio::test]
async fn slow_trickles_one_byte_at_a_time() {
    // An idle timeout longer than the pause: every byte keeps the connection alive.
    let b = sim(Settings { idle_timeout: Some(Duration::from_millis(400)), ..Settings::default() });
    let run = tokio::spawn(go(plan("slow=1", 1, Some(tcp(&b)), None)));
    // What the backend has received, sampled while the line is incomplete.
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Stats::get(&b.stats.echo_lines) == 0 && Instant::now() < deadline {
        seen.insert(Stats::get(&b.stats.bytes_in));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = run.await.unwrap();
    let slow = kind(&r, "slow");
    assert_eq!((slow.completed, slow.exchanges, slow.bytes_sent), (1, 1, 6), "{slow:?}");
    assert!(slow.p50_ms >= 5.0 * 60.0, "five pauses between six bytes: {slow:?}");
    // "REQ 1\n" arrived as 1, 2, 3, 4, 5 bytes before the 6th completed it.
    assert!((1..=5).all(|n| seen.contains(&n)), "bytes_in values seen: {seen:?}");
    assert_eq!((Stats::get(&b.stats.echo_lines), Stats::get(&b.stats.bytes_in), Stats::get(&b.stats.idle_closed)), (1, 6, 0));

    // Pauses longer than the idle timeout: the backend cuts it, the client counts why.
    let b = sim(Settings { idle_timeout: Some(Duration::from_millis(100)), ..Settings::default() });
    let mut p = tcp(&b);
    p.slow_pause = "300ms".parse().unwrap();
    let r = go(plan("slow=1", 1, Some(p), None)).await;
    assert_eq!(kind(&r, "slow").failed["refused_reset"], 1, "{r:?}");
    assert_eq!(Stats::get(&b.stats.idle_closed), 1);
}

struct AlbSetup {
    _dir: tempfile::TempDir,
    certs: certgen::DemoFiles,
    alb: alb::Running,
    backends: [Backend; 2],
}

/// alb in process with mTLS required (the demo CA), over two JSON backends.
async fn alb_with_mtls() -> AlbSetup {
    let dir = tempfile::tempdir().unwrap();
    let certs = certgen::demo(dir.path().join("certs"), &certgen::DemoOptions::default()).unwrap().files;
    let backends = ["be1", "be2"].map(|n| Backend::builder(n).reply(Reply::Json).start().unwrap());
    let yaml = format!(
        "listen: [\"127.0.0.1:0\"]\ncert_location: {}\nkey_location: {}\nca_location: {}\nadmin: {{ enabled: false }}\n\
         health: {{ enabled: false }}\nbackend_servers:\n  - {}\n  - {}\n",
        certs.server_cert.display(),
        certs.server_key.display(),
        certs.ca_cert.display(),
        backends[0].url(),
        backends[1].url()
    );
    let alb = alb::start(alb::Config::parse(&yaml).unwrap(), None).await.unwrap();
    AlbSetup { _dir: dir, certs, alb, backends }
}

fn https(s: &AlbSetup, alpn: Alpn, client_cert: bool) -> HttpsParams {
    let identity = client_cert.then(|| Identity { cert: &s.certs.client1_cert, key: &s.certs.client1_key });
    let [both, h2, h1] = HttpsParams::connectors(&client_config(&s.certs.ca_cert, identity, &[]).unwrap());
    HttpsParams {
        target: s.alb.listen_addrs()[0],
        server_name: "localhost".try_into().unwrap(),
        alpn,
        path: "/echo".into(),
        requests: "2".parse().unwrap(),
        identity_header: "x-client-identity".into(),
        timeout: Duration::from_secs(5),
        both,
        h2,
        h1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_over_h1_and_h2_carries_the_client_identity_to_the_backend() {
    let s = alb_with_mtls().await;
    for (alpn, proto) in [(Alpn::H1, "http/1.1"), (Alpn::H2, "h2"), (Alpn::Both, "h2")] {
        let r = go(plan("https=1", 4, None, Some(https(&s, alpn, true)))).await;
        let h = kind(&r, "https");
        assert_eq!((h.completed, h.failed_total(), h.exchanges), (4, 0, 8), "{alpn:?}: {h:?}");
        assert_eq!(h.protocols, BTreeMap::from([(proto.to_owned(), 4)]), "{alpn:?}");
        assert_eq!(h.status, BTreeMap::from([("200".to_owned(), 8)]));
        assert_eq!(h.identities, BTreeMap::from([("CN=client1".to_owned(), 8)]), "{h:?}");
        assert_eq!(h.backends.values().sum::<u64>(), 8);
        assert_eq!(h.backends.len(), 2, "both backends served: {h:?}");
    }
    // What the backends themselves saw: 24 requests, each with the identity alb verified.
    let seen: Vec<_> = s.backends.iter().flat_map(|b| b.seen.lock().unwrap().clone()).collect();
    assert_eq!(seen.len(), 24);
    assert!(seen.iter().all(|h| h.get("x-client-identity").map(String::as_str) == Some("CN=client1")), "{seen:?}");
    assert_eq!(s.backends.iter().map(|b| b.stats.requests("/echo", 200)).sum::<u64>(), 24);

    // Without a client certificate alb refuses the connection: counted as tls, no request reaches a backend.
    let r = go(plan("https=1", 2, None, Some(https(&s, Alpn::H1, false)))).await;
    assert_eq!(kind(&r, "https").failed["tls"], 2, "{r:?}");
    // h2 writes its preface at once: a write that meets the closed socket
    // before the alert is read loses the alert (docs/simulators.md).
    let r = go(plan("https=1", 2, None, Some(https(&s, Alpn::H2, false)))).await;
    let h2 = kind(&r, "https");
    assert_eq!((h2.failed_total(), h2.failed["tls"] + h2.failed["refused_reset"]), (2, 2), "{r:?}");
    assert_eq!(s.backends.iter().map(|b| b.hits.load(Ordering::Relaxed)).sum::<usize>(), 24);
}

#[tokio::test]
async fn the_binary_prints_live_and_final_json() {
    let b = sim(Settings::default());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.json");
    let target = b.echo_addrs[0].to_string();
    let args: Vec<String> =
        ["--tcp-target", &target, "--mix", "real=1,https=3", "--rate", "20", "--duration", "1500ms", "--iterations", "2", "--live-json", "--json"]
            .map(String::from)
            .to_vec();
    let o = tokio::task::spawn_blocking({
        let out = out.clone();
        move || Command::new(TOOL).args(args).arg(&out).output().unwrap()
    })
    .await
    .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("https off: no target") && stderr.contains("(final)"), "{stderr}");
    let live: Vec<Report> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(!live.is_empty() && live.iter().all(|r| !r.is_final && r.kinds.contains_key("real")), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let real = &v["kinds"]["real"];
    assert_eq!(v["final"], true);
    assert!(real["started"].as_u64().unwrap() >= 20 && real["started"] == real["completed"], "{v}");
    assert_eq!(real["exchanges"].as_u64().unwrap(), 2 * real["completed"].as_u64().unwrap());
    assert!(real["failed"]["refused_reset"] == 0 && real["p99_ms"].as_f64().unwrap() >= real["p50_ms"].as_f64().unwrap(), "{v}");
    assert_eq!(Stats::get(&b.stats.echo_lines), real["exchanges"].as_u64().unwrap());
}

#[test]
fn the_binary_refuses_bad_flags_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pem");
    let missing = missing.to_str().unwrap();
    let bad_dir = dir.path().join("no/such/dir/out.json");
    for (args, want) in [
        (vec!["--tcp-target", "127.0.0.1:9", "--mix", "bogus=1"], "unknown client kind \"bogus\""),
        (vec!["--tcp-target", "127.0.0.1:9", "--duration", "10"], "missing unit"),
        (vec!["--tcp-target", "127.0.0.1:9", "--think", "200ms..10ms"], "low end 200ms is above its high end 10ms"),
        (vec!["--tcp-target", "127.0.0.1:9", "--iterations", "0"], "at least 1"),
        (vec!["--tcp-target", "127.0.0.1:9", "--rate", "0"], "--rate 0"),
        (vec!["--tcp-target", "127.0.0.1:9", "--mix", "https=1"], "no client kind is on"),
        (vec!["--https-target", "127.0.0.1:9"], "--ca"),
        (vec!["--https-target", "127.0.0.1:9", "--ca", missing], "reading --ca"),
        (vec!["--https-target", "127.0.0.1:9", "--ca", missing, "--h1", "--h2"], "cannot be used with"),
        (vec!["--tcp-target", "127.0.0.1:9", "--sni", "x"], "give --https-target"),
        (vec!["--tcp-target", "127.0.0.1:9", "--json", bad_dir.to_str().unwrap()], "cannot create the file"),
    ] {
        let o = Command::new(TOOL).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: wanted {want:?} in {stderr}");
    }
}

#[tokio::test]
async fn the_binary_stops_on_sigint_after_the_grace_period() {
    use std::io::BufRead as _;
    let b = sim(Settings::default());
    let target = b.echo_addrs[0].to_string();
    let o = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(TOOL)
            .args(["--tcp-target", &target, "--mix", "idle=1", "--idle-for", "1m", "--duration", "1m", "--grace", "200ms", "--live-json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        // The first live line: clients are running.
        let live: Report = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        let asked = Instant::now();
        // SAFETY: signalling our own child by its pid.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
        let rest: Vec<String> = lines.map(Result::unwrap).collect();
        let status = child.wait().unwrap();
        (live, rest, status, asked.elapsed())
    })
    .await
    .unwrap();
    let (live, rest, status, took) = o;
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(5), "stopped {took:?} after SIGINT, not after the 1 m duration");
    assert!(kind(&live, "idle").active > 0, "{live:?}");
    let last: Report = serde_json::from_str(rest.last().expect("a final report")).unwrap();
    let idle = kind(&last, "idle");
    assert!(last.is_final && idle.cancelled == idle.started && idle.active == 0, "the held connections were cut: {last:?}");
    until(&b, "cut connections", |s| Stats::get(&s.active) == 0).await;
}
