//! Locating the workspace's binaries from tests and xtask.

use std::path::PathBuf;

use anyhow::{bail, Result};

/// Overrides where workspace binaries are looked up (set by `cargo xtask`).
pub const BIN_DIR_ENV: &str = "XDPLB_BIN_DIR";

/// The directory holding the workspace's built binaries: `$XDPLB_BIN_DIR`, or
/// the profile directory this executable lives in (`target/debug` for
/// `target/debug/deps/<test>` and for `target/debug/xtask`).
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    Ok(dir)
}

/// Path of workspace binary `name`, which must already be built.
pub fn binary(name: &str) -> Result<PathBuf> {
    let path = bin_dir()?.join(name);
    if !path.is_file() {
        bail!("{} not found: build the workspace first (`cargo build --workspace`; `cargo xtask test` does it)", path.display());
    }
    Ok(path)
}
