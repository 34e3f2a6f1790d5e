//! The supervisor's side of the control API: each [`Request`] is checked
//! against the file with the API's changes (`crate::overrides`), applied
//! through [`Supervisor::apply`] (the one way the maps change), logged as
//! one line (`api: backend drained vip=… backend=…`), and answered with the
//! backend as it is now; `GET /api/state` gets a [`StateView`].

use std::{net::SocketAddr, time::Instant};

use hyper::StatusCode;

use super::{Supervisor, Tables};
use crate::{
    api::{ApiError, BackendView, Reply, Request, StateView, VipView},
    config::{Backend, Config, Forwarding},
    drain::Drains,
    overrides::Overrides,
};

impl<T: Tables> Supervisor<T> {
    /// Answers one API request. Refused changes are logged too, so the log
    /// tells what an operator tried.
    pub(super) fn api_request(&mut self, request: Request) -> Result<Reply, ApiError> {
        if matches!(request, Request::State) {
            return Ok(Reply::State(Box::new(self.state_view())));
        }
        let Some(file) = self.file.clone() else {
            return Err(ApiError::new(StatusCode::CONFLICT, "lb-user was attached without --config: there are no VIPs to change"));
        };
        let what = request.to_string();
        let result = self.change(file, request);
        if let Err(e) = &result {
            log::info!("api: change refused status={} request=\"{what}\" reason={:?}", e.status.as_u16(), e.message);
        }
        result
    }

    fn change(&mut self, file: Config, request: Request) -> Result<Reply, ApiError> {
        match request {
            Request::State => Ok(Reply::State(Box::new(self.state_view()))),
            Request::Add { vip, spec } => {
                let (overrides, backend) = self.overrides.add(&file, &vip, &spec)?;
                let addr = backend.socket_addr();
                let was_leaving = self.drains.deadline(&vip, addr).is_some();
                self.commit(file, overrides)?;
                let note = if was_leaving { " (was leaving: it stays, its flows with it)" } else { "" };
                log::info!("api: backend added vip={vip} backend={addr} weight={}{note}", backend.weight);
                self.answer(StatusCode::CREATED, vip, addr)
            }
            Request::Weight { vip, backend, weight } => {
                self.not_leaving(&vip, backend)?;
                let (overrides, before) = self.overrides.set_weight(&file, &vip, backend, weight)?;
                if overrides != self.overrides {
                    self.commit(file, overrides)?;
                    log::info!("api: backend weight changed vip={vip} backend={backend} weight={weight} was={before}");
                }
                self.answer(StatusCode::OK, vip, backend)
            }
            Request::Drain { vip, backend, drain } => {
                self.not_leaving(&vip, backend)?;
                let (overrides, changed) = self.overrides.set_drain(&file, &vip, backend, drain)?;
                if changed {
                    self.commit(file, overrides)?;
                    log::info!("api: backend {} vip={vip} backend={backend}", if drain { "drained" } else { "undrained" });
                }
                self.answer(StatusCode::OK, vip, backend)
            }
            Request::Remove { vip, backend } => {
                self.not_leaving(&vip, backend)?;
                let overrides = self.overrides.remove(&file, &vip, backend)?;
                let gone = self.backend_in_force(&vip, backend);
                self.commit(file, overrides)?;
                match self.drains.deadline(&vip, backend) {
                    Some(deadline) => {
                        let left = lb_common::userspace::duration::show(deadline.saturating_duration_since(Instant::now()));
                        log::info!("api: backend removed vip={vip} backend={backend} draining for at most {left} (until its last flow ends)");
                        self.answer(StatusCode::ACCEPTED, vip, backend)
                    }
                    None => {
                        log::info!("api: backend removed vip={vip} backend={backend} at once (conntrack.drain_timeout is 0: its flows choose again)");
                        let mut view = gone.ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the removed backend was not in force"))?;
                        (view.drain, view.in_tables, view.id) = ("removed", false, None);
                        Ok(Reply::Backend { status: StatusCode::OK, vip, backend: Box::new(view) })
                    }
                }
            }
        }
    }

