//! `cargo xtask bench reliability`: load and memory figures for
//! docs/reliability.md — alb with many idle TLS connections, slowloris
//! clients, a soak through XDP and alb, lb-user with a full conntrack table
//! and many backends. Figures, not pass/fail tests: each case prints its
//! figures with the goal from the reliability issue next to them, and the
//! run writes them to `reliability.json` and `reliability.md`.

mod conntrack;
pub mod figure;
mod idle_tls;
mod slowloris;
mod soak;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};

pub use figure::Figure;

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
}

pub fn reliability(args: ReliabilityArgs) -> Result<()> {
    let cases = if args.only.is_empty() { vec![Case::IdleTls, Case::Slowloris, Case::Soak, Case::Conntrack] } else { args.only.clone() };
    let mut figures = Vec::new();
    for case in cases {
        figures.extend(match case {
            Case::IdleTls => idle_tls::run(&args)?,
            Case::Slowloris => slowloris::run(&args)?,
            Case::Soak => soak::run(&args)?,
            Case::Conntrack => conntrack::run(&args)?,
        });
    }
    figure::print(&figures);
    Ok(())
}
