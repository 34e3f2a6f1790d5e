//! Small helpers for running commands with visible progress.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

/// The workspace root (the directory holding the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// The cargo that runs us, so toolchain overrides carry through.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

pub fn is_root() -> bool {
    // SAFETY: trivial syscall.
    unsafe { libc::geteuid() == 0 }
}

/// Fails unless running as root, naming the command that needs it.
pub fn require_root(what: &str) -> Result<()> {
    if !is_root() {
        bail!("`cargo xtask {what}` needs root (network namespaces, XDP, BPF); run it as root (there is no need for sudo inside the Vagrant VM's root shell)");
    }
    Ok(())
}

/// Runs `cmd` with inherited stdio (so its own progress shows) and fails on a non-zero exit.
pub fn run_visible(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.stdin(Stdio::null()).status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its stdout when it succeeds, `None` when it
/// fails or cannot start (used by "is it already installed?" checks).
pub fn probe(cmd: &mut Command) -> Option<String> {
    let out = cmd.stdin(Stdio::null()).stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
