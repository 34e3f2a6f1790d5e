//! Sending a request to the pool's backends: the pick, retries on other
//! backends (only when the request can be sent again), the retry budget,
//! passive health accounting and the request metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Body;
use hyper::http::request::Parts;
use hyper::http::uri::PathAndQuery;
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode};

use super::body::{InFlight, Tracked};
use super::headers::strip_hop_by_hop;
use super::{error_response, method_label, upgrade, ConnInfo};
use crate::config::Config;
use crate::pool::{Backend, Pool};
use crate::state::State;
use crate::upstream::{ProxyBody, SendError, Timeouts};
use lb_common::userspace::select::Flow;

/// A client request whose head has been rewritten for the backend.
pub(super) struct Outbound {
    pub parts: Parts,
    /// The client's body (counted for the access log when it is on).
    pub body: BoxBody<Bytes, hyper::Error>,
    /// The origin-form path, for log lines.
    pub path: PathAndQuery,
    /// The client side of an HTTP/1.1 Upgrade; `Some` only for one.
    pub client_upgrade: Option<OnUpgrade>,
}

fn idempotent(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE)
}

/// Passive health: counts a failure against `backend`; when that ejects it,
/// logs why and counts the ejection.
fn record_failure(st: &State, pool: &str, backend: &Backend, cfg: &Config, why: &str) {
    if backend.record_failure(&cfg.passive_health) {
        log::warn!("backend {} ejected for {:?} {why}", backend.id, cfg.passive_health.cooldown.0);
        st.metrics.ejections.with_label_values(&[pool, &backend.id]).inc();
    }
}

/// The backend that answered a request and its time to response headers
/// (both `None` when alb answered itself).
pub(super) type Served = (Option<Arc<Backend>>, Option<Duration>);

/// Sends `out` to a backend of `pool`, trying others while the request is
/// retryable and the budget allows; the backend's response, or alb's own
/// error response, and who served it.
pub(super) async fn forward(st: &State, ci: &ConnInfo, cfg: &Config, pool: &Pool, method: &Method, out: Outbound) -> (Response<ProxyBody>, Served) {
    let Outbound { parts, body, path, client_upgrade } = out;
    let upgrade = client_upgrade.is_some();
    // A request without a body can be rebuilt for a retry after it may
    // have been sent, if its method is idempotent.
    let replay = (idempotent(&parts.method) && body.is_end_stream() && !upgrade).then(|| (parts.method.clone(), parts.uri.clone(), parts.headers.clone()));
    let mut pending = Some(Request::from_parts(parts, body));

    let timeouts = Timeouts { connect: cfg.timeouts.backend_connect.0, response: cfg.timeouts.backend_response.0 };
    let mut tried: Vec<Arc<Backend>> = Vec::new();
    let mut last_err = String::new();
    let budget = st.budget();
    budget.deposit();
    loop {
        let Some(backend) = pool.pick(&Flow::tcp(ci.peer, ci.local), &tried) else {
            let (status, msg) =
                if tried.is_empty() { (StatusCode::SERVICE_UNAVAILABLE, "no healthy backend") } else { (StatusCode::BAD_GATEWAY, "all backends tried failed") };
            st.metrics.requests.with_label_values(&[&pool.name, "none", method_label(method), status.as_str()]).inc();
            if !last_err.is_empty() {
                log::warn!("{} {} from {}: {msg}: {last_err}", method, path, ci.peer);
            }
            return (error_response(status, msg, &pool.name), (None, None));
        };
        let req = match pending.take() {
            Some(r) => r,
            None => {
                let (m, u, h) = replay.clone().expect("retry only with a replayable request");
                let mut r = Request::new(Empty::new().map_err(|never| match never {}).boxed());
                *r.method_mut() = m;
                *r.uri_mut() = u;
                *r.headers_mut() = h;
                r
            }
        };
        let guard = InFlight::new(backend.clone());
        let start = Instant::now();
        let result = st.upstream.send(&backend.authority, req, &timeouts, upgrade).await;
        let retryable = match result {
            Ok((resp, lease)) => {
                let upstream = start.elapsed();
                st.metrics.latency.with_label_values(&[&pool.name, &backend.id]).observe(upstream.as_secs_f64());
                let status = resp.status();
                if status.is_server_error() {
                    record_failure(st, &pool.name, &backend, cfg, "after repeated 5xx");
                } else {
                    backend.record_success();
                }
                st.metrics.requests.with_label_values(&[&pool.name, &backend.id, method_label(method), status.as_str()]).inc();
                if status == StatusCode::SWITCHING_PROTOCOLS {
                    if let Some(cu) = client_upgrade {
                        return (upgrade::tunnel(cu, resp, guard), (Some(backend), Some(upstream)));
                    }
                }
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                return (Response::from_parts(parts, Tracked::new(body, lease, guard).boxed()), (Some(backend), Some(upstream)));
            }
            Err(SendError::NotSent(r, e)) => {
                last_err = e;
                pending = Some(*r);
                true
            }
            Err(SendError::Sent(e)) => {
                last_err = e;
                replay.is_some()
            }
        };
        drop(guard);
        log::info!("{} {} to backend {} failed: {last_err}", method, path, backend.id);
        record_failure(st, &pool.name, &backend, cfg, "after connect errors");
        tried.push(backend);
        if !retryable || tried.len() > cfg.retries.max_retries as usize || !budget.try_spend() {
            st.metrics.requests.with_label_values(&[&pool.name, "none", method_label(method), "502"]).inc();
            log::warn!("{} {} from {}: giving up: {last_err}", method, path, ci.peer);
            return (error_response(StatusCode::BAD_GATEWAY, "backend failed", &pool.name), (None, None));
        }
        st.metrics.retries.with_label_values(&[&pool.name]).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency() {
        assert!(idempotent(&Method::GET) && idempotent(&Method::PUT));
        assert!(!idempotent(&Method::POST) && !idempotent(&Method::PATCH));
    }
}
