//! Requests from the lab's client, as the balancer sees them: each on a new
//! connection (a new flow: who serves it shows where new flows go), or one
//! kept-alive connection (an established flow: it must stay on its backend).

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use anyhow::{Context as _, Result};

use super::{Host, Lab};
use crate::{http, netns};

/// Per request: connect, and the whole exchange.
const TIMEOUT: Duration = Duration::from_secs(5);

impl Lab {
    /// Who served each of `n` GETs to `vip` from the client, each on a new
    /// connection: backend name (`be1`) → count. Every answer must be a 200.
    pub fn served_by(&self, vip: SocketAddr, n: usize) -> Result<BTreeMap<String, usize>> {
        netns::run_in(&self.ns(Host::Client), move || {
            let mut seen = BTreeMap::new();
            for _ in 0..n {
                let r = http::get(vip, "/", TIMEOUT)?;
                anyhow::ensure!(r.status == 200, "status {} from {vip}", r.status);
                *seen.entry(r.body.trim().to_owned()).or_insert(0) += 1;
            }
            Ok(seen)
        })
    }

    /// One kept-alive connection from the client to `vip`, after a first
    /// GET on it, and the backend (1-based) that answered.
    pub fn keep_alive(&self, vip: SocketAddr) -> Result<(http::KeepAlive, u8)> {
        let mut conn = netns::run_in(&self.ns(Host::Client), move || http::KeepAlive::connect(vip, TIMEOUT))?;
        let name = conn.get("/")?.body.trim().to_owned();
        let i = name.strip_prefix("be").and_then(|n| n.parse().ok()).with_context(|| format!("{vip} answered {name:?}, not a lab backend's name"))?;
        Ok((conn, i))
    }
}
