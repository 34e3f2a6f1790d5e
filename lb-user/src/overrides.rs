//! Runtime changes made through the control API (`crate::api`): backends
//! added, removed or reweighted, and backends drained, on top of the config
//! file.
//!
//! **The rule** (the one alb's admin API follows: the file wins): runtime
//! changes hold until the config file changes. A reload whose file says what
//! it said before (a SIGHUP, a touched file, an edited comment) keeps them;
//! a reload with a different file discards them all and the file is applied
//! as written (a backend only the API had added then drains like any
//! backend the file dropped). A refused reload changes nothing.
//!
//! The changes are kept as the backend list of each VIP the API touched
//! (replacing the file's list for that VIP) plus the set of drained
//! backends, so "what the file says, with the API's changes" is one
//! function ([`Overrides::apply`]). Every operation returns a new
//! [`Overrides`] and leaves `self` alone: the supervisor applies the
//! candidate to the maps and keeps it only if that worked.
//!
//! A drained backend stays in its VIP (same id, its flows keep reaching it,
//! its health check goes on) but gets no new flows, until it is undrained or
//! the file changes; unlike a removed backend it has no timeout.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
};

use serde::Serialize;

use crate::{
    config::{Backend, BackendSpec, Config, FieldError},
    health::HealthSnapshot,
};

/// The API's changes on top of the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// The backend lists of the VIPs the API changed, by VIP name.
    backends: BTreeMap<String, Vec<Backend>>,
    /// Drained backends: (VIP name, backend address).
    drained: BTreeSet<(String, SocketAddr)>,
}

/// Why a change was refused; the handlers map it to an HTTP status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// 404: no such VIP or backend.
    NotFound(String),
    /// 409: the change contradicts the current state.
    Conflict(String),
    /// 400: the backend breaks a config rule (the file's validation rules).
    Invalid(Vec<FieldError>),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Refusal::NotFound(m) | Refusal::Conflict(m) => f.write_str(m),
            Refusal::Invalid(errors) => f.write_str(&lb_common::report::problem_list(errors)),
        }
    }
}

/// One difference from the file, for `GET /api/state` and the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub vip: String,
    pub backend: SocketAddr,
    /// `added`, `removed`, `weight` or `drained`.
    pub change: &'static str,
    /// The weight now (`added`, `weight`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// The file's weight (`weight`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_weight: Option<u32>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{} vip={} backend={}", self.change, self.vip, self.backend)?;
        if let Some(w) = self.weight {
            write!(f, " weight={w}")?;
        }
        Ok(())
    }
}

impl Overrides {
    pub fn new() -> Overrides {
        Overrides::default()
    }

    pub fn is_empty(&self) -> bool {
        self.backends.is_empty() && self.drained.is_empty()
    }

    /// What the file says with the API's changes: the config the tables are
    /// built from (before the backends still draining out are appended, see
    /// `crate::drain`).
    pub fn apply(&self, file: &Config) -> Config {
        let mut c = file.clone();
        for v in &mut c.vips {
            if let Some(list) = self.backends.get(&v.name) {
                v.backends = list.clone();
            }
        }
        c
    }

    /// `health` (over `effective`) with every drained backend down.
    pub fn gate(&self, effective: &Config, mut health: HealthSnapshot) -> HealthSnapshot {
        for (vi, v) in effective.vips.iter().enumerate() {
            for (bi, b) in v.backends.iter().enumerate() {
                if self.is_drained(&v.name, b.socket_addr()) {
                    if let Some(up) = health.up.get_mut(vi).and_then(|u| u.get_mut(bi)) {
                        *up = false;
                    }
                }
            }
        }
        health
    }

    /// Whether any backend is drained.
    pub fn has_drained(&self) -> bool {
        !self.drained.is_empty()
    }

    pub fn is_drained(&self, vip: &str, backend: SocketAddr) -> bool {
        self.drained.contains(&(vip.to_owned(), backend))
    }

    /// Whether `backend` of `vip` is one the API added (not in the file).
    pub fn is_added(&self, file: &Config, vip: &str, backend: SocketAddr) -> bool {
        self.backends.get(vip).is_some_and(|l| l.iter().any(|b| b.socket_addr() == backend))
            && !file.vips.iter().any(|v| v.name == vip && v.backends.iter().any(|b| b.socket_addr() == backend))
    }

    /// Every difference from `file`, VIP by VIP.
    pub fn changes(&self, file: &Config) -> Vec<Change> {
        let mut out = Vec::new();
        for v in &file.vips {
            let change = |b: &Backend, change, weight, file_weight| Change { vip: v.name.clone(), backend: b.socket_addr(), change, weight, file_weight };
            if let Some(list) = self.backends.get(&v.name) {
                for b in list {
                    match v.backends.iter().find(|f| f.socket_addr() == b.socket_addr()) {
                        None => out.push(change(b, "added", Some(b.weight), None)),
                        Some(f) if f.weight != b.weight => out.push(change(b, "weight", Some(b.weight), Some(f.weight))),
                        Some(_) => {}
                    }
                }
                for f in v.backends.iter().filter(|f| !list.iter().any(|b| b.socket_addr() == f.socket_addr())) {
                    out.push(change(f, "removed", None, None));
                }
            }
        }
        for (vip, backend) in &self.drained {
            out.push(Change { vip: vip.clone(), backend: *backend, change: "drained", weight: None, file_weight: None });
        }
        out
    }

