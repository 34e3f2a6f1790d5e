//! Fault injection for the lab. This kernel has no netem, so packet loss is
//! an nftables rule, `numgen random mod 100 < N drop`, in a table of its own
//! that the [`Loss`] guard removes when dropped (also while a test panics;
//! deleting the lab's namespaces would remove it too).
//!
//! The rule sits in the bridge of the backend segment (the `sw` namespace,
//! family `bridge`, hook `forward`), not in the lb's or the backends' IP
//! stacks: every frame between two hosts of the segment crosses the bridge
//! exactly once, so "N % loss" means N % per frame per hop for every path —
//! lb → backend, alb → backend, and the XDP program's redirected frames,
//! which never pass the lb's own netfilter hooks. Only IPv4 and IPv6 frames
//! are dropped; ARP is left alone (the lb's neighbours are static anyway).

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context as _, Result};

use super::{Host, Lab};

/// Random loss on the backend segment while this value lives.
#[derive(Debug)]
pub struct Loss {
    ns: String,
    table: String,
    percent: u8,
}

/// Frames the loss rule looked at and dropped so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LossCounts {
    pub seen: u64,
    pub dropped: u64,
}

impl LossCounts {
    /// The share of frames dropped, 0 when none were seen.
    pub fn ratio(&self) -> f64 {
        if self.seen == 0 {
            0.0
        } else {
            self.dropped as f64 / self.seen as f64
        }
    }
}

impl Loss {
    /// Drops `percent` % (1–100) of the IPv4/IPv6 frames crossing the
    /// backend segment's bridge, chosen at random frame by frame.
    pub fn on_backend_segment(lab: &Lab, percent: u8) -> Result<Loss> {
        if !(1..=100).contains(&percent) {
            bail!("packet loss is 1 to 100 percent, not {percent}");
        }
        static SEQ: AtomicU32 = AtomicU32::new(0);
        // Unique per lab (the namespace) and per guard within it.
        let table = format!("xdplb_loss_{}_{}", lab.name(), SEQ.fetch_add(1, Ordering::Relaxed));
        let ns = lab.ns(Host::Switch);
        // Two counters: every IP frame, then the dropped ones, so a test can
        // see the loss it actually got.
        let rules = format!(
            "table bridge {table} {{\n  chain forward {{\n    type filter hook forward priority 0; policy accept;\n    \
             ether type {{ ip, ip6 }} counter numgen random mod 100 < {percent} counter drop\n  }}\n}}\n"
        );
        nft(&ns, &["-f", "-"], Some(&rules)).with_context(|| format!("adding {percent}% loss on the backend segment of lab {:?}", lab.name()))?;
        Ok(Loss { ns, table, percent })
    }

    pub fn percent(&self) -> u8 {
        self.percent
    }

    /// The nftables table holding the rule (in the switch namespace).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// What the rule has counted so far.
    pub fn counts(&self) -> Result<LossCounts> {
        let json = nft(&self.ns, &["-j", "list", "table", "bridge", &self.table], None)?;
        let value: serde_json::Value = serde_json::from_str(&json).context("parsing `nft -j list table`")?;
        let rule = value["nftables"]
            .as_array()
            .and_then(|items| items.iter().find_map(|i| i.get("rule")))
            .with_context(|| format!("no rule in nftables table {}", self.table))?;
        let counters: Vec<u64> =
            rule["expr"].as_array().map(|exprs| exprs.iter().filter_map(|e| e["counter"]["packets"].as_u64()).collect()).unwrap_or_default();
        match counters[..] {
            [seen, dropped] => Ok(LossCounts { seen, dropped }),
            _ => bail!("expected two counters in the loss rule of {}, found {counters:?}", self.table),
        }
    }
}

impl Drop for Loss {
    fn drop(&mut self) {
        // When the lab went down first, the table went with its namespace.
        if std::path::Path::new("/run/netns").join(&self.ns).exists() {
            if let Err(err) = nft(&self.ns, &["delete", "table", "bridge", &self.table], None) {
                eprintln!("lab: removing nftables table {}: {err:#}", self.table);
            }
        }
    }
}

/// `nft args…` inside namespace `ns` with `stdin` fed to it; returns stdout.
fn nft(ns: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    use std::{io::Write as _, process::Stdio};
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "nft"])
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nft (is nftables installed? `cargo xtask setup` installs it)")?;
    if let Some(input) = stdin {
        // Dropped at the end of the statement: nft sees EOF.
        child.stdin.take().expect("piped stdin").write_all(input.as_bytes()).context("writing the rules to nft")?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("`nft {}` in {ns} failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
