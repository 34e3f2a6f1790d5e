//! alb on the shared userspace core, end to end: health state that
//! survives a reload, a config file renamed into place with its old mtime,
//! and allowlist rules that refuse an emptied list on reload.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::*;
use hyper::StatusCode;

async fn served_by(addr: std::net::SocketAddr, n: usize) -> Vec<String> {
    let mut v = Vec::new();
    for _ in 0..n {
        let (st, body) = http(addr, "GET", "/", "").await;
        assert_eq!(st, StatusCode::OK, "{body}");
        v.push(backend_of(&body));
    }
    v
}

/// Waits (bounded) until `cond` holds.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A backend that is down before a reload is still down right after it,
/// even when the reload replaces its backend object (new weight) and
/// restarts its check (new interval): the scheduler keeps the state by
/// `pool/backend-id`, and the new object takes it over before it could get
/// a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_backend_stays_down_across_reload() {
    let (b1, b2) = (backend("b1").await, backend("b2").await);
    let dir = tmp();
    let config = |interval: &str, weight: u32| {
        format!(
            "protocol: http\nlisten: [\"127.0.0.1:0\"]\nadmin: {{listen: \"127.0.0.1:0\"}}\n\
             reload: {{poll_interval: 0}}\n\
             health: {{path: /healthz, interval: {interval}, timeout: 150ms, rise: 2, fall: 2}}\n\
             backend_servers:\n  - {}\n  - {{url: \"{}\", id: b2, weight: {weight}}}\n",
            b1.url(),
            b2.url()
        )
    };
    // Bare seconds, as alb's file always took them.
    let alb = start_alb(dir.path(), &config("0.2", 1)).await;
    let (addr, admin) = (alb.listen_addrs()[0], alb.admin_addr().unwrap());
    b2.health_ok.store(false, Ordering::Relaxed);
    let pool = || alb.state.pools()[0].clone();
    until("b2 marked down", || !pool().snapshot()[1].is_healthy()).await;
    let before = pool().snapshot()[1].clone();

    // From now on b2's checks pass, but the reload's interval of 1h means
    // only one check (at the restart) runs during this test: rise 2 keeps
    // it down. A reload that reset the state would bring it up at once.
    b2.health_ok.store(true, Ordering::Relaxed);
    std::fs::write(dir.path().join("alb.yaml"), config("1h", 2)).unwrap();
    alb.reload().unwrap();
    let after = pool().snapshot()[1].clone();
    assert!(!std::sync::Arc::ptr_eq(&before, &after), "the new weight made a new backend object");
    assert_eq!(after.weight, 2);
    assert!(!after.is_healthy(), "still down right after the reload");
    let t = served_by(addr, 6).await;
    assert!(t.iter().all(|b| b == "b1"), "{t:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!after.is_healthy(), "one good check is not rise 2");
    let (st, m) = http(admin, "GET", "/metrics", "").await;
    assert_eq!(st, StatusCode::OK);
    assert!(m.contains("alb_backend_healthy{backend=\"b2\",pool=\"default\"} 0"), "{m}");
    alb.shutdown().await;
}

/// A config renamed into place with the old file's size and mtime (as
/// `cp -p` or a deploy tool leaves it) is seen by its new inode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_renamed_into_place_with_old_mtime_reloads() {
    let (b1, b2) = (backend("b1").await, backend("b2").await);
    let dir = tmp();
    let config = |b: &Backend| {
        let y = format!(
            "protocol: http\nlisten: [\"127.0.0.1:0\"]\nadmin: {{enabled: false}}\n\
             health: {{enabled: false}}\nreload: {{poll_interval: 50ms}}\nbackend_servers: [\"{}\"]\n",
            b.url()
        );
        // Same length for both files, whatever the two ports are.
        format!("{y}#{}\n", "x".repeat(40 - b.url().len()))
    };
    let (old, new) = (config(&b1), config(&b2));
    assert_eq!(old.len(), new.len());
    let alb = start_alb(dir.path(), &old).await;
    let addr = alb.listen_addrs()[0];
    assert_eq!(served_by(addr, 2).await, ["b1", "b1"]);

    let live = dir.path().join("alb.yaml");
    let staged = dir.path().join("alb.yaml.new");
    std::fs::write(&staged, &new).unwrap();
    let mtime = std::fs::metadata(&live).unwrap().modified().unwrap();
    std::fs::File::options().write(true).open(&staged).unwrap().set_modified(mtime).unwrap();
    std::fs::rename(&staged, &live).unwrap();
    until("the renamed config is loaded", || alb.state.cfg().backend_servers[0].url() == b2.url()).await;
    assert_eq!(served_by(addr, 2).await, ["b2", "b2"]);
    alb.shutdown().await;
}

/// An edit that lands after alb read its config but before the first poll
/// is reloaded: the watch dates from before the read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_while_alb_starts_is_reloaded() {
    let (b1, b2) = (backend("b1").await, backend("b2").await);
    let dir = tmp();
    let config = |b: &Backend| {
        format!(
            "protocol: http\nlisten: [\"127.0.0.1:0\"]\nadmin: {{enabled: false}}\n\
             health: {{enabled: false}}\nreload: {{poll_interval: 50ms}}\nbackend_servers: [\"{}\"]\n",
            b.url()
        )
    };
    let live = dir.path().join("alb.yaml");
    std::fs::write(&live, config(&b1)).unwrap();
    let file = ConfigFile::new(&live);
    let cfg = alb::Config::load(&live).unwrap();
    std::fs::write(&live, format!("{}# edited while starting\n", config(&b2))).unwrap();
    let alb = alb::start(cfg, Some(file)).await.unwrap();
    until("the edit made while starting is loaded", || alb.state.cfg().backend_servers[0].url() == b2.url()).await;
    assert_eq!(served_by(alb.listen_addrs()[0], 2).await, ["b2", "b2"]);
    alb.shutdown().await;
}

/// An allowlist emptied by mistake is a config error naming the key, not
/// "allow everyone": the reload is refused and the running list stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emptied_allowlist_is_refused_on_reload() {
    let b1 = backend("b1").await;
    let dir = tmp();
    let config = |ips: &str| {
        format!(
            "protocol: http\nlisten: [\"127.0.0.1:0\"]\nadmin: {{enabled: false}}\n\
             health: {{enabled: false}}\nreload: {{poll_interval: 0}}\n\
             waf: {{allowedIPs: {ips}}}\nbackend_servers: [\"{}\"]\n",
            b1.url()
        )
    };
    let alb = start_alb(dir.path(), &config("[127.0.0.1]")).await;
    let addr = alb.listen_addrs()[0];
    assert_eq!(served_by(addr, 1).await, ["b1"]);
    std::fs::write(dir.path().join("alb.yaml"), config("[]")).unwrap();
    let e = alb.reload().unwrap_err().to_string();
    assert!(e.contains("waf.allowedIPs") && e.contains("0.0.0.0/0"), "{e}");
    std::fs::write(dir.path().join("alb.yaml"), config("[127.0.0.1/8]")).unwrap();
    let e = alb.reload().unwrap_err().to_string();
    assert!(e.contains("waf.allowedIPs[0]") && e.contains("127.0.0.0/8"), "{e}");
    assert_eq!(served_by(addr, 1).await, ["b1"], "the running allowlist stays");
    alb.shutdown().await;
}