    /// Applies `overrides` (and what they mean for the backends draining
    /// out: one the API adds back stops leaving, one it removes starts).
    fn commit(&mut self, file: Config, overrides: Overrides) -> Result<(), ApiError> {
        let mut drains: Drains = self.drains.clone();
        if let Some(old) = self.attachment.config() {
            drains.follow_reload(old, &overrides.apply(&file), Instant::now());
        }
        self.apply(file, overrides, drains).map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("applying the change to the maps: {e:#}")))
    }

    /// A leaving backend is on its way out and no longer part of its VIP's
    /// list; changing it would be a surprise (409), re-adding it is the way.
    fn not_leaving(&self, vip: &str, backend: SocketAddr) -> Result<(), ApiError> {
        match self.drains.deadline(vip, backend) {
            None => Ok(()),
            Some(deadline) => Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "backend {backend} of vip {vip} is leaving (removed; at most {}s of its drain left) and can no longer be changed; add it again (POST) to keep it",
                    seconds_left(deadline)
                ),
            )),
        }
    }

    fn answer(&self, status: StatusCode, vip: String, backend: SocketAddr) -> Result<Reply, ApiError> {
        let view =
            self.backend_in_force(&vip, backend).ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the changed backend is not in force"))?;
        Ok(Reply::Backend { status, vip, backend: Box::new(view) })
    }

    fn backend_in_force(&self, vip: &str, backend: SocketAddr) -> Option<BackendView> {
        self.vip_views().into_iter().find(|v| v.name == vip)?.backends.into_iter().find(|b| b.address == backend)
    }

    pub(super) fn state_view(&self) -> StateView {
        let overrides = self.file.as_ref().map(|f| self.overrides.changes(f)).unwrap_or_default();
        StateView { vips: self.vip_views(), overrides, counters: self.attachment.counters().map_err(|e| format!("{e:#}")) }
    }

    /// Every VIP and backend of the config in force (leaving ones included).
    fn vip_views(&self) -> Vec<VipView> {
        let Some(effective) = self.attachment.config() else { return Vec::new() };
        let ids = self.attachment.ids();
        let checks = self.health.snapshot(effective);
        let verdicts = self.verdicts(effective);
        let now = Instant::now();
        effective
            .vips
            .iter()
            .enumerate()
            .map(|(vi, v)| {
                let vip_ids = ids.get(vi);
                let backends = v
                    .backends
                    .iter()
                    .enumerate()
                    .map(|(bi, b)| {
                        let id = vip_ids.and_then(|(_, b)| b.get(bi)).copied();
                        self.backend_view(v, b, id, Verdict { checked: checks.is_up(vi, bi), in_tables: verdicts.is_up(vi, bi) }, now)
                    })
                    .collect();
                VipView {
                    name: v.name.clone(),
                    id: vip_ids.map(|(id, _)| *id),
                    address: v.socket_addr(),
                    protocol: v.protocol.to_string(),
                    algorithm: v.algorithm,
                    forwarding: v.forwarding,
                    backends,
                }
            })
            .collect()
    }

    fn backend_view(&self, vip: &crate::config::Vip, b: &Backend, id: Option<u32>, verdict: Verdict, now: Instant) -> BackendView {
        let addr = b.socket_addr();
        let deadline = self.drains.deadline(&vip.name, addr);
        let (drain, seconds_left) = match deadline {
            Some(d) => ("leaving", Some(seconds_left_at(d, now))),
            None if self.overrides.is_drained(&vip.name, addr) => ("draining", None),
            None => ("active", None),
        };
        let health = match (vip.health_check.is_some() && deadline.is_none(), verdict.checked) {
            (false, _) => "unchecked",
            (true, true) => "up",
            (true, false) => "down",
        };
        let gated = vip.forwarding == Forwarding::Dsr && b.mac.is_none();
        BackendView {
            id,
            address: addr,
            weight: b.weight,
            mac: b.mac.map(|m| m.map(|x| format!("{x:02x}")).join(":")),
            in_file: self.file.as_ref().is_some_and(|f| f.vips.iter().any(|v| v.name == vip.name && v.backends.iter().any(|x| x.socket_addr() == addr))),
            health,
            next_hop: gated.then(|| if self.neighbours.is_resolved(b.address) { "resolved" } else { "unresolved" }),
            drain,
            seconds_left,
            live_flows: if drain == "active" { None } else { self.flows.get(&(vip.name.clone(), addr)).copied() },
            in_tables: verdict.in_tables,
        }
    }
}

/// A backend's health check verdict and whether it gets new flows.
struct Verdict {
    checked: bool,
    in_tables: bool,
}

fn seconds_left(deadline: Instant) -> u64 {
    seconds_left_at(deadline, Instant::now())
}

/// Whole seconds to `deadline`, rounded up (a drain with 0.2 s left is not over).
fn seconds_left_at(deadline: Instant, now: Instant) -> u64 {
    let left = deadline.saturating_duration_since(now);
    left.as_secs() + u64::from(left.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn seconds_left_round_up() {
        let now = Instant::now();
        assert_eq!(seconds_left_at(now + Duration::from_millis(200), now), 1);
        assert_eq!(seconds_left_at(now + Duration::from_secs(30), now), 30);
        assert_eq!(seconds_left_at(now, now + Duration::from_secs(1)), 0);
    }
}
