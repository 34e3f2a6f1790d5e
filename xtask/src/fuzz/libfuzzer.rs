//! `cargo xtask fuzz lb-user-config|alb-config|alb-request-head`: the
//! cargo-fuzz (libFuzzer) targets of `tests/fuzz/` (docs/testing.md).
//!
//! `cargo +nightly fuzz run` builds the target (safe Rust, so no sanitizer:
//! a cheaper build and faster runs; optimised, with debug assertions and
//! overflow checks) and runs it on a working copy of the committed corpus
//! under `target/fuzz-corpus/<target>/`, so the inputs libFuzzer adds never
//! dirty `tests/fuzz/corpus/`. A failing input is saved under
//! `target/fuzz-artifacts/<target>/` and named in the error.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _, Result};

use super::Target;
use crate::util;

/// The cargo-fuzz project, relative to the workspace root.
const FUZZ_DIR: &str = "tests/fuzz";
/// libFuzzer's per-input limit: an input slower than this is a hang.
const INPUT_TIMEOUT_SECS: u64 = 10;
/// libFuzzer's memory limit (its default, stated).
const RSS_LIMIT_MB: u64 = 2048;

/// The cargo-fuzz target (`[[bin]]` of tests/fuzz/Cargo.toml).
fn name(target: Target) -> Option<&'static str> {
    match target {
        Target::LbUserConfig => Some("lb-user-config"),
        Target::AlbConfig => Some("alb-config"),
        Target::AlbRequestHead => Some("alb-request-head"),
        Target::Xdp => None,
    }
}

/// How the fuzz project is built. The two builds have their own target
/// directories, so switching between them rebuilds nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    /// The release profile as it is (`opt-level = 3`), in `target/fuzz`:
    /// for long runs.
    Optimised,
    /// cargo-fuzz's `--dev` (the dev profile: `opt-level = 0`, debug
    /// assertions and overflow checks, none of the release build's forced
    /// single codegen unit) without debuginfo, in `target/fuzz-quick`: on 2
    /// cores a cold build takes about 2 instead of 5.5 minutes (an
    /// `opt-level = 1` release build took 4.5), and runs 5–14× fewer inputs
    /// a second, which suits the 20 s smoke runs of `cargo xtask test`.
    Quick,
}

impl Build {
    fn target_dir(self) -> &'static str {
        match self {
            Build::Optimised => "target/fuzz",
            Build::Quick => "target/fuzz-quick",
        }
    }

    /// cargo-fuzz's profile flag.
    fn profile_flag(self) -> &'static str {
        match self {
            Build::Optimised => "--release",
            Build::Quick => "--dev",
        }
    }

    /// The environment the build adds to cargo's.
    fn env(self) -> Option<(&'static str, &'static str)> {
        (self == Build::Quick).then_some(("CARGO_PROFILE_DEV_DEBUG", "0"))
    }
}

/// The longest input: configs as long as the examples and then some; heads
/// past alb's smallest `limits.max_header_bytes` (8192), to reach the 431.
fn max_len(target: Target) -> u32 {
    match target {
        Target::AlbRequestHead => 12_288,
        _ => 8_192,
    }
}

/// The working corpus: `target/fuzz-corpus/<target>/`, holding the
/// committed seeds (refreshed on every run) and whatever earlier runs added.
fn working_corpus(root: &Path, target: &str) -> Result<PathBuf> {
    let seeds = root.join(FUZZ_DIR).join("corpus").join(target);
    let work = root.join("target/fuzz-corpus").join(target);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let entries = std::fs::read_dir(&seeds).with_context(|| format!("reading the seed corpus {}", seeds.display()))?;
    for entry in entries {
        let entry = entry?;
        std::fs::copy(entry.path(), work.join(entry.file_name())).with_context(|| format!("copying {}", entry.path().display()))?;
    }
    Ok(work)
}

/// What libFuzzer said at the end of a run.
#[derive(Debug, Default, PartialEq)]
struct Summary {
    execs: Option<u64>,
    execs_per_sec: Option<u64>,
    new_units: Option<u64>,
    peak_rss_mb: Option<u64>,
    /// `cov: … ft: … corp: …` of the last status line.
    status: Option<String>,
}

impl Summary {
    fn take(&mut self, line: &str) {
        let stat = |key: &str| line.strip_prefix(key).and_then(|v| v.trim().parse().ok());
        if let Some(v) = stat("stat::number_of_executed_units:") {
            self.execs = Some(v);
        } else if let Some(v) = stat("stat::average_exec_per_sec:") {
            self.execs_per_sec = Some(v);
        } else if let Some(v) = stat("stat::new_units_added:") {
            self.new_units = Some(v);
        } else if let Some(v) = stat("stat::peak_rss_mb:") {
            self.peak_rss_mb = Some(v);
        } else if line.starts_with('#') {
            if let Some(at) = line.find("cov: ") {
                let status: Vec<&str> = line[at..].split_whitespace().take_while(|w| *w != "lim:" && *w != "exec/s:").collect();
                self.status = Some(status.join(" "));
            }
        }
    }

