//! The embedded eBPF object and loading it into the kernel.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use aya::{
    programs::{ProgramError, Xdp},
    Ebpf, EbpfLoader,
};
use lb_common::{
    lb::{FlowKey, FlowState, GlobalConfig, ReverseNat, DEFAULT_MAGLEV_SIZE, MAX_VIPS},
    map_names, Counters,
};

/// The eBPF object built from lb-ebpf by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-ebpf"));

/// The packet-rate bench's generator, sink and trivial XDP_PASS programs
/// (lb-ebpf/src/pktgen), built by `build.rs` alongside the balancer.
static PKTGEN_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdplb-pktgen"));

/// The raw ELF object, for tools that want to inspect it.
pub fn object() -> &'static [u8] {
    OBJECT
}

/// The pktgen object (`lb_common::pktgen`); empty when built with AYA_BUILD_SKIP=1.
pub fn pktgen_object() -> &'static [u8] {
    PKTGEN_OBJECT
}

/// Sizes fixed when the program is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Maglev table size (prime); the MAGLEV map holds two halves per VIP.
    pub maglev_size: u32,
    /// Conntrack and reverse-NAT capacity (LRU).
    pub max_flows: u32,
    /// Idle timeouts written to the CONFIG map.
    pub tcp_timeout_s: u32,
    pub udp_timeout_s: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { maglev_size: DEFAULT_MAGLEV_SIZE, max_flows: 65536, tcp_timeout_s: 300, udp_timeout_s: 30 }
    }
}

/// Loads the object and the XDP program into the kernel (not attached) with
/// default sizes and private maps.
pub fn load() -> Result<Ebpf> {
    Ok(load_with(&LoadOptions::default(), None)?.0)
}

/// Loads with the given sizes. With `pin_dir`, every map in
/// `map_names::PINNED` lives at `pin_dir/<name>`: maps already pinned there
/// (by an lb-user that is gone) are reused with their contents, conntrack
/// included, and missing ones are created and pinned. Returns the object and
/// whether existing maps were adopted.
pub fn load_with(opts: &LoadOptions, pin_dir: Option<&Path>) -> Result<(Ebpf, bool)> {
    if OBJECT.is_empty() {
        bail!("this lb-user was built with AYA_BUILD_SKIP=1 and carries no eBPF object; rebuild it with `cargo xtask build`");
    }
    let adopted = pin_dir.is_some_and(|d| d.join(map_names::CONFIG).exists());
    if let Some(dir) = pin_dir.filter(|_| adopted) {
        check_pinned_layouts(dir)?;
        remove_retired_pins(dir)?;
    }
    let paths: Vec<(&str, PathBuf)> = pin_dir.map(|d| map_names::PINNED.iter().map(|n| (*n, d.join(n))).collect()).unwrap_or_default();
    let mut loader = EbpfLoader::new();
    loader
        .map_max_entries(map_names::MAGLEV, MAX_VIPS * 2 * opts.maglev_size)
        .map_max_entries(map_names::CONNTRACK, opts.max_flows)
        .map_max_entries(map_names::REVERSE_NAT, opts.max_flows);
    for (name, path) in &paths {
        loader.map_pin_path(name, path.as_path());
    }
    let mut ebpf = loader.load(OBJECT).context("loading the eBPF object (maps)")?;
    load_verified(xdp_program(&mut ebpf)?).context("loading the XDP program (verifier)")?;
    let mut dp = crate::dataplane::Dataplane::new(&mut ebpf);
    if adopted {
        // Pins from an lb-user before REPLY_SOURCES get a fresh, empty one:
        // mark the backends already in BACKENDS, as `attach --iface` without
        // a config writes none (one pass over the array, idempotent).
        dp.mark_reply_sources_of_backends()?;
        // Established flows find their VIP in VIP_SLOTS: rebuilt from VIPS,
        // as the pins may have none, or one an older lb-user did not keep.
        dp.rebuild_vip_slots_from_vips()?;
    }
    let mut cfg = if adopted { dp.global()? } else { GlobalConfig::default() };
    if adopted && cfg.maglev_size != opts.maglev_size {
        bail!("the running program uses maglev.size {} and the config asks {}; run `lb-user detach` first to change it", cfg.maglev_size, opts.maglev_size);
    }
    cfg.maglev_size = opts.maglev_size;
    cfg.tcp_timeout_s = opts.tcp_timeout_s;
    cfg.udp_timeout_s = opts.udp_timeout_s;
    dp.set_global(&cfg)?;
    Ok((ebpf, adopted))
}

