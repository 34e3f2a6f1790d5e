//! `cargo xtask bench reliability`: load and memory figures for
//! docs/reliability.md — alb with many idle TLS connections, slowloris
//! clients, a soak through XDP and alb, lb-user with a full conntrack table
//! and many backends. Figures, not pass/fail tests: each case prints its
//! figures with the goal from the reliability issue next to them, and the
//! run writes them to `reliability.json` and `reliability.md`.
//!
//! - `clients`: the `tls-clients` processes; `alb_lab`: a lab with alb and
//!   one backend; `proc`: /proc memory figures.
//! - One file per case; this file: options, build, the case loop, outputs.

pub(crate) mod alb_lab;
pub(crate) mod clients;
mod conntrack;
pub mod figure;
mod idle_tls;
pub(crate) mod proc;
mod slowloris;
mod soak;

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use clap::{Args, ValueEnum};

pub use figure::Figure;

use crate::util;

/// One reliability case.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// alb holding 10,000 idle TLS connections: RSS, new-client handshake p99.
    IdleTls,
    /// 1,000 slowloris connections against alb: other clients' p99.
    Slowloris,
    /// Half of peak through XDP and alb for --soak-duration: errors, RSS growth.
    Soak,
    /// lb-user with 1,000,000 conntrack entries and 1,024 backends: reload time, memory.
    Conntrack,
}

impl Case {
    pub fn id(self) -> &'static str {
        match self {
            Case::IdleTls => "idle-tls",
            Case::Slowloris => "slowloris",
            Case::Soak => "soak",
            Case::Conntrack => "conntrack",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct ReliabilityArgs {
    /// Cases to run (repeatable; default: all).
    #[arg(long, value_enum, value_name = "CASE")]
    pub only: Vec<Case>,
    /// How long the soak runs: a duration (`10m`) or whole seconds.
    #[arg(long, value_name = "DURATION", value_parser = crate::whole_seconds, default_value = "600")]
    pub soak_duration: u64,
    /// Output directory (default target/bench/reliability-<timestamp>/).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Run prebuilt binaries from DIR (alb, lb-user, lab-backend,
    /// tls-clients, examples/bench-conntrack; e.g. a saved target/release)
    /// instead of building: compares two builds.
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,
    /// idle-tls: idle TLS connections alb holds.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=15_000))]
    pub idle_conns: u32,
    /// slowloris: slow connections.
    #[arg(long, value_name = "N", default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub slow_conns: u32,
    /// conntrack: flows written into the conntrack map.
    #[arg(long, value_name = "N", default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1..=16_000_000))]
    pub flows: u32,
}

/// What every case gets: the options, where to write, which binaries.
pub struct Ctx<'a> {
    pub args: &'a ReliabilityArgs,
    pub out: PathBuf,
    pub bin_dir: PathBuf,
}

impl Ctx<'_> {
    /// A fresh work directory for `case` under the output directory.
    pub fn work(&self, case: Case) -> Result<PathBuf> {
        let dir = self.out.join("work").join(case.id());
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// A binary from the binary directory.
    pub fn bin(&self, name: &str) -> Result<PathBuf> {
        let path = self.bin_dir.join(name);
        if !path.is_file() {
            bail!("{} not found: build it (cargo xtask bench reliability does without --bin-dir)", path.display());
        }
        Ok(path)
    }
}

/// Set by Ctrl-C: the case in progress stops at its next step, its lab is
/// torn down, and no later case runs.
static STOP: AtomicBool = AtomicBool::new(false);

/// Whether Ctrl-C was pressed (for loops that stop early and still report).
pub fn stopped() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Fails once Ctrl-C was pressed; cases call it between steps and in waits.
pub fn check_stop() -> Result<()> {
    if STOP.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// A progress line of `case`.
pub fn say(case: Case, msg: impl AsRef<str>) {
    println!("[reliability {}] {}", case.id(), msg.as_ref());
}

/// Polls `f` every `every` until it returns a value, at most `limit`
/// (then fails naming `what`); stops early on Ctrl-C.
pub fn poll<T>(what: &str, limit: Duration, every: Duration, mut f: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        check_stop()?;
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {limit:?}");
        }
        std::thread::sleep(every);
    }
}

/// The CLI entry: root, setup, release build, the cases, the outputs.
pub fn reliability(args: ReliabilityArgs) -> Result<()> {
    util::require_root("bench reliability")?;
    crate::setup::setup()?;
    let bin_dir = match &args.bin_dir {
        Some(dir) => {
            println!("[reliability] prebuilt binaries from {} (--bin-dir), no build", dir.display());
            dir.clone()
        }
        None => {
            crate::build(true)?;
            println!("[reliability] cargo build --release -p xtask --example bench-conntrack");
            util::run_visible(util::cargo().args(["build", "--release", "-p", "xtask", "--example", "bench-conntrack"]))?;
            util::workspace_root().join("target/release")
        }
    };
    // The lab library starts lab-backend and lb-user from here too.
    std::env::set_var(xdplb_tests::workspace::BIN_DIR_ENV, &bin_dir);
    lb_common::userspace::signals::on_stop(|_| STOP.store(true, Ordering::SeqCst)).context("installing the SIGINT/SIGTERM handler")?;
    let t0 = Instant::now();
    let started = super::timestamp();
    let out = args.out.clone().unwrap_or_else(|| util::workspace_root().join("target/bench").join(format!("reliability-{started}")));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let cases = if args.only.is_empty() { vec![Case::IdleTls, Case::Slowloris, Case::Soak, Case::Conntrack] } else { args.only.clone() };
    println!("[reliability] cases {}; output {}", cases.iter().map(|c| c.id()).collect::<Vec<_>>().join(", "), out.display());
    let ctx = Ctx { args: &args, out: out.clone(), bin_dir };
    let mut figures = Vec::new();
    let mut failures = Vec::new();
    for case in cases {
        check_stop().context("no report written")?;
        let started = Instant::now();
        say(case, "start");
        let result = match case {
            Case::IdleTls => idle_tls::run(&ctx),
            Case::Slowloris => slowloris::run(&ctx),
            Case::Soak => soak::run(&ctx),
            Case::Conntrack => conntrack::run(&ctx),
        };
        // One failed case must not cost the others' figures (unless it was Ctrl-C).
        match result {
            Ok(f) => {
                say(case, format!("done in {:.0} s", started.elapsed().as_secs_f64()));
                figure::print(&f);
                figures.extend(f);
            }
            Err(e) => {
                check_stop().context("no report written")?;
                say(case, format!("FAILED: {e:#}"));
                failures.push(figure::Failure { case: case.id(), error: format!("{e:#}") });
            }
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    write_outputs(&out, &started, wall, &figures, &failures)?;
    println!("[reliability] all figures:");
    figure::print(&figures);
    println!("[reliability] done in {wall:.0} s: {}/reliability.md, reliability.json", out.display());
    if !failures.is_empty() {
        bail!("{} case(s) failed: {}", failures.len(), failures.iter().map(|f| f.case).collect::<Vec<_>>().join(", "));
    }
    Ok(())
}

fn write_outputs(out: &Path, started: &str, wall: f64, figures: &[Figure], failures: &[figure::Failure]) -> Result<()> {
    let json = serde_json::to_string_pretty(&figure::json(started, wall, figures, failures))? + "\n";
    std::fs::write(out.join("reliability.json"), json).context("writing reliability.json")?;
    std::fs::write(out.join("reliability.md"), figure::markdown(started, wall, figures, failures)).context("writing reliability.md")?;
    Ok(())
}
