//! Results: per-repetition figures, medians and spread, the targets of
//! issue 15, and the three outputs: report.md, results.json, chart.svg.
//!
//! - `model`: what a run measured; `stats`: medians and per-request CPU
//!   derived from it; `targets`: issue 15's targets against those figures.
//! - `markdown`, `json`, `svg`: one renderer per output file.

mod json;
mod markdown;
mod model;
pub(crate) mod stats;
pub(crate) mod svg;
mod targets;
#[cfg(test)]
mod tests;

pub use self::{
    json::json,
    markdown::markdown,
    model::{CaseResult, Paced, Rep, Summary, XdpCost},
    svg::svg,
};

/// req/s as the table and the chart print it (shared so both read alike).
fn fmt_rps(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}
