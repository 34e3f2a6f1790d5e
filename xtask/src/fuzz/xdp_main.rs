//! `fuzz-xdp`: the XDP fuzzer (`xdplb_tests::fuzz`) as a program, run by
//! `cargo xtask fuzz xdp` (built as an example of xtask so that xtask
//! itself does not need the eBPF toolchain, like `bench-xdp-cost`).
//!
//! Usage: `fuzz-xdp --duration SECONDS [--seed N] [--lab NAME]
//! [--replay HEX [--side client|backend]]`. Without `--lab` it brings up
//! its own lab (two backends) and removes it at the end, also after
//! SIGINT/SIGTERM, which end the run early with its summary. Prints
//! progress every 2 s and a summary; exits 1 when anything was found.

use std::{
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{Context as _, Result};
use clap::{Parser, ValueEnum};
use xdplb_tests::{
    fuzz::{self, seeds::Side, Options},
    lab::Lab,
    testrun::lab::LabEnv,
};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum SideArg {
    Client,
    Backend,
}

/// Fuzz the XDP program through BPF_PROG_TEST_RUN (needs root).
#[derive(Parser, Debug)]
struct Args {
    /// How long to fuzz, in seconds.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// PRNG seed (default: from the clock); a finding prints it.
    #[arg(long)]
    seed: Option<u64>,
    /// Run in this existing lab (two backends) instead of a new one.
    #[arg(long)]
    lab: Option<String>,
    /// Instead of fuzzing: run the seeds, then this frame (hex), and judge it.
    #[arg(long, value_name = "HEX")]
    replay: Option<String>,
    /// The interface the replayed frame arrives on.
    #[arg(long, value_enum, default_value = "client", requires = "replay")]
    side: SideArg,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("fuzz-xdp: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Ok(true) when nothing was found.
fn run(args: Args) -> Result<bool> {
    // Bad input fails before a lab is brought up.
    let replay = args.replay.as_deref().map(fuzz::parse_hex).transpose()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    lb_common::userspace::signals::on_stop(move |s| {
        eprintln!("fuzz-xdp: {}: stopping", s.name());
        flag.store(true, Ordering::SeqCst);
    })
    .context("installing the SIGINT/SIGTERM handler")?;
    // Our own lab lives until the end of this function (removed on drop).
    let (own_lab, env) = match &args.lab {
        Some(name) => (None, LabEnv::read(name, 2).with_context(|| format!("reading lab {name:?}"))?),
        None => {
            let lab = Lab::up_unique("xf", 2)?;
            let env = LabEnv::of(&lab)?;
            (Some(lab), env)
        }
    };
    let seed = args.seed.unwrap_or_else(fuzz::clock_seed);
    let mut opts = Options::new(seed, Duration::from_secs(args.duration));
    opts.stop = Some(stop);
    if let Some(frame) = replay {
        let side = match args.side {
            SideArg::Client => Side::Client,
            SideArg::Backend => Side::Backend,
        };
        opts.replay = vec![(side, frame)];
        println!("[fuzz xdp] replaying one frame after the seeds, in lab {}", env.lab);
    } else {
        println!("[fuzz xdp] seed {seed}, {} s, lab {} (repeat with --seed {seed})", args.duration, env.lab);
    }
    let report = fuzz::run(&env, opts, |p| {
        println!("[fuzz xdp] {:>5.0} s: {} frames, {:.0} frames/s, {} findings", p.elapsed.as_secs_f64(), p.frames, p.frames_per_second(), p.findings);
    })?;
    drop(own_lab);
    print!("[fuzz xdp] {}", report.summary());
    Ok(report.findings_total == 0)
}
