//! `cargo xtask`: the one entry point for xdplb's developers and users.

mod bench;
mod fuzz;
mod lab;
mod run;
mod setup;
mod test;
mod util;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Build, run and test xdplb. Run as root on Linux >= 5.15 with BTF.
#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    after_help = "Start here:\n  \
    cargo xtask run     # install what is missing, build, demo in a netns lab\n  \
    cargo xtask test    # install what is missing, build, all tests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Install what the build and tests need (idempotent): Debian packages,
    /// nightly rust-src, bpf-linker, cargo-fuzz, k6.
    Setup,
    /// Build the workspace (the eBPF object is built by lb-user's build script).
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Demo: the two-tier system (client simulator -> XDP -> 2 albs with
    /// mTLS -> 3 backend simulators) with a live view; Ctrl-C stops
    /// (docs/demo.md).
    ///
    /// With arguments after `--`, runs `lb-user <ARGS>` instead, e.g.
    /// `cargo xtask run -- stats --iface eth0`.
    Run {
        /// How long the load runs (Ctrl-C stops earlier): a duration
        /// (`90s`, `2m`) or whole seconds. Scenario times scale with it.
        #[arg(long, value_name = "DURATION", value_parser = whole_seconds, default_value = "60")]
        duration: u64,
        /// A scripted story: steady, failover, slow-backend, chaos, alb-down.
        #[arg(long, default_value = "steady")]
        scenario: xdplb_tests::lab::demo::Scenario,
        /// New clients per second (the client simulator's --rate);
        /// default 20, with --compare 100.
        #[arg(long)]
        rate: Option<u32>,
        /// Client kinds and weights (the client simulator's --mix); default
        /// real=4,fire_and_forget=1,stream=1,idle=1,slow=1,https=4, with
        /// --compare real=3,fire_and_forget=1 (raw-TCP kinds only).
        #[arg(long)]
        mix: Option<String>,
        /// XDP against `lb-user proxy`: the same load through both,
        /// alternately in rounds, with a direct baseline each round; shows
        /// conn/s, latency, errors and the LB's CPU per connection and
        /// request (docs/demo.md). --duration is the XDP and proxy legs together.
        #[arg(long, conflicts_with = "scenario")]
        compare: bool,
        /// Rounds of --compare.
        #[arg(long, default_value_t = xdplb_tests::lab::demo::compare::DEFAULT_ROUNDS, requires = "compare", value_parser = clap::value_parser!(u32).range(1..=100))]
        rounds: u32,
        /// XDP attach mode for the demo (auto, native, skb).
        #[arg(long, default_value = "auto", value_parser = ["auto", "native", "skb"])]
        mode: String,
        /// Arguments for lb-user (after `--`).
        #[arg(last = true)]
        lb_user_args: Vec<String>,
    },
    /// Setup, build, unit tests, privileged integration tests, short fuzz
    /// runs, leak check.
    Test {
        /// Extra arguments for every `cargo test` run (e.g. a test name filter).
        #[arg(last = true)]
        cargo_test_args: Vec<String>,
    },
    /// Benchmark: XDP vs lb-user proxy vs nftables/HAProxy/nginx, and alb vs
    /// HAProxy/nginx TLS; writes report.md, results.json, chart.svg
    /// (docs/benchmarks.md).
    #[command(args_conflicts_with_subcommands = true)]
    Bench {
        #[command(subcommand)]
        mode: Option<BenchMode>,
        /// Smoke test: a few seconds per case, one repetition.
        #[arg(long)]
        quick: bool,
        /// Time per case and repetition: a duration (`8s`, `1m`) or whole
        /// seconds (default 8s; 2s with --quick).
        #[arg(long, value_name = "DURATION", value_parser = whole_seconds)]
        duration: Option<u64>,
        /// Concurrent connections (wrk -c, k6 --vus).
        #[arg(long, value_name = "N", default_value_t = 64)]
        conns: u32,
        /// Load generator for the cases wrk can drive (mTLS always uses k6).
        #[arg(long, default_value = "wrk", value_parser = ["wrk", "k6"])]
        tool: String,
        /// Output directory (default target/bench/<timestamp>/).
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
        /// Only cases whose id contains this (repeatable), e.g. `xdp-nat`.
        #[arg(long, value_name = "TEXT")]
        only: Vec<String>,
        /// How the XDP cases attach: `skb` (generic XDP, the cheaper mode on
        /// the lab's veths), `native` (in the veth driver) or `auto`.
        #[arg(long, value_name = "MODE", default_value = bench::stage::DEFAULT_XDP_MODE, value_parser = ["skb", "native", "auto"])]
        xdp_mode: String,
        /// Run prebuilt binaries from DIR (lb-user, alb,
        /// examples/bench-xdp-cost; e.g. a saved target/release) instead of
        /// building: compares two builds.
        #[arg(long, value_name = "DIR")]
        bin_dir: Option<std::path::PathBuf>,
    },
    /// Fuzz the XDP program, the config loaders or alb's request heads for
    /// longer than `cargo xtask test` does (docs/reliability.md).
    Fuzz(fuzz::FuzzArgs),
    /// The network-namespace lab by hand.
    Lab {
        #[command(subcommand)]
        command: lab::LabCommand,
    },
}

