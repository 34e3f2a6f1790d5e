//! Gate for tests that need root (network namespaces, XDP, BPF_PROG_TEST_RUN).
//!
//! Without root a privileged test prints why it is skipped and passes, so plain
//! `cargo test --workspace` works anywhere. `cargo xtask test` sets
//! `XDPLB_REQUIRE_PRIVILEGED=1`, and then a missing privilege is a failure: the
//! suite that CI runs can never skip these tests silently.

/// Set by `cargo xtask test`: privileged tests must run, not skip.
pub const REQUIRE_ENV: &str = "XDPLB_REQUIRE_PRIVILEGED";

pub fn is_root() -> bool {
    // SAFETY: trivial syscall.
    unsafe { libc::geteuid() == 0 }
}

/// Returns true when `test` may run. Prints a skip line and returns false when
/// not root, unless skipping is forbidden, in which case it panics.
pub fn allowed(test: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var_os(REQUIRE_ENV).is_some_and(|v| v == "1") {
        panic!("{test} needs root (network namespaces and BPF) but {REQUIRE_ENV}=1 forbids skipping it");
    }
    eprintln!("{SKIP_PREFIX}{test}: needs root for network namespaces and BPF; run `cargo xtask test` as root");
    false
}

/// Skips the current test (returns early) unless it may use root privileges.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::privileged::allowed(module_path!()) {
            return;
        }
    };
}

/// Reports that `test` skipped a part because of what this host cannot do
/// (not a missing privilege: those fail under [`REQUIRE_ENV`]). The line
/// goes straight to stdout, past the test harness's output capture, so it
/// shows in the run's log even though the test passes, and `cargo xtask
/// test` lists it after its tally.
pub fn skipped_for_host(test: &str, why: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{SKIP_PREFIX}{test}: {why}");
}

/// How every skip line starts.
pub const SKIP_PREFIX: &str = "SKIPPED ";
