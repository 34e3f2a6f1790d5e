//! CPU accounting: machine-wide busy time from `/proc/stat`, per-process
//! time (with descendants) from `/proc/<pid>/stat`, and the CPU used by
//! processes that are not part of the measurement (hygiene check). Used by
//! `cargo xtask bench` and the demo's `--compare` (lab::demo::compare).

use std::{collections::HashMap, os::unix::fs::MetadataExt as _};

use anyhow::{Context as _, Result};

/// Clock ticks per second for /proc times (USER_HZ).
pub fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Microseconds per clock tick.
pub fn us_per_tick() -> f64 {
    1e6 / ticks_per_sec()
}

/// Machine-wide CPU time from the `cpu` line of /proc/stat, in ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MachineCpu {
    /// user + nice + system + irq + softirq + steal.
    pub busy: u64,
    /// idle + iowait.
    pub idle: u64,
    /// Of `busy`: softirq (where veth/XDP packet processing mostly lands).
    pub softirq: u64,
}

impl MachineCpu {
    pub fn read() -> Result<MachineCpu> {
        parse_proc_stat(&std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?)
    }

    pub fn delta(&self, earlier: &MachineCpu) -> MachineCpu {
        MachineCpu {
            busy: self.busy.saturating_sub(earlier.busy),
            idle: self.idle.saturating_sub(earlier.idle),
            softirq: self.softirq.saturating_sub(earlier.softirq),
        }
    }
}

/// Parses the aggregate `cpu  user nice system idle iowait irq softirq steal …` line.
pub fn parse_proc_stat(text: &str) -> Result<MachineCpu> {
    let line = text.lines().find(|l| l.starts_with("cpu ")).context("no aggregate cpu line in /proc/stat")?;
    let v: Vec<u64> = line.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    Ok(MachineCpu { busy: get(0) + get(1) + get(2) + get(5) + get(6) + get(7), idle: get(3) + get(4), softirq: get(6) })
}

/// One line of /proc/<pid>/stat: (ppid, utime + stime in ticks).
pub fn parse_pid_stat(text: &str) -> Option<(u32, u64)> {
    parse_pid_stat_modes(text).map(|(ppid, user, kernel)| (ppid, user + kernel))
}

/// `/proc/<pid>/stat` → (ppid, user-mode ticks, kernel-mode ticks). Kernel
/// mode includes the softirq work the kernel runs on the process's way out
/// of a system call: on veth, a `send` delivers the segment into the peer's
/// stack and wakes the peer from the sender's context.
pub fn parse_pid_stat_modes(text: &str) -> Option<(u32, u64, u64)> {
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): ppid is field 4, utime 14, stime 15.
    let ppid = f.get(1)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((ppid, utime, stime))
}

/// A snapshot of every process: pid → (ppid, cpu ticks, network namespace inode).
#[derive(Clone, Debug, Default)]
pub struct Processes {
    pub by_pid: HashMap<u32, (u32, u64, u64)>,
    /// pid → the user-mode part of its ticks.
    pub user: HashMap<u32, u64>,
}

impl Processes {
    pub fn read() -> Processes {
        let (mut by_pid, mut user) = (HashMap::new(), HashMap::new());
        let Ok(dir) = std::fs::read_dir("/proc") else { return Processes { by_pid, user } };
        for e in dir.filter_map(|e| e.ok()) {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            let Some((ppid, user_ticks, kernel_ticks)) = parse_pid_stat_modes(&text) else { continue };
            let netns = std::fs::metadata(format!("/proc/{pid}/ns/net")).map(|m| m.ino()).unwrap_or(0);
            by_pid.insert(pid, (ppid, user_ticks + kernel_ticks, netns));
            user.insert(pid, user_ticks);
        }
        Processes { by_pid, user }
    }