/// Times the kernel is asked to verify a program that it stopped verifying
/// with EAGAIN (libbpf asks five times too).
const LOAD_ATTEMPTS: u32 = 5;

/// Loads `program` into the kernel, again when the verifier gave up with
/// EAGAIN: it does so when a signal is pending for the loading thread (a
/// child's SIGCHLD under a tokio runtime, a SIGHUP), however valid the
/// program. Any other error is returned at once.
pub fn load_verified(program: &mut Xdp) -> Result<(), ProgramError> {
    again_on_eagain(|| program.load(), |e| matches!(e, ProgramError::LoadError { io_error, .. } if io_error.raw_os_error() == Some(libc::EAGAIN)))
}

/// `f` until it succeeds, fails otherwise than `eagain` says, or has been
/// tried `LOAD_ATTEMPTS` times.
fn again_on_eagain<T, E>(mut f: impl FnMut() -> Result<T, E>, eagain: impl Fn(&E) -> bool) -> Result<T, E> {
    let mut attempt = 1;
    loop {
        match f() {
            Err(e) if eagain(&e) && attempt < LOAD_ATTEMPTS => attempt += 1,
            other => return other,
        }
    }
}

/// Refuses pinned flow maps whose key/value sizes differ from this build's
/// (pinned by an lb-user with other layouts, e.g. before `ReverseNat` held a
/// next hop): the verifier would reject the program with a far less clear
/// message, and the old entries cannot be reinterpreted.
fn check_pinned_layouts(dir: &Path) -> Result<()> {
    use std::mem::size_of;
    let flow_key = size_of::<FlowKey>() as u32;
    for (name, key, value) in [
        (map_names::CONNTRACK, flow_key, size_of::<FlowState>() as u32),
        (map_names::REVERSE_NAT, flow_key, size_of::<ReverseNat>() as u32),
        (map_names::COUNTERS, size_of::<u32>() as u32, size_of::<Counters>() as u32),
    ] {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        let info = aya::maps::MapInfo::from_pin(&path).with_context(|| format!("reading {}", path.display()))?;
        if (info.key_size(), info.value_size()) != (key, value) {
            bail!(
                "{} was pinned by an lb-user with another layout ({}/{} byte key/value, this build uses {key}/{value}); run `lb-user detach` first (it drops the flow table)",
                path.display(),
                info.key_size(),
                info.value_size()
            );
        }
    }
    Ok(())
}

/// Unpins the counter maps of an lb-user from before `COUNTERS` (the four
/// per-CPU arrays it replaced). The program still attached keeps its own
/// references to them until the new one replaces it, so counting goes on;
/// the new program starts its counters from zero in `COUNTERS` (a counter
/// reset to Prometheus). Their files left behind would be pins no lb-user
/// reads or removes but `detach`. Run on every pin directory of the
/// program (also the other interfaces', see `attach`).
pub fn remove_retired_pins(dir: &Path) -> Result<()> {
    for name in map_names::RETIRED {
        let path = dir.join(name);
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("removing the retired pin {}", path.display()))?;
        }
    }
    Ok(())
}

/// The XDP program inside a loaded object.
pub fn xdp_program(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    let name = lb_common::PROGRAM_NAME;
    let program = ebpf.program_mut(name).with_context(|| format!("eBPF object has no program `{name}`"))?;
    program.try_into().with_context(|| format!("program `{name}` is not an XDP program"))
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    /// `again_on_eagain` over a call failing with `errno` its first `fails`
    /// times: the result and how many calls were made.
    fn attempts(fails: u32, errno: i32) -> (Result<u32, Option<i32>>, u32) {
        let mut calls = 0;
        let r = again_on_eagain(
            || {
                calls += 1;
                if calls <= fails {
                    Err(io::Error::from_raw_os_error(errno))
                } else {
                    Ok(calls)
                }
            },
            |e| e.raw_os_error() == Some(libc::EAGAIN),
        );
        (r.map_err(|e| e.raw_os_error()), calls)
    }

    #[test]
    fn a_load_interrupted_by_a_signal_is_tried_again_a_bounded_number_of_times() {
        assert_eq!(attempts(2, libc::EAGAIN), (Ok(3), 3));
        assert_eq!(attempts(100, libc::EAGAIN), (Err(Some(libc::EAGAIN)), LOAD_ATTEMPTS));
        assert_eq!(attempts(100, libc::EACCES), (Err(Some(libc::EACCES)), 1), "a verifier rejection is not retried");
    }
}
