//! Running system commands with errors that say what failed.

use std::process::{Command, Output};

use anyhow::{bail, Context as _, Result};

/// Runs `program args…`, failing with its stderr when it exits non-zero.
pub fn run(program: &str, args: &[&str]) -> Result<Output> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program} (is it installed? `cargo xtask setup` installs it)"))?;
    if !output.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(output)
}

/// Like [`run`] but returns stdout as a string.
pub fn run_stdout(program: &str, args: &[&str]) -> Result<String> {
    Ok(String::from_utf8_lossy(&run(program, args)?.stdout).into_owned())
}

/// `ip args…`
pub fn ip(args: &[&str]) -> Result<()> {
    run("ip", args).map(|_| ())
}
