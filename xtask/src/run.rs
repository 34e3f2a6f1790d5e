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
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    })
    .context("installing the Ctrl-C handler")?;
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
    println!("[run] attaching xdplb to {iface} in {lb_ns} (mode {})", opts.mode);
    let lb = LbUser::attach(&lb_ns, &iface, &["--mode", &opts.mode])?;

    println!("[run] sending traffic from the client through the lb");
    for i in 1..=lab.backend_count() {
        for v6 in [false, true] {
            let addr = lab.backend_addr(i, v6);
            let resp = netns::run_in(&client_ns, move || http::get(addr, "/", Duration::from_secs(5)))?;
            println!("  client -> http://{addr}/ : {} {}", resp.status, resp.body.trim());
        }
        let addr = lab.backend_addr(i, false);
        let echo = netns::run_in(&client_ns, move || udp_echo(addr))?;
        println!("  client -> udp {addr} : {echo}");
    }
    std::thread::sleep(Duration::from_millis(300));
    println!("\n[run] counters (lb-user --netns {lb_ns} stats --iface {iface}):");
    print!("{}", lb.cli(&["stats", "--iface", &iface])?);
    println!(
        "\n[run] running; in another shell try:\n  ip netns exec {client_ns} curl http://{}:8080/\n  {}/lb-user --netns {lb_ns} stats --iface {iface}",
        xdplb_tests::lab::addr::backend_v4(2),
        util::workspace_root().join("target/debug").display(),
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
    if !status.success() {
        anyhow::bail!("lb-user attach exited with {status}");
    }
    println!("[run] done: lab removed, pins removed");
    Ok(())
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
