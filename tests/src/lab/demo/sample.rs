//! One look at every tier at one moment: lb-user's Prometheus samples,
//! each alb's `/metrics`, each backend simulator's `GET /stats`, and the
//! client simulator's latest per-kind line. A piece that does not answer
//! (killed, restarting) is `None` in that sample.

use std::{collections::BTreeMap, time::Duration};

use anyhow::Result;

use super::topology::Topology;
use crate::{
    http,
    lab::{alb_tier::ADMIN, chain::METRICS, Host, Lab},
    metrics::{self, Samples},
    netns,
};

const SCRAPE_TIMEOUT: Duration = Duration::from_millis(700);

#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Since the load started.
    pub at: Duration,
    pub lb: Option<Samples>,
    /// alb id → its samples.
    pub albs: BTreeMap<u8, Option<Samples>>,
    /// Simulator id → its `GET /stats`.
    pub backends: BTreeMap<u8, Option<serde_json::Value>>,
    /// The client simulator's latest `--live-json` object.
    pub client: Option<serde_json::Value>,
}

/// Scrapes every tier (not the client, which the caller adds).
pub fn take(lab: &Lab, at: Duration) -> Result<Sample> {
    let ids: Vec<u8> = Topology::backend_ids().collect();
    let (lb, backends) = netns::run_in(&lab.ns(Host::Lb), move || {
        let lb = metrics::scrape(METRICS, SCRAPE_TIMEOUT).ok();
        let backends = ids.iter().map(|&id| (id, backend_stats(Topology::control_addr(id)))).collect();
        Ok((lb, backends))
    })?;
    let mut albs = BTreeMap::new();
    for i in Topology::alb_ids() {
        let got = netns::run_in(&lab.ns(Host::Backend(i)), || Ok(metrics::scrape(ADMIN, SCRAPE_TIMEOUT).ok()))?;
        albs.insert(i, got);
    }
    Ok(Sample { at, lb, albs, backends, client: None })
}

fn backend_stats(control: std::net::SocketAddr) -> Option<serde_json::Value> {
    let r = http::get(control, "/stats", SCRAPE_TIMEOUT).ok().filter(|r| r.status == 200)?;
    serde_json::from_str(&r.body).ok()
}

impl Sample {
    /// lb-user's value of `name{…}` with these label values (all must match).
    pub fn lb_value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let lb = self.lb.as_ref()?;
        Some(matching(lb, name, labels).sum())
    }

    /// A backend's HTTP requests answered (health checks excluded), echo
    /// lines and accepted connections, from its stats.
    pub fn backend_counts(&self, id: u8) -> Option<BackendCounts> {
        let v = self.backends.get(&id)?.as_ref()?;
        let requests = v["identities"].as_object().map(|m| m.values().filter_map(|n| n.as_u64()).sum()).unwrap_or(0);
        let identities = v["identities"].as_object().map(|m| m.iter().filter_map(|(k, n)| Some((k.clone(), n.as_u64()?))).collect()).unwrap_or_default();
        Some(BackendCounts {
            requests,
            echo_lines: v["echo"]["lines"].as_u64().unwrap_or(0),
            accepted: v["connections"]["accepted"].as_u64().unwrap_or(0),
            refused: v["connections"]["refused"].as_u64().unwrap_or(0),
            chaos_closed: v["connections"]["chaos_closed"].as_u64().unwrap_or(0),
            identities,
        })
    }
}

/// What one simulator counted since it (last) started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendCounts {
    pub requests: u64,
    pub echo_lines: u64,
    pub accepted: u64,
    pub refused: u64,
    pub chaos_closed: u64,
    /// HTTP requests by the identity header they carried.
    pub identities: BTreeMap<String, u64>,
}

/// Values of the series of metric `name` whose labels include `labels`.
pub fn matching<'a>(samples: &'a Samples, name: &'a str, labels: &'a [(&'a str, &'a str)]) -> impl Iterator<Item = f64> + 'a {
    samples
        .iter()
        .filter(move |(k, _)| k.as_str() == name || k.strip_prefix(name).is_some_and(|rest| rest.starts_with('{')))
        .filter(move |(k, _)| labels.iter().all(|(l, v)| metrics::label(k, l) == Some(*v)))
        .map(|(_, v)| *v)
}
