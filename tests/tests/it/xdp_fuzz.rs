//! The XDP fuzzer (`xdplb_tests::fuzz`, docs/reliability.md "XDP fuzzing")
//! for a bounded time: random and mutated frames through the real program,
//! each judged by the etherparse-based oracle; fails on any finding. 60 s
//! by default; `XDPLB_FUZZ_SECONDS` changes it (`cargo xtask fuzz xdp
//! --duration` is the longer run) and `XDPLB_FUZZ_SEED` repeats a run.

use std::time::Duration;

use xdplb_tests::{
    fuzz::{self, Options},
    lab::Lab,
    require_root,
    testrun::lab::LabEnv,
};

pub const SECONDS_ENV: &str = "XDPLB_FUZZ_SECONDS";
pub const SEED_ENV: &str = "XDPLB_FUZZ_SEED";
const DEFAULT_SECONDS: u64 = 60;

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(text.trim().parse().unwrap_or_else(|_| panic!("{name}={text:?} is not a whole number")))
}

#[test]
fn random_and_mutated_frames_never_break_the_documented_rules() {
    require_root!();
    let seconds = env_number(SECONDS_ENV).unwrap_or(DEFAULT_SECONDS);
    let seed = env_number(SEED_ENV).unwrap_or_else(fuzz::clock_seed);
    let lab = Lab::up_unique("xt", 2).unwrap();
    let env = LabEnv::of(&lab).unwrap();
    println!("xdp fuzz: seed {seed}, {seconds} s (repeat with {SEED_ENV}={seed})");
    let mut opts = Options::new(seed, Duration::from_secs(seconds));
    opts.progress_every = Duration::from_secs(10);
    let report = fuzz::run(&env, opts, |p| {
        println!("xdp fuzz: {} frames, {:.0} frames/s, {} findings", p.frames, p.frames_per_second(), p.findings);
    })
    .unwrap();
    drop(lab);
    println!("{}", report.summary());
    assert_eq!(report.findings_total, 0, "the fuzzer found {} problems:\n{}", report.findings_total, report.summary());
    // A run that forwarded nothing judged nothing that matters.
    let forwarded: u64 = report.judged.iter().filter(|(j, _)| !matches!(j, fuzz::oracle::Judged::Dropped | fuzz::oracle::Judged::Passed)).map(|(_, n)| n).sum();
    assert!(forwarded > 0, "no frame was forwarded:\n{}", report.summary());
}
