//! `bench-xdp-cost`: the XDP program's per-packet cost through
//! BPF_PROG_TEST_RUN (single runs, many times), run by `cargo xtask bench` (built as an
//! example of xtask so that xtask itself does not need the eBPF toolchain).
//!
//! Usage: `bench-xdp-cost --lab NAME [--repeat N]`. Loads the program inside
//! the lab's lb namespace (so `bpf_fib_lookup` sees the lab's routes and
//! neighbours), configures one NAT VIP the way the fixtures in
//! tests/tests/xdp_balancer.rs do, and prints one JSON object: median (and
//! mean) ns/packet over N single runs for a NAT forward of an established
//! flow, the reverse NAT of its reply, and a non-VIP packet passed to the
//! kernel. Each timing includes the kernel's timer reads (tens of ns), the
//! same for all three, so compare them with each other.

use std::net::{IpAddr, SocketAddr};

use anyhow::{bail, Context as _, Result};
use aya::programs::{TestRun, TestRunOptions};
use lb_common::lb;
use lb_user::{
    dataplane::{backend_info, vip_key, Dataplane},
    program::{self, LoadOptions},
};
use xdplb_tests::{
    lab::{addr, ns_name, Host},
    netns,
    packet::Spec,
    sys,
};

const SIZE: u32 = 251;

fn mac(ns: &str, dev: &str) -> Result<[u8; 6]> {
    let json = sys::run_stdout("ip", &["-n", ns, "-j", "link", "show", dev])?;
    let v: serde_json::Value = serde_json::from_str(&json)?;
    let text = v[0]["address"].as_str().context("no MAC")?;
    let mut out = [0u8; 6];
    for (o, p) in out.iter_mut().zip(text.split(':')) {
        *o = u8::from_str_radix(p, 16)?;
    }
    Ok(out)
}

