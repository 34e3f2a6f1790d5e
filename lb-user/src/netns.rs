//! Entering a named network namespace (as made by `ip netns add`).
//!
//! Unlike `ip netns exec`, this switches only the network namespace and keeps
//! the mount namespace, so /sys/fs/bpf pins stay visible to other processes.

use std::{fs::File, os::fd::AsRawFd, path::PathBuf};

use anyhow::{bail, Context as _, Result};

/// Directory where iproute2 keeps named network namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// Moves the calling thread into network namespace `name`. Call it before any
/// other thread starts so the whole process lives there.
pub fn enter(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        bail!("invalid --netns name {name:?}");
    }
    let path = PathBuf::from(NETNS_RUN_DIR).join(name);
    let file = File::open(&path).with_context(|| format!("network namespace {name:?} not found ({} missing; see `ip netns list`)", path.display()))?;
    // SAFETY: plain syscall on a valid fd.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        let err = std::io::Error::last_os_error();
        bail!("entering network namespace {name:?}: {err}");
    }
    Ok(())
}
