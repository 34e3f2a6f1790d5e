//! What `lb-user detach` needs to withdraw after a crash: the hand-off
//! table and grace of the lb-user that attached an interface, in
//! `/run/xdplb/<iface>.group` (next to its lock file; bpffs holds no
//! plain files). Written at attach with a group, removed on detach.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, Result};

use crate::{bpffs::LOCK_DIR, config::GroupConfig};

/// The group settings of an attached interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub table: u32,
    pub grace: Duration,
}

fn path(iface: &str) -> PathBuf {
    PathBuf::from(LOCK_DIR).join(format!("{iface}.group"))
}

/// Records `group` for `iface`.
pub fn remember(iface: &str, group: &GroupConfig) -> Result<()> {
    std::fs::create_dir_all(LOCK_DIR).with_context(|| format!("creating {LOCK_DIR}"))?;
    let p = path(iface);
    std::fs::write(&p, format!("table={}\ngrace_ms={}\n", group.table, group.grace.as_millis())).with_context(|| format!("writing {}", p.display()))
}

/// The record for `iface`, if an lb-user with a group attached it.
pub fn recall(iface: &str) -> Result<Option<Record>> {
    let p = path(iface);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
    };
    parse(&text).with_context(|| format!("{}: not a record lb-user wrote ({text:?}); remove it and the routes by hand", p.display())).map(Some)
}

fn parse(text: &str) -> Result<Record> {
    let mut table = None;
    let mut grace = None;
    for line in text.lines() {
        match line.split_once('=') {
            Some(("table", v)) => table = Some(v.parse::<u32>()?),
            Some(("grace_ms", v)) => grace = Some(Duration::from_millis(v.parse()?)),
            _ => anyhow::bail!("unexpected line {line:?}"),
        }
    }
    Ok(Record { table: table.context("no table")?, grace: grace.context("no grace_ms")? })
}

/// Removes the record for `iface` (none is not an error).
pub fn forget(iface: &str) {
    if let Err(e) = std::fs::remove_file(path(iface)) {
        if e.kind() != std::io::ErrorKind::NotFound {
            log::warn!("removing {}: {e}", path(iface).display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_and_garbage_is_refused() {
        assert_eq!(parse("table=100\ngrace_ms=2500\n").unwrap(), Record { table: 100, grace: Duration::from_millis(2500) });
        assert!(parse("table=100\n").is_err());
        assert!(parse("table=x\ngrace_ms=1\n").is_err());
        assert!(parse("tabel=1\n").is_err());
    }
}