    fn show(&self) -> String {
        let n = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |v| v.to_string());
        format!(
            "{} execs ({}/s), {}, {} new inputs, peak RSS {} MB",
            n(self.execs),
            n(self.execs_per_sec),
            self.status.as_deref().unwrap_or("no coverage line"),
            n(self.new_units),
            n(self.peak_rss_mb)
        )
    }
}

/// libFuzzer's `#N NEW …` / `REDUCE` lines come many a second at first;
/// one a second shows progress, everything else is shown as it comes.
fn is_chatter(line: &str) -> bool {
    line.starts_with('#') && (line.contains("\tNEW ") || line.contains("\tREDUCE "))
}

/// The files libFuzzer saved into `dir` since `since` (crash-, timeout-,
/// oom-, leak-, slow-unit-…).
fn saved_since(dir: &Path, since: SystemTime) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<PathBuf> =
        entries.filter_map(|e| e.ok()).filter(|e| e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t >= since)).map(|e| e.path()).collect();
    v.sort();
    v
}

pub fn run(which: Target, duration: u64, build: Build) -> Result<()> {
    let target = name(which).with_context(|| format!("{which:?} is no libFuzzer target"))?;
    let root = util::workspace_root();
    let corpus = working_corpus(&root, target)?;
    let artifacts = root.join("target/fuzz-artifacts").join(target);
    std::fs::create_dir_all(&artifacts).with_context(|| format!("creating {}", artifacts.display()))?;
    let dict = root.join(FUZZ_DIR).join("dict").join(format!("{target}.dict"));

    // The rustup proxy, not `util::cargo()` (the stable cargo running us),
    // so that `+nightly` picks the toolchain cargo-fuzz needs.
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&root)
        .args(["+nightly", "fuzz", "run", "--fuzz-dir", FUZZ_DIR, "--target-dir", build.target_dir()])
        .args(["--sanitizer", "none", "--debug-assertions"])
        .arg(build.profile_flag())
        .arg(target)
        .arg(&corpus)
        .arg("--")
        .arg(format!("-max_total_time={duration}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_SECS}"))
        .arg(format!("-rss_limit_mb={RSS_LIMIT_MB}"))
        .arg(format!("-max_len={}", max_len(which)))
        .arg(format!("-dict={}", dict.display()))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-print_final_stats=1")
        // The config loaders need no eBPF object; lb-user's build script
        // leaves it out (and says so) instead of building it with nightly.
        .env("AYA_BUILD_SKIP", "1")
        // Cargo's environment form of `[profile.dev] debug`: the dev
        // profile's full debuginfo for every dependency is build time no
        // smoke run uses (a failing input is replayed from its file).
        .envs(build.env())
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    println!(
        "[fuzz] {target} for {duration}s: corpus {} (seeded from {FUZZ_DIR}/corpus/{target}), failing inputs to {}",
        corpus.display(),
        artifacts.display()
    );
    let started = SystemTime::now();
    let clock = Instant::now();
    let mut child = cmd.spawn().context("starting `cargo +nightly fuzz run` (is cargo-fuzz installed? `cargo xtask setup` installs it)")?;
    let stderr = child.stderr.take().expect("piped stderr");
    let mut summary = Summary::default();
    let mut last_shown = Instant::now() - Duration::from_secs(1);
    for line in BufReader::new(stderr).lines() {
        let line = line?;
        summary.take(&line);
        if !is_chatter(&line) || last_shown.elapsed() >= Duration::from_secs(1) {
            eprintln!("{line}");
            last_shown = Instant::now();
        }
    }
    let status = child.wait()?;
    let took = clock.elapsed().as_secs();
    if !status.success() {
        let saved = saved_since(&artifacts, started);
        if saved.is_empty() {
            bail!("{target}: `cargo fuzz run` failed ({status}) after {took}s and saved no input (a build error?)");
        }
        let list: Vec<String> = saved.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "{target}: libFuzzer found a failing input ({status}), saved as {}; reproduce with \
             `AYA_BUILD_SKIP=1{} cargo +nightly fuzz run --fuzz-dir {FUZZ_DIR} --target-dir {} -s none {} -a {target} {}`",
            list.join(", "),
            build.env().map(|(k, v)| format!(" {k}={v}")).unwrap_or_default(),
            build.target_dir(),
            build.profile_flag(),
            list[0]
        );
    }
    println!("[fuzz] {target}: {} in {took}s with the build; no failure", summary.show());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzers_final_lines() {
        let mut s = Summary::default();
        for line in [
            "#5786898\tDONE   cov: 3188 ft: 9482 corp: 3914/1760Kb lim: 12000 exec/s: 47825 rss: 37Mb",
            "stat::number_of_executed_units: 5786898",
            "stat::average_exec_per_sec:     47825",
            "stat::new_units_added:          3902",
            "stat::peak_rss_mb:              37",
        ] {
            s.take(line);
        }
        assert_eq!(s.show(), "5786898 execs (47825/s), cov: 3188 ft: 9482 corp: 3914/1760Kb, 3902 new inputs, peak RSS 37 MB");
        assert!(is_chatter("#1024\tNEW    cov: 10 ft: 12 corp: 3/9b"));
        assert!(!is_chatter("#1024\tpulse  cov: 10 ft: 12 corp: 3/9b"));
    }
}
