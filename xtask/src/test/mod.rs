//! `cargo xtask test`: setup, build, unit tests, then the privileged
//! integration tests, short runs of the libFuzzer targets, then a check
//! that nothing was left behind.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};
use clap::ValueEnum as _;
use xdplb_tests::{privileged, workspace};

mod failures;

use crate::fuzz::{self, FuzzArgs, Target};
use crate::{setup, util};

/// Counts parsed from cargo test's `test result:` lines.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Tally {
    /// Adds the counts of one `test result: ok. 3 passed; 0 failed; 1 ignored; …` line.
    pub fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else { return };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(label), Some(n)) = (words.next(), words.next()) else { continue };
            let Ok(n) = n.parse::<u64>() else { continue };
            match label {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
    }
}

/// The lines of tests that passed but skipped a part this host cannot run
/// (`xdplb_tests::privileged::skipped_for_host`), listed after the tally.
#[derive(Default, Debug)]
pub struct HostSkips(Vec<String>);

impl HostSkips {
    pub fn add_line(&mut self, line: &str) {
        if line.starts_with(privileged::SKIP_PREFIX) {
            self.0.push(line.to_owned());
        }
    }
}

/// Runs `cargo test args…`, echoing its output and tallying the results.
fn cargo_test(title: &str, args: &[&str], tally: &mut Tally, failures: &mut failures::Failures, skips: &mut HostSkips) -> Result<bool> {
    println!("\n[test] {title}: cargo test {}", args.join(" "));
    let mut child = util::cargo()
        .arg("test")
        .args(args)
        .env(privileged::REQUIRE_ENV, "1")
        .env(workspace::BIN_DIR_ENV, util::workspace_root().join("target/debug"))
        .stdout(Stdio::piped())
        .spawn()
        .context("starting cargo test")?;
    let stdout = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        tally.add_line(&line);
        failures.add_line(&line);
        skips.add_line(&line);
    }
    Ok(child.wait()?.success())
}

fn namespaces() -> Result<Vec<String>> {
    let out = Command::new("ip").args(["netns", "list"]).output().context("running ip netns list")?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect())
}

fn pins() -> Vec<String> {
    std::fs::read_dir("/sys/fs/bpf/xdplb").map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().display().to_string()).collect()).unwrap_or_default()
}

pub fn test(extra: &[String]) -> Result<()> {
    util::require_root("test")?;
    setup::setup()?;
    crate::build(false)?;
    let style_ok = style_checks()?;
    let ns_before = namespaces()?;
    let pins_before = pins();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut tally = Tally::default();
    let mut failures = failures::Failures::default();
    let mut skips = HostSkips::default();
    // One invocation for the unit tests and the privileged integration tests
    // (xdplb-tests): features unify across the whole workspace once, where a
    // separate `-p xdplb-tests` run would recompile the crates whose features
    // differ without certgen and xtask (about 25 s on 2 cores).
    let mut args = vec!["--workspace", "--no-fail-fast"];
    args.extend(&extra);
    let tests_ok = cargo_test("unit tests and privileged integration tests (netns, XDP attach, TestRun)", &args, &mut tally, &mut failures, &mut skips)?;
    let fuzz_ok = short_fuzz_runs(&mut tally);

    // Everything a test creates must be gone, whatever happened to the test.
    let leaked_ns: Vec<String> = namespaces()?.into_iter().filter(|n| !ns_before.contains(n)).collect();
    let leaked_pins: Vec<String> = pins().into_iter().filter(|p| !pins_before.contains(p)).collect();
    if leaked_ns.is_empty() && leaked_pins.is_empty() {
        println!("\n[test] leak check: no network namespaces or /sys/fs/bpf/xdplb pins left behind");
    } else {
        println!("\n[test] leak check FAILED: namespaces {leaked_ns:?}, pins {leaked_pins:?}");
    }
    let leaked = !(leaked_ns.is_empty() && leaked_pins.is_empty());
    println!("\nxtask: {} passed, {} failed, {} skipped", tally.passed, tally.failed, tally.ignored);
    if !skips.0.is_empty() {
        println!("xtask: {} passed test(s) skipped a part this host cannot run:\n{}", skips.0.len(), skips.0.join("\n"));
    }
    if !failures.is_empty() {
        println!("\n{}", failures.report().join("\n"));
    }
    if !style_ok || !tests_ok || !fuzz_ok || leaked {
        bail!("tests failed (fmt/clippy: {}, tests: {}, fuzz: {}, leak check: {})", ok(style_ok), ok(tests_ok), ok(fuzz_ok), ok(!leaked));
    }
    Ok(())
}

