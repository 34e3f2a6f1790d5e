//! What a run measured: repetitions, cases, the TestRun cost, paced runs
//! and the summary that holds them all. Plain data; the figures derived
//! from it are in `stats` and `targets`.

use crate::bench::{
    cases::{Case, Lb},
    load::LoadResult,
};

/// One measured repetition of a case.
#[derive(Clone, Debug, Default)]
pub struct Rep {
    pub load: LoadResult,
    /// Machine busy CPU (all cores, /proc/stat) per request, µs.
    pub machine_us: f64,
    /// The LB process tree's CPU per request, µs (none for direct and XDP).
    pub lb_us: Option<f64>,
    /// The user-mode part of `lb_us`; the rest is kernel mode, which on
    /// veth includes delivering what the balancer sends into the peer's
    /// stack and waking the peer.
    pub lb_user_mode_us: Option<f64>,
    /// The load generator's CPU per request, µs.
    pub tool_us: f64,
    /// CPU used by processes outside the benchmark, % of machine capacity.
    pub foreign_pct: f64,
    /// Foreign CPU above the threshold: do not trust this repetition.
    pub flagged: bool,
    /// XDP cases: packets per XDP action during the run (proof that the
    /// traffic went through the program, and how).
    pub xdp_actions: Option<std::collections::BTreeMap<String, u64>>,
    /// Why the load run failed (counted as one error, no figures).
    pub failure: Option<String>,
}

impl Rep {
    /// How busy the whole machine was during the run, % of all `cpus`: the
    /// machine's CPU per request times the request rate. Near 100 the load
    /// saturated the machine, whatever the balancer's own share.
    pub fn machine_busy_pct(&self, cpus: usize) -> f64 {
        self.machine_us * self.load.rps / (cpus.max(1) as f64 * 1e6) * 100.0
    }
}

/// A case with its repetitions (flagged ones included, marked).
#[derive(Clone, Debug)]
pub struct CaseResult {
    pub case: Case,
    pub reps: Vec<Rep>,
}

/// BPF_PROG_TEST_RUN per-packet cost.
#[derive(Clone, Debug, Default)]
pub struct XdpCost {
    /// Single runs per packet (the medians are over these).
    pub runs: u64,
    pub nat_forward_ns: f64,
    pub reverse_nat_ns: f64,
    pub pass_ns: f64,
}

/// A paced (below saturation) latency run.
#[derive(Clone, Debug)]
pub struct Paced {
    pub lb: String,
    /// Which repetition (alb and HAProxy alternate within each).
    pub repetition: u32,
    pub target_rps: f64,
    pub conns: u32,
    pub pace_ms: u32,
    pub rep: Rep,
}

/// Everything a run produced.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub started: String,
    pub quick: bool,
    pub duration_s: u64,
    pub conns: u32,
    pub repetitions: u32,
    pub cpus: usize,
    pub foreign_threshold_pct: f64,
    pub cases: Vec<CaseResult>,
    pub xdp_cost: Option<XdpCost>,
    pub xdp_cost_error: Option<String>,
    /// The packet-rate bench's summary (`bench::pps::summarize`).
    pub pps: Option<serde_json::Value>,
    pub pps_error: Option<String>,
    /// What each TLS listener negotiated (openssl s_client).
    pub tls: Vec<(String, String)>,
    /// alb and HAProxy TLS at the same offered load below saturation.
    pub paced: Vec<Paced>,
    pub wall_s: f64,
    /// `attach_mode` of the XDP cases (skb, native or auto).
    pub xdp_attach_mode: String,
}

impl Summary {
    pub fn find(&self, lb: Lb, mtls: bool, new_conn: bool) -> Option<&CaseResult> {
        self.cases.iter().find(|c| c.case.lb == lb && c.case.mtls == mtls && c.case.new_conn == new_conn)
    }
}
