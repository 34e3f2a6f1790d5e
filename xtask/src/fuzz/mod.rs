//! `cargo xtask fuzz <target>`: the fuzzers, for longer runs than the short
//! ones inside `cargo xtask test`. `xdp` drives the XDP program through
//! BPF_PROG_TEST_RUN and judges it with an independent packet parser; the
//! other targets are libFuzzer (cargo-fuzz) targets over the config loaders
//! and alb's request-head handling.

mod libfuzzer;
mod xdp;

use anyhow::Result;
use clap::{Args, ValueEnum};

/// What to fuzz.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The XDP program, frames judged by an independent parser (needs root).
    Xdp,
    /// lb-user's config loader (libFuzzer).
    LbUserConfig,
    /// alb's config loader (libFuzzer).
    AlbConfig,
    /// alb's request-head handling (libFuzzer).
    AlbRequestHead,
}

#[derive(Args, Debug)]
pub struct FuzzArgs {
    /// The fuzz target.
    #[arg(value_enum)]
    pub target: Target,
    /// How long to fuzz: a duration (`90s`, `10m`) or whole seconds.
    #[arg(long, value_name = "DURATION", value_parser = crate::whole_seconds, default_value = "60")]
    pub duration: u64,
    /// `xdp` only: the PRNG seed, to repeat a run (default: from the clock).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// libFuzzer targets only: an unoptimised build (cargo-fuzz `--dev`,
    /// no debuginfo) into `target/fuzz-quick`: about 2 instead of 5.5
    /// minutes to build from cold, 5–14× fewer inputs a second; what
    /// `cargo xtask test`'s short runs use.
    #[arg(long)]
    pub quick_build: bool,
}

pub fn fuzz(args: FuzzArgs) -> Result<()> {
    match args.target {
        Target::Xdp if args.quick_build => anyhow::bail!("--quick-build is for the libFuzzer targets; xdp has one build (the release fuzz-xdp example)"),
        Target::Xdp => xdp::run(args.duration, args.seed),
        other => libfuzzer::run(other, args.duration, if args.quick_build { libfuzzer::Build::Quick } else { libfuzzer::Build::Optimised }),
    }
}
