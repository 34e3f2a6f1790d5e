//! Checking up front that we may load BPF programs, so the user gets one clear
//! line instead of an EPERM from deep inside a syscall.

use anyhow::{bail, Context as _, Result};

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// The effective capability set of this process (from /proc/self/status).
pub fn effective_capabilities() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let line = status.lines().find_map(|l| l.strip_prefix("CapEff:")).context("/proc/self/status has no CapEff line")?;
    u64::from_str_radix(line.trim(), 16).with_context(|| format!("bad CapEff value {:?}", line.trim()))
}

fn has(caps: u64, cap: u32) -> bool {
    caps & (1u64 << cap) != 0
}

/// Fails with a one-line explanation unless the process can load and attach
/// XDP programs and use bpffs: CAP_NET_ADMIN plus CAP_BPF or CAP_SYS_ADMIN.
pub fn require_bpf_admin(what: &str) -> Result<()> {
    let caps = effective_capabilities()?;
    let bpf = has(caps, CAP_BPF) || has(caps, CAP_SYS_ADMIN);
    let net = has(caps, CAP_NET_ADMIN);
    if bpf && net {
        return Ok(());
    }
    let mut missing = Vec::new();
    if !bpf {
        missing.push("CAP_BPF (or CAP_SYS_ADMIN)");
    }
    if !net {
        missing.push("CAP_NET_ADMIN");
    }
    bail!("{what} needs root privileges: missing {} (effective capabilities {caps:#x}); run it as root", missing.join(" and "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_bits_are_read_from_proc() {
        // Whatever we run as, the value parses and root has every bit we need.
        let caps = effective_capabilities().unwrap();
        if unsafe { libc::geteuid() } == 0 {
            assert!(has(caps, CAP_NET_ADMIN) && has(caps, CAP_SYS_ADMIN), "root lacks caps: {caps:#x}");
            require_bpf_admin("test").unwrap();
        } else {
            let err = require_bpf_admin("lb-user attach").unwrap_err().to_string();
            assert!(err.contains("needs root privileges"), "{err}");
        }
    }
}
