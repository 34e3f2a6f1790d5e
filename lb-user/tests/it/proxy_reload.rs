//! `lb-user proxy` hot reload: backends and VIPs added and removed, the
//! allowlist and limits changed, broken or unappliable configs refused (the
//! old config stays), health state carried over; triggered in-process, by a
//! change of the config file, and by SIGHUP to the binary.

use std::{
    collections::{HashMap, HashSet},
    io::{BufRead, BufReader as StdBufReader},
    net::SocketAddr,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::proxy_support::*;
use lb_common::userspace::watch::ConfigFile;
use lb_user::{
    config::Config,
    proxy::{Proxy, ProxyOptions},
};

fn parse(yaml: &str) -> Config {
    Config::parse(yaml, "new.yaml").unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn reloads(p: &Running, result: &str) -> f64 {
    metric(&p.metrics(), "xdplb_proxy_reloads_total", &[("result", result)]).unwrap()
}

/// Which backends answer `n` new connections from `src`.
async fn answers(src: &str, vip: SocketAddr, n: usize) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        *seen.entry(request(src, vip).await.expect("a request through the proxy")).or_insert(0) += 1;
    }
    seen
}

/// A free port on 127.0.0.1 (for VIPs the proxy binds itself on reload).
fn free_port() -> u16 {
    reserve().1
}

/// A config file in the temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str, text: &str) -> TempFile {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let path = std::env::temp_dir().join(format!("xdplb-proxy-{tag}-{}-{nanos}.yaml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    /// Replaces the file at once (write a temporary file, rename it over),
    /// as careful tools do: the watcher never sees half a file.
    fn write(&self, text: &str) {
        let tmp = self.0.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.0).unwrap();
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn an_added_backend_gets_new_connections() {
    let (b0, b1) = (greeter("b0"), greeter("b1"));
    let (l, port) = reserve();
    let yaml1 = config_yaml(&[VipSpec { name: "web", port, algorithm: "round_robin", backends: &[&b0], health_check: "" }], "");
    let yaml2 = config_yaml(&[VipSpec { name: "web", port, algorithm: "round_robin", backends: &[&b0, &b1], health_check: "" }], "");
    let mut p = start(&yaml1, vec![("web", l)], None).await;
    let vip = p.vip("web");
    assert_eq!(answers("127.0.0.1", vip, 4).await.keys().collect::<Vec<_>>(), ["b0"]);
    assert_eq!(reloads(&p, "applied"), 0.0);

    let summary = p.handle.reload(parse(&yaml2)).await.unwrap();
    assert_eq!(summary, format!("vip web: +{}", b1.addr));
    assert_eq!(reloads(&p, "applied"), 1.0);
    let seen = answers("127.0.0.1", vip, 6).await;
    assert_eq!((seen["b0"], seen["b1"]), (3, 3), "round robin over both: {seen:?}");
    let m = p.metrics();
    assert_eq!(metric(&m, "xdplb_proxy_connections_total", &[("vip", "web"), ("backend", &b1.addr.to_string())]), Some(3.0));
    assert_eq!(metric(&m, "xdplb_proxy_backend_up", &[("vip", "web"), ("backend", &b1.addr.to_string())]), Some(1.0));
    // The same config again: applied, nothing to do.
    assert_eq!(p.handle.reload(parse(&yaml2)).await.unwrap(), "no change");
    p.stop();
    p.handle.wait().await.unwrap();
}

