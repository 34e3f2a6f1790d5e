use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn parse(yaml: &str) -> Result<RuntimeConfig, String> {
    yaml_serde::from_str(yaml).map_err(|e| e.to_string())
}

#[test]
fn parses_both_schedulers_and_defaults() {
    assert_eq!(parse("{ workers: 1, scheduler: per_core }").unwrap(), RuntimeConfig { workers: 1, scheduler: Scheduler::PerCore });
    assert_eq!(parse("{ workers: 3, scheduler: shared }").unwrap(), RuntimeConfig { workers: 3, scheduler: Scheduler::Shared });
    let d = parse("{}").unwrap();
    assert_eq!(d, RuntimeConfig::default());
    assert_eq!(d.scheduler, Scheduler::Shared);
    let tokio_default =
        std::env::var("TOKIO_WORKER_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| std::thread::available_parallelism().unwrap().get());
    assert_eq!(d.workers, tokio_default);
    assert_eq!(Scheduler::PerCore.as_str(), "per_core");
}

#[test]
fn default_workers_follow_tokio_worker_threads() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(workers_or_cpus(Some("1")), 1);
    assert_eq!(workers_or_cpus(Some(" 3 ")), 3);
    assert_eq!(workers_or_cpus(None), cpus);
    // Invalid values fall back to the CPU count, as Tokio's own reading does not.
    assert_eq!(workers_or_cpus(Some("0")), cpus);
    assert_eq!(workers_or_cpus(Some("x")), cpus);
}

#[test]
fn refuses_bad_values_by_name() {
    let e = parse("{ workers: 0 }").unwrap_err();
    assert!(e.contains("workers: 0") && e.contains("at least 1"), "{e}");
    let e = parse("{ workers: 5000 }").unwrap_err();
    assert!(e.contains("5000") && e.contains("1024"), "{e}");
    let e = parse("{ workers: -1 }").unwrap_err();
    assert!(e.contains("-1"), "{e}");
    let e = parse("{ scheduler: percore }").unwrap_err();
    assert!(e.contains("percore") && e.contains("per_core") && e.contains("shared"), "{e}");
    let e = parse("{ worker: 2 }").unwrap_err();
    assert!(e.contains("unknown field") && e.contains("worker"), "{e}");
    assert!(Runtimes::start(&RuntimeConfig { workers: 0, scheduler: Scheduler::PerCore }, "t").is_err());
}

/// Serves one byte back per connection on every listener, recording the
/// thread that accepted it; returns the distinct threads seen.
fn threads_serving(rts: &Runtimes, conns: usize) -> usize {
    let listeners = rts.bind("127.0.0.1:0".parse().unwrap(), 128).unwrap();
    let addr = listeners[0].local_addr().unwrap();
    assert!(listeners.iter().all(|l| l.local_addr().unwrap() == addr), "every listener on one port");
    let seen = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let served = Arc::new(AtomicUsize::new(0));
    for (l, h) in listeners.into_iter().zip(rts.workers().iter().cycle()) {
        let (seen, served) = (seen.clone(), served.clone());
        h.spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else { return };
                seen.lock().unwrap().insert(std::thread::current().id());
                served.fetch_add(1, Ordering::Relaxed);
                let _ = s.write_all(b"k").await;
            }
        });
    }
    rts.block_on(async {
        for _ in 0..conns {
            let mut c = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr)).await.unwrap().unwrap();
            let mut b = [0u8; 1];
            tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut b)).await.unwrap().unwrap();
        }
    });
    assert_eq!(served.load(Ordering::Relaxed), conns);
    let n = seen.lock().unwrap().len();
    n
}

#[test]
fn per_core_spreads_connections_over_its_threads() {
    let rts = Runtimes::start(&RuntimeConfig { workers: 2, scheduler: Scheduler::PerCore }, "t").unwrap();
    assert_eq!(rts.workers().len(), 2);
    assert_eq!(rts.scheduler(), Scheduler::PerCore);
    // The kernel picks a listener by a hash of the client's port: 64
    // connections all landing on one of two is a 2^-63 chance.
    assert_eq!(threads_serving(&rts, 64), 2);
}

#[test]
fn shared_has_one_listener_and_serves() {
    let rts = Runtimes::start(&RuntimeConfig { workers: 2, scheduler: Scheduler::Shared }, "t").unwrap();
    assert_eq!(rts.workers().len(), 1);
    assert!(threads_serving(&rts, 8) >= 1);
    // No SO_REUSEPORT: a second bind of the same port fails.
    let l = rts.bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
    let addr = l[0].local_addr().unwrap();
    assert!(rts.bind(addr, 16).is_err());
}

#[test]
fn dropping_stops_the_worker_threads() {
    let rts = Runtimes::start(&RuntimeConfig { workers: 3, scheduler: Scheduler::PerCore }, "t").unwrap();
    let alive = Arc::new(());
    for h in &rts.workers()[1..] {
        let a = alive.clone();
        h.spawn(async move {
            let _a = a;
            std::future::pending::<()>().await
        });
    }
    drop(rts);
    // Each thread's runtime was dropped (and its tasks with it) before
    // the drop returned.
    assert_eq!(Arc::strong_count(&alive), 1);
}
