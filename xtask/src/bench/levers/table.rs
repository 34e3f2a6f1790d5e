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
    /// The tier's binary from `--baseline DIR` (another build, e.g. of an
    /// earlier commit): for levers that are code changes.
    Baseline,
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

use Program::{Baseline, Mimalloc, Release, UringProxy};
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

/// A code change as a lever: the baseline build (`--baseline DIR`) against
/// this one, on both tiers. Only with `--baseline`.
pub const BUILD: &[Entry] =
    &[e("build", Alb, v("baseline", Baseline, ""), v("this build", Release, "")), e("build", Proxy, v("baseline", Baseline, ""), v("this build", Release, ""))];

/// The entries whose lever name contains one of `only` (all when empty),
/// with the `build` lever when there is a baseline to compare with.
pub fn select(only: &[String], baseline: bool) -> Vec<Entry> {
    let build = if baseline { BUILD } else { &[] };
    ENTRIES.iter().chain(build).copied().filter(|e| only.is_empty() || only.iter().any(|o| e.lever.contains(o.as_str()))).collect()
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
        assert_eq!(select(&["alloc".into()], false).len(), 2);
        assert_eq!(select(&[], false).len(), ENTRIES.len());
        assert_eq!(select(&[], true).len(), ENTRIES.len() + 2);
        assert!(select(&["build".into()], false).is_empty(), "the build lever needs a baseline");
        assert!(BUILD.iter().all(|e| e.off.program == Baseline && e.on.program == Release));
    }
}
