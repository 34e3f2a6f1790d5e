//! Active health checks: one Tokio task per (VIP, backend) of every VIP that
//! has a `health_check` (TCP connect, or HTTP/1.1 `GET path` expecting a
//! status), each checking every `interval` with a `timeout`.
//!
//! **State machine** (HAProxy's `rise`/`fall`): a backend goes *down* after
//! `fall` consecutive failed checks and back *up* after `rise` consecutive
//! successful ones; any other result resets the opposite streak.
//!
//! **Every backend starts up**, as in HAProxy, which considers servers up
//! when it starts: a freshly started balancer must not drop all traffic while
//! the first `rise` checks warm up. A dead backend is taken out after `fall`
//! checks, i.e. within about `fall × interval`. Backends of VIPs without a
//! check are always up.
//!
//! The state is published as a [`HealthSnapshot`] through a
//! [`tokio::sync::watch`] channel (a new value on every change) and each
//! change is logged as one structured line:
//!
//! ```text
//! backend down vip=web backend=198.18.1.11:8080 reason="connect: Connection refused (os error 111)" failures=3
//! backend up vip=web backend=198.18.1.11:8080 successes=2
//! ```

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::watch,
    task::JoinHandle,
    time::MissedTickBehavior,
};

use crate::config::{Config, HealthCheck, HealthCheckKind};

/// Health of every backend, indexed `[vip][backend]` in config order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthSnapshot {
    pub up: Vec<Vec<bool>>,
}

impl HealthSnapshot {
    /// Every backend of `config` up (the starting state).
    pub fn all_up(config: &Config) -> HealthSnapshot {
        HealthSnapshot { up: config.vips.iter().map(|v| vec![true; v.backends.len()]).collect() }
    }

    /// Whether backend `backend` of VIP `vip` is up (`false` if out of range).
    pub fn is_up(&self, vip: usize, backend: usize) -> bool {
        self.up.get(vip).and_then(|b| b.get(backend)).copied().unwrap_or(false)
    }

    /// Indexes of the VIP's backends that are up, ascending.
    pub fn up_backends(&self, vip: usize) -> Vec<u32> {
        self.up.get(vip).map(|b| b.iter().enumerate().filter(|(_, &u)| u).map(|(i, _)| i as u32).collect()).unwrap_or_default()
    }
}

/// The rise/fall state of one backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracker {
    pub up: bool,
    /// Consecutive successes while down.
    pub successes: u32,
    /// Consecutive failures while up.
    pub failures: u32,
    pub rise: u32,
    pub fall: u32,
}

impl Tracker {
    /// Starts up (see the module documentation).
    pub fn new(rise: u32, fall: u32) -> Tracker {
        Tracker { up: true, successes: 0, failures: 0, rise: rise.max(1), fall: fall.max(1) }
    }

    /// Starts in state `up`: a backend that stays across a proxy reload keeps
    /// its state while its check restarts.
    pub fn starting(up: bool, rise: u32, fall: u32) -> Tracker {
        Tracker { up, ..Tracker::new(rise, fall) }
    }

    /// Records one check result; returns the new state when it changed.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.failures = 0;
            if !self.up {
                self.successes += 1;
                if self.successes >= self.rise {
                    self.up = true;
                    self.successes = 0;
                    return Some(true);
                }
            }
        } else {
            self.successes = 0;
            if self.up {
                self.failures += 1;
                if self.failures >= self.fall {
                    self.up = false;
                    self.failures = 0;
                    return Some(false);
                }
            }
        }
        None
    }
}

/// Runs one check against `addr`, bounded by `timeout`. `Err` is the reason.
pub async fn check_once(kind: &HealthCheckKind, addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, check_inner(kind, addr)).await {
        Ok(r) => r,
        Err(_) => Err(format!("timeout after {timeout:?}")),
    }
}