/// Seconds per libFuzzer target in the test command (docs/reliability.md
/// has the build and run figures).
const FUZZ_SECONDS: u64 = 20;

/// A short run of every libFuzzer target, each counted as one test in the
/// summary; `cargo xtask fuzz <target>` runs longer.
fn short_fuzz_runs(tally: &mut Tally) -> bool {
    let mut all = true;
    for target in [Target::LbUserConfig, Target::AlbConfig, Target::AlbRequestHead] {
        let name = target.to_possible_value().map_or_else(|| format!("{target:?}"), |v| v.get_name().to_owned());
        println!("\n[test] fuzz {name}: cargo xtask fuzz {name} --duration {FUZZ_SECONDS}s --quick-build");
        match fuzz::fuzz(FuzzArgs { target, duration: FUZZ_SECONDS, seed: None, quick_build: true }) {
            Ok(()) => tally.passed += 1,
            Err(e) => {
                println!("[test] fuzz {name} FAILED: {e:#}");
                tally.failed += 1;
                all = false;
            }
        }
    }
    all
}

/// `cargo fmt --check` (the workspace, and lb-ebpf and tests/fuzz, which are
/// outside it) and
/// `cargo clippy -D warnings` over every target. Both run before the tests
/// and are reported with them, so a style slip does not hide a test result.
fn style_checks() -> Result<bool> {
    let root = util::workspace_root();
    let mut all = true;
    for (title, dir, args) in [
        ("fmt", root.clone(), vec!["fmt", "--all", "--check"]),
        ("fmt (lb-ebpf)", root.join("lb-ebpf"), vec!["fmt", "--check"]),
        ("fmt (tests/fuzz)", root.join("tests/fuzz"), vec!["fmt", "--check"]),
        ("clippy", root.clone(), vec!["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]),
    ] {
        println!("\n[test] {title}: cargo {}", args.join(" "));
        let ok = util::cargo().current_dir(&dir).args(&args).status().with_context(|| format!("running cargo {}", args[0]))?.success();
        if !ok {
            println!("[test] {title} FAILED");
        }
        all &= ok;
    }
    Ok(all)
}

fn ok(b: bool) -> &'static str {
    if b {
        "ok"
    } else {
        "FAILED"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_cargo_test_result_lines() {
        let mut t = Tally::default();
        t.add_line("test result: ok. 9 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.00s");
        t.add_line("test result: FAILED. 1 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out");
        t.add_line("running 4 tests");
        assert_eq!(t, Tally { passed: 10, failed: 3, ignored: 2 });
    }

    #[test]
    fn lists_only_skip_lines() {
        let mut s = HostSkips::default();
        s.add_line("SKIPPED xtask::bench::pps::tests: this kernel refuses BPF_F_TEST_XDP_LIVE_FRAMES");
        s.add_line("test bench::pps::tests::quick_pps_delivers_every_frame ... ok");
        s.add_line("  SKIPPED is not at the start of this line");
        assert_eq!(s.0, ["SKIPPED xtask::bench::pps::tests: this kernel refuses BPF_F_TEST_XDP_LIVE_FRAMES"]);
    }
}
