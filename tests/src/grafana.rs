//! The Grafana dashboards and Prometheus scrape config of `docs/grafana/`
//! as tests use them: every panel's PromQL, with the dashboards' template
//! variables substituted, and a real Prometheus to run them against
//! (`tests/tests/it/grafana_prometheus.rs`).
//!
//! Substitution (the documented rule, docs/operations.md): `$__rate_interval`
//! becomes a fixed range ([`RATE_INTERVAL`] for a 1 s scrape interval:
//! Grafana's own rule is at least four scrape intervals), and a dashboard
//! variable `$name` becomes the regex the test gives for it, as Grafana
//! writes a multi-value selection into `=~"…"`.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

/// The directory holding the dashboards and `prometheus.yml`.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/grafana")
}

/// The dashboards, by file name.
pub const DASHBOARDS: [&str; 2] = ["xdplb-xdp.json", "xdplb-alb.json"];

/// What `$__rate_interval` becomes with a 1 s scrape interval.
pub const RATE_INTERVAL: &str = "5s";

/// One query of a panel.
#[derive(Clone, Debug)]
pub struct Query {
    pub dashboard: String,
    pub panel: String,
    pub expr: String,
}

/// Every panel's queries of dashboard `file`; fails naming the panel when
/// a panel has no targets or a target no expression, and naming the
/// variable when a query uses one the dashboard does not define.
pub fn queries(file: &str) -> Result<Vec<Query>> {
    let path = dir().join(file);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let vars: Vec<&str> = v["templating"]["list"].as_array().map(|l| l.iter().filter_map(|x| x["name"].as_str()).collect()).unwrap_or_default();
    let panels = v["panels"].as_array().filter(|p| !p.is_empty()).with_context(|| format!("{file}: no panels"))?;
    let mut out = Vec::new();
    for p in panels {
        let title = p["title"].as_str().with_context(|| format!("{file}: a panel without a title"))?;
        let targets = p["targets"].as_array().filter(|t| !t.is_empty()).with_context(|| format!("{file}: panel {title:?} has no targets"))?;
        for t in targets {
            let expr = t["expr"].as_str().filter(|e| !e.trim().is_empty()).with_context(|| format!("{file}: panel {title:?} has a target without an expr"))?;
            for var in variables(expr) {
                if var != "__rate_interval" && !vars.contains(&var) {
                    bail!("{file}: panel {title:?} uses ${var}, which the dashboard does not define");
                }
            }
            out.push(Query { dashboard: file.to_owned(), panel: title.to_owned(), expr: expr.to_owned() });
        }
    }
    Ok(out)
}

/// The `$name` variables an expression uses.
fn variables(expr: &str) -> Vec<&str> {
    expr.match_indices('$')
        .map(|(i, _)| {
            let rest = &expr[i + 1..];
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

/// `expr` with `$__rate_interval` and every `(name, regex)` of `vars`
/// substituted; fails if a variable is left.
pub fn substitute(expr: &str, vars: &[(&str, &str)]) -> Result<String> {
    let mut s = expr.replace("$__rate_interval", RATE_INTERVAL);
    for (name, value) in vars {
        s = s.replace(&format!("${name}"), value);
    }
    if let Some(v) = variables(&s).first() {
        bail!("{expr}: ${v} was not substituted");
    }
    Ok(s)
}

/// A regex matching exactly `values` (dots escaped, for a PromQL string).
pub fn regex_of(values: &[String]) -> String {
    values.iter().map(|v| v.replace('.', r"\\.")).collect::<Vec<_>>().join("|")
}

/// `GET /api/v1/query` on a Prometheus at `addr` (from the calling thread's
/// namespace): the result vector's length, or the API's error.
pub fn query_len(addr: SocketAddr, expr: &str) -> Result<usize> {
    let r = crate::http::get(addr, &format!("/api/v1/query?query={}", percent_encode(expr)), Duration::from_secs(5))?;
    let v: Value = serde_json::from_str(&r.body).with_context(|| format!("Prometheus answered {} {:?}", r.status, r.body))?;
    if v["status"] != "success" {
        bail!("Prometheus refused {expr:?}: {} {}", v["errorType"], v["error"]);
    }
    v["data"]["result"].as_array().map(Vec::len).context("no data.result in Prometheus' answer")
}

/// RFC 3986 percent-encoding of everything but unreserved characters.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The checked-in `prometheus.yml` for a lab: every `replace` pair
/// (`from`, `to`) must occur in it (so the test notices when the file
/// changes shape).
pub fn render_scrape_config(replace: &[(&str, &str)]) -> Result<String> {
    let path = dir().join("prometheus.yml");
    let mut text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    for (from, to) in replace {
        if !text.contains(from) {
            bail!("{}: {from:?} not found", path.display());
        }
        text = text.replace(from, to);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dashboard_parses_and_every_panel_has_a_query() {
        for d in DASHBOARDS {
            let q = queries(d).unwrap();
            assert!(q.len() >= 8, "{d}: only {} queries", q.len());
        }
    }

    #[test]
    fn the_panels_the_issue_asks_for_are_there() {
        let all: Vec<Query> = DASHBOARDS.iter().flat_map(|d| queries(d).unwrap()).collect();
        let has = |needle: &str| all.iter().any(|q| q.expr.contains(needle));
        for q in ["0.5", "0.95", "0.99"] {
            assert!(has(&format!("histogram_quantile({q}, ")), "p{q}");
        }
        for needle in [
            "alb_requests_total{pool=~\"$pool\", status=~\"5..\"}",
            "xdplb_drops_total",
            "xdplb_vip_new_flows_total",
            "xdplb_backend_up",
            "alb_backend_healthy",
            "xdplb_backend_bytes_total",
            "group_left",
        ] {
            assert!(has(needle), "no panel uses {needle}");
        }
    }

    #[test]
    fn substitution_fills_every_variable_or_fails() {
        let e = "rate(x{vip=~\"$vip\"}[$__rate_interval])";
        assert_eq!(substitute(e, &[("vip", &regex_of(&["1.2.3.4:80/tcp".into()]))]).unwrap(), r#"rate(x{vip=~"1\\.2\\.3\\.4:80/tcp"}[5s])"#);
        assert!(substitute(e, &[]).unwrap_err().to_string().contains("$vip"));
        assert_eq!(variables("a $b_1 $__rate_interval"), ["b_1", "__rate_interval"]);
        assert_eq!(percent_encode("a b{c=\"d\"}"), "a%20b%7Bc%3D%22d%22%7D");
    }
}
