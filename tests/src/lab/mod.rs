//! The network-namespace lab: `client` ── `lb` ── bridge ── `be1..beN`.
//!
//! Every object is named after the lab (`<name>-client`, `<name>-lc`, …), so
//! several labs can run at once, and `Lab::down(name)` can find and remove all
//! of a lab's pieces even after its creator died. A `Lab` value tears the lab
//! down when dropped (also while unwinding from a panic) unless `persist` was
//! called. See docs/lab.md.

pub mod addr;
pub mod alb_tier;
mod backends;
mod build;
pub mod chain;
pub mod config;
pub mod demo;
pub mod faults;
mod process;
pub mod scale_out;
mod traffic;

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    process::Child,
};

use anyhow::{bail, Context as _, Result};

use crate::sys;

/// Longest lab name: interface names are `<name>-xx` and must fit in 15 bytes.
pub const MAX_NAME_LEN: usize = 8;

/// Host roles in the lab.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host {
    Client,
    Lb,
    /// The namespace holding the backend-segment bridge.
    Switch,
    /// Backend `i`, 1-based.
    Backend(u8),
    /// LB node `i` (1-based) of a scale-out lab (`scale_out`), on the
    /// backend segment.
    Node(u8),
}

/// A running lab.
pub struct Lab {
    name: String,
    backends: u8,
    children: Vec<(String, Child)>,
    persist: bool,
    /// More `lab-backend` arguments for every backend start (see
    /// [`Lab::set_backend_args`]).
    backend_args: Vec<String>,
}

/// Checks a lab name: 1–8 characters of a-z and 0-9, starting with a letter.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !ok {
        bail!("invalid lab name {name:?}: use 1-{MAX_NAME_LEN} characters a-z0-9, starting with a letter");
    }
    Ok(())
}

/// A fresh lab name for a test or run: `prefix` plus 4 hex digits.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let mix = std::process::id().wrapping_mul(2_654_435_761) ^ nanos ^ SEQ.fetch_add(1, Ordering::Relaxed).wrapping_mul(40_503);
    format!("{prefix}{:04x}", mix & 0xffff)
}

impl Lab {
    /// Creates the lab's namespaces, links, addresses and routes. On any
    /// failure everything created so far is removed before returning the error.
    pub fn up(name: &str, backends: u8) -> Result<Lab> {
        validate_name(name)?;
        if !(1..=9).contains(&backends) {
            bail!("a lab has 1 to 9 backends, not {backends}");
        }
        if !Lab::namespaces(name)?.is_empty() {
            bail!("lab {name:?} already exists; remove it with `cargo xtask lab down --name {name}`");
        }
        let lab = Lab { name: name.to_owned(), backends, children: Vec::new(), persist: false, backend_args: Vec::new() };
        // If building fails, `lab` is dropped here and removes what was made.
        build::build(&lab).with_context(|| format!("bringing up lab {name:?}"))?;
        Ok(lab)
    }

