//! The XDP fuzzer: random and mutated frames through the real program
//! (BPF_PROG_TEST_RUN, `testrun`), every run judged by an independent
//! oracle (docs/reliability.md, "XDP fuzzing").
//!
//! One run loads the program once in a lab's lb namespace (so
//! `bpf_fib_lookup` sees real routes and neighbours), fills its maps once
//! with the fuzz network (`net`), runs every seed once in order, then
//! mutates seeds (`mutate`) until the time is up. Conntrack and reverse-NAT
//! state accumulate across frames, as they do in service. Each run is judged
//! by `oracle` (built on the `etherparse` reference parser, `reference`);
//! at the end the program's own counters must agree with the verdicts seen.
//!
//! The PRNG is seeded (`Options::seed`), so a run can be repeated: a
//! finding prints the seed, the frame's number and its bytes in hex.
//! `Options::replay` runs the seeds and then given frames only.

pub mod mutate;
pub mod net;
pub mod oracle;
pub mod reference;
pub mod seeds;

use std::{
    collections::BTreeMap,
    fmt,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use fastrand::Rng;
use lb_common::{PacketCounter, Stat, STAT_COUNT};
use lb_user::program::LoadOptions;

use self::{
    net::FuzzNet,
    oracle::{Judged, Oracle},
    seeds::{Seed, Side},
};
use crate::testrun::{lab::LabEnv, verdict_name, Harness, XDP_DROP, XDP_PASS, XDP_REDIRECT, XDP_TX};

/// Frame sizes BPF_PROG_TEST_RUN accepts for XDP: at least an Ethernet
/// header; at most what fits a page with the harness's headroom. Shorter
/// frames never reach a driver's XDP hook either.
pub const MIN_FRAME: usize = 14;
pub const MAX_FRAME: usize = 1514;

pub struct Options {
    pub seed: u64,
    pub duration: Duration,
    /// How often `progress` is called.
    pub progress_every: Duration,
    /// Set from outside (a signal handler) to end the run early.
    pub stop: Option<Arc<AtomicBool>>,
    /// Findings kept with their frames (all are counted).
    pub keep_findings: usize,
    /// When not empty: run the seeds, then only these frames, no fuzzing.
    pub replay: Vec<(Side, Vec<u8>)>,
}

impl Options {
    pub fn new(seed: u64, duration: Duration) -> Options {
        Options { seed, duration, progress_every: Duration::from_secs(2), stop: None, keep_findings: 20, replay: Vec::new() }
    }
}

/// A seed from the clock, for runs that were not given one.
pub fn clock_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
}

/// Bytes from hex text (whitespace ignored), for replaying a finding.
pub fn parse_hex(text: &str) -> Result<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        bail!("the frame hex has an odd number of digits ({})", digits.len());
    }
    digits
        .chunks(2)
        .enumerate()
        .map(|(i, pair)| {
            let s = std::str::from_utf8(pair).unwrap_or("??");
            u8::from_str_radix(s, 16).map_err(|_| anyhow::anyhow!("the frame hex has {s:?} at byte {i}, which is not a hex byte"))
        })
        .collect()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub frames: u64,
    pub elapsed: Duration,
    pub findings: u64,
}

