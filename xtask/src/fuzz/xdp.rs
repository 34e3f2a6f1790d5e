//! `cargo xtask fuzz xdp`: builds the `fuzz-xdp` example (release; it needs
//! the eBPF toolchain, which xtask's own binary must not) and runs it. The
//! example brings up its own lab, prints progress every 2 s and a summary,
//! and exits non-zero on findings (docs/reliability.md, "XDP fuzzing").

use anyhow::{bail, Context as _, Result};

use crate::util;

pub fn run(duration: u64, seed: Option<u64>) -> Result<()> {
    util::require_root("fuzz xdp")?;
    crate::setup::setup()?;
    println!("[fuzz xdp] cargo build --release -p xtask --example fuzz-xdp");
    util::run_visible(util::cargo().args(["build", "--release", "-p", "xtask", "--example", "fuzz-xdp"]))?;
    // The example stops early (and removes its lab) on SIGINT/SIGTERM;
    // xtask only has to outlive it to report how it ended.
    lb_common::userspace::signals::on_stop(|_| {}).context("installing the SIGINT/SIGTERM handler")?;
    let binary = util::workspace_root().join("target/release/examples/fuzz-xdp");
    let mut cmd = std::process::Command::new(&binary);
    cmd.args(["--duration", &duration.to_string()]);
    if let Some(seed) = seed {
        cmd.args(["--seed", &seed.to_string()]);
    }
    let status = cmd.stdin(std::process::Stdio::null()).status().with_context(|| format!("starting {}", binary.display()))?;
    match status.code() {
        Some(0) => Ok(()),
        Some(1) => bail!("the XDP fuzzer found problems: each FINDING above names the seed, the frame number and the frame's bytes"),
        _ => bail!("{} failed ({status})", binary.display()),
    }
}
