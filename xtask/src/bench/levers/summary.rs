//! The levers' figures: per lever, tier and case the medians of each side
//! and the on/off ratios taken per repetition (so their spread is the
//! repetitions' spread), as levers.json; levers.md is drawn from the JSON.

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::table::Entry;
use crate::bench::{pps::spread, report::stats::median, report::Rep};

/// One lever on one case: both sides' repetitions, or why it did not run.
#[derive(Clone, Debug)]
pub struct Measured {
    pub entry: Entry,
    pub new_conn: bool,
    pub off: Vec<Rep>,
    pub on: Vec<Rep>,
    /// The lever could not run (a variant did not build or start).
    pub failure: Option<String>,
}

impl Measured {
    pub fn case(&self) -> String {
        format!("{}/{}", self.entry.tier.name(), if self.new_conn { "new-conn" } else { "keepalive" })
    }
}

fn ok(reps: &[Rep]) -> Vec<&Rep> {
    reps.iter().filter(|r| r.failure.is_none()).collect()
}

fn side(reps: &[Rep], label: &str) -> Value {
    let good = ok(reps);
    let col = |f: &dyn Fn(&Rep) -> Option<f64>| -> Option<f64> {
        let v: Vec<f64> = good.iter().filter_map(|r| f(r)).collect();
        (!v.is_empty()).then(|| median(&v))
    };
    let failures: Vec<&str> = reps.iter().filter_map(|r| r.failure.as_deref()).collect();
    json!({
        "label": label,
        "runs": good.len(),
        "rps": col(&|r| Some(r.load.rps)),
        "lb_us_per_req": col(&|r| r.lb_us),
        "lb_user_mode_us_per_req": col(&|r| r.lb_user_mode_us),
        "p99_ms": col(&|r| Some(r.load.p99_ms)),
        "errors": reps.iter().map(|r| r.load.errors).sum::<u64>(),
        "failures": failures,
    })
}

/// on/off per repetition where both sides ran.
fn ratio(m: &Measured, f: impl Fn(&Rep) -> Option<f64>) -> Value {
    let v: Vec<f64> = m
        .off
        .iter()
        .zip(&m.on)
        .filter(|(a, b)| a.failure.is_none() && b.failure.is_none())
        .filter_map(|(a, b)| Some(f(b)? / f(a).filter(|x| *x > 0.0)?))
        .collect();
    if v.is_empty() {
        Value::Null
    } else {
        spread(&v)
    }
}

/// levers.json.
pub fn json(results: &[Measured], reps: u32, seconds: u64, conns: u32) -> Value {
    let rows: Vec<Value> = results
        .iter()
        .map(|m| {
            json!({
                "lever": m.entry.lever,
                "case": m.case(),
                "failure": m.failure,
                "off": side(&m.off, m.entry.off.label),
                "on": side(&m.on, m.entry.on.label),
                "on_off": {
                    "rps": ratio(m, |r| Some(r.load.rps)),
                    "lb_us_per_req": ratio(m, |r| r.lb_us),
                    "lb_user_mode_us_per_req": ratio(m, |r| r.lb_user_mode_us),
                    "p99_ms": ratio(m, |r| Some(r.load.p99_ms)),
                },
            })
        })
        .collect();
    json!({ "repetitions": reps, "seconds": seconds, "conns": conns, "levers": rows })
}

fn num(v: &Value, digits: usize) -> String {
    v.as_f64().map_or("—".into(), |x| format!("{x:.digits$}"))
}

fn ratio_cell(v: &Value) -> String {
    if v.is_null() {
        return "—".into();
    }
    format!("{:.2}× ({:.2}–{:.2})", v["median"].as_f64().unwrap_or(0.0), v["min"].as_f64().unwrap_or(0.0), v["max"].as_f64().unwrap_or(0.0))
}