impl Progress {
    pub fn frames_per_second(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One frame the oracle refused (or a disagreement of the counters, with no frame).
#[derive(Clone, Debug)]
pub struct Finding {
    pub seed: u64,
    /// 1-based number of the frame in the run (seeds first); 0 for counters.
    pub frame_no: u64,
    pub side: Side,
    pub verdict: u32,
    pub input: Vec<u8>,
    pub output: Vec<u8>,
    pub problem: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.frame_no == 0 {
            return write!(f, "seed {}: {}", self.seed, self.problem);
        }
        write!(
            f,
            "seed {} frame #{} ({}): {}: {}\n  in  {}\n  out {}",
            self.seed,
            self.frame_no,
            self.side.name(),
            verdict_name(self.verdict),
            self.problem,
            hex(&self.input),
            hex(&self.output)
        )
    }
}

#[derive(Clone, Debug)]
pub struct Report {
    pub seed: u64,
    pub frames: u64,
    pub elapsed: Duration,
    /// CPU time of the fuzzing thread, user and kernel (the program runs in
    /// its syscalls): frames per CPU-second do not depend on what else the
    /// machine is busy with, frames per second do.
    pub cpu: Duration,
    pub verdicts: BTreeMap<String, u64>,
    pub judged: BTreeMap<Judged, u64>,
    /// Packets per `Stat` name, as the program counted them.
    pub stats: Vec<(&'static str, u64)>,
    pub findings_total: u64,
    pub findings: Vec<Finding>,
    /// Flows and reverse-NAT entries the oracle learned.
    pub model: (usize, usize),
    /// For each `Options::replay` frame: its verdict and what the oracle made of it.
    pub replayed: Vec<String>,
}

impl Report {
    pub fn frames_per_second(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn frames_per_cpu_second(&self) -> f64 {
        self.frames as f64 / self.cpu.as_secs_f64().max(1e-9)
    }

    /// A few lines: totals, verdicts, what the frames amounted to, the
    /// program's counters, the findings kept.
    pub fn summary(&self) -> String {
        let join = |items: Vec<String>| items.join(", ");
        let mut out = format!(
            "seed {}: {} frames in {:.1} s ({:.0} frames/s; {:.1} CPU-s, {:.0} frames per CPU-second), {} findings\n",
            self.seed,
            self.frames,
            self.elapsed.as_secs_f64(),
            self.frames_per_second(),
            self.cpu.as_secs_f64(),
            self.frames_per_cpu_second(),
            self.findings_total
        );
        out += &format!("verdicts: {}\n", join(self.verdicts.iter().map(|(k, v)| format!("{k} {v}")).collect()));
        out += &format!("judged: {}\n", join(self.judged.iter().map(|(k, v)| format!("{k:?} {v}")).collect()));
        out += &format!("program counters: {}\n", join(self.stats.iter().filter(|(_, v)| *v > 0).map(|(k, v)| format!("{k} {v}")).collect()));
        out += &format!("oracle model: {} flows, {} reverse-NAT entries\n", self.model.0, self.model.1);
        for r in &self.replayed {
            out += &format!("replayed frame: {r}\n");
        }
        for f in &self.findings {
            out += &format!("FINDING {f}\n");
        }
        out
    }
}

/// Fuzzes the program in `env`'s lab for `opts.duration`, calling
/// `progress` every `opts.progress_every`.
pub fn run(env: &LabEnv, opts: Options, progress: impl FnMut(&Progress) + Send + 'static) -> Result<Report> {
    env.run(LoadOptions { maglev_size: net::MAGLEV_SIZE, ..Default::default() }, move |xdp, env| {
        let net = FuzzNet::standard();
        net.apply(xdp)?;
        Ok(Engine::new(xdp, env, net, opts).run(progress))
    })
}

struct Engine<'a> {
    xdp: &'a mut Harness,
    env: &'a LabEnv,
    oracle: Oracle,
    opts: Options,
    frames: u64,
    verdicts: [u64; 5],
    other_verdicts: u64,
    judged: BTreeMap<Judged, u64>,
    findings_total: u64,
    findings: Vec<Finding>,
}

impl<'a> Engine<'a> {
    fn new(xdp: &'a mut Harness, env: &'a LabEnv, net: FuzzNet, opts: Options) -> Engine<'a> {
        let oracle = Oracle::new(net, env.clone());
        Engine { xdp, env, oracle, opts, frames: 0, verdicts: [0; 5], other_verdicts: 0, judged: BTreeMap::new(), findings_total: 0, findings: Vec::new() }
    }

