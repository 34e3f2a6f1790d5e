//! The one BPF_PROG_TEST_RUN harness: load the XDP program, fill its maps
//! through lb-user's own `Dataplane` (so tests exercise the real map
//! writers), run a frame, read back verdict, output bytes and counters.
//!
//! Used by the packet-fixture tests (tests/tests/it/xdp_*.rs) and by
//! `bench-xdp-cost`; `lab` runs the harness inside a lab's lb namespace and
//! `table` runs single-packet fixture tables.
//!
//! A [`Harness`] dereferences to the loaded `aya::Ebpf`, so multi-step tests
//! can reach any map (conntrack, next hops) without a second accessor layer.

pub mod lab;
pub mod table;

use std::{
    ops::{Deref, DerefMut},
    time::Duration,
};

use anyhow::{Context as _, Result};
use aya::{
    maps::{MapData, PerCpuArray},
    programs::{TestRun as _, TestRunOptions},
    Ebpf,
};
use lb_common::{lb::FlowCounter, map_names, Counters, PacketCounter, Stat, STAT_COUNT};
use lb_user::{
    dataplane::Dataplane,
    program::{self, LoadOptions},
    stats::TrafficCounters,
};

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;

/// `XDP_PASS` etc. for messages; the number for anything else.
pub fn verdict_name(verdict: u32) -> String {
    match verdict {
        XDP_ABORTED => "XDP_ABORTED".into(),
        XDP_DROP => "XDP_DROP".into(),
        XDP_PASS => "XDP_PASS".into(),
        XDP_TX => "XDP_TX".into(),
        XDP_REDIRECT => "XDP_REDIRECT".into(),
        other => format!("verdict {other}"),
    }
}

/// What one run of the program did with one frame.
#[derive(Debug)]
pub struct Outcome {
    pub verdict: u32,
    /// The frame as the program left it.
    pub frame: Vec<u8>,
    /// The kernel's timing of the run (includes its own timer reads).
    pub duration: Duration,
}

/// Room for the program to grow a frame (it never does today; a wrong
/// `data_size_out` must still not overflow).
const HEADROOM: usize = 256;

/// The loaded program and its maps.
pub struct Harness {
    ebpf: Ebpf,
}

impl Deref for Harness {
    type Target = Ebpf;
    fn deref(&self) -> &Ebpf {
        &self.ebpf
    }
}

impl DerefMut for Harness {
    fn deref_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
}

impl Harness {
    /// The program with default load options and empty maps (no VIPs).
    pub fn load() -> Result<Harness> {
        Ok(Harness { ebpf: program::load().context("loading the XDP program")? })
    }

    /// The program with `opts` (e.g. a small Maglev table), not pinned.
    pub fn load_with(opts: &LoadOptions) -> Result<Harness> {
        let (ebpf, _) = program::load_with(opts, None).context("loading the XDP program")?;
        Ok(Harness { ebpf })
    }

    /// lb-user's map writer over this program's maps.
    pub fn dataplane(&mut self) -> Dataplane<'_> {
        Dataplane::new(&mut self.ebpf)
    }

    /// Runs `frame` once, as received on `ingress` (an ifindex; `None`
    /// passes no `xdp_md` context, for programs that never look it up).
    pub fn try_run(&mut self, ingress: Option<u32>, frame: &[u8]) -> Result<Outcome> {
        let mut out = vec![0u8; frame.len() + HEADROOM];
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
        let ctx: Option<Vec<u8>> = ingress.map(|ifindex| [0u32, frame.len() as u32, 0, ifindex, 0, 0].iter().flat_map(|v| v.to_ne_bytes()).collect());
        let prog = program::xdp_program(&mut self.ebpf)?;
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.data_out = Some(&mut out);
        opts.ctx_in = ctx.as_deref();
        // One repetition: the kernel does not restore the frame between
        // repetitions, so a rewritten frame would be a different packet.
        opts.repeat = 1;
        let result = prog.test_run(opts).context("BPF_PROG_TEST_RUN")?;
        out.truncate(result.data_size_out as usize);
        Ok(Outcome { verdict: result.return_value, frame: out, duration: result.duration })
    }

    /// [`Harness::try_run`] for tests: panics when the syscall fails.
    pub fn run(&mut self, ingress: Option<u32>, frame: &[u8]) -> Outcome {
        self.try_run(ingress, frame).expect("BPF_PROG_TEST_RUN")
    }

    /// [`Harness::run`] as received on `ifindex`.
    pub fn run_on(&mut self, ifindex: u32, frame: &[u8]) -> Outcome {
        self.run(Some(ifindex), frame)
    }

    /// One entry of the per-action statistics, summed over CPUs.
    pub fn stat(&self, stat: Stat) -> PacketCounter {
        self.stats()[stat.index() as usize]
    }

    /// Every entry of the per-action statistics, by `Stat::index`.
    pub fn stats(&self) -> [PacketCounter; STAT_COUNT as usize] {
        self.counters().actions
    }

    /// Every counter of the program (the `COUNTERS` map), summed over CPUs.
    pub fn counters(&self) -> Box<Counters> {
        let array = PerCpuArray::<&MapData, Counters>::try_from(self.ebpf.map(map_names::COUNTERS).expect("counters map")).unwrap();
        lb_user::stats::read_counters(&array).expect("reading the counters")
    }

    /// The traffic-class counters (IPv4, TCP, malformed, …), summed over CPUs.
    pub fn traffic(&self) -> TrafficCounters {
        TrafficCounters::from_counters(&self.counters())
    }

    /// VIP `id`'s forwarded-packet counter, summed over CPUs.
    pub fn vip_counter(&self, id: u32) -> FlowCounter {
        self.counters().vips[id as usize]
    }

    /// Backend `id`'s forwarded-packet counter, summed over CPUs.
    pub fn backend_counter(&self, id: u32) -> FlowCounter {
        self.counters().backends[id as usize]
    }
}

/// Pins the calling thread to CPU 0: per-CPU maps (round-robin cursors,
/// remembered next hops) and timings must not hop between CPUs.
pub fn pin_to_cpu0() -> Result<()> {
    // SAFETY: sched_setaffinity on this thread with a valid, zeroed set.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        anyhow::bail!("sched_setaffinity(CPU 0): {}", std::io::Error::last_os_error());
    }
    Ok(())
}