/// Benchmarks other than the default comparison.
#[derive(Subcommand, Debug)]
enum BenchMode {
    /// Load and memory figures for docs/reliability.md: idle TLS
    /// connections, slowloris, a soak through XDP and alb, a full conntrack.
    Reliability(bench::reliability::ReliabilityArgs),
    /// Packets per second per core: XDP NAT/DSR vs nftables DNAT vs kernel
    /// forwarding with a live-frame XDP generator, and the XDP program's
    /// cost per packet (docs/benchmarks.md, "Packet rate").
    Pps(bench::pps::PpsArgs),
    /// How the cost grows with the work: XDP cost with many backends and
    /// conntrack entries, lb-user reloads with 1,024 backends, alb with
    /// many open connections (docs/benchmarks.md, "Scaling").
    Scaling(bench::scaling::ScalingArgs),
    /// Flame graphs (perf + inferno) of the balancers under the bench's
    /// load, one SVG per case (docs/benchmarks.md, "Flame graphs").
    Profile(bench::profile::ProfileArgs),
    /// The performance levers (allocator, runtime, copy, io_uring) A/B in
    /// one run: levers.md, levers.json (docs/benchmarks.md, "Levers").
    Levers(bench::levers::LeversArgs),
}

/// `cargo build --workspace`.
pub fn build(release: bool) -> Result<()> {
    println!("[build] cargo build --workspace{}", if release { " --release" } else { "" });
    let mut cmd = util::cargo();
    cmd.args(["build", "--workspace"]);
    if release {
        cmd.arg("--release");
    }
    util::run_visible(&mut cmd)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup => setup::setup(),
        Command::Build { release } => build(release),
        Command::Run { duration, mode, scenario, rate, mix, compare, rounds, lb_user_args } => {
            run_command(run::RunOptions { duration, mode, scenario, rate, mix, compare, rounds }, lb_user_args)
        }
        Command::Test { cargo_test_args } => test::test(&cargo_test_args),
        Command::Lab { command } => lab::lab(command),
        Command::Fuzz(args) => fuzz::fuzz(args),
        Command::Bench { mode: Some(BenchMode::Reliability(args)), .. } => bench::reliability::reliability(args),
        Command::Bench { mode: Some(BenchMode::Pps(args)), .. } => bench::pps::pps(args),
        Command::Bench { mode: Some(BenchMode::Scaling(args)), .. } => bench::scaling::scaling(args),
        Command::Bench { mode: Some(BenchMode::Profile(args)), .. } => bench::profile::profile(args),
        Command::Bench { mode: Some(BenchMode::Levers(args)), .. } => bench::levers::levers(args),
        Command::Bench { mode: None, quick, duration, conns, tool, out, only, xdp_mode, bin_dir } => bench::bench(bench::BenchOptions {
            quick,
            duration,
            conns,
            tool: if tool == "k6" { bench::load::Tool::K6 } else { bench::load::Tool::Wrk },
            out,
            bin_dir,
            only,
            xdp_mode,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_command(opts: run::RunOptions, lb_user_args: Vec<String>) -> Result<()> {
    if lb_user_args.is_empty() {
        util::require_root("run")?;
    }
    setup::setup()?;
    build(false)?;
    if lb_user_args.is_empty() {
        return if opts.compare { run::compare(opts) } else { run::demo(opts) };
    }
    let binary = util::workspace_root().join("target/debug/lb-user");
    let status = std::process::Command::new(&binary).args(&lb_user_args).status()?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

/// A `--duration` value in the shared grammar (`90s`, `1m30s`) or bare
/// seconds, as whole seconds (at least 1).
fn whole_seconds(text: &str) -> Result<u64, String> {
    let d = lb_common::userspace::duration::parse_duration_or_seconds(text)?;
    if d.subsec_nanos() != 0 || d.as_secs() == 0 {
        return Err(format!("{text:?} is not a whole number of seconds (at least 1s)"));
    }
    Ok(d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::whole_seconds;

    #[test]
    fn duration_flags_take_the_shared_grammar_or_seconds() {
        assert_eq!(whole_seconds("6"), Ok(6));
        assert_eq!(whole_seconds("90s"), Ok(90));
        assert_eq!(whole_seconds("1m30s"), Ok(90));
        for bad in ["0", "0s", "1500ms", "2x", "", "-3"] {
            assert!(whole_seconds(bad).is_err(), "{bad}");
        }
    }
}
