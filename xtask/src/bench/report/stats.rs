//! Medians and spread over repetitions, and the per-request CPU figures
//! derived from them (LB cost, machine CPU above `direct`).

use super::model::{CaseResult, Rep, Summary};
use crate::bench::cases::Lb;

/// Median of the values (0 for none).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// (max - min) / median, in percent.
pub fn spread_pct(v: &[f64]) -> f64 {
    let m = median(v);
    if v.len() < 2 || m == 0.0 {
        return 0.0;
    }
    let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
    (hi - lo) / m * 100.0
}

/// Medians over a case's trusted repetitions (all of them if none is trusted).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub rps: f64,
    pub rps_spread: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    pub requests: u64,
    pub machine_us: f64,
    pub lb_us: Option<f64>,
    pub lb_user_mode_us: Option<f64>,
    pub tool_us: f64,
    pub used: usize,
    pub flagged: usize,
}

impl CaseResult {
    pub fn stats(&self) -> Stats {
        let ran: Vec<&Rep> = self.reps.iter().filter(|r| r.failure.is_none()).collect();
        let trusted: Vec<&Rep> = ran.iter().copied().filter(|r| !r.flagged).collect();
        let reps: Vec<&Rep> = if trusted.is_empty() { ran } else { trusted };
        let col = |f: &dyn Fn(&Rep) -> f64| reps.iter().map(|r| f(r)).collect::<Vec<f64>>();
        let lb: Vec<f64> = reps.iter().filter_map(|r| r.lb_us).collect();
        let lb_user: Vec<f64> = reps.iter().filter_map(|r| r.lb_user_mode_us).collect();
        Stats {
            rps: median(&col(&|r| r.load.rps)),
            rps_spread: spread_pct(&col(&|r| r.load.rps)),
            p50_ms: median(&col(&|r| r.load.p50_ms)),
            p99_ms: median(&col(&|r| r.load.p99_ms)),
            errors: self.reps.iter().map(|r| r.load.errors).sum(),
            requests: self.reps.iter().map(|r| r.load.requests).sum(),
            machine_us: median(&col(&|r| r.machine_us)),
            lb_us: (!lb.is_empty()).then(|| median(&lb)),
            lb_user_mode_us: (!lb_user.is_empty()).then(|| median(&lb_user)),
            tool_us: median(&col(&|r| r.tool_us)),
            used: reps.len(),
            flagged: self.reps.iter().filter(|r| r.flagged).count(),
        }
    }
}

impl Summary {
    /// Machine CPU per request above `direct` in the same connection mode
    /// (L4 cases): for XDP this is the balancer's whole cost.
    pub fn added_vs_direct(&self, c: &CaseResult) -> Option<f64> {
        if c.case.lb.is_tls() || c.case.lb == Lb::Direct {
            return None;
        }
        let d = self.find(Lb::Direct, false, c.case.new_conn)?;
        Some(c.stats().machine_us - d.stats().machine_us)
    }

    /// The LB's own cost per request: its process CPU, or for XDP the machine
    /// CPU above direct.
    pub fn lb_cost(&self, c: &CaseResult) -> Option<f64> {
        if c.case.lb.is_xdp() {
            self.added_vs_direct(c)
        } else {
            c.stats().lb_us
        }
    }
}