    /// Follows a reload from `old_file` to `new_file`: a file that says
    /// something else discards every change (the file wins); returns the
    /// discarded ones (empty when kept or when there were none).
    pub fn follow_reload(&mut self, old_file: &Config, new_file: &Config) -> Vec<Change> {
        if old_file == new_file || self.is_empty() {
            return Vec::new();
        }
        let gone = self.changes(old_file);
        *self = Overrides::new();
        gone
    }

    /// Adds `spec` to `vip`, checked by the rules of a backend the file
    /// lists under that VIP (and, with it, the whole config's capacity).
    pub fn add(&self, file: &Config, vip: &str, spec: &BackendSpec) -> Result<(Overrides, Backend), Refusal> {
        let base = self.apply(file);
        let v = find_vip(&base, vip)?;
        let backend = v.check_backend(spec).map_err(Refusal::Invalid)?;
        if v.backends.iter().any(|b| b.socket_addr() == backend.socket_addr()) {
            return Err(Refusal::Conflict(format!("vip {vip} already has backend {}; change its weight with PATCH", backend.socket_addr())));
        }
        let mut list = v.backends.clone();
        list.push(backend.clone());
        let next = self.with_list(file, vip, list);
        next.apply(file).check_capacity().map_err(Refusal::Invalid)?;
        Ok((next, backend))
    }

    /// Sets the weight of `backend` of `vip` (the file's weight rules: 1..=100,
    /// only 1 with round_robin, the Maglev table large enough). Returns the
    /// new overrides and the weight before.
    pub fn set_weight(&self, file: &Config, vip: &str, backend: SocketAddr, weight: i64) -> Result<(Overrides, u32), Refusal> {
        let base = self.apply(file);
        let v = find_vip(&base, vip)?;
        let old = find_backend(v, backend)?;
        let changed = v.check_backend(&BackendSpec::with_weight(old, weight)).map_err(Refusal::Invalid)?;
        let list = v.backends.iter().map(|b| if b.socket_addr() == backend { changed.clone() } else { b.clone() }).collect();
        let next = self.with_list(file, vip, list);
        next.apply(file).check_capacity().map_err(Refusal::Invalid)?;
        Ok((next, old.weight))
    }

    /// Drains (`true`) or undrains `backend` of `vip`. Returns the new
    /// overrides and whether anything changed (draining twice is no error).
    pub fn set_drain(&self, file: &Config, vip: &str, backend: SocketAddr, drain: bool) -> Result<(Overrides, bool), Refusal> {
        let base = self.apply(file);
        find_backend(find_vip(&base, vip)?, backend)?;
        let mut next = self.clone();
        let key = (vip.to_owned(), backend);
        let changed = if drain { next.drained.insert(key) } else { next.drained.remove(&key) };
        Ok((next, changed))
    }

    /// Removes `backend` from `vip` (its drain out is `crate::drain`'s, as
    /// for a backend the file drops). The last backend of a VIP stays: a VIP
    /// needs one, as in the file.
    pub fn remove(&self, file: &Config, vip: &str, backend: SocketAddr) -> Result<Overrides, Refusal> {
        let base = self.apply(file);
        let v = find_vip(&base, vip)?;
        find_backend(v, backend)?;
        if v.backends.len() == 1 {
            return Err(Refusal::Conflict(format!(
                "{backend} is the last backend of vip {vip}, and a VIP needs at least one; add another first, or drain this one"
            )));
        }
        let list = v.backends.iter().filter(|b| b.socket_addr() != backend).cloned().collect();
        let mut next = self.with_list(file, vip, list);
        next.drained.remove(&(vip.to_owned(), backend));
        Ok(next)
    }

    /// `self` with `list` as `vip`'s backends; a list equal to the file's
    /// is no override.
    fn with_list(&self, file: &Config, vip: &str, list: Vec<Backend>) -> Overrides {
        let mut next = self.clone();
        if file.vips.iter().any(|v| v.name == vip && v.backends == list) {
            next.backends.remove(vip);
        } else {
            next.backends.insert(vip.to_owned(), list);
        }
        next
    }
}

fn find_vip<'c>(config: &'c Config, vip: &str) -> Result<&'c crate::config::Vip, Refusal> {
    config.vips.iter().find(|v| v.name == vip).ok_or_else(|| {
        let names: Vec<&str> = config.vips.iter().map(|v| v.name.as_str()).collect();
        Refusal::NotFound(format!("no vip named {vip:?}; the vips are {}", names.join(", ")))
    })
}

fn find_backend(vip: &crate::config::Vip, backend: SocketAddr) -> Result<&Backend, Refusal> {
    vip.backends
        .iter()
        .find(|b| b.socket_addr() == backend)
        .ok_or_else(|| Refusal::NotFound(format!("vip {} has no backend {backend} (`lb-user backends list` shows them)", vip.name)))
}

#[cfg(test)]
mod tests;
