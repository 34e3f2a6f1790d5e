//! Running code inside a named network namespace.
//!
//! Sockets keep the namespace they were created in, so a closure run on a
//! thread that joined the namespace can make connections "from" a lab host
//! while the rest of the test stays in the root namespace.

use std::{fs::File, os::fd::AsRawFd};

use anyhow::{bail, Context as _, Result};

/// Runs `f` on a fresh thread inside network namespace `ns` and returns its result.
pub fn run_in<T, F>(ns: &str, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let path = format!("/run/netns/{ns}");
    let file = File::open(&path).with_context(|| format!("opening network namespace {path}"))?;
    std::thread::spawn(move || {
        // SAFETY: valid fd; only this thread changes namespace.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns into {path}: {}", std::io::Error::last_os_error());
        }
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("thread running in namespace {ns} panicked"))?
}

/// Reads a file as seen from namespace `ns` (e.g. /proc/thread-self/net/snmp, which is per
/// network namespace; /proc/net would follow the main thread, not this one).
pub fn read_file_in(ns: &str, path: &'static str) -> Result<String> {
    run_in(ns, move || std::fs::read_to_string(path).with_context(|| format!("reading {path}")))
}
