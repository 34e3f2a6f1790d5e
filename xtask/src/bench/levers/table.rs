//! The levers `cargo xtask bench levers` measures: one line per (lever,
//! tier), each with its two variants. Adding a lever is adding a line; a
//! variant is a program (which build, or the io_uring example) and the
//! YAML it adds to the bench's own config of that tier (peers.rs).

/// Which balancer a lever changes, and so which cases measure it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tier {
    /// alb terminating TLS (`alb/keepalive`, `alb/new-conn`).
    Alb,
    /// `lb-user proxy` (`lb-user-proxy/keepalive`, `lb-user-proxy/new-conn`).
    Proxy,
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::Alb => "alb",
            Tier::Proxy => "lb-user-proxy",
        }
    }
}

/// The program a variant runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Program {
    /// The tier's binary from the normal build.
    Release,
    /// The tier's binary built with `--features mimalloc` (own target dir).
    Mimalloc,
    /// `examples/bench-uring-proxy` (Proxy tier only; takes no YAML).
    UringProxy,
}

/// One side of a lever.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Variant {
    pub label: &'static str,
    pub program: Program,
    /// alb: top-level YAML lines; proxy: entries inside `proxy: { … }`.
    pub yaml: &'static str,
}

/// A lever on one tier: `off` is the baseline, `on` the change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub lever: &'static str,
    pub tier: Tier,
    pub off: Variant,
    pub on: Variant,
}

const fn v(label: &'static str, program: Program, yaml: &'static str) -> Variant {
    Variant { label, program, yaml }
}

const fn e(lever: &'static str, tier: Tier, off: Variant, on: Variant) -> Entry {
    Entry { lever, tier, off, on }
}

use Program::{Mimalloc, Release, UringProxy};
use Tier::{Alb, Proxy};

/// Every lever (docs/benchmarks.md, "Levers"). Proxy YAML goes inside
/// the bench config's `proxy: { … }` mapping, alb's at the top level.
pub const ENTRIES: &[Entry] = &[
    e("allocator", Alb, v("system", Release, ""), v("mimalloc", Mimalloc, "")),
    e("allocator", Proxy, v("system", Release, ""), v("mimalloc", Mimalloc, "")),
    e(
        "runtime",
        Alb,
        v("shared", Release, "runtime: { workers: 1, scheduler: shared }"),
        v("per_core", Release, "runtime: { workers: 1, scheduler: per_core }"),
    ),
    e(
        "runtime",
        Proxy,
        v("shared", Release, "runtime: { workers: 1, scheduler: shared }"),
        v("per_core", Release, "runtime: { workers: 1, scheduler: per_core }"),
    ),
    e("copy", Proxy, v("buffered", Release, "copy: buffered"), v("splice", Release, "copy: splice")),
    e("io_uring", Proxy, v("lb-user proxy", Release, ""), v("bench-uring-proxy", UringProxy, "")),
];

/// The entries whose lever name contains one of `only` (all when empty).
pub fn select(only: &[String]) -> Vec<Entry> {
    ENTRIES.iter().copied().filter(|e| only.is_empty() || only.iter().any(|o| e.lever.contains(o.as_str()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_distinct_and_consistent() {
        for (i, a) in ENTRIES.iter().enumerate() {
            assert_ne!(a.off, a.on, "{}: both sides are the same", a.lever);
            for b in &ENTRIES[i + 1..] {
                assert!((a.lever, a.tier) != (b.lever, b.tier), "{} on {} twice", a.lever, a.tier.name());
            }
            for side in [a.off, a.on] {
                if side.program == UringProxy {
                    assert!(a.tier == Proxy && side.yaml.is_empty(), "{}: the io_uring example is an L4 proxy without YAML", a.lever);
                }
            }
        }
        assert_eq!(select(&["alloc".into()]).len(), 2);
        assert_eq!(select(&[]).len(), ENTRIES.len());
    }
}
