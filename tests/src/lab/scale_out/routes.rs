//! The router's kernel route to a VIP: which node addresses it goes
//! through (one entry per ECMP next hop), and waiting for a given set.

use std::{
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::sys;

/// Next hops of `vip`'s route in namespace `ns`'s main table, sorted; empty
/// without a route.
pub fn next_hops(ns: &str, vip: IpAddr) -> Result<Vec<Ipv4Addr>> {
    let out = sys::run_stdout("ip", &["-n", ns, "-j", "route", "show", "exact", &vip.to_string()])?;
    parse_next_hops(&out)
}

fn parse_next_hops(json: &str) -> Result<Vec<Ipv4Addr>> {
    let text = if json.trim().is_empty() { "[]" } else { json };
    let routes: serde_json::Value = serde_json::from_str(text).context("parsing `ip -j route` output")?;
    let mut hops = Vec::new();
    for route in routes.as_array().context("`ip -j route` did not print a list")? {
        let gateways: Vec<&serde_json::Value> = match route.get("nexthops").and_then(|n| n.as_array()) {
            Some(list) => list.iter().filter_map(|n| n.get("gateway")).collect(),
            None => route.get("gateway").into_iter().collect(),
        };
        for gw in gateways {
            let gw = gw.as_str().context("gateway is not a string")?;
            hops.push(gw.parse().with_context(|| format!("bad gateway {gw:?}"))?);
        }
    }
    hops.sort();
    Ok(hops)
}

/// Polls (every 20 ms, at most `limit`) until `vip`'s next hops in `ns` are
/// `want`; returns how long that took.
pub fn wait_next_hops(ns: &str, vip: IpAddr, want: &[Ipv4Addr], limit: Duration) -> Result<Duration> {
    let mut want = want.to_vec();
    want.sort();
    let start = Instant::now();
    loop {
        let now = next_hops(ns, vip)?;
        if now == want {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            bail!("route to {vip} in {ns} goes via {now:?}, not {want:?}, after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipath_single_and_missing_routes_parse() {
        let multi = r#"[{"dst":"198.18.100.1","protocol":"bird","flags":[],"nexthops":[{"gateway":"198.18.1.23","dev":"x-lb","weight":1,"flags":[]},{"gateway":"198.18.1.21","dev":"x-lb","weight":1,"flags":[]}]}]"#;
        assert_eq!(parse_next_hops(multi).unwrap(), vec![Ipv4Addr::new(198, 18, 1, 21), Ipv4Addr::new(198, 18, 1, 23)]);
        let single = r#"[{"dst":"198.18.100.1","gateway":"198.18.1.22","dev":"x-lb","protocol":"bird","flags":[]}]"#;
        assert_eq!(parse_next_hops(single).unwrap(), vec![Ipv4Addr::new(198, 18, 1, 22)]);
        assert!(parse_next_hops("").unwrap().is_empty());
        assert!(parse_next_hops("[{\"gateway\": 7}]").unwrap_err().to_string().contains("gateway"));
    }
}
