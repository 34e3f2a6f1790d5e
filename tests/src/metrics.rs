//! Reading Prometheus text from lb-user's exporter or alb's admin API.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use anyhow::{bail, Context as _, Result};

/// Samples of one scrape: series (`name{labels}` as written) → value.
pub type Samples = BTreeMap<String, f64>;

/// `GET /metrics` on `addr` (from the calling thread's namespace).
pub fn scrape(addr: SocketAddr, timeout: Duration) -> Result<Samples> {
    let r = crate::http::get(addr, "/metrics", timeout)?;
    if r.status != 200 {
        bail!("GET http://{addr}/metrics answered {}: {}", r.status, r.body.trim());
    }
    parse(&r.body).with_context(|| format!("metrics from {addr}"))
}

/// Parses the text format (comments skipped; labels kept as written, which
/// both exporters write sorted by label name).
pub fn parse(text: &str) -> Result<Samples> {
    let mut out = Samples::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').with_context(|| format!("bad sample line {line:?}"))?;
        let value: f64 = value.parse().with_context(|| format!("bad value in {line:?}"))?;
        out.insert(series.to_owned(), value);
    }
    Ok(out)
}

/// The sum over every series of metric `name` (any labels).
pub fn sum(samples: &Samples, name: &str) -> f64 {
    samples.iter().filter(|(k, _)| k.as_str() == name || k.strip_prefix(name).is_some_and(|rest| rest.starts_with('{'))).map(|(_, v)| v).sum()
}

/// The value of label `label` in a series key such as `m{a="1",b="2"}`.
pub fn label<'a>(series: &'a str, label: &str) -> Option<&'a str> {
    let labels = series.split_once('{')?.1.strip_suffix('}')?;
    let needle = format!("{label}=\"");
    let start = labels.find(&needle)? + needle.len();
    labels[start..].split('"').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sums_and_reads_labels() {
        let s = parse("# HELP x y\nm_total{a=\"1\",b=\"x\"} 2\nm_total{a=\"2\",b=\"y\"} 3.5\nm_total_other 7\nup 1\n").unwrap();
        assert_eq!(sum(&s, "m_total"), 5.5);
        assert_eq!(sum(&s, "up"), 1.0);
        assert_eq!(label("m_total{a=\"1\",b=\"x\"}", "b"), Some("x"));
        assert_eq!(label("m_total{a=\"1\"}", "c"), None);
        assert!(parse("m_total{a=\"1\"} notanumber\n").is_err());
    }
}