    /// `root` and every process descending from it.
    pub fn tree(&self, root: u32) -> Vec<u32> {
        let mut out = vec![root];
        let mut i = 0;
        while i < out.len() {
            let parent = out[i];
            out.extend(self.by_pid.iter().filter(|(_, (pp, _, _))| *pp == parent).map(|(p, _)| *p));
            i += 1;
        }
        out
    }

    /// CPU ticks used by `pids` between `earlier` and now (processes that
    /// appeared meanwhile count in full).
    pub fn ticks_since(&self, earlier: &Processes, pids: &[u32]) -> u64 {
        pids.iter()
            .filter_map(|p| {
                let now = self.by_pid.get(p)?.1;
                Some(now.saturating_sub(earlier.by_pid.get(p).map_or(0, |e| e.1)))
            })
            .sum()
    }

    /// The user-mode part of [`Processes::ticks_since`].
    pub fn user_ticks_since(&self, earlier: &Processes, pids: &[u32]) -> u64 {
        pids.iter()
            .filter_map(|p| {
                let now = *self.user.get(p)?;
                Some(now.saturating_sub(earlier.user.get(p).copied().unwrap_or(0)))
            })
            .sum()
    }

    /// CPU ticks used since `earlier` by processes outside the given network
    /// namespaces (by inode) and not in `exclude` (the benchmark itself).
    /// A process that appeared meanwhile counts in full (a compiler started
    /// during a measurement is foreign load); one that also exited is not
    /// seen, so this is a lower bound.
    pub fn foreign_ticks_since(&self, earlier: &Processes, lab_netns: &[u64], exclude: &[u32]) -> u64 {
        self.by_pid
            .iter()
            .filter(|(pid, (_, _, ns))| !lab_netns.contains(ns) && !exclude.contains(pid))
            .map(|(pid, (_, now, _))| now.saturating_sub(earlier.by_pid.get(pid).map_or(0, |e| e.1)))
            .sum()
    }
}

/// Inode of a named network namespace (compare with /proc/<pid>/ns/net).
pub fn netns_inode(name: &str) -> u64 {
    std::fs::metadata(format!("/run/netns/{name}")).map(|m| m.ino()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat() {
        let text = "cpu  100 5 50 1000 20 3 7 1 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        let m = parse_proc_stat(text).unwrap();
        assert_eq!(m, MachineCpu { busy: 100 + 5 + 50 + 3 + 7 + 1, idle: 1020, softirq: 7 });
    }

    #[test]
    fn parses_pid_stat_with_spaces_in_the_name() {
        let text = "1234 (my (odd) proc) S 77 1234 1234 0 -1 4194560 100 0 0 0 250 40 0 0 20 0 1 0 100 0 0";
        assert_eq!(parse_pid_stat(text), Some((77, 290)));
        assert_eq!(parse_pid_stat_modes(text), Some((77, 250, 40)));
    }

    #[test]
    fn foreign_ticks_count_new_processes_in_full_and_skip_the_lab() {
        let earlier = Processes { by_pid: HashMap::from([(10, (1, 100, 7)), (11, (1, 50, 9))]), ..Default::default() };
        // 10: foreign, +20; 11: in the lab's namespace 9; 12: new and foreign, 30 in full; 13: excluded.
        let now = Processes { by_pid: HashMap::from([(10, (1, 120, 7)), (11, (1, 80, 9)), (12, (1, 30, 7)), (13, (1, 500, 7))]), ..Default::default() };
        assert_eq!(now.foreign_ticks_since(&earlier, &[9], &[13]), 50);
    }

    #[test]
    fn user_ticks_are_the_user_mode_part() {
        let earlier = Processes { user: HashMap::from([(10, 60)]), ..Default::default() };
        // 10: +15 in user mode; 12: new, counted in full.
        let now = Processes { user: HashMap::from([(10, 75), (12, 9)]), ..Default::default() };
        assert_eq!(now.user_ticks_since(&earlier, &[10, 12, 99]), 24);
    }

    #[test]
    fn own_process_is_visible() {
        let p = Processes::read();
        assert!(p.by_pid.contains_key(&std::process::id()));
    }
}
