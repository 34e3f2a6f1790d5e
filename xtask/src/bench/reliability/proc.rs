//! Memory figures of a process from /proc.

use anyhow::{Context as _, Result};

/// A process's resident memory now and at its peak, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Mem {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

impl Mem {
    pub fn of(pid: u32) -> Result<Mem> {
        let path = format!("/proc/{pid}/status");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        Ok(parse_status(&text))
    }

    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    pub fn hwm_mib(&self) -> f64 {
        self.hwm_kib as f64 / 1024.0
    }
}

/// `VmRSS` and `VmHWM` of a /proc/<pid>/status text (0 where missing).
fn parse_status(text: &str) -> Mem {
    let kib = |key: &str| text.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(0);
    Mem { rss_kib: kib("VmRSS:"), hwm_kib: kib("VmHWM:") }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_rss_and_peak() {
        let m = super::parse_status("Name:\talb\nVmHWM:\t  132780 kB\nVmRSS:\t  100932 kB\n");
        assert_eq!((m.rss_kib, m.hwm_kib), (100_932, 132_780));
        assert_eq!(super::parse_status("").rss_kib, 0);
        assert!(super::Mem::of(std::process::id()).unwrap().rss_kib > 0);
    }
}
