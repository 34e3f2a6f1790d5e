//! The control API of `lb-user attach`: HTTP/1.1 with JSON bodies
//! (docs/operations.md has the reference).
//!
//! ```text
//! GET    /api/state                              VIPs, backends, counters, rates
//! POST   /api/vips/{vip}/backends                add   {address, port, weight?, mac?}
//! PATCH  /api/vips/{vip}/backends/{backend}      {weight: N} or {drain: true|false}
//! DELETE /api/vips/{vip}/backends/{backend}      drain out, then remove
//! ```
//!
//! `{vip}` is the VIP's name, `{backend}` its `address:port`
//! (`[fd00::11]:8080` for IPv6, brackets percent-encoded or not).
//!
//! It listens where the config's `api:` block says (loopback by default,
//! another address only with `allow_remote: true`: there is no
//! authentication), on the supervisor's tokio runtime. Handlers never touch
//! the maps: each request becomes a [`Request`] sent through the
//! supervisor's command channel with a oneshot for the answer, so API
//! changes, reloads, health changes and drains are applied one at a time by
//! the same code (`crate::supervisor`). Errors are `{"error": "..."}` with
//! 400 (bad request or a value the config rules refuse), 403 (a change
//! asked by a web page of another origin), 404 (no such VIP,
//! backend or endpoint), 405, 409 (contradicts the current state), 413,
//! 500 (the maps could not be written) or 503 (lb-user is stopping).
//!
//! - `server`: the listener and the connections;
//! - `handlers`: routes and bodies to [`Request`]s, answers to responses;
//! - `state`: `GET /api/state`'s JSON and its rates;
//! - `dashboard`: the web page at `/` (GET only) that shows the state and
//!   acts through this API;
//! - `client`: the operator CLI's side (`crate::cli`).

pub mod client;
mod dashboard;
mod handlers;
mod server;
mod state;

use std::net::SocketAddr;

use hyper::StatusCode;
use serde::Serialize;

pub use server::{spawn, ApiHandle};

use crate::{config::BackendSpec, overrides::Refusal, stats::Report};

/// What a handler asks the supervisor.
#[derive(Debug)]
pub enum Request {
    State,
    Add { vip: String, spec: BackendSpec },
    Weight { vip: String, backend: SocketAddr, weight: i64 },
    Drain { vip: String, backend: SocketAddr, drain: bool },
    Remove { vip: String, backend: SocketAddr },
}

/// For the log: `drain vip=web backend=198.18.1.12:8080 drain=true`.
impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Request::State => f.write_str("state"),
            Request::Add { vip, spec } => write!(f, "add vip={vip} body={spec:?}"),
            Request::Weight { vip, backend, weight } => write!(f, "weight vip={vip} backend={backend} weight={weight}"),
            Request::Drain { vip, backend, drain } => write!(f, "drain vip={vip} backend={backend} drain={drain}"),
            Request::Remove { vip, backend } => write!(f, "remove vip={vip} backend={backend}"),
        }
    }
}

/// The supervisor's answer.
#[derive(Debug)]
pub enum Reply {
    State(Box<StateView>),
    /// A changed backend as it is now: 201 added, 200 changed, 202 leaving
    /// (removed, draining out), 200 removed at once.
    Backend {
        status: StatusCode,
        vip: String,
        backend: Box<BackendView>,
    },
}

/// A refused request: the status and a message naming the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        let status = match &r {
            Refusal::NotFound(_) => StatusCode::NOT_FOUND,
            Refusal::Conflict(_) => StatusCode::CONFLICT,
            Refusal::Invalid(_) => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, r.to_string())
    }
}

/// Everything `GET /api/state` shows, as the supervisor sees it.
#[derive(Clone, Debug)]
pub struct StateView {
    pub vips: Vec<VipView>,
    /// The API's changes on top of the file.
    pub overrides: Vec<crate::overrides::Change>,
    /// The counters, or why they could not be read.
    pub counters: Result<Report, String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct VipView {
    pub name: String,
    /// The VIP's id in the maps (labels its counters).
    pub id: Option<u32>,
    pub address: SocketAddr,
    pub protocol: String,
    pub algorithm: crate::config::Algorithm,
    pub forwarding: crate::config::Forwarding,
    pub backends: Vec<BackendView>,
}

/// One backend of the config in force (leaving ones included).
#[derive(Clone, Debug, Serialize)]
pub struct BackendView {
    /// Its id in the maps (stable while it stays in its VIP).
    pub id: Option<u32>,
    pub address: SocketAddr,
    pub weight: u32,
    pub mac: Option<String>,
    /// Whether the config file lists it under this VIP (false: added by the
    /// API, or leaving).
    pub in_file: bool,
    /// `up`, `down` (its health check), or `unchecked` (no check, or leaving).
    pub health: &'static str,
    /// DSR backends without a `mac`: `resolved` or `unresolved`; else null.
    pub next_hop: Option<&'static str>,
    /// `active`, `draining` (drained by the API: no new flows, no
    /// timeout) or `leaving` (removed: no new flows, gone when its flows
    /// end or `seconds_left` runs out); `removed` only in the answer to a
    /// DELETE that removed it at once (`conntrack.drain_timeout: 0`).
    pub drain: &'static str,
    pub seconds_left: Option<u64>,
    /// Live conntrack flows of a draining or leaving backend at the last
    /// count (at most a second old); null for active ones (not counted).
    pub live_flows: Option<u64>,
    /// Whether it gets new flows (in the Maglev table / round-robin list).
    pub in_tables: bool,
}

/// A backend as the API's paths and the CLI name it: `address:port`, IPv6
/// in brackets.
pub fn parse_backend(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| format!("{text:?} is not a backend address:port; write e.g. 198.18.1.11:8080 or [fd00::11]:8080"))
}
