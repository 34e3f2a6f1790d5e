//! The HTTP/1.1 side of the mock backend.
//!
//! - `/health` and `/healthz`, and any request from alb's health checker
//!   (user agent `xdplb-health`, the shared health probe's): `200 ok` or, once
//!   the health is forced down (`health_ok` false), `503 down`. Not counted in `hits`.
//! - `/sleep?ms=N`: answers after N ms (at most 10 minutes).
//! - `/stream?chunks=N&interval_ms=M`: N lines, one every M ms (chunked).
//! - `/status/<code>`: answers with that status (200..=599).
//! - `/slow`: answers after 400 ms (drain and timeout tests).
//! - `/ws`: `101` and a minimal WebSocket echo.
//! - `/echo`: the JSON description of the request (backend name, headers,
//!   body length) whatever the backend's `Reply`.
//! - `/drop` on a backend built with `drops_requests`: reads the request, then
//!   closes the connection without an answer.
//! - anything else: the backend's name (`Reply::Name`) or the JSON
//!   description of the request (`Reply::Json`), with the request's
//!   `x-client-identity` (what a TLS tier passed on) copied into the answer.
//!
//! Every request first waits for the knobs' hang and delay (`conn.rs`),
//! health checks included: a hung backend fails its checks as a real one would.
//! Every answer is counted by path and status in the backend's stats.

use std::{collections::BTreeMap, convert::Infallible, sync::atomic::Ordering, time::Duration};

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{chunks::Chunks, conn::Conn, stats::IDENTITY_HEADER, Reply, Shared};

type Body = BoxBody<Bytes, Infallible>;

/// The longest `/sleep` and `/stream` interval, and the most `/stream` chunks:
/// bounds, so one request cannot hold a connection for days.
const MAX_WAIT_MS: u64 = 600_000;
const MAX_CHUNKS: u64 = 100_000;

pub(super) async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(conn: Conn, io: S) {
    let service = service_fn(move |req| {
        let conn = conn.clone();
        async move { handle(&conn, req).await }
    });
    // Client resets are normal in load tests; nothing to report. A client
    // may half-close (FIN after its request) and still read the response,
    // as `curl`-like tools and the drain tests do: answer it.
    let _ = http1::Builder::new().half_close(true).serve_connection(TokioIo::new(io), service).with_upgrades().await;
}

fn text(status: u16, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder().status(status).header("content-type", "text/plain").body(Full::new(body.into()).boxed()).expect("static response parts are valid")
}

/// The `key=value` pairs of a query string (no percent-decoding: the
/// simulator's parameters are plain integers).
fn query_u64(query: Option<&str>, key: &str, default: Option<u64>, max: u64) -> Result<u64, String> {
    let value = query.unwrap_or("").split('&').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v));
    let n = match (value, default) {
        (Some(v), _) => v.parse::<u64>().map_err(|_| format!("{key}={v:?} is not a non-negative integer"))?,
        (None, Some(d)) => d,
        (None, None) => return Err(format!("missing query parameter {key}")),
    };
    if n > max {
        return Err(format!("{key}={n} is above the maximum {max}"));
    }
    Ok(n)
}

/// An `Err` makes hyper close the connection without answering.
async fn handle(conn: &Conn, req: Request<Incoming>) -> Result<Response<Body>, std::io::Error> {
    conn.before_answer().await;
    let shared = &*conn.shared;
    let path = req.uri().path().to_owned();
    let response = route(shared, req).await?;
    shared.stats.record(&path, response.status().as_u16());
    Ok(response)
}

