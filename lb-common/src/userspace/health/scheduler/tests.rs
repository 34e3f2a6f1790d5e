use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::userspace::health::{HttpProbe, TcpProbe};

/// An HTTP server answering every request with `status`; counts the
/// answers per status ([200, other]). `status == 0`: accept, never answer.
struct HttpServer {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    served: Arc<[AtomicUsize; 2]>,
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
                let req = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                assert!(req.starts_with("get /health http/1.1\r\n"), "{req}");
                assert!(req.contains("\r\nhost: 127.0.0.1:") && req.contains("connection: close"), "{req}");
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

fn target(key: &str, addr: SocketAddr, probe: Arc<dyn Probe>, interval_ms: u64, timeout_ms: u64, rise: u32, fall: u32) -> Target {
    Target {
        key: key.into(),
        label: format!("test={key}"),
        addr,
        probe,
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(timeout_ms),
        rise,
        fall,
    }
}

fn http() -> Arc<dyn Probe> {
    Arc::new(HttpProbe::new("/health", 200))
}

/// Scheduling slack on top of `n × interval` for a state change: one
/// interval of phase, the check's own time, and a loaded machine's timer
/// lateness. Far below what a wrong interval (e.g. seconds) would take.
const SLACK_MS: u64 = 600;

async fn wait_for(rx: &mut watch::Receiver<HealthMap>, key: &str, up: bool, limit: Duration) -> Duration {
    let start = Instant::now();
    tokio::time::timeout(limit, rx.wait_for(|m| m.get(key) == Some(&up))).await.expect("state change in time").unwrap();
    start.elapsed()
}

async fn wait_served(srv: &HttpServer, which: usize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while srv.served[which].load(Ordering::SeqCst) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(srv.served[which].load(Ordering::SeqCst) >= n, "{n} checks answered");
}

#[tokio::test]
async fn http_status_mismatch_counts_and_rise_fall_are_exact() {
    let srv = http_server(200).await;
    let mut s = Scheduler::new();
    let mut rx = s.subscribe();
    s.sync(vec![target("web", srv.addr, http(), 100, 80, 2, 3)]);
    assert_eq!(s.len(), 1);
    assert_eq!(s.is_up("web"), Some(true), "starts up");
    wait_served(&srv, 0, 3).await;
    assert_eq!(s.is_up("web"), Some(true));

    // 204 is not the expected 200: a failure. Down after exactly `fall`.
    srv.status.store(204, Ordering::SeqCst);
    let took = wait_for(&mut rx, "web", false, Duration::from_secs(2)).await;
    assert_eq!(srv.served[1].load(Ordering::SeqCst), 3);
    assert!(took <= Duration::from_millis(3 * 100 + SLACK_MS), "{took:?}");

    srv.status.store(200, Ordering::SeqCst);
    let before = srv.served[0].load(Ordering::SeqCst);
    let took = wait_for(&mut rx, "web", true, Duration::from_secs(2)).await;
    assert_eq!(srv.served[0].load(Ordering::SeqCst) - before, 2);
    assert!(took <= Duration::from_millis(2 * 100 + SLACK_MS), "{took:?}");
}

#[tokio::test]
async fn tcp_check_goes_down_when_the_listener_goes() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let mut s = Scheduler::new();
    let mut rx = s.subscribe();
    s.sync(vec![target("t", addr, Arc::new(TcpProbe), 100, 50, 1, 2)]);
    drop(l);
    let took = wait_for(&mut rx, "t", false, Duration::from_secs(2)).await;
    assert!(took <= Duration::from_millis(2 * 100 + SLACK_MS), "{took:?}");
}

#[tokio::test]
async fn a_timeout_is_a_failure() {
    let srv = http_server(0).await; // accepts, never answers
    let mut s = Scheduler::new();
    let mut rx = s.subscribe();
    s.sync(vec![target("hang", srv.addr, http(), 100, 50, 1, 2)]);
    wait_for(&mut rx, "hang", false, Duration::from_secs(2)).await;
    let err = check_within(&*http(), srv.addr, Duration::from_millis(50)).await.unwrap_err();
    assert!(err.starts_with("timeout"), "{err}");
}

#[tokio::test]
async fn sync_keeps_the_state_of_targets_that_stay() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let srv = http_server(200).await;
    let mut s = Scheduler::new();
    let mut rx = s.subscribe();
    let down = target("vip/dead", dead_addr, Arc::new(TcpProbe), 100, 50, 3, 1);
    s.sync(vec![down.clone(), target("vip/live", srv.addr, http(), 100, 80, 1, 1)]);
    wait_for(&mut rx, "vip/dead", false, Duration::from_secs(2)).await;

    // A reload with the same dead target and a new one: the dead one stays
    // down (it would need `rise` = 3 good checks), the new one starts up.
    s.sync(vec![down.clone(), target("vip/new", srv.addr, http(), 100, 80, 1, 1)]);
    assert_eq!(s.is_up("vip/dead"), Some(false), "kept down across the sync");
    assert_eq!(s.is_up("vip/new"), Some(true));
    assert_eq!(s.is_up("vip/live"), None, "removed targets leave the map");
    assert_eq!(s.len(), 2);
    // A changed check (new interval) restarts, still in its current state.
    s.sync(vec![Target { interval: Duration::from_millis(150), ..down }]);
    assert_eq!(s.is_up("vip/dead"), Some(false));
    assert_eq!(s.state().len(), 1);
}

#[tokio::test]
async fn dropping_the_scheduler_stops_the_checks() {
    let srv = http_server(200).await;
    let mut s = Scheduler::new();
    s.sync(vec![target("web", srv.addr, http(), 100, 50, 1, 1)]);
    wait_served(&srv, 0, 1).await;
    drop(s);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let n = srv.served[0].load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(srv.served[0].load(Ordering::SeqCst), n);
}
