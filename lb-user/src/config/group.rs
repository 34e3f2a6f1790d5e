//! `group:`: this node's part in a group of LB nodes behind ECMP
//! (docs/scale-out.md). lb-user announces each VIP address by putting a
//! host route into `table`, which the node's BGP daemon exports
//! (`crate::announce`); `node` names the node in logs, `lb-user stats` and
//! metrics; `grace` is how long SIGTERM waits between withdrawing the
//! routes and detaching, so the routers move the flows away first.

use std::time::Duration;

use super::raw::RawGroup;
use super::validate::Check;

/// How long SIGTERM waits by default between withdraw and detach: a few
/// BFD or BGP update rounds.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);
/// `lb-user detach` waits for a running lb-user this long beyond its grace.
pub const GRACE_MAX: Duration = Duration::from_secs(300);

/// Kernel tables a hand-off must not use: unspec, and the ones every
/// lookup consults (`ip rule`: local, main, default).
const RESERVED_TABLES: [(u32, &str); 4] = [(0, "unspec"), (253, "default"), (254, "main"), (255, "local")];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupConfig {
    /// 1–32 of `a-z 0-9 _ -`.
    pub node: String,
    /// The routing table the VIP routes go into (1..=4294967295 but 253–255).
    pub table: u32,
    pub grace: Duration,
}

pub(super) fn group(c: &mut Check, r: &RawGroup) -> Option<GroupConfig> {
    let node = match r.node.as_deref() {
        None => {
            c.err("group.node", "missing; give this LB node's name, e.g. \"lb1\"");
            None
        }
        Some(n) if valid_node(n) => Some(n.to_owned()),
        Some(n) => {
            c.err("group.node", format!("{n:?} is not a node name; use 1-32 of a-z, 0-9, '_' and '-'"));
            None
        }
    };
    let table = match r.table {
        None => {
            c.err("group.table", "missing; give the routing table number the BGP daemon exports, e.g. 100");
            None
        }
        Some(t) => match RESERVED_TABLES.iter().find(|(n, _)| i64::from(*n) == t) {
            Some((_, name)) => {
                c.err("group.table", format!("{t} is the kernel's {name} table; use a table of its own (1..=252, 256..=4294967295) that no ip rule looks up"));
                None
            }
            None => c.int("group.table", t, 1..=u32::MAX, "a routing table number"),
        },
    };
    let grace = c.duration_in("group.grace", r.grace.as_ref(), DEFAULT_GRACE, Duration::ZERO..=GRACE_MAX);
    Some(GroupConfig { node: node?, table: table?, grace: grace? })
}

fn valid_node(name: &str) -> bool {
    (1..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};
    use std::time::Duration;

    const BASE: &str = "interfaces: [{ name: eth0 }]\nvips: [{ name: web, address: 198.18.100.1, port: 80, backends: [{ address: 198.18.1.11, port: 80 }] }]\n";

    fn parse(extra: &str) -> Result<crate::config::Config, ConfigError> {
        Config::parse(&format!("{BASE}{extra}"), "lb.yaml")
    }

    #[test]
    fn group_is_off_without_the_block_and_takes_its_defaults() {
        assert_eq!(parse("").unwrap().group, None);
        let g = parse("group: { node: lb-1, table: 100 }\n").unwrap().group.unwrap();
        assert_eq!((g.node.as_str(), g.table, g.grace), ("lb-1", 100, Duration::from_secs(2)));
        let g = parse("group: { node: lb2, table: 4294967295, grace: 500ms }\n").unwrap().group.unwrap();
        assert_eq!((g.table, g.grace), (u32::MAX, Duration::from_millis(500)));
    }

    #[test]
    fn bad_group_values_are_named() {
        let cases = [
            ("group: { table: 100 }", "group.node: missing"),
            ("group: { node: LB1, table: 100 }", "group.node: \"LB1\" is not a node name"),
            ("group: { node: lb1 }", "group.table: missing"),
            ("group: { node: lb1, table: 254 }", "group.table: 254 is the kernel's main table"),
            ("group: { node: lb1, table: 255 }", "group.table: 255 is the kernel's local table"),
            ("group: { node: lb1, table: 0 }", "group.table: 0 is the kernel's unspec table"),
            ("group: { node: lb1, table: -1 }", "group.table: -1 is out of range"),
            ("group: { node: lb1, table: 4294967296 }", "group.table: 4294967296 is out of range"),
            ("group: { node: lb1, table: 100, grace: 10m }", "group.grace: \"10m\" is out of range; allowed 0s..=300s"),
            ("group: { node: lb1, table: 100, grace: 2 }", "group.grace"),
            ("group: { node: lb1, table: 100, peer: x }", "unknown field `peer`"),
        ];
        for (yaml, want) in cases {
            let e = parse(&format!("{yaml}\n")).unwrap_err().to_string();
            assert!(e.contains(want), "{yaml}: {e}");
        }
        let e = parse("group: { node: \"\", table: 253 }\n").unwrap_err().to_string();
        assert!(e.contains("2 problems") && e.contains("group.node") && e.contains("default table"), "{e}");
    }
}