    fn run(mut self, mut progress: impl FnMut(&Progress)) -> Report {
        let (start, cpu_start) = (Instant::now(), thread_cpu());
        let before = self.xdp.stats();
        let pool = seeds::all(&FuzzNet::standard(), self.env);
        for s in &pool {
            let _ = self.one(s.side, s.frame.clone());
        }
        let mut rng = Rng::with_seed(self.opts.seed);
        let mut next_report = start + self.opts.progress_every;
        let replay = std::mem::take(&mut self.opts.replay);
        let mut replayed = Vec::new();
        for (side, frame) in replay.iter().cloned() {
            let (verdict, judged) = self.one(side, frame);
            replayed.push(match judged {
                Ok(j) => format!("{}, judged {j:?}", verdict_name(verdict)),
                Err(problem) => format!("{}: FINDING: {problem}", verdict_name(verdict)),
            });
        }
        while replay.is_empty() {
            // The clock every 256 frames (a few milliseconds) is fine enough.
            if self.frames.is_multiple_of(256) {
                let now = Instant::now();
                if now - start >= self.opts.duration || self.opts.stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
                    break;
                }
                if now >= next_report {
                    progress(&Progress { frames: self.frames, elapsed: now - start, findings: self.findings_total });
                    next_report = now + self.opts.progress_every;
                }
            }
            let (side, frame) = generate(&mut rng, &pool);
            let _ = self.one(side, frame);
        }
        let (elapsed, cpu) = (start.elapsed(), thread_cpu().saturating_sub(cpu_start));
        let after = self.xdp.stats();
        self.check_counters(&before, &after);
        let mut report = self.report(elapsed, cpu, &before, &after);
        report.replayed = replayed;
        report
    }

    /// Runs one frame and judges it: its verdict and judgement.
    fn one(&mut self, side: Side, mut frame: Vec<u8>) -> (u32, Result<Judged, String>) {
        frame.truncate(MAX_FRAME);
        if frame.len() < MIN_FRAME {
            frame.resize(MIN_FRAME, 0);
        }
        self.frames += 1;
        let ingress = side.ifindex(self.env);
        let (verdict, output, judgement) = match self.xdp.try_run(Some(ingress), &frame) {
            Ok(out) => {
                let j = self.oracle.judge(ingress, &frame, out.verdict, &out.frame);
                (out.verdict, out.frame, j)
            }
            Err(e) => (u32::MAX, Vec::new(), Err(format!("BPF_PROG_TEST_RUN failed: {e:#}"))),
        };
        match verdict {
            v @ 0..=4 => self.verdicts[v as usize] += 1,
            _ => self.other_verdicts += 1,
        }
        match &judgement {
            Ok(j) => *self.judged.entry(*j).or_default() += 1,
            Err(problem) => {
                let frame_no = self.frames;
                self.finding(Finding { seed: self.opts.seed, frame_no, side, verdict, input: frame, output, problem: problem.clone() });
            }
        }
        (verdict, judgement)
    }

    fn finding(&mut self, f: Finding) {
        self.findings_total += 1;
        if self.findings.len() < self.opts.keep_findings {
            self.findings.push(f);
        }
    }

