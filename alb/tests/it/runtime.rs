//! The `runtime:` key: `per_core` runtimes each accept on their own
//! SO_REUSEPORT listener, and reload still works; bad values are refused.

use std::collections::HashMap;
use std::time::Duration;

use hyper::StatusCode;
use lb_common::userspace::runtime::{RuntimeConfig, Runtimes, Scheduler};

use crate::common::*;

fn config(backend_url: &str, runtime: &str) -> String {
    format!(
        "protocol: http\nlisten: [\"127.0.0.1:0\"]\nadmin: {{enabled: false}}\nhealth: {{enabled: false}}\nreload: {{poll_interval: 0}}\n\
         runtime: {runtime}\nbackend_servers:\n  - {}\n",
        backend_url
    )
}

/// `n` requests, each on a fresh connection (so the kernel's SO_REUSEPORT
/// hash spreads them over the listeners), tallied by backend. A listener
/// without an accept loop would leave its share unanswered: the timeout
/// turns that into a failure instead of a hang.
async fn tally(addr: std::net::SocketAddr, n: usize) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for i in 0..n {
        let (st, body) = tokio::time::timeout(Duration::from_secs(5), http(addr, "GET", "/", "")).await.unwrap_or_else(|_| panic!("request {i} unanswered"));
        assert_eq!(st, StatusCode::OK, "{body}");
        *m.entry(backend_of(&body)).or_default() += 1;
    }
    m
}

#[test]
fn per_core_runtimes_all_serve_and_reload_applies() {
    init_log();
    let dir = tmp();
    let p = dir.path().join("alb.yaml");
    let rc = RuntimeConfig { workers: 2, scheduler: Scheduler::PerCore };
    let rts = Runtimes::start(&rc, "alb-test").unwrap();
    assert_eq!(rts.workers().len(), 2);
    rts.block_on(async {
        let (b1, b2) = (backend("b1").await, backend("b2").await);
        std::fs::write(&p, config(&b1.url(), "{workers: 2, scheduler: per_core}")).unwrap();
        let file = ConfigFile::new(&p);
        let cfg = alb::Config::load(&p).unwrap();
        assert_eq!(cfg.runtime, rc);
        let alb = alb::start_on(cfg, Some(file), Some(&rts)).await.unwrap();
        let addr = alb.listen_addrs()[0];
        // 64 connections over two listeners: one listener getting none is
        // a 2^-63 chance, so each runtime's accept loop is exercised.
        assert_eq!(tally(addr, 64).await, HashMap::from([("b1".to_string(), 64)]));
        // Reload runs once, on the main runtime, and both runtimes see it.
        std::fs::write(&p, config(&b2.url(), "{workers: 2, scheduler: per_core}")).unwrap();
        alb.reload().unwrap();
        assert_eq!(tally(addr, 64).await, HashMap::from([("b2".to_string(), 64)]));
        assert_eq!(alb.shutdown().await, 0);
    });
}

#[test]
fn runtime_key_is_validated() {
    let b = "http://127.0.0.1:9";
    let e = alb::Config::parse(&config(b, "{workers: 0}")).unwrap_err().to_string();
    assert!(e.contains("runtime: workers: 0") && e.contains("at least 1"), "{e}");
    let e = alb::Config::parse(&config(b, "{scheduler: per_thread}")).unwrap_err().to_string();
    assert!(e.contains("runtime.scheduler") && e.contains("per_core"), "{e}");
    let e = alb::Config::parse(&config(b, "{workers: 1, pinned: true}")).unwrap_err().to_string();
    assert!(e.contains("pinned"), "{e}");
    // Left out: today's shared multi-thread runtime.
    let c = alb::Config::parse(&config(b, "{}")).unwrap();
    assert_eq!(c.runtime.scheduler, Scheduler::Shared);
}