#[tokio::test]
async fn a_removed_backend_gets_no_new_connections_and_its_open_one_keeps_working() {
    let (b0, b1) = (greeter("b0"), greeter("b1"));
    let (l, port) = reserve();
    let yaml1 = config_yaml(&[VipSpec { name: "web", port, algorithm: "round_robin", backends: &[&b0, &b1], health_check: "" }], "");
    let yaml2 = config_yaml(&[VipSpec { name: "web", port, algorithm: "round_robin", backends: &[&b0], health_check: "" }], "");
    let mut p = start(&yaml1, vec![("web", l)], None).await;
    let vip = p.vip("web");
    let (c0, n0) = open("127.0.0.1", vip).await.unwrap();
    let (mut c1, n1) = open("127.0.0.1", vip).await.unwrap();
    assert_eq!((n0.as_str(), n1.as_str()), ("b0", "b1"));

    assert_eq!(p.handle.reload(parse(&yaml2)).await.unwrap(), format!("vip web: -{}", b1.addr));
    assert_eq!(answers("127.0.0.1", vip, 8).await.keys().collect::<Vec<_>>(), ["b0"]);
    for i in 0..3 {
        assert_eq!(echo(&mut c1, &format!("still {i}")).await.unwrap(), format!("still {i}"), "the open connection to b1");
    }
    let b1_key = b1.addr.to_string();
    assert_eq!(metric(&p.metrics(), "xdplb_proxy_connections_total", &[("vip", "web"), ("backend", &b1_key)]), None, "b1 is no longer exported");
    // Both open connections still count (once the proxy has seen the others close).
    let deadline = Instant::now() + Duration::from_secs(2);
    while metric(&p.metrics(), "xdplb_proxy_active_connections", &[("vip", "web")]) != Some(2.0) {
        assert!(Instant::now() < deadline, "{}", p.metrics());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop((c0, c1));
    p.stop();
    p.handle.wait().await.unwrap();
}

#[tokio::test]
async fn a_broken_or_unappliable_config_is_refused_and_the_old_one_stays() {
    let (b0, b1) = (greeter("b0"), greeter("b1"));
    let (l, port) = reserve();
    let yaml = config_yaml(&[VipSpec { name: "web", port, algorithm: "round_robin", backends: &[&b0], health_check: "" }], "");
    let file = TempFile::new("broken", &yaml);
    let config = parse(&yaml);
    let options = ProxyOptions {
        listeners: [("web".to_owned(), l)].into(),
        config_file: Some(ConfigFile::new(&file.0)),
        connect_timeout: Duration::from_millis(500),
        ..ProxyOptions::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = Proxy::start(config, options, async move {
        let _ = rx.await;
    })
    .await
    .unwrap();
    let mut p = Running { handle, shutdown: Some(tx) };
    let vip = p.vip("web");
    let (mut held, _) = open("127.0.0.1", vip).await.unwrap();

    // A validation error: the file's problems, on one line.
    let bad = config_yaml(&[VipSpec { name: "web", port, algorithm: "round_robin", backends: &[&b0, &b1], health_check: "" }], "")
        .replace(&format!("port: {} }}", b1.addr.port()), &format!("port: {}, weight: 500 }}", b1.addr.port()));
    file.write(&bad);
    let err = p.handle.reload_file().await.unwrap_err().to_string();
    assert!(err.contains("weight: 500 is out of range") && err.contains(&*file.0.to_string_lossy()), "{err}");
    assert!(!err.contains('\n'), "{err}");
    // Not YAML at all.
    file.write("vips: [ {");
    assert!(p.handle.reload_file().await.is_err());
    // Valid, but the metrics endpoint cannot move at runtime.
    let moved = parse(&(yaml.clone() + "metrics: { listen: \"127.0.0.1:1\" }\n"));
    let err = p.handle.reload(moved).await.unwrap_err().to_string();
    assert!(err.contains("metrics.listen cannot change at runtime"), "{err}");
    // Valid, but a new VIP's port is taken: nothing of it is applied (not
    // even the backend added to web in the same reload).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let both = config_yaml(
        &[
            VipSpec { name: "web", port, algorithm: "round_robin", backends: &[&b0, &b1], health_check: "" },
            VipSpec { name: "api", port: taken.local_addr().unwrap().port(), algorithm: "maglev", backends: &[&b0], health_check: "" },
        ],
        "",
    );
    let err = p.handle.reload(parse(&both)).await.unwrap_err().to_string();
    assert!(err.contains("VIP api: cannot listen on tcp"), "{err}");

    assert_eq!(reloads(&p, "refused"), 4.0);
    assert_eq!(reloads(&p, "applied"), 0.0);
    assert_eq!(p.handle.listening().len(), 1);
    assert_eq!(*p.handle.config(), parse(&yaml));
    assert_eq!(answers("127.0.0.1", vip, 4).await.keys().collect::<Vec<_>>(), ["b0"], "still the old config");
    assert_eq!(echo(&mut held, "x").await.unwrap(), "x");

    // Fixed: applied.
    drop(taken);
    file.write(&config_yaml(&[VipSpec { name: "web", port, algorithm: "round_robin", backends: &[&b0, &b1], health_check: "" }], ""));
    p.handle.reload_file().await.unwrap();
    assert_eq!(answers("127.0.0.1", vip, 4).await.len(), 2);
    assert_eq!(reloads(&p, "applied"), 1.0);
    p.stop();
    drop(held);
    p.handle.wait().await.unwrap();
}

#[tokio::test]
async fn allowlist_and_limit_changes_apply_to_new_connections() {
    let b0 = greeter("b0");
    let (l, port) = reserve();
    let vips = [VipSpec { name: "web", port, algorithm: "maglev", backends: &[&b0], health_check: "" }];
    let yaml1 = config_yaml(&vips, "allowlist: { cidrs: [127.0.0.1/32] }\nproxy: { max_conns_per_ip: 1 }\n");
    let yaml2 = config_yaml(&vips, "allowlist: { cidrs: [127.0.0.2/32, 127.0.0.3/32] }\nproxy: { max_conns_per_ip: 2 }\n");
    let mut p = start(&yaml1, vec![("web", l)], None).await;
    let vip = p.vip("web");
    let (mut c1, _) = open("127.0.0.1", vip).await.unwrap();
    assert!(request("127.0.0.2", vip).await.is_err(), "not in the allowlist yet");
    assert!(request("127.0.0.1", vip).await.is_err(), "one connection per IP");

    let summary = p.handle.reload(parse(&yaml2)).await.unwrap();
    assert_eq!(summary, "allowlist changed; limits max_conns_per_ip=2 max_new_conns_per_minute=0");
    assert!(request("127.0.0.1", vip).await.is_err(), "127.0.0.1 is no longer allowed");
    assert_eq!(echo(&mut c1, "open before").await.unwrap(), "open before", "its open connection keeps working");
    let (c2, _) = open("127.0.0.2", vip).await.unwrap();
    let (c3, _) = open("127.0.0.2", vip).await.unwrap();
    assert!(request("127.0.0.2", vip).await.is_err(), "the new limit: two per IP");
    assert_eq!(request("127.0.0.3", vip).await.unwrap(), "b0");
    let m = p.metrics();
    assert_eq!(metric(&m, "xdplb_proxy_rejected_total", &[("vip", "web"), ("reason", "allowlist")]), Some(2.0));
    assert_eq!(metric(&m, "xdplb_proxy_rejected_total", &[("vip", "web"), ("reason", "limit_concurrent")]), Some(2.0));
    drop((c1, c2, c3));
    p.stop();
    p.handle.wait().await.unwrap();
}

#[tokio::test]
async fn vips_are_added_moved_and_removed() {
    let (b0, b1) = (greeter("b0"), greeter("b1"));
    let (l, port) = reserve();
    let yaml1 = config_yaml(&[VipSpec { name: "old", port, algorithm: "maglev", backends: &[&b0], health_check: "" }], "");
    let mut p = start(&yaml1, vec![("old", l)], None).await;
    let old_vip = p.vip("old");
    let (mut held, _) = open("127.0.0.1", old_vip).await.unwrap();

    let new_port = free_port();
    let yaml2 = config_yaml(&[VipSpec { name: "new", port: new_port, algorithm: "maglev", backends: &[&b1], health_check: "" }], "");
    let summary = p.handle.reload(parse(&yaml2)).await.unwrap();
    assert_eq!(summary, format!("vip new added (tcp 127.0.0.1:{new_port}); vip old removed"));
    let listening = p.handle.listening();
    assert_eq!(listening.len(), 1);
    assert_eq!((listening[0].0.as_str(), listening[0].1.port()), ("new", new_port));
    assert_eq!(request("127.0.0.1", p.vip("new")).await.unwrap(), "b1");
    // The old VIP's listener is closed (once its accept loop has seen the stop).
    let deadline = Instant::now() + Duration::from_secs(2);
    while tokio::net::TcpStream::connect(old_vip).await.is_ok() {
        assert!(Instant::now() < deadline, "the removed VIP still accepts");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(echo(&mut held, "old vip").await.unwrap(), "old vip", "its open connection keeps working");
    let m = p.metrics();
    assert_eq!(metric(&m, "xdplb_proxy_active_connections", &[("vip", "old")]), None);
    assert_eq!(metric(&m, "xdplb_proxy_active_connections", &[("vip", "new")]), Some(0.0));

    // The same VIP name on another port: a new listener, the old one closes.
    let moved_port = free_port();
    let yaml3 = config_yaml(&[VipSpec { name: "new", port: moved_port, algorithm: "maglev", backends: &[&b1], health_check: "" }], "");
    let summary = p.handle.reload(parse(&yaml3)).await.unwrap();
    assert_eq!(summary, format!("vip new: moved to tcp 127.0.0.1:{moved_port}"));
    assert_eq!(request("127.0.0.1", p.vip("new")).await.unwrap(), "b1");
    p.stop();
    drop(held);
    p.handle.wait().await.unwrap();
}

#[tokio::test]
async fn a_down_backend_stays_down_across_a_reload() {
    let mut bs: Vec<_> = (0..3).map(|i| greeter(&format!("b{i}"))).collect();
    bs[1].stop();
    let (l, port) = reserve();
    let check = "{ type: tcp, interval: 100ms, timeout: 50ms, rise: 1, fall: 1 }";
    let yaml1 = config_yaml(&[VipSpec { name: "web", port, algorithm: "round_robin", backends: &[&bs[0], &bs[1]], health_check: check }], "");
    let yaml2 = config_yaml(&[VipSpec { name: "web", port, algorithm: "round_robin", backends: &[&bs[0], &bs[1], &bs[2]], health_check: check }], "");
    let mut p = start(&yaml1, vec![("web", l)], None).await;
    let mut health = p.handle.health();
    tokio::time::timeout(Duration::from_secs(2), health.wait_for(|s| !s.is_up(0, 1))).await.unwrap().unwrap();

    p.handle.reload(parse(&yaml2)).await.unwrap();
    assert_eq!(p.handle.health().borrow().up, vec![vec![true, false, true]], "b1 keeps its state, b2 starts up");
    let b1 = bs[1].addr.to_string();
    assert_eq!(metric(&p.metrics(), "xdplb_proxy_backend_up", &[("vip", "web"), ("backend", &b1)]), Some(0.0));
    let seen = answers("127.0.0.1", p.vip("web"), 6).await;
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), ["b0".to_owned(), "b2".to_owned()].into());
    // The restarted checks still work: b1 comes back.
    bs[1].restart().unwrap();
    tokio::time::timeout(Duration::from_secs(2), health.wait_for(|s| s.is_up(0, 1))).await.unwrap().unwrap();
    p.stop();
    p.handle.wait().await.unwrap();
}

