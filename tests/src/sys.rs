//! Running system commands with errors that say what failed.

use std::process::{Command, Output};

use anyhow::{bail, Context as _, Result};

/// Runs `program args…`, failing with its stderr when it exits non-zero.
pub fn run(program: &str, args: &[&str]) -> Result<Output> {
    let output = Command::new(program).args(args).output().with_context(|| format!("running {program} (is it installed? `cargo xtask setup` installs it)"))?;
    if !output.status.success() {
        bail!("`{program} {}` failed ({}): {}", args.join(" "), output.status, String::from_utf8_lossy(&output.stderr).trim());
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

/// Replaces `path` with `text` atomically (temporary file + rename), so a
/// process watching the file never reads it half-written.
pub fn write_atomic(path: &std::path::Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// Raises this process's soft open-files limit to the hard one; fails when
/// even that is below `needed` (sockets a load tool means to hold at once,
/// plus its own few).
pub fn raise_nofile(needed: u64) -> Result<()> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            bail!("getrlimit(RLIMIT_NOFILE): {}", std::io::Error::last_os_error());
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            bail!("setrlimit(RLIMIT_NOFILE): {}", std::io::Error::last_os_error());
        }
    }
    if needed > lim.rlim_max {
        bail!("about {needed} open files are needed and the hard limit is {}: spread the connections over several processes", lim.rlim_max);
    }
    Ok(())
}