async fn check_inner(kind: &HealthCheckKind, addr: SocketAddr) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let (path, expect) = match kind {
        HealthCheckKind::Tcp => return Ok(()),
        HealthCheckKind::Http { path, expect_status } => (path, *expect_status),
    };
    let _ = stream.set_nodelay(true);
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: xdplb-health\r\nAccept: */*\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("send: {e}"))?;
    // Only the status line matters: read until its end (at most 1 KiB).
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.contains(&b'\n') && buf.len() < 1024 {
        let n = stream.read(&mut chunk).await.map_err(|e| format!("receive: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let status = parse_status_line(&buf).ok_or_else(|| {
        let line = String::from_utf8_lossy(&buf[..buf.len().min(64)]).lines().next().unwrap_or("").to_owned();
        format!("bad HTTP status line {line:?}")
    })?;
    if status == expect {
        Ok(())
    } else {
        Err(format!("HTTP status {status}, expected {expect}"))
    }
}

/// The status code of an `HTTP/1.x NNN ...` status line.
fn parse_status_line(buf: &[u8]) -> Option<u16> {
    let end = buf.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&buf[..end]).ok()?.trim_end();
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok().filter(|c| (100..=599).contains(c))
}

/// Owns the check tasks; dropping it stops them.
#[derive(Debug)]
pub struct HealthHandle {
    tasks: Vec<JoinHandle<()>>,
}

impl HealthHandle {
    /// Number of check tasks (one per checked backend).
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }
}

impl Drop for HealthHandle {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the health checks of a config.
pub struct HealthChecker;

impl HealthChecker {
    /// Spawns one task per (VIP, backend) with a check, on the current Tokio
    /// runtime (panics outside one). The receiver starts with every backend up.
    pub fn spawn(config: &Config) -> (HealthHandle, watch::Receiver<HealthSnapshot>) {
        Self::spawn_from(config, &HealthSnapshot::all_up(config))
    }

    /// As [`HealthChecker::spawn`], but every backend starts in the state
    /// `initial` gives it (up where `initial` has no entry, and always up
    /// without a check). The proxy uses it on reload so that backends that
    /// stay keep their state while the checks restart.
    pub fn spawn_from(config: &Config, initial: &HealthSnapshot) -> (HealthHandle, watch::Receiver<HealthSnapshot>) {
        let start = HealthSnapshot {
            up: config
                .vips
                .iter()
                .enumerate()
                .map(|(vi, v)| {
                    (0..v.backends.len())
                        .map(|bi| v.health_check.is_none() || initial.up.get(vi).and_then(|b| b.get(bi)).copied().unwrap_or(true))
                        .collect()
                })
                .collect(),
        };
        let (tx, rx) = watch::channel(start.clone());
        let tx = Arc::new(tx);
        let mut tasks = Vec::new();
        for (vi, vip) in config.vips.iter().enumerate() {
            let Some(check) = &vip.health_check else { continue };
            for (bi, b) in vip.backends.iter().enumerate() {
                let task = BackendTask {
                    vip: vip.name.clone(),
                    vip_index: vi,
                    backend_index: bi,
                    addr: b.socket_addr(),
                    start_up: start.up[vi][bi],
                    check: check.clone(),
                    tx: tx.clone(),
                };
                tasks.push(tokio::spawn(task.run()));
            }
        }
        (HealthHandle { tasks }, rx)
    }
}

struct BackendTask {
    vip: String,
    vip_index: usize,
    backend_index: usize,
    addr: SocketAddr,
    start_up: bool,
    check: HealthCheck,
    tx: Arc<watch::Sender<HealthSnapshot>>,
}

impl BackendTask {
    async fn run(self) {
        let mut tracker = Tracker::starting(self.start_up, self.check.rise, self.check.fall);
        let mut ticks = tokio::time::interval(self.check.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let result = check_once(&self.check.kind, self.addr, self.check.timeout).await;
            if let Err(reason) = &result {
                log::debug!("health check failed vip={} backend={} reason={reason:?}", self.vip, self.addr);
            }
            let (streak_s, streak_f) = (tracker.successes + 1, tracker.failures + 1);
            let Some(up) = tracker.record(result.is_ok()) else { continue };
            if up {
                log::info!("backend up vip={} backend={} successes={streak_s}", self.vip, self.addr);
            } else {
                let reason = result.err().unwrap_or_default();
                log::info!("backend down vip={} backend={} reason={reason:?} failures={streak_f}", self.vip, self.addr);
            }
            let (vi, bi) = (self.vip_index, self.backend_index);
            self.tx.send_modify(|s| s.up[vi][bi] = up);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
    use std::time::Instant;
    use tokio::net::TcpListener;

    #[test]
    fn tracker_rise_and_fall() {
        let mut t = Tracker::new(2, 3);
        assert!(t.up);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None); // resets the failure streak
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(false));
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None); // resets the success streak
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(true));
        assert_eq!(t.record(true), None);
        let mut one = Tracker::new(1, 1);
        assert_eq!(one.record(false), Some(false));
        assert_eq!(one.record(true), Some(true));
    }

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503\r\nx"), Some(503));
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK"), None); // incomplete
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 2000 OK\r\n"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 099 OK\r\n"), None);
    }

    /// An HTTP server answering every request with `status`; counts the
    /// answers per status. `status == 0`: accept and never answer.
    struct HttpServer {
        addr: SocketAddr,
        status: Arc<AtomicU16>,
        served: Arc<[AtomicUsize; 2]>, // [200, other]
        task: JoinHandle<()>,
    }

    impl Drop for HttpServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn http_server(status: u16) -> HttpServer {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let st = Arc::new(AtomicU16::new(status));
        let served: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let (st2, served2) = (st.clone(), served.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else { return };
                let (st, served) = (st2.clone(), served2.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 512];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let req = String::from_utf8_lossy(&buf);
                    assert!(req.starts_with("GET /health HTTP/1.1\r\n"), "{req}");
                    assert!(req.contains("\r\nHost: 127.0.0.1:") && req.contains("Connection: close"), "{req}");
                    let code = st.load(Ordering::SeqCst);
                    if code == 0 {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    served[usize::from(code != 200)].fetch_add(1, Ordering::SeqCst);
                    let _ = s.write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes()).await;
                });
            }
        });
        HttpServer { addr, status: st, served, task }
    }

    fn config(addr: SocketAddr, check: &str) -> Config {
        let yaml = format!(
            "interfaces: [{{ name: lo }}]\nmaglev: {{ size: 251 }}\nvips:\n  - name: web\n    address: 127.0.0.1\n    port: 80\n    \
             backends: [{{ address: 127.0.0.1, port: {} }}]\n    health_check: {check}\n  - name: nocheck\n    address: 127.0.0.1\n    \
             port: 81\n    backends: [{{ address: 127.0.0.1, port: 1 }}]\n",
            addr.port()
        );
        Config::parse(&yaml, "test.yaml").unwrap()
    }

    /// Scheduling slack on top of `n × interval` for a state change: one
    /// interval of phase, the check's own time, and a loaded machine's timer
    /// lateness. Far below what a wrong interval (e.g. seconds) would take.
    const SLACK_MS: u64 = 600;

    async fn wait_for(rx: &mut watch::Receiver<HealthSnapshot>, up: bool, limit: Duration) -> Duration {
        let start = Instant::now();
        tokio::time::timeout(limit, rx.wait_for(|s| s.up[0][0] == up)).await.expect("state change in time").unwrap();
        start.elapsed()
    }

    #[tokio::test]
    async fn http_status_mismatch_counts_and_rise_fall_are_exact() {
        let srv = http_server(200).await;
        let cfg = config(srv.addr, "{ type: http, path: /health, expect_status: 200, interval: 100ms, timeout: 80ms, rise: 2, fall: 3 }");
        let (handle, mut rx) = HealthChecker::spawn(&cfg);
        assert_eq!(handle.task_count(), 1);
        assert_eq!(rx.borrow().up, vec![vec![true], vec![true]]);
        // At least three passing checks (bounded wait: a loaded CI machine
        // may run the 100 ms timer late), and still up.
        let deadline = Instant::now() + Duration::from_secs(3);
        while srv.served[0].load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(srv.served[0].load(Ordering::SeqCst) >= 3);
        assert!(rx.borrow().is_up(0, 0));

        // 204 is not the expected 200: a failure. Down after exactly `fall`.
        srv.status.store(204, Ordering::SeqCst);
        let took = wait_for(&mut rx, false, Duration::from_secs(2)).await;
        assert_eq!(srv.served[1].load(Ordering::SeqCst), 3);
        assert!(took <= Duration::from_millis(3 * 100 + SLACK_MS), "{took:?}");
        assert!(rx.borrow().is_up(1, 0), "a VIP without a check stays up");

        srv.status.store(200, Ordering::SeqCst);
        let before = srv.served[0].load(Ordering::SeqCst);
        let took = wait_for(&mut rx, true, Duration::from_secs(2)).await;
        assert_eq!(srv.served[0].load(Ordering::SeqCst) - before, 2);
        assert!(took <= Duration::from_millis(2 * 100 + SLACK_MS), "{took:?}");
    }

    #[tokio::test]
    async fn tcp_check_goes_down_when_the_listener_goes() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let cfg = config(addr, "{ type: tcp, interval: 100ms, timeout: 50ms, rise: 1, fall: 2 }");
        let (_handle, mut rx) = HealthChecker::spawn(&cfg);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(rx.borrow().is_up(0, 0));
        drop(l);
        let took = wait_for(&mut rx, false, Duration::from_secs(2)).await;
        assert!(took <= Duration::from_millis(2 * 100 + SLACK_MS), "{took:?}");
        assert_eq!(rx.borrow().up_backends(0), Vec::<u32>::new());
        assert_eq!(rx.borrow().up_backends(1), vec![0]);
    }

    #[tokio::test]
    async fn timeout_counts_as_failure() {
        let srv = http_server(0).await; // accepts, never answers
        let cfg = config(srv.addr, "{ type: http, path: /health, interval: 100ms, timeout: 50ms, rise: 1, fall: 2 }");
        let (_handle, mut rx) = HealthChecker::spawn(&cfg);
        wait_for(&mut rx, false, Duration::from_secs(2)).await;
        let err = check_once(&cfg.vips[0].health_check.as_ref().unwrap().kind, srv.addr, Duration::from_millis(50)).await;
        assert!(err.unwrap_err().starts_with("timeout"));
    }

    #[tokio::test]
    async fn dropping_the_handle_stops_the_checks() {
        let srv = http_server(200).await;
        let cfg = config(srv.addr, "{ type: http, path: /health, interval: 100ms, timeout: 50ms }");
        let (handle, _rx) = HealthChecker::spawn(&cfg);
        tokio::time::sleep(Duration::from_millis(150)).await;
        drop(handle);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let n = srv.served[0].load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(srv.served[0].load(Ordering::SeqCst), n);
    }
}