async fn route(shared: &Shared, mut req: Request<Incoming>) -> Result<Response<Body>, std::io::Error> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let is_check = req.headers().get("user-agent").is_some_and(|u| u == "xdplb-health");
    if path == "/health" || path == "/healthz" || is_check {
        return Ok(if shared.health_ok.load(Ordering::Relaxed) { text(200, "ok\n") } else { text(503, "down\n") });
    }
    shared.hits.fetch_add(1, Ordering::Relaxed);
    let identity = req.headers().get(IDENTITY_HEADER).map(|v| v.to_str().unwrap_or("?").to_owned());
    shared.stats.record_identity(identity.as_deref());
    if req.method() == hyper::Method::POST {
        shared.posts.fetch_add(1, Ordering::Relaxed);
    }
    let headers: BTreeMap<String, String> = req.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned())).collect();
    // Only alb's tests read the headers back; the lab's backends serve
    // benchmarks and must not grow without bound.
    if shared.reply == Reply::Json {
        shared.seen.lock().unwrap().push(headers.clone());
    }
    let name = shared.name.as_str();
    match path.as_str() {
        "/sleep" => match query_u64(query.as_deref(), "ms", None, MAX_WAIT_MS) {
            Ok(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            Err(why) => return Ok(text(400, format!("/sleep: {why}\n"))),
        },
        "/stream" => {
            let parsed = query_u64(query.as_deref(), "chunks", Some(10), MAX_CHUNKS)
                .and_then(|chunks| Ok((chunks, query_u64(query.as_deref(), "interval_ms", Some(100), MAX_WAIT_MS)?)));
            return Ok(match parsed {
                Ok((chunks, ms)) => Response::builder()
                    .header("content-type", "text/plain")
                    .header("x-backend", name)
                    .body(Chunks::new(name, chunks, Duration::from_millis(ms)).boxed())
                    .expect("backend names are valid header values"),
                Err(why) => text(400, format!("/stream: {why}\n")),
            });
        }
        p if p.starts_with("/status/") => {
            let code = &p["/status/".len()..];
            return Ok(match code.parse::<u16>().ok().filter(|c| (200..=599).contains(c)) {
                Some(code) => text(code, format!("{name} {code}\n")),
                None => text(400, format!("/status/{code}: the status must be a number 200..=599\n")),
            });
        }
        "/slow" => tokio::time::sleep(Duration::from_millis(400)).await,
        "/drop" if shared.drops_requests => {
            let _ = req.body_mut().collect().await;
            return Err(std::io::Error::other("dropping the connection on purpose"));
        }
        "/ws" => {
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = upgrade.await {
                    ws_echo(TokioIo::new(upgraded)).await;
                }
            });
            return Ok(Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("upgrade", "websocket")
                .header("connection", "upgrade")
                .header("sec-websocket-accept", "test-not-checked")
                .body(Full::new(Bytes::new()).boxed())
                .expect("static response parts are valid"));
        }
        _ => {}
    }
    let response = match shared.reply {
        _ if path == "/echo" => echo(name, headers, req).await,
        Reply::Json => echo(name, headers, req).await,
        Reply::Name | Reply::GreetEcho => Response::builder().header("content-type", "text/plain").body(Full::new(Bytes::from(format!("{name}\n"))).boxed()),
    };
    let mut response = response.expect("static response parts are valid");
    response.headers_mut().insert("x-backend", name.parse().expect("backend names are valid header values"));
    // Sent back so a client can see which identity the backend received.
    if let Some(value) = identity.and_then(|id| id.parse().ok()) {
        response.headers_mut().insert(IDENTITY_HEADER, value);
    }
    Ok(response)
}

/// The JSON description of a request: the backend's name, the request's
/// headers and its body length (what the client simulator reads the
/// client identity from).
async fn echo(name: &str, headers: BTreeMap<String, String>, req: Request<Incoming>) -> hyper::http::Result<Response<Body>> {
    let body_len = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
    let json = serde_json::json!({"backend": name, "headers": headers, "body_len": body_len});
    Response::builder().header("content-type", "application/json").body(Full::new(Bytes::from(json.to_string())).boxed())
}

/// Minimal RFC 6455 echo: reads masked client frames (payload < 126 bytes)
/// and sends each payload back unmasked with the same opcode, until close.
async fn ws_echo<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    loop {
        let mut h = [0u8; 2];
        if s.read_exact(&mut h).await.is_err() {
            return;
        }
        let len = (h[1] & 0x7f) as usize;
        let mut mask = [0u8; 4];
        let mut payload = vec![0u8; len];
        if len >= 126 || s.read_exact(&mut mask).await.is_err() || s.read_exact(&mut payload).await.is_err() {
            return;
        }
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
        let mut out = vec![h[0], len as u8];
        out.extend_from_slice(&payload);
        if s.write_all(&out).await.is_err() || h[0] & 0x0f == 0x8 {
            return;
        }
    }
}
