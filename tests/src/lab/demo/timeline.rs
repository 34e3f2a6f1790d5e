//! What each tier saw, in time order: the scenario's steps, every health
//! transition (sampled every 100 ms from lb-user's metrics and each alb's
//! admin API), and bursts — consecutive seconds with client failures, alb
//! 5xx answers, XDP drops, or a piece not answering its metrics — merged
//! into one line each.

use std::{collections::BTreeMap, fmt, time::Duration};

use super::figures::Frame;

#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Since the load started.
    pub at: Duration,
    /// `scenario`, `xdp`, `alb1`, `be3`, `client`.
    pub tier: String,
    pub what: String,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>6.1}s  {:<8} {}", self.at.as_secs_f64(), self.tier, self.what)
    }
}

/// A health change seen by one tier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthChange {
    pub at: Duration,
    /// `xdp` or `albN`.
    pub tier: String,
    /// The backend's name (`be3`, `alb2`) and, for XDP, the VIP.
    pub backend: String,
    pub vip: Option<String>,
    pub up: bool,
}

impl HealthChange {
    pub fn event(&self) -> Event {
        let state = if self.up { "up (gets traffic again)" } else { "DOWN (ejected)" };
        let what = match &self.vip {
            Some(vip) => format!("{} behind {vip}: {state}", self.backend),
            None => format!("{}: {state}", self.backend),
        };
        Event { at: self.at, tier: self.tier.clone(), what }
    }
}

/// One per-second observation that bursts are made of.
struct Tick {
    at: Duration,
    count: f64,
    detail: BTreeMap<String, f64>,
}

/// Bursts in the frames: runs of consecutive seconds with something wrong.
pub fn bursts(frames: &[Frame]) -> Vec<Event> {
    // (tier, what) → ticks
    let mut series: BTreeMap<(String, String), Vec<Tick>> = BTreeMap::new();
    let mut push = |tier: String, what: &str, at: Duration, count: f64, detail: BTreeMap<String, f64>| {
        series.entry((tier, what.to_owned())).or_default().push(Tick { at, count, detail });
    };
    for pair in frames.windows(2) {
        let (prev, cur) = (&pair[0], &pair[1]);
        for k in &cur.client {
            let before = prev.client.iter().find(|p| p.kind == k.kind);
            let mut detail = BTreeMap::new();
            for (reason, n) in &k.failed {
                let d = n.saturating_sub(before.and_then(|b| b.failed.get(reason)).copied().unwrap_or(0));
                if d > 0 {
                    detail.insert(reason.clone(), d as f64);
                }
            }
            let total: f64 = detail.values().sum();
            if total > 0.0 {
                push("client".into(), &format!("{} failures", k.kind), cur.at, total, detail);
            }
        }
        for alb in &cur.albs {
            let tier = format!("alb{}", alb.id);
            if !alb.up {
                push(tier, "not answering (metrics)", cur.at, 1.0, BTreeMap::new());
                continue;
            }
            let errors: BTreeMap<String, f64> = alb.statuses.iter().filter(|(s, _)| s.starts_with('5')).map(|(s, n)| (s.clone(), *n)).collect();
            let total: f64 = errors.values().sum();
            if total > 0.0 {
                push(tier, "5xx answers", cur.at, total, errors);
            }
        }
        for be in cur.backends.iter().filter(|b| !b.up) {
            push(format!("be{}", be.id), "not answering (control port)", cur.at, 1.0, BTreeMap::new());
        }
        if let Some(x) = &cur.xdp {
            let total: f64 = x.drops.values().sum();
            if total > 0.0 {
                push("xdp".into(), "frames dropped", cur.at, total, x.drops.clone());
            }
        }
    }
    let mut out = Vec::new();
    for ((tier, what), ticks) in series {
        let mut run: Vec<&Tick> = Vec::new();
        for t in &ticks {
            // A gap of more than ~1.5 s between ticks ends a burst.
            if run.last().is_some_and(|l| t.at.saturating_sub(l.at) > Duration::from_millis(1500)) {
                out.push(burst(&tier, &what, &run));
                run.clear();
            }
            run.push(t);
        }
        if !run.is_empty() {
            out.push(burst(&tier, &what, &run));
        }
    }
    out
}

fn burst(tier: &str, what: &str, run: &[&Tick]) -> Event {
    let (first, last) = (run[0].at, run[run.len() - 1].at);
    let total: f64 = run.iter().map(|t| t.count).sum();
    let mut detail: BTreeMap<&str, f64> = BTreeMap::new();
    for t in run {
        for (k, n) in &t.detail {
            *detail.entry(k).or_default() += n;
        }
    }
    let detail: Vec<String> = detail.iter().map(|(k, n)| format!("{k} {n:.0}")).collect();
    let span = if run.len() == 1 { String::from("1 s") } else { format!("{} s, until {:.0}s", run.len(), last.as_secs_f64()) };
    let what = if detail.is_empty() { format!("{what} ({span})") } else { format!("{what}: {total:.0} ({}) ({span})", detail.join(", ")) };
    Event { at: first, tier: tier.to_owned(), what }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::demo::figures::{AlbRow, KindRow};

    fn frame(s: u64, failed: u64, alb_up: bool) -> Frame {
        Frame {
            at: Duration::from_secs(s),
            client: vec![KindRow { kind: "real".into(), failed: BTreeMap::from([("refused_reset".into(), failed)]), ..KindRow::default() }],
            albs: vec![AlbRow { id: 2, up: alb_up, ..AlbRow::default() }],
            ..Frame::default()
        }
    }

    #[test]
    fn consecutive_seconds_merge_and_gaps_split() {
        let frames = [frame(1, 0, true), frame(2, 3, true), frame(3, 5, false), frame(4, 5, false), frame(5, 5, true), frame(6, 6, true)];
        let events = bursts(&frames);
        let lines: Vec<String> = events.iter().map(|e| format!("{} {}", e.tier, e.what)).collect();
        assert_eq!(
            lines,
            vec![
                "alb2 not answering (metrics) (2 s, until 4s)",
                "client real failures: 5 (refused_reset 5) (2 s, until 3s)",
                "client real failures: 1 (refused_reset 1) (1 s)",
            ]
        );
        assert_eq!(events[1].at, Duration::from_secs(2));
    }
}
