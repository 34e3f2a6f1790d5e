//! The pktgen object's generator driven from userspace through
//! BPF_PROG_TEST_RUN: loading, configuring and running it. Shared by the
//! examples that time packets with it (`bench-pps`: src/bench/pps_main.rs,
//! whose doc explains the method; `bench-scaling-xdp`:
//! src/bench/scaling/xdp_main.rs), each including this file as a module.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::{bail, Context as _, Result};
use aya::{
    maps::{Array, MapData, PerCpuArray},
    programs::{TestRun as _, TestRunAttrs, TestRunOptions, Xdp},
    Ebpf, EbpfLoader,
};
use lb_common::pktgen::{self, GenConfig, FIRST_HOST, FIRST_PORT, HEADER_LEN, HEADER_LEN_V6, HEADER_ROOM};
use lb_user::program;
use xdplb_tests::{netns, packet::Spec, testrun::pin_to_cpu0};

pub fn pktgen_object(ns: &str) -> Result<Ebpf> {
    let object = program::pktgen_object();
    if object.is_empty() {
        bail!("lb-user was built with AYA_BUILD_SKIP=1: no pktgen object");
    }
    netns::run_in(ns, move || EbpfLoader::new().load(object).context("loading the pktgen object"))
}

pub fn load_xdp<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    let p: &mut Xdp = ebpf.program_mut(name).with_context(|| format!("no program {name}"))?.try_into()?;
    if p.fd().is_err() {
        program::load_verified(p).with_context(|| format!("loading {name}"))?;
    }
    Ok(p)
}

/// The generator's configuration for flows towards `to` (`syn`: SYNs, else
/// ACKs), IPv4 or IPv6 as `to` is: the header of flow 0 (source address
/// last byte `FIRST_HOST` in the client's /24 or /64, port `FIRST_PORT`).
pub fn gen_config(eth_dst: [u8; 6], eth_src: [u8; 6], to: SocketAddr, syn: bool, flows: u64, action: u32) -> Result<GenConfig> {
    let (source, len): (IpAddr, usize) = match to.ip() {
        IpAddr::V4(_) => (Ipv4Addr::new(198, 18, 0, FIRST_HOST).into(), HEADER_LEN),
        IpAddr::V6(_) => (Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 0, u16::from(FIRST_HOST)).into(), HEADER_LEN_V6),
    };
    let frame = Spec { eth_dst, eth_src, tcp_flags: if syn { 0x02 } else { 0x10 }, ..Spec::tcp(SocketAddr::new(source, FIRST_PORT), to) }.build();
    if frame.len() != len {
        bail!("template frame is {} bytes, expected {len}", frame.len());
    }
    let mut header = [0u8; HEADER_ROOM];
    header[..len].copy_from_slice(&frame);
    Ok(GenConfig { header, flows, action, header_len: len as u32 })
}

pub fn set_gen(ebpf: &mut Ebpf, cfg: GenConfig) -> Result<()> {
    Array::<_, GenConfig>::try_from(ebpf.map_mut(pktgen::GEN_CONFIG).context("generator config")?)?.set(0, cfg, 0)?;
    Ok(())
}

pub fn generated(ebpf: &Ebpf) -> Result<u64> {
    let a = PerCpuArray::<&MapData, u64>::try_from(ebpf.map(pktgen::GEN_COUNT).context("generator count")?)?;
    Ok(a.get(&0, 0)?.iter().sum())
}

/// `repeat` runs of the generator from `ns` on CPU 0, as received on
/// `ifindex`; `live`: BPF_F_TEST_XDP_LIVE_FRAMES. Returns the generator,
/// the kernel's ns per repetition and the verdict.
pub fn generate(ns: &str, gen: Ebpf, ifindex: u32, repeat: u32, live: bool) -> Result<(Ebpf, f64, u32)> {
    test_run(ns, gen, pktgen::GENERATOR, ifindex, repeat, live)
}

/// [`generate`] for any program `name` of the pktgen object (e.g. the
/// trivial XDP_PASS the program cost is compared with).
/// The frame is as long as the configured header (`GenConfig::header_len`).
///
/// A live run the kernel refuses with EPERM is tried once more with the
/// trivial `pass` program: refused too, the error says the kernel refuses
/// live frames ([`pktgen::LIVE_FRAMES_REFUSED`]). Some hosts' kernels do,
/// to root and for any program (seen on 2026-12-08), and a bare "Operation
/// not permitted" reads like a missing privilege of the bench's.
pub fn test_run(ns: &str, mut gen: Ebpf, name: &'static str, ifindex: u32, repeat: u32, live: bool) -> Result<(Ebpf, f64, u32)> {
    let len = Array::<_, GenConfig>::try_from(gen.map(pktgen::GEN_CONFIG).context("generator config")?)?.get(&0, 0)?.header_len as usize;
    netns::run_in(ns, move || {
        pin_to_cpu0()?;
        let frame = vec![0u8; len];
        let ctx: Vec<u8> = [0u32, len as u32, 0, ifindex, 0, 0].iter().flat_map(|v| v.to_ne_bytes()).collect();
        let mut out = vec![0u8; len + 256];
        let result = run_once(&mut gen, name, &frame, &ctx, &mut out, repeat, live);
        let refused = |e: &anyhow::Error| live && permission_denied(e);
        match result {
            Err(e) if refused(&e) && run_once(&mut gen, pktgen::PASS, &frame, &ctx, &mut out, 1, true).as_ref().is_err_and(refused) => {
                Err(e.context(pktgen::LIVE_FRAMES_REFUSED))
            }
            Err(e) => Err(e),
            Ok((ns_per, verdict)) => Ok((gen, ns_per, verdict)),
        }
    })
}

/// One `BPF_PROG_TEST_RUN` of `name`: ns per repetition and the verdict.
fn run_once(gen: &mut Ebpf, name: &'static str, frame: &[u8], ctx: &[u8], out: &mut [u8], repeat: u32, live: bool) -> Result<(f64, u32)> {
    let prog = load_xdp(gen, name)?;
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(frame);
    opts.ctx_in = Some(ctx);
    opts.repeat = repeat;
    if live {
        opts.attrs = TestRunAttrs::new().xdp_live_frames(64);
    } else {
        opts.data_out = Some(out);
    }
    let r = prog.test_run(opts).with_context(|| format!("BPF_PROG_TEST_RUN of {name}"))?;
    Ok((r.duration.as_nanos() as f64, r.return_value))
}

fn permission_denied(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied))
}
