//! `bench-xdp-cost`: the XDP program's per-packet cost through
//! BPF_PROG_TEST_RUN (single runs, many times), run by `cargo xtask bench` (built as an
//! example of xtask so that xtask itself does not need the eBPF toolchain).
//!
//! Usage: `bench-xdp-cost --lab NAME [--repeat N]`. Loads the program inside
//! the lab's lb namespace through xdplb-tests' test-run harness (so
//! `bpf_fib_lookup` sees the lab's routes and neighbours, exactly as the
//! fixtures in tests/tests/it/xdp_*.rs do), configures one NAT VIP, and
//! prints one JSON object: median (and mean) ns/packet over N single runs for
//! a NAT forward of an established flow, the reverse NAT of its reply, and a
//! non-VIP packet passed to the kernel. Each timing includes the kernel's
//! timer reads (tens of ns), the same for all three, so compare them with
//! each other.

use std::net::{IpAddr, SocketAddr};

use anyhow::{bail, Context as _, Result};
use lb_common::lb;
use lb_user::{
    dataplane::{backend_info, vip_key},
    program::LoadOptions,
};
use xdplb_tests::{
    lab::addr,
    packet::Spec,
    testrun::{lab::LabEnv, Harness},
};

const SIZE: u32 = 251;

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
    // Backend 1 only: its MAC is the reply's source.
    let env = LabEnv::read(&lab, 1)?;
    let out = env.run(LoadOptions { maglev_size: SIZE, ..Default::default() }, move |xdp, env| {
        let vip: SocketAddr = "198.18.100.1:80".parse().unwrap();
        let be = SocketAddr::new(IpAddr::V4(addr::backend_v4(1)), 8080);
        {
            let mut dp = xdp.dataplane();
            dp.set_backend(1, &backend_info(be.ip(), be.port()))?;
            let info = lb::VipInfo { vip_id: 0, algorithm: lb::ALG_MAGLEV, mode: lb::MODE_NAT, hash_seed: 7, ..Default::default() };
            dp.set_vip(&vip_key(vip.ip(), vip.port(), 6), &info, &vec![1u32; SIZE as usize], &[1])?;
        }
        let client = SocketAddr::new(IpAddr::V4(addr::CLIENT_V4), 40000);
        let (lc_mac, client_mac) = (env.lc_mac, env.client_mac);
        let syn = Spec { eth_dst: lc_mac, eth_src: client_mac, ..Spec::tcp(client, vip) }.build();
        let ack = Spec { eth_dst: lc_mac, eth_src: client_mac, tcp_flags: 0x10, payload: &[0u8; 64], ..Spec::tcp(client, vip) }.build();
        let reply = Spec { eth_dst: env.lbe_mac, eth_src: env.be_mac[0], tcp_flags: 0x10, payload: &[0u8; 64], ..Spec::tcp(be, client) }.build();
        let direct = SocketAddr::new(IpAddr::V4(addr::backend_v4(1)), 8081);
        let pass = Spec { eth_dst: lc_mac, eth_src: client_mac, tcp_flags: 0x10, payload: &[0u8; 64], ..Spec::tcp(client, direct) }.build();
        // The kernel does not restore the frame between `repeat` iterations,
        // so a rewritten (NAT) frame would be a different packet from the
        // second iteration on. Instead: many single runs, each on a fresh
        // copy, timed by the kernel around the program; median and mean.
        let measure = |xdp: &mut Harness, ifindex: u32, frame: &[u8]| -> Result<(u32, f64, f64)> {
            let mut verdict = 0;
            for _ in 0..1000 {
                verdict = xdp.try_run(Some(ifindex), frame)?.verdict;
            }
            let mut ns = Vec::with_capacity(repeat as usize);
            for _ in 0..repeat {
                ns.push(xdp.try_run(Some(ifindex), frame)?.duration.as_nanos() as u64);
            }
            ns.sort_unstable();
            let mean = ns.iter().sum::<u64>() as f64 / ns.len().max(1) as f64;
            Ok((verdict, ns[ns.len() / 2] as f64, mean))
        };
        // The SYN creates the flow; the timed packets belong to an established flow.
        let v_syn = xdp.try_run(Some(env.lc), &syn)?.verdict;
        let (v_fwd, fwd, fwd_mean) = measure(xdp, env.lc, &ack)?;
        let (v_rev, rev, rev_mean) = measure(xdp, env.lbe, &reply)?;
        let (v_pass, pass_ns, pass_mean) = measure(xdp, env.lc, &pass)?;
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
