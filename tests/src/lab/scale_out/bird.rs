//! BIRD 2 configs for the router and the LB nodes (the ones docs/scale-out.md
//! documents), and one `bird` process per namespace with its config,
//! control socket and pid file in the lab's temporary directory.

use std::{net::Ipv4Addr, path::Path};

use anyhow::{Context as _, Result};

use super::plan;

/// BFD at 100 ms × 5: a silent node is declared dead after 500 ms. The BGP
/// hold time of 3 s (BIRD's minimum) is the fallback.
const BFD: &str = "protocol bfd { interface \"*\" { min rx interval 100 ms; min tx interval 100 ms; multiplier 5; }; }\n";
const TIMERS: &str = "bfd on; hold time 3; keepalive time 1; connect retry time 1;";

/// The router: one eBGP session per node, equal paths merged into one
/// kernel multipath route (ECMP).
pub fn router_config(nodes: u8) -> String {
    let mut out = format!(
        "log stderr all;\nrouter id {rid};\nprotocol device {{ scan time 10; }}\n\
         protocol kernel {{ merge paths on limit 16; ipv4 {{ import none; export all; }}; }}\n{BFD}\
         template bgp lbnode {{ local {rid} as {ras}; {TIMERS} ipv4 {{ import all; export none; }}; }}\n",
        rid = plan::router_v4(),
        ras = plan::ROUTER_AS,
    );
    for i in 1..=nodes {
        out.push_str(&format!("protocol bgp node{i} from lbnode {{ neighbor {} as {}; }}\n", plan::node_v4(i), plan::NODE_AS));
    }
    out
}

/// LB node with fabric address `me`: exports the hand-off table lb-user
/// writes, nothing else.
pub fn node_config(me: Ipv4Addr) -> String {
    format!(
        "log stderr all;\nrouter id {me};\nprotocol device {{ scan time 10; }}\n\
         protocol kernel handoff {{ kernel table {table}; learn; scan time 10; ipv4 {{ import all; export none; }}; }}\n{BFD}\
         protocol bgp uplink {{ local {me} as {nas}; neighbor {router} as {ras}; {TIMERS} \
         ipv4 {{ import none; export where proto = \"handoff\"; next hop self; }}; }}\n",
        table = plan::HANDOFF_TABLE,
        nas = plan::NODE_AS,
        router = plan::router_v4(),
        ras = plan::ROUTER_AS,
    )
}

/// Writes `config` to `dir/NAME.conf` and returns the `bird` arguments that
/// run it in the foreground with its socket and pid file beside it.
pub fn write(dir: &Path, name: &str, config: &str) -> Result<Vec<String>> {
    let conf = dir.join(format!("{name}.conf"));
    std::fs::write(&conf, config).with_context(|| format!("writing {}", conf.display()))?;
    let path = |ext: &str| dir.join(format!("{name}.{ext}")).to_string_lossy().into_owned();
    Ok(vec!["-f".into(), "-c".into(), path("conf"), "-s".into(), path("ctl"), "-P".into(), path("pid")])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_router_peers_with_every_node_and_merges_paths() {
        let conf = router_config(3);
        assert!(conf.contains("merge paths on"));
        for i in 1..=3 {
            assert!(conf.contains(&format!("neighbor 198.18.1.2{i} as 65001")), "{conf}");
        }
        assert!(!conf.contains("198.18.1.24"));
        let node = node_config(plan::node_v4(2));
        assert!(node.contains("kernel table 100") && node.contains("neighbor 198.18.1.1 as 65000") && node.contains("bfd on"), "{node}");
    }
}