    /// A lab with a fresh unique name (see [`unique_name`]).
    pub fn up_unique(prefix: &str, backends: u8) -> Result<Lab> {
        for _ in 0..8 {
            let name = unique_name(prefix);
            if Lab::namespaces(&name)?.is_empty() {
                return Lab::up(&name, backends);
            }
        }
        bail!("could not find an unused lab name with prefix {prefix:?}")
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn backend_count(&self) -> u8 {
        self.backends
    }

    /// The namespace of a host.
    pub fn ns(&self, host: Host) -> String {
        ns_name(&self.name, host)
    }

    /// The lb's interface facing the client (where the XDP program attaches).
    pub fn lb_client_iface(&self) -> String {
        lb_client_iface(&self.name)
    }

    /// The lb's interface facing the backend segment.
    pub fn lb_backend_iface(&self) -> String {
        lb_backend_iface(&self.name)
    }

    /// The switch's port facing the lb (the peer of
    /// [`Lab::lb_backend_iface`]). XDP_TX on the lb's side delivers frames
    /// to it only while it has an XDP program of its own (a veth property).
    pub fn switch_lb_iface(&self) -> String {
        switch_lb_iface(&self.name)
    }

    /// The client's only interface.
    pub fn client_iface(&self) -> String {
        client_iface(&self.name)
    }

    /// Interface of backend `i`.
    pub fn backend_iface(&self, i: u8) -> String {
        backend_iface(&self.name, i)
    }

    /// Backend names as they answer HTTP requests: `be1`, `be2`, ….
    pub fn backend_names(&self) -> Vec<String> {
        (1..=self.backends).map(|i| format!("be{i}")).collect()
    }

    /// HTTP address of backend `i` for the given IP family.
    pub fn backend_addr(&self, i: u8, v6: bool) -> SocketAddr {
        let ip: IpAddr = if v6 { addr::backend_v6(i).into() } else { addr::backend_v4(i).into() };
        SocketAddr::new(ip, crate::backend::PORT)
    }

    /// MAC address of `iface` in `host`'s namespace, as 6 bytes.
    pub fn mac(&self, host: Host, iface: &str) -> Result<[u8; 6]> {
        mac(&self.ns(host), iface)
    }

    /// Interface index of `iface` in `host`'s namespace.
    pub fn ifindex(&self, host: Host, iface: &str) -> Result<u32> {
        ifindex(&self.ns(host), iface)
    }

    /// Keeps the lab up after this value is dropped (for `cargo xtask lab up`).
    /// Child processes are still stopped.
    pub fn persist(mut self) {
        self.persist = true;
    }

    /// The names of the existing namespaces of lab `name`.
    pub fn namespaces(name: &str) -> Result<Vec<String>> {
        let prefix = format!("{name}-");
        let list = sys::run_stdout("ip", &["netns", "list"])?;
        Ok(list.lines().filter_map(|l| l.split_whitespace().next()).filter(|ns| ns.starts_with(&prefix)).map(str::to_owned).collect())
    }

    /// What of lab `name` still exists: its namespaces, xdplb pins and
    /// processes whose command line names one of its hosts (`<name>-…`).
    /// Empty once the lab is down; tests assert that after a run.
    pub fn leftovers(name: &str) -> Result<Vec<String>> {
        let prefix = format!("{name}-");
        let mut left: Vec<String> = Lab::namespaces(name)?.into_iter().map(|ns| format!("namespace {ns}")).collect();
        left.extend(pin_dirs(name).into_iter().map(|p| format!("pin {}", p.display())));
        let me = std::process::id().to_string();
        for entry in std::fs::read_dir("/proc").context("reading /proc")?.filter_map(|e| e.ok()) {
            if entry.file_name() == me.as_str() {
                continue;
            }
            if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                if cmdline.contains(&prefix) {
                    left.push(format!("process {}: {}", entry.file_name().to_string_lossy(), cmdline.trim()));
                }
            }
        }
        Ok(left)
    }