#[tokio::test]
async fn a_changed_file_is_reloaded() {
    let (b0, b1) = (greeter("b0"), greeter("b1"));
    let (l, port) = reserve();
    let yaml1 = config_yaml(&[VipSpec { name: "web", port, algorithm: "round_robin", backends: &[&b0], health_check: "" }], "");
    let file = TempFile::new("watch", &yaml1);
    let options = ProxyOptions {
        listeners: [("web".to_owned(), l)].into(),
        config_file: Some(ConfigFile::new(&file.0)),
        watch_interval: Some(Duration::from_millis(50)),
        ..ProxyOptions::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = Proxy::start(parse(&yaml1), options, async move {
        let _ = rx.await;
    })
    .await
    .unwrap();
    let mut p = Running { handle, shutdown: Some(tx) };
    let vip = p.vip("web");
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(reloads(&p, "applied") + reloads(&p, "refused"), 0.0, "an unchanged file is not reloaded");

    file.write(&config_yaml(&[VipSpec { name: "web", port, algorithm: "round_robin", backends: &[&b0, &b1], health_check: "" }], ""));
    let deadline = Instant::now() + Duration::from_secs(3);
    while reloads(&p, "applied") < 1.0 {
        assert!(Instant::now() < deadline, "the change was not picked up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(answers("127.0.0.1", vip, 4).await.len(), 2);

    file.write("vips: [ {");
    let deadline = Instant::now() + Duration::from_secs(3);
    while reloads(&p, "refused") < 1.0 {
        assert!(Instant::now() < deadline, "the broken file was not noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(reloads(&p, "refused"), 1.0, "a broken file is tried once, not on every poll");
    assert_eq!(answers("127.0.0.1", vip, 4).await.len(), 2, "the last good config stays");
    p.stop();
    p.handle.wait().await.unwrap();
}

/// An edit that lands after the config was read but before the proxy polls
/// the file for the first time is reloaded: the watch dates from before the
/// read (a watch started by the proxy itself would take the edited file as
/// its baseline and run the old config until the next edit).
#[tokio::test]
async fn an_edit_while_the_proxy_starts_is_reloaded() {
    let (b0, b1) = (greeter("b0"), greeter("b1"));
    let (l, port) = reserve();
    let yaml1 = config_yaml(&[VipSpec { name: "web", port, algorithm: "round_robin", backends: &[&b0], health_check: "" }], "");
    let file = TempFile::new("starting", &yaml1);
    let config_file = ConfigFile::new(&file.0);
    let config = parse(&std::fs::read_to_string(&file.0).unwrap());
    file.write(&config_yaml(&[VipSpec { name: "web", port, algorithm: "round_robin", backends: &[&b0, &b1], health_check: "" }], ""));
    let options = ProxyOptions {
        listeners: [("web".to_owned(), l)].into(),
        config_file: Some(config_file),
        watch_interval: Some(Duration::from_millis(50)),
        ..ProxyOptions::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = Proxy::start(config, options, async move {
        let _ = rx.await;
    })
    .await
    .unwrap();
    let mut p = Running { handle, shutdown: Some(tx) };
    let vip = p.vip("web");
    let deadline = Instant::now() + Duration::from_secs(3);
    while reloads(&p, "applied") < 1.0 {
        assert!(Instant::now() < deadline, "the edit made while starting was not picked up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(answers("127.0.0.1", vip, 4).await.len(), 2);
    p.stop();
    p.handle.wait().await.unwrap();
}

/// The binary: SIGHUP re-reads the file; the outcome is one log line.
#[tokio::test]
async fn sighup_reloads_the_binary() {
    let (b0, b1) = (greeter("b0"), greeter("b1"));
    let port = free_port();
    let yaml1 = config_yaml(&[VipSpec { name: "web", port, algorithm: "round_robin", backends: &[&b0], health_check: "" }], "");
    let file = TempFile::new("sighup", &yaml1);
    let mut child = Command::new(env!("CARGO_BIN_EXE_lb-user"))
        .args(["proxy", "--config"])
        .arg(&file.0)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in StdBufReader::new(stderr).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut log = Vec::new();
    wait_line(&mut lines, &mut log, "proxy listening vip=web").await;
    let vip: SocketAddr = ([127, 0, 0, 1], port).into();

    // A broken file and SIGHUP: refused (the file watch may see it first).
    file.write("vips: [ {");
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let line = wait_line(&mut lines, &mut log, "reload refused (").await;
    assert!(line.contains("previous config stays in force") && line.contains(&*file.0.to_string_lossy()), "{line}");
    assert_eq!(request("127.0.0.1", vip).await.unwrap(), "b0");

    file.write(&config_yaml(&[VipSpec { name: "web", port, algorithm: "round_robin", backends: &[&b0, &b1], health_check: "" }], ""));
    unsafe { libc::kill(pid, libc::SIGHUP) };
    wait_line(&mut lines, &mut log, "reload applied (SIGHUP)").await;
    assert_eq!(answers("127.0.0.1", vip, 4).await.len(), 2);

    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(status.success(), "{status}");
}

/// The next line of `lines` containing `what` (all lines read go to `log`).
async fn wait_line(lines: &mut tokio::sync::mpsc::UnboundedReceiver<String>, log: &mut Vec<String>, what: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, lines.recv()).await {
            Ok(Some(line)) => {
                log.push(line.clone());
                if line.contains(what) {
                    return line;
                }
            }
            _ => panic!("no log line with {what:?}; got:\n{}", log.join("\n")),
        }
    }
}