/// levers.md from levers.json.
pub fn markdown(s: &Value) -> String {
    let mut md = String::from("# Levers, A/B in one run\n\n");
    let _ = writeln!(
        md,
        "{} interleaved repetition(s) of {} s, {} connections, medians; on/off ratios per repetition (min–max). LB µs/req is the variant's process CPU per request; *user* is its user-mode part (a code change acts there; \
the kernel-mode rest is mostly socket work and, on veth, delivering into the peer's stack).\n",
        s["repetitions"], s["seconds"], s["conns"]
    );
    md.push_str(
        "| lever | case | off → on | req/s off / on | req/s on/off | LB µs/req off / on | LB µs on/off | user µs/req off / on | user µs on/off | p99 ms off / on | p99 on/off | errors |\n",
    );
    md.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in s["levers"].as_array().into_iter().flatten() {
        let (off, on, q) = (&r["off"], &r["on"], &r["on_off"]);
        let sides = format!("{} → {}", off["label"].as_str().unwrap_or(""), on["label"].as_str().unwrap_or(""));
        if let Some(f) = r["failure"].as_str() {
            let _ = writeln!(
                md,
                "| {} | {} | {sides} | FAILED: {} ||||||||| |",
                r["lever"].as_str().unwrap_or(""),
                r["case"].as_str().unwrap_or(""),
                f.replace('|', "/")
            );
            continue;
        }
        let _ = writeln!(
            md,
            "| {} | {} | {sides} | {} / {} | {} | {} / {} | {} | {} / {} | {} | {} / {} | {} | {} |",
            r["lever"].as_str().unwrap_or(""),
            r["case"].as_str().unwrap_or(""),
            num(&off["rps"], 0),
            num(&on["rps"], 0),
            ratio_cell(&q["rps"]),
            num(&off["lb_us_per_req"], 1),
            num(&on["lb_us_per_req"], 1),
            ratio_cell(&q["lb_us_per_req"]),
            num(&off["lb_user_mode_us_per_req"], 1),
            num(&on["lb_user_mode_us_per_req"], 1),
            ratio_cell(&q["lb_user_mode_us_per_req"]),
            num(&off["p99_ms"], 2),
            num(&on["p99_ms"], 2),
            ratio_cell(&q["p99_ms"]),
            off["errors"].as_u64().unwrap_or(0) + on["errors"].as_u64().unwrap_or(0),
        );
    }
    for r in s["levers"].as_array().into_iter().flatten() {
        for side in ["off", "on"] {
            for f in r[side]["failures"].as_array().into_iter().flatten() {
                let _ = writeln!(
                    md,
                    "\n- {} {} {side}: load run failed: {}",
                    r["lever"].as_str().unwrap_or(""),
                    r["case"].as_str().unwrap_or(""),
                    f.as_str().unwrap_or("")
                );
            }
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{levers::table::ENTRIES, load::LoadResult};

    fn rep(rps: f64, lb: f64, p99: f64) -> Rep {
        Rep {
            load: LoadResult { requests: 1000, rps, p99_ms: p99, ..Default::default() },
            lb_us: Some(lb),
            lb_user_mode_us: Some(lb / 2.0),
            ..Default::default()
        }
    }

    #[test]
    fn ratios_are_per_repetition_and_failures_are_reported() {
        let m = Measured {
            entry: ENTRIES[0],
            new_conn: false,
            off: vec![rep(1000.0, 20.0, 2.0), rep(2000.0, 10.0, 4.0), rep(1.0, 1.0, 1.0)],
            on: vec![rep(1100.0, 18.0, 2.0), rep(2400.0, 8.0, 2.0), Rep { failure: Some("boom".into()), ..Default::default() }],
            failure: None,
        };
        let failed = Measured { entry: ENTRIES[2], new_conn: true, off: vec![], on: vec![], failure: Some("unknown field `runtime`".into()) };
        let s = json(&[m, failed], 3, 2, 16);
        let r = &s["levers"][0];
        assert_eq!(r["case"], "alb/keepalive");
        assert_eq!(r["on_off"]["rps"]["n"], 2, "the failed repetition is not paired");
        assert_eq!(r["on_off"]["rps"]["min"].as_f64().unwrap(), 1.1);
        assert_eq!(r["on_off"]["rps"]["max"].as_f64().unwrap(), 1.2);
        assert_eq!(r["on_off"]["lb_us_per_req"]["max"].as_f64().unwrap(), 0.9);
        assert_eq!(r["on_off"]["lb_user_mode_us_per_req"]["min"].as_f64().unwrap(), 0.8);
        assert_eq!(r["off"]["lb_user_mode_us_per_req"].as_f64().unwrap(), 5.0, "median of 10, 5 and 0.5");
        assert_eq!(r["on_off"]["p99_ms"]["min"].as_f64().unwrap(), 0.5);
        assert_eq!(r["on"]["runs"], 2);
        let md = markdown(&s);
        assert!(md.contains("| allocator | alb/keepalive | system → mimalloc |"), "{md}");
        assert!(md.contains("1.15× (1.10–1.20)"), "{md}");
        assert!(md.contains("| runtime | alb/new-conn | shared → per_core | FAILED: unknown field `runtime`"), "{md}");
        assert!(md.contains("load run failed: boom"), "{md}");
    }
}