    /// Every frame lands in exactly one of the program's stats (docs/xdp.md):
    /// the stats must add up to the verdicts seen, and the forwarding ones
    /// to what the oracle judged.
    fn check_counters(&mut self, before: &[PacketCounter; STAT_COUNT as usize], after: &[PacketCounter; STAT_COUNT as usize]) {
        let delta = |s: Stat| after[s.index() as usize].packets - before[s.index() as usize].packets;
        let sum = |list: &[Stat]| list.iter().map(|s| delta(*s)).sum::<u64>();
        let judged = |j: Judged| self.judged.get(&j).copied().unwrap_or(0);
        let passes = [Stat::PassNotVip, Stat::PassKernelForward, Stat::PassMalformed];
        let drops = [Stat::DropAllowlistCidr, Stat::DropAllowlistPort, Stat::DropNoBackend, Stat::DropMalformedVip, Stat::DropFragmentVip, Stat::DropNoRoute];
        let sent = [Stat::ForwardNat, Stat::ForwardDsr, Stat::ReverseNat, Stat::IcmpToBackend];
        let v = self.verdicts;
        let mut problems = Vec::new();
        let checks = [
            ("PASS verdicts vs pass stats", v[XDP_PASS as usize], sum(&passes)),
            ("DROP verdicts vs drop stats", v[XDP_DROP as usize], sum(&drops)),
            ("TX+REDIRECT verdicts vs forward stats", v[XDP_TX as usize] + v[XDP_REDIRECT as usize], sum(&sent)),
            ("judged NAT forwards vs forward_nat", judged(Judged::ForwardNat), delta(Stat::ForwardNat)),
            ("judged DSR forwards vs forward_dsr", judged(Judged::ForwardDsr), delta(Stat::ForwardDsr)),
            ("judged replies vs reverse_nat", judged(Judged::ReverseNat), delta(Stat::ReverseNat)),
            ("judged ICMP errors vs icmp_to_backend", judged(Judged::IcmpToBackend), delta(Stat::IcmpToBackend)),
            ("judged kernel forwards vs pass_kernel_forward", judged(Judged::KernelForward), delta(Stat::PassKernelForward)),
        ];
        // Only meaningful when every frame was judged (a finding's frame is not).
        if self.findings_total == 0 {
            for (what, seen, counted) in checks {
                if seen != counted {
                    problems.push(format!("{what}: {seen} seen, {counted} counted"));
                }
            }
        }
        for p in problems {
            let seed = self.opts.seed;
            self.finding(Finding {
                seed,
                frame_no: 0,
                side: Side::Client,
                verdict: 0,
                input: Vec::new(),
                output: Vec::new(),
                problem: format!("counters disagree: {p}"),
            });
        }
    }

    fn report(self, elapsed: Duration, cpu: Duration, before: &[PacketCounter; STAT_COUNT as usize], after: &[PacketCounter; STAT_COUNT as usize]) -> Report {
        let mut verdicts = BTreeMap::new();
        for (i, n) in self.verdicts.iter().enumerate() {
            verdicts.insert(verdict_name(i as u32), *n);
        }
        if self.other_verdicts > 0 {
            verdicts.insert("other".into(), self.other_verdicts);
        }
        let stats = Stat::ALL.iter().map(|s| (s.name(), after[s.index() as usize].packets - before[s.index() as usize].packets)).collect();
        Report {
            seed: self.opts.seed,
            frames: self.frames,
            elapsed,
            cpu,
            verdicts,
            judged: self.judged,
            stats,
            findings_total: self.findings_total,
            findings: self.findings,
            model: self.oracle.model_size(),
            replayed: Vec::new(),
        }
    }
}

/// CPU time of the calling thread (user and system).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and out pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The next frame: mostly a mutated seed, sometimes a seed as it is (keeps
/// flows established), sometimes random bytes; checksums usually fixed up;
/// usually on the seed's side, sometimes on the other.
fn generate(rng: &mut Rng, pool: &[Seed]) -> (Side, Vec<u8>) {
    let roll = rng.u8(0..100);
    if roll < 3 {
        let side = if rng.bool() { Side::Client } else { Side::Backend };
        return (side, mutate::random_frame(rng));
    }
    let seed = &pool[rng.usize(..pool.len())];
    let mut frame = seed.frame.clone();
    if roll >= 10 {
        mutate::mutate(rng, &mut frame, pool);
        if rng.u8(0..10) < 7 {
            mutate::fix_checksums(&mut frame);
        }
    }
    let side = if rng.u8(0..10) == 0 { seed.side.other() } else { seed.side };
    (side, frame)
}
