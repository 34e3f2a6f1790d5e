//! The control endpoint of the backend simulator (`--control ADDR`, its own
//! port, so a hung or full backend can still be steered). JSON in, JSON out:
//!
//! - `GET /stats`: connections, requests by path and status, echo lines and
//!   the current knobs (`{"name", "connections", "requests", "echo", "knobs"}`)
//! - `POST /delay` `{"delay": "50ms"}` or `{"delay": "10ms..200ms"}`
//! - `POST /chaos` `{"percent": 10}`
//! - `POST /hang` `{"enabled": true}`
//! - `POST /health` `{"state": "down"}` (or `"up"`)
//! - `POST /max-conns` `{"max": 10}` (0: unlimited)
//! - `POST /idle-timeout` `{"timeout": "5s"}` (or `"off"`)
//!
//! A change answers `200` with the knobs as they now are; a bad request
//! `400` (`404`, `405`, `413`) with `{"error": "..."}` naming the problem,
//! and changes nothing.

use std::{convert::Infallible, sync::atomic::Ordering, sync::Arc};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpStream;

use super::{
    knobs::{parse_chaos, parse_idle_timeout, Delay},
    Shared,
};

/// Control bodies are one small JSON object.
const MAX_BODY: usize = 4096;

pub(super) async fn serve(shared: Arc<Shared>, tcp: TcpStream) {
    let service = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(&shared, req).await) }
    });
    let _ = http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
}

fn reply(status: u16, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(format!("{body}\n"))))
        .expect("static response parts are valid")
}

fn error(status: u16, why: impl Into<String>) -> Response<Full<Bytes>> {
    reply(status, &json!({"error": why.into()}))
}

/// The knobs and health as `GET /stats` and every change show them.
pub(super) fn knobs_json(shared: &Shared) -> Value {
    let mut knobs = shared.knobs.get().to_json();
    knobs["health"] = json!(if shared.health_ok.load(Ordering::Relaxed) { "up" } else { "down" });
    knobs
}

pub(super) fn stats_json(shared: &Shared) -> Value {
    let mut stats = shared.stats.to_json();
    stats["name"] = json!(shared.name);
    stats["knobs"] = knobs_json(shared);
    stats
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    const SETTERS: [&str; 6] = ["/delay", "/chaos", "/hang", "/health", "/max-conns", "/idle-timeout"];
    match (req.method(), path.as_str()) {
        (&Method::GET, "/stats") => return reply(200, &stats_json(shared)),
        (_, "/stats") => return error(405, "/stats takes GET"),
        (&Method::POST, p) if SETTERS.contains(&p) => {}
        (_, p) if SETTERS.contains(&p) => return error(405, format!("{p} takes POST with a JSON body")),
        (_, p) => return error(404, format!("no control endpoint {p}; there are GET /stats and POST {}", SETTERS.join(", "))),
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return error(413, format!("the body is larger than {MAX_BODY} bytes (or was cut off)")),
    };
    match apply(shared, &path, &body) {
        Ok(()) => reply(200, &knobs_json(shared)),
        Err(why) => error(400, format!("{path}: {why}")),
    }
}

/// The one field of a control body, e.g. `{"delay": "50ms"}` → `"50ms"`.
fn field<'a>(body: &'a Value, key: &str) -> Result<&'a Value, String> {
    let object = body.as_object().ok_or_else(|| format!("expected a JSON object like {{\"{key}\": ...}}"))?;
    if let Some(other) = object.keys().find(|k| *k != key) {
        return Err(format!("unknown field {other:?}; the only field is {key:?}"));
    }
    object.get(key).ok_or_else(|| format!("missing field {key:?}"))
}

fn apply(shared: &Shared, path: &str, body: &[u8]) -> Result<(), String> {
    let body: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let string = |key: &str| field(&body, key)?.as_str().ok_or_else(|| format!("{key:?} must be a string")).map(str::to_owned);
    let number = |key: &str| field(&body, key)?.as_u64().ok_or_else(|| format!("{key:?} must be a non-negative integer"));
    let boolean = |key: &str| field(&body, key)?.as_bool().ok_or_else(|| format!("{key:?} must be true or false"));
    match path {
        "/delay" => {
            let delay: Delay = string("delay")?.parse()?;
            shared.knobs.update(|s| s.delay = delay);
        }
        "/chaos" => {
            let pct = parse_chaos(number("percent")?)?;
            shared.knobs.update(|s| s.chaos_pct = pct);
        }
        "/hang" => {
            let hang = boolean("enabled")?;
            shared.knobs.update(|s| s.hang = hang);
        }
        "/health" => {
            let up = match string("state")?.as_str() {
                "up" => true,
                "down" => false,
                other => return Err(format!("state {other:?} is neither \"up\" nor \"down\"")),
            };
            shared.health_ok.store(up, Ordering::Relaxed);
        }
        "/max-conns" => {
            let max = usize::try_from(number("max")?).map_err(|_| "\"max\" is too large".to_owned())?;
            shared.knobs.update(|s| s.max_conns = max);
        }
        "/idle-timeout" => {
            let timeout = parse_idle_timeout(&string("timeout")?)?;
            shared.knobs.update(|s| s.idle_timeout = timeout);
        }
        other => return Err(format!("no setter {other}")),
    }
    Ok(())
}
