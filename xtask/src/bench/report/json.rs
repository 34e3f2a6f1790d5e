//! results.json: every figure of the run, per repetition too, for tools.

use serde_json::{json, Value};

use super::model::Summary;

/// results.json
pub fn json(s: &Summary) -> Value {
    let cases: Vec<Value> = s
        .cases
        .iter()
        .map(|c| {
            let st = c.stats();
            json!({
                "id": c.case.id(),
                "lb": c.case.lb.name(),
                "tls": c.case.lb.is_tls(),
                "mtls": c.case.mtls,
                "new_conn": c.case.new_conn,
                "tool": c.case.tool.name(),
                "url": c.case.url(),
                "median": {
                    "rps": st.rps, "rps_spread_pct": st.rps_spread, "p50_ms": st.p50_ms, "p99_ms": st.p99_ms,
                    "machine_cpu_us_per_req": st.machine_us, "added_vs_direct_us_per_req": s.added_vs_direct(c),
                    "lb_cpu_us_per_req": s.lb_cost(c), "lb_user_mode_cpu_us_per_req": st.lb_user_mode_us, "tool_cpu_us_per_req": st.tool_us,
                },
                "errors": st.errors,
                "requests": st.requests,
                "repetitions_used": st.used,
                "repetitions": c.reps.iter().map(|r| json!({
                    "requests": r.load.requests, "seconds": r.load.seconds, "rps": r.load.rps,
                    "p50_ms": r.load.p50_ms, "p99_ms": r.load.p99_ms, "errors": r.load.errors,
                    "machine_cpu_us_per_req": r.machine_us, "lb_cpu_us_per_req": r.lb_us, "lb_user_mode_cpu_us_per_req": r.lb_user_mode_us,
                    "tool_cpu_us_per_req": r.tool_us,
                    "foreign_cpu_pct": r.foreign_pct, "flagged": r.flagged, "xdp_actions": r.xdp_actions, "failure": r.failure,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let targets: Vec<Value> = s.targets().into_iter().map(|(t, met, fig)| json!({"target": t, "met": met, "figures": fig})).collect();
    json!({
        "started": s.started, "quick": s.quick, "duration_s": s.duration_s, "conns": s.conns,
        "repetitions": s.repetitions, "cpus": s.cpus, "wall_s": s.wall_s, "xdp_attach_mode": s.xdp_attach_mode,
        "foreign_threshold_pct": s.foreign_threshold_pct,
        "cases": cases,
        "xdp_cost": s.xdp_cost.as_ref().map(|x| json!({
            "runs": x.runs, "nat_forward_ns": x.nat_forward_ns, "reverse_nat_ns": x.reverse_nat_ns, "pass_ns": x.pass_ns,
        })),
        "xdp_cost_error": s.xdp_cost_error,
        "pps": s.pps, "pps_error": s.pps_error,
        "paced": s.paced.iter().map(|p| json!({
            "lb": p.lb, "repetition": p.repetition, "target_rps": p.target_rps, "conns": p.conns, "pace_ms": p.pace_ms,
            "rps": p.rep.load.rps, "p50_ms": p.rep.load.p50_ms, "p99_ms": p.rep.load.p99_ms, "errors": p.rep.load.errors,
            "lb_cpu_us_per_req": p.rep.lb_us, "machine_cpu_us_per_req": p.rep.machine_us,
            "machine_busy_pct": p.rep.machine_busy_pct(s.cpus), "flagged": p.rep.flagged,
        })).collect::<Vec<_>>(),
        "tls": s.tls.iter().map(|(l, t)| json!({"listener": l, "negotiated": t})).collect::<Vec<_>>(),
        "targets": targets,
    })
}
