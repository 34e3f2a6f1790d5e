//! `cargo xtask run`: the demo. Brings up the lab, starts the backends,
//! attaches the XDP program on the lb's client-side interface, sends real
//! traffic from the client and shows the counters, until Ctrl-C or
//! `--duration`. Everything is torn down on the way out, also on errors.

use std::{
    net::{SocketAddr, UdpSocket},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use xdplb_tests::{
    http,
    lab::{Host, Lab},
    lbuser::LbUser,
    netns, workspace,
};

use crate::util;

pub struct RunOptions {
    pub duration: Option<u64>,
    pub mode: String,
}

/// Runs the demo until Ctrl-C (or SIGTERM) or `--duration`.
pub fn demo(opts: RunOptions) -> Result<()> {
    let (stop_tx, stop_rx) = mpsc::channel();
    lb_common::userspace::signals::on_stop(move |_| {
        let _ = stop_tx.send(());
    })
    .context("installing the SIGINT/SIGTERM handler")?;
    demo_until(opts, &stop_rx)
}

/// The demo; a message on `stop` ends it the way Ctrl-C does.
fn demo_until(opts: RunOptions, stop_rx: &mpsc::Receiver<()>) -> Result<()> {
    std::env::set_var(workspace::BIN_DIR_ENV, util::workspace_root().join("target/debug"));

    println!("[run] bringing up the lab");
    let mut lab = Lab::up_unique("xr", 3)?;
    println!("[run] lab {:?}: client, lb, be1..be3", lab.name());
    lab.start_backends()?;
    println!("[run] backends answer on {} and {}", lab.backend_addr(1, false), lab.backend_addr(1, true));
    let (lb_ns, client_ns, iface) = (lab.ns(Host::Lb), lab.ns(Host::Client), lab.lb_client_iface());
    let config = demo_config(&lab, &opts.mode)?;
    println!("[run] attaching xdplb to {iface} and {} in {lb_ns} with {}", lab.lb_backend_iface(), config.display());
    let lb = LbUser::attach_config(&lb_ns, &iface, &config)?;

    println!("[run] sending traffic from the client through the lb");
    for vip in [VIP_V4, VIP_V6] {
        let vip: SocketAddr = vip.parse()?;
        let mut served = Vec::new();
        for _ in 0..9 {
            let resp = netns::run_in(&client_ns, move || http::get(vip, "/", Duration::from_secs(5)))?;
            served.push(resp.body.trim().to_owned());
        }
        println!("  9 new connections to VIP http://{vip}/ (maglev, NAT) were served by: {}", served.join(" "));
    }
    let udp_vip: SocketAddr = VIP_UDP.parse()?;
    for _ in 0..3 {
        let echo = netns::run_in(&client_ns, move || udp_echo(udp_vip))?;
        println!("  client -> udp VIP {udp_vip} (round robin) : {echo}");
    }
    for i in 1..=lab.backend_count() {
        let addr = lab.backend_addr(i, false);
        let resp = netns::run_in(&client_ns, move || http::get(addr, "/", Duration::from_secs(5)))?;
        println!("  client -> http://{addr}/ directly (not a VIP, passed) : {} {}", resp.status, resp.body.trim());
    }
    std::thread::sleep(Duration::from_millis(300));
    println!("\n[run] counters (lb-user --netns {lb_ns} stats --iface {iface}):");
    print!("{}", lb.cli(&["stats", "--iface", &iface])?);
    println!("\n[run] backends (lb-user --netns {lb_ns} backends list):");
    print!("{}", lb.cli(&["backends", "list"])?);
    println!(
        "\n[run] running; in another shell try:\n  ip netns exec {client_ns} curl http://198.18.100.1/\n  {bin}/lb-user --netns {lb_ns} stats --iface {iface} --watch\n  {bin}/lb-user --netns {lb_ns} backends list          (the control API, docs/operations.md)\n  {bin}/lb-user --netns {lb_ns} backends drain web {be1}\n  edit {cfg} (it is reloaded on change)",
        bin = util::workspace_root().join("target/debug").display(),
        cfg = config.display(),
        be1 = lab.backend_addr(1, false),
    );
    match opts.duration {
        Some(secs) => println!("[run] stopping in {secs} s (or Ctrl-C)"),
        None => println!("[run] press Ctrl-C to stop and tear everything down"),
    }
    let deadline = opts.duration.map(|s| Instant::now() + Duration::from_secs(s));
    loop {
        let wait = deadline.map_or(Duration::from_secs(1), |d| d.saturating_duration_since(Instant::now()).min(Duration::from_secs(1)));
        if stop_rx.recv_timeout(wait).is_ok() || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        lab.check_children()?;
    }
    println!("\n[run] final counters:");
    print!("{}", lb.cli(&["stats", "--iface", &iface])?);
    println!("[run] detaching and tearing down the lab");
    let status = lb.stop()?;
    drop(lab);
    let _ = std::fs::remove_file(&config);
    if !status.success() {
        anyhow::bail!("lb-user attach exited with {status}");
    }
    println!("[run] done: lab removed, pins removed");
    Ok(())
}

const VIP_V4: &str = "198.18.100.1:80";
const VIP_V6: &str = "[fd00:198:18:100::1]:80";
const VIP_UDP: &str = "198.18.100.1:8080";

/// The demo's balancer config: HTTP VIPs over IPv4 and IPv6 and a UDP echo
/// VIP, NAT mode, health-checked, with the control API on the lb's
/// loopback, in target/ so it can be read afterwards.
fn demo_config(lab: &Lab, mode: &str) -> Result<std::path::PathBuf> {
    let backends = |v6: bool| -> String {
        (1..=lab.backend_count()).map(|i| format!("      - {{ address: \"{}\", port: 8080 }}\n", lab.backend_addr(i, v6).ip())).collect()
    };
    let check = "    health_check: { type: http, path: /health, expect_status: 200, interval: 1s, timeout: 500ms, rise: 2, fall: 2 }\n";
    let text = format!(
        "# Written by `cargo xtask run` for lab {name}.\ninterfaces:\n  - {{ name: {lc}, role: client }}\n  - {{ name: {lb}, role: backend }}\nattach_mode: {mode}\napi: {{ listen: \"127.0.0.1:9901\" }}\nvips:\n  - name: web\n    address: 198.18.100.1\n    port: 80\n    backends:\n{b4}{check}  - name: web6\n    address: \"fd00:198:18:100::1\"\n    port: 80\n    backends:\n{b6}{check}  - name: echo\n    address: 198.18.100.1\n    port: 8080\n    protocol: udp\n    algorithm: round_robin\n    backends:\n{b4}",
        name = lab.name(),
        lc = lab.lb_client_iface(),
        lb = lab.lb_backend_iface(),
        b4 = backends(false),
        b6 = backends(true),
    );
    let path = util::workspace_root().join(format!("target/xdplb-demo-{}.yaml", lab.name()));
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn udp_echo(to: SocketAddr) -> Result<String> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    socket.set_read_timeout(Some(Duration::from_secs(2)))?;
    socket.send_to(b"hello", to)?;
    let mut buf = [0u8; 256];
    let (n, _) = socket.recv_from(&mut buf).with_context(|| format!("no UDP echo from {to}"))?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_stops_on_ctrl_c_and_leaves_nothing_behind() {
        xdplb_tests::require_root!();
        let (tx, rx) = mpsc::channel();
        // What the Ctrl-C handler does, a few seconds into the run.
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(3));
            tx.send(()).unwrap();
        });
        demo_until(RunOptions { duration: Some(60), mode: "auto".into() }, &rx).unwrap();
        stopper.join().unwrap();
        let ns = std::process::Command::new("ip").args(["netns", "list"]).output().unwrap();
        let ns = String::from_utf8_lossy(&ns.stdout);
        assert!(!ns.lines().any(|l| l.starts_with("xr")), "demo namespaces left: {ns}");
        let pins: Vec<_> = std::fs::read_dir("/sys/fs/bpf/xdplb")
            .map(|d| d.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with("xr")).collect())
            .unwrap_or_default();
        assert!(pins.is_empty(), "demo pins left: {pins:?}");
    }
}
