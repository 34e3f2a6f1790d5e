//! `cargo xtask run`: the two-tier demo. The system, the load, the
//! scenarios and the sampling are `xdplb_tests::lab::demo` (the library the
//! integration test runs too); this module turns flags into a spec, prints
//! the live view each second ([`view`]) and the summary with the timeline at
//! the end ([`summary`]). Ctrl-C (or `--duration`) ends the run; everything
//! is torn down on the way out, also on errors.

mod compare;
mod summary;
mod view;

pub use compare::compare;

use std::{sync::mpsc, time::Duration};

use anyhow::{Context as _, Result};
use xdplb_tests::{
    lab::demo::{self, traffic::Load, DemoSpec, Scenario},
    workspace,
};

use crate::util;

pub struct RunOptions {
    pub duration: u64,
    pub mode: String,
    pub scenario: Scenario,
    /// `None`: the mode's default.
    pub rate: Option<u32>,
    pub mix: Option<String>,
    pub compare: bool,
    pub rounds: u32,
}

/// Runs the demo until Ctrl-C (or SIGTERM) or `--duration`.
pub fn demo(opts: RunOptions) -> Result<()> {
    let stop_rx = prepare()?;
    let mut spec = DemoSpec::new(Duration::from_secs(opts.duration), opts.scenario);
    spec.attach_mode = (opts.mode != "auto").then(|| opts.mode.clone());
    let defaults = Load::default();
    spec.load = Load { rate: opts.rate.unwrap_or(defaults.rate), mix: opts.mix.unwrap_or(defaults.mix), ..defaults };
    println!(
        "[run] bringing up: client -> XDP (lb-user attach, NAT) -> 2 albs (mTLS) -> 3 backend simulators; scenario {}, {} s",
        spec.scenario, opts.duration
    );
    let mut live = view::Live::new();
    let report = demo::run(&spec, &stop_rx, &mut live)?;
    print!("{}", summary::render(&report));
    println!("[run] done: lab {} removed (namespaces, pins, processes)", report.lab);
    Ok(())
}

/// The Ctrl-C channel and where the lab finds the debug binaries.
fn prepare() -> Result<mpsc::Receiver<()>> {
    let (stop_tx, stop_rx) = mpsc::channel();
    lb_common::userspace::signals::on_stop(move |_| {
        let _ = stop_tx.send(());
    })
    .context("installing the SIGINT/SIGTERM handler")?;
    std::env::set_var(workspace::BIN_DIR_ENV, util::workspace_root().join("target/debug"));
    Ok(stop_rx)
}