    /// Removes everything of lab `name`: processes in its namespaces, the
    /// namespaces (and with them every veth and bridge) and any xdplb pins
    /// left for its interfaces. Safe to call when nothing is there.
    pub fn down(name: &str) -> Result<()> {
        validate_name(name)?;
        let mut errors = Vec::new();
        for ns in Lab::namespaces(name)? {
            if let Ok(pids) = sys::run_stdout("ip", &["netns", "pids", &ns]) {
                for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                    // SAFETY: plain kill(2).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
            if let Err(err) = sys::ip(&["netns", "del", &ns]) {
                errors.push(format!("{err:#}"));
            }
        }
        for dir in pin_dirs(name) {
            if let Err(err) = std::fs::remove_dir_all(&dir) {
                errors.push(format!("removing {}: {err}", dir.display()));
            }
        }
        let _ = std::fs::remove_dir("/sys/fs/bpf/xdplb");
        if !errors.is_empty() {
            bail!("tearing down lab {name:?}: {}", errors.join("; "));
        }
        Ok(())
    }

    /// A human-readable summary: namespaces with their addresses.
    pub fn status(name: &str) -> Result<String> {
        let namespaces = Lab::namespaces(name)?;
        if namespaces.is_empty() {
            return Ok(format!("lab {name:?} is down\n"));
        }
        let mut out = format!("lab {name:?} is up:\n");
        for ns in namespaces {
            out.push_str(&format!("  {ns}\n"));
            let addrs = sys::run_stdout("ip", &["-n", &ns, "-br", "addr", "show"])?;
            for line in addrs.lines().filter(|l| !l.starts_with("lo ")) {
                out.push_str(&format!("    {line}\n"));
            }
        }
        Ok(out)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_children();
        if self.persist {
            return;
        }
        if let Err(err) = Lab::down(&self.name) {
            eprintln!("lab: {err:#}");
        }
    }
}

// The names and lookups below work from a lab's name alone, for code that
// did not create the lab (`bench-xdp-cost` runs in a lab `cargo xtask bench`
// made); the `Lab` methods of the same names use them.

/// The lb's interface facing the client in lab `lab`.
pub fn lb_client_iface(lab: &str) -> String {
    format!("{lab}-lc")
}

/// The lb's interface facing the backend segment in lab `lab`.
pub fn lb_backend_iface(lab: &str) -> String {
    format!("{lab}-lb")
}

/// The switch's port facing the lb in lab `lab`.
pub fn switch_lb_iface(lab: &str) -> String {
    format!("{lab}-sl")
}

/// The client's only interface in lab `lab`.
pub fn client_iface(lab: &str) -> String {
    format!("{lab}-c")
}

/// Interface of backend `i` in lab `lab`.
pub fn backend_iface(lab: &str, i: u8) -> String {
    format!("{lab}-b{i}")
}

/// MAC address of `iface` in namespace `ns`, as 6 bytes.
pub fn mac(ns: &str, iface: &str) -> Result<[u8; 6]> {
    let text = build::mac(ns, iface)?;
    let mut out = [0u8; 6];
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        bail!("bad MAC {text:?} for {iface}");
    }
    for (o, p) in out.iter_mut().zip(parts) {
        *o = u8::from_str_radix(p, 16).with_context(|| format!("bad MAC {text:?}"))?;
    }
    Ok(out)
}

/// Interface index of `iface` in namespace `ns`.
pub fn ifindex(ns: &str, iface: &str) -> Result<u32> {
    build::ifindex(ns, iface)
}

pub fn ns_name(lab: &str, host: Host) -> String {
    match host {
        Host::Client => format!("{lab}-client"),
        Host::Lb => format!("{lab}-lb"),
        Host::Switch => format!("{lab}-sw"),
        Host::Backend(i) => format!("{lab}-be{i}"),
        Host::Node(i) => format!("{lab}-n{i}"),
    }
}

fn pin_dirs(lab: &str) -> Vec<PathBuf> {
    let prefix = format!("{lab}-");
    std::fs::read_dir("/sys/fs/bpf/xdplb")
        .map(|dir| dir.filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().starts_with(&prefix)).map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for good in ["xl", "xt12ab", "demo1234"] {
            validate_name(good).unwrap();
        }
        for bad in ["", "Demo", "1abc", "toolongname", "a-b", "a b"] {
            let err = validate_name(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn unique_names_fit_interfaces() {
        let a = unique_name("xt");
        let b = unique_name("xt");
        assert_ne!(a, b);
        validate_name(&a).unwrap();
        // Longest interface name we derive must fit IFNAMSIZ - 1.
        assert!(format!("{}-lc", "x".repeat(MAX_NAME_LEN)).len() <= 15);
    }
}
