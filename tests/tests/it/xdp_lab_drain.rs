//! Draining with real traffic: a reload that removes a backend with
//! `conntrack.drain_timeout` set keeps that backend's established flows
//! (it gets no new ones) until they end or the timeout passes, then removes
//! it; a half-closed download keeps it too.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use lb_user::stats::Report;
use xdplb_tests::{
    http,
    lab::{
        config::{ConfigFile, LbConfig, Vip},
        Host, Lab,
    },
    lbuser::LbUser,
    netns, require_root,
};

const VIP: &str = "198.18.100.1:80";

fn web(lab: &Lab, backends: &[u8], drain: &str) -> LbConfig {
    LbConfig::new(lab).maglev(251, Some(7)).extra(&format!("conntrack: {{ drain_timeout: {drain} }}")).vip(Vip::new("web", "198.18.100.1", 80).backends(
        backends.iter().copied(),
        8080,
        false,
    ))
}

/// A two-backend lab with lb-user attached, both backends in `web` with
/// `drain` as the drain timeout: the start every test here shares.
fn attached(drain: &str) -> (Lab, ConfigFile, LbUser) {
    let mut lab = Lab::up_unique("xt", 2).unwrap();
    lab.start_backends().unwrap();
    let config = web(&lab, &[1, 2], drain).write().unwrap();
    let lb = LbUser::attach_config(&lab.ns(Host::Lb), &lab.lb_client_iface(), config.path()).unwrap();
    (lab, config, lb)
}

/// Who served each of `n` requests, each on a new connection.
fn served_by(lab: &Lab, n: usize) -> BTreeMap<String, usize> {
    lab.served_by(VIP.parse().unwrap(), n).unwrap()
}

/// A kept-alive connection from the client and the backend (1-based) it reached.
fn long_lived(lab: &Lab) -> (http::KeepAlive, u8) {
    lab.keep_alive(VIP.parse().unwrap()).unwrap()
}

fn backend_active(lab: &Lab, i: u8) -> bool {
    let label = lab.backend_addr(i, false).to_string();
    Report::read_pinned(&lab.lb_client_iface()).unwrap().backend_meta.values().any(|m| m.label == label && m.active)
}

#[test]
fn a_removed_backend_keeps_its_long_lived_connection_until_it_ends() {
    require_root!();
    let (lab, config, lb) = attached("60s");
    let (mut conn, keeper) = long_lived(&lab);
    let other = 3 - keeper;

    // Remove the connection's backend from the file.
    let seen = lb.log_len();
    config.replace(&web(&lab, &[other], "60s").yaml()).unwrap();
    lb.signal(libc::SIGHUP);
    let seen = lb.wait_for_log("reload applied", seen, Duration::from_secs(10)).unwrap();
    for _ in 0..5 {
        assert_eq!(conn.get("/").unwrap().body.trim(), format!("be{keeper}"), "the draining backend keeps its connection");
    }
    let fresh = served_by(&lab, 20);
    assert_eq!(fresh.keys().cloned().collect::<Vec<_>>(), [format!("be{other}")], "new flows avoid the draining backend: {fresh:?}");
    assert!(backend_active(&lab, keeper), "still in the maps while draining");

    // The connection ends: the drain is done long before its 60 s.
    drop(conn);
    lb.wait_for_log("reason=\"its last flow ended\"", seen, Duration::from_secs(15)).unwrap();
    assert!(!backend_active(&lab, keeper), "removed from the maps once drained");
    assert!(lb.stop().unwrap().success());
}

#[test]
fn the_drain_timeout_ends_a_drain_whatever_the_flows() {
    require_root!();
    let (lab, config, lb) = attached("2s");
    let (mut conn, keeper) = long_lived(&lab);

    let seen = lb.log_len();
    config.replace(&web(&lab, &[3 - keeper], "2s").yaml()).unwrap();
    lb.signal(libc::SIGHUP);
    let seen = lb.wait_for_log("reload applied", seen, Duration::from_secs(10)).unwrap();
    assert_eq!(conn.get("/").unwrap().body.trim(), format!("be{keeper}"), "kept while draining");
    lb.wait_for_log("reason=\"drain_timeout passed\"", seen, Duration::from_secs(15)).unwrap();
    assert!(!backend_active(&lab, keeper));
    // Removed: the flow chooses again and lands on a backend that knows
    // nothing of it, which resets it.
    assert!(conn.get("/").is_err(), "the connection is cut once the drain timed out");
    assert!(lb.stop().unwrap().success());
}

/// A client that half-closes (its FIN right after the request) while its
/// download still runs keeps its draining backend until the download ends,
/// even across a pause longer than the closing grace: one FIN leaves the
/// flow open for drains (docs/operations.md, "Drain states"); then the
/// backend's FIN closes it and the drain ends on its own, after the
/// download and not during its pause.
#[test]
fn a_half_closed_download_keeps_its_draining_backend_across_a_pause_until_it_ends() {
    require_root!();
    let (lab, config, lb) = attached("60s");
    let vip: SocketAddr = VIP.parse().unwrap();
    let mut conn = netns::run_in(&lab.ns(Host::Client), move || Ok(TcpStream::connect_timeout(&vip, Duration::from_secs(5))?)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // 2 lines 7.5 s apart: a quiet half-closed flow for well over the
    // closing grace (5 s) plus the drain's once-a-second count.
    conn.write_all(b"GET /stream?chunks=2&interval_ms=7500 HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n").unwrap();
    conn.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("chunk 1/2") {
        let n = conn.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended before its first line: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    // The first line of the body is "<backend> chunk 1/2".
    let keeper: u8 = text
        .lines()
        .find_map(|l| l.strip_suffix(" chunk 1/2"))
        .and_then(|name| name.strip_prefix("be")?.parse().ok())
        .unwrap_or_else(|| panic!("no backend name in {text:?}"));

    let seen = lb.log_len();
    config.replace(&web(&lab, &[3 - keeper], "60s").yaml()).unwrap();
    lb.signal(libc::SIGHUP);
    let seen = lb.wait_for_log("reload applied", seen, Duration::from_secs(10)).unwrap();
    let rest = conn.read_to_end(&mut got);
    let downloaded = Instant::now();
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(rest.is_ok() && text.contains(&format!("be{keeper} chunk 2/2")), "the half-closed download was cut ({rest:?}): {text:?}");
    let (_, ended) = lb.wait_for_log_at("reason=\"its last flow ended\"", seen, Duration::from_secs(15)).unwrap();
    assert!(ended > downloaded, "the drain ended {:?} before the download did", downloaded - ended);
    assert!(!backend_active(&lab, keeper), "removed from the maps once drained");
    assert!(lb.stop().unwrap().success());
}