fn ifindex(ns: &str, dev: &str) -> Result<u32> {
    let json = sys::run_stdout("ip", &["-n", ns, "-j", "link", "show", dev])?;
    let v: serde_json::Value = serde_json::from_str(&json)?;
    v[0]["ifindex"].as_u64().map(|i| i as u32).context("no ifindex")
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mut lab = None;
    let mut repeat = 100_000u32;
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--lab" => lab = args.get(i + 1).cloned(),
            "--repeat" => repeat = args.get(i + 1).context("--repeat N")?.parse()?,
            other => bail!("unknown argument {other:?}; usage: bench-xdp-cost --lab NAME [--repeat N]"),
        }
        i += 2;
    }
    let lab = lab.context("usage: bench-xdp-cost --lab NAME [--repeat N]")?;
    let (client_ns, lb_ns, be1_ns) = (ns_name(&lab, Host::Client), ns_name(&lab, Host::Lb), ns_name(&lab, Host::Backend(1)));
    let (lc_if, lbe_if) = (format!("{lab}-lc"), format!("{lab}-lb"));
    let lc = ifindex(&lb_ns, &lc_if)?;
    let lbe = ifindex(&lb_ns, &lbe_if)?;
    let client_mac = mac(&client_ns, &format!("{lab}-c"))?;
    let lc_mac = mac(&lb_ns, &lc_if)?;
    let lbe_mac = mac(&lb_ns, &lbe_if)?;
    let be_mac = mac(&be1_ns, &format!("{lab}-b1"))?;
    let out = netns::run_in(&lb_ns, move || {
        // One CPU, so per-CPU maps and timings stay on one core.
        // SAFETY: sched_setaffinity on this thread with a valid set.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
        let (mut ebpf, _) = program::load_with(&LoadOptions { maglev_size: SIZE, ..Default::default() }, None)?;
        let vip: SocketAddr = "198.18.100.1:80".parse().unwrap();
        let be = SocketAddr::new(IpAddr::V4(addr::backend_v4(1)), 8080);
        {
            let mut dp = Dataplane::new(&mut ebpf);
            dp.add_tx_port(lc)?;
            dp.add_tx_port(lbe)?;
            dp.set_backend(1, &backend_info(be.ip(), be.port()))?;
            let info = lb::VipInfo { vip_id: 0, algorithm: lb::ALG_MAGLEV, mode: lb::MODE_NAT, hash_seed: 7, ..Default::default() };
            dp.set_vip(&vip_key(vip.ip(), vip.port(), 6), &info, &vec![1u32; SIZE as usize], &[1])?;
        }
        let client = SocketAddr::new(IpAddr::V4(addr::CLIENT_V4), 40000);
        let syn = Spec { eth_dst: lc_mac, eth_src: client_mac, ..Spec::tcp(client, vip) }.build();
        let ack = Spec { eth_dst: lc_mac, eth_src: client_mac, tcp_flags: 0x10, payload: &[0u8; 64], ..Spec::tcp(client, vip) }.build();
        let reply = Spec { eth_dst: lbe_mac, eth_src: be_mac, tcp_flags: 0x10, payload: &[0u8; 64], ..Spec::tcp(be, client) }.build();
        let direct = SocketAddr::new(IpAddr::V4(addr::backend_v4(1)), 8081);
        let pass = Spec { eth_dst: lc_mac, eth_src: client_mac, tcp_flags: 0x10, payload: &[0u8; 64], ..Spec::tcp(client, direct) }.build();
        let prog = program::xdp_program(&mut ebpf)?;
        let run = |ifindex: u32, frame: &[u8]| -> Result<(u32, u64)> {
            let ctx: Vec<u8> = [0u32, frame.len() as u32, 0, ifindex, 0, 0].iter().flat_map(|v| v.to_ne_bytes()).collect();
            let mut out = vec![0u8; frame.len() + 256];
            let mut opts = TestRunOptions::new();
            opts.data_in = Some(frame);
            opts.data_out = Some(&mut out);
            opts.ctx_in = Some(&ctx);
            opts.repeat = 1;
            let r = prog.test_run(opts).context("BPF_PROG_TEST_RUN")?;
            Ok((r.return_value, r.duration.as_nanos() as u64))
        };
        // The kernel does not restore the frame between `repeat` iterations,
        // so a rewritten (NAT) frame would be a different packet from the
        // second iteration on. Instead: many single runs, each on a fresh
        // copy, timed by the kernel around the program; median and mean.
        let measure = |ifindex: u32, frame: &[u8]| -> Result<(u32, f64, f64)> {
            let mut verdict = 0;
            for _ in 0..1000 {
                verdict = run(ifindex, frame)?.0;
            }
            let mut ns = Vec::with_capacity(repeat as usize);
            for _ in 0..repeat {
                ns.push(run(ifindex, frame)?.1);
            }
            ns.sort_unstable();
            let mean = ns.iter().sum::<u64>() as f64 / ns.len().max(1) as f64;
            Ok((verdict, ns[ns.len() / 2] as f64, mean))
        };
        // The SYN creates the flow; the timed packets belong to an established flow.
        let (v_syn, _) = run(lc, &syn)?;
        let (v_fwd, fwd, fwd_mean) = measure(lc, &ack)?;
        let (v_rev, rev, rev_mean) = measure(lbe, &reply)?;
        let (v_pass, pass_ns, pass_mean) = measure(lc, &pass)?;
        Ok(serde_json::json!({
            "runs": repeat, "syn_verdict": v_syn,
            "nat_forward_ns": fwd, "nat_forward_mean_ns": fwd_mean, "nat_forward_verdict": v_fwd,
            "reverse_nat_ns": rev, "reverse_nat_mean_ns": rev_mean, "reverse_nat_verdict": v_rev,
            "pass_ns": pass_ns, "pass_mean_ns": pass_mean, "pass_verdict": v_pass,
        }))
    })?;
    println!("{out}");
    Ok(())
}
