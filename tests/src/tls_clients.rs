//! The report format of the `tls-clients` tool (`tests/src/bin/tls-clients.rs`):
//! one JSON object per line on its stdout, a [`Progress`] line every
//! `--progress-every` and one [`Summary`] line at the end. The tool writes
//! these types and `cargo xtask bench reliability` reads them, so both sides
//! share one definition. Also the percentile summary ([`Dist`]) of the
//! samples the tool takes.

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

/// Counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Seconds since the tool started.
    pub t: u64,
    /// Connections with a completed handshake, still open.
    pub open: u64,
    /// Connections in their TCP connect or TLS handshake.
    pub pending: u64,
    /// Handshakes completed so far.
    pub handshakes: u64,
    /// Connects or handshakes that failed or timed out.
    pub failed: u64,
    /// Open connections the server closed (EOF or error on read/write).
    pub server_closed: u64,
}

/// Nearest-rank percentiles of a set of samples (all 0 for none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Dist {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Dist {
    /// Summarises `samples` (sorted in place).
    pub fn of(samples: &mut [f64]) -> Dist {
        if samples.is_empty() {
            return Dist::default();
        }
        samples.sort_by(f64::total_cmp);
        let n = samples.len();
        // Nearest rank: the smallest sample with at least p of them at or below it.
        let rank = |p: f64| samples[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        Dist { count: n as u64, p50: rank(0.50), p90: rank(0.90), p99: rank(0.99), max: samples[n - 1] }
    }
}

/// The last line: final counters and the distributions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub progress: Progress,
    /// TCP connect + TLS handshake, in milliseconds.
    pub handshake_ms: Dist,
    /// `--then request`: request sent → response complete, in milliseconds.
    pub request_ms: Dist,
    /// Handshake completed → the server closed the connection, in seconds.
    pub server_close_s: Dist,
    /// Failure messages with their counts, most frequent first (at most 10).
    pub errors: Vec<(String, u64)>,
}

/// One line of the tool's output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Line {
    Progress(Progress),
    Summary(Summary),
}

impl Line {
    /// The line as the tool prints it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain data serialises")
    }

    /// Parses one output line.
    pub fn parse(text: &str) -> Result<Line> {
        let text = text.trim();
        if !text.starts_with('{') {
            bail!("not a tls-clients report line: {text:?}");
        }
        serde_json::from_str(text).with_context(|| format!("parsing tls-clients line {text:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let d = Dist::of(&mut v);
        assert_eq!((d.count, d.p50, d.p90, d.p99, d.max), (100, 50.0, 90.0, 99.0, 100.0));
        assert_eq!(Dist::of(&mut [7.0]).p99, 7.0);
        assert_eq!(Dist::of(&mut []), Dist::default());
    }

    #[test]
    fn lines_round_trip() {
        let p = Line::Progress(Progress { t: 3, open: 10, pending: 1, handshakes: 11, failed: 0, server_closed: 1 });
        assert_eq!(Line::parse(&p.to_json()).unwrap(), p);
        let s = Line::Summary(Summary { errors: vec![("connect: refused".into(), 2)], ..Default::default() });
        let text = s.to_json();
        assert!(text.contains("\"event\":\"summary\""), "{text}");
        assert_eq!(Line::parse(&text).unwrap(), s);
        assert!(Line::parse("garbage").unwrap_err().to_string().contains("garbage"));
    }
}
