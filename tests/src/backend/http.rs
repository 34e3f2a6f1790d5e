//! The HTTP/1.1 side of the mock backend.
//!
//! - `/health` and `/healthz`, and any request from alb's health checker
//!   (user agent `xdplb-health`, the shared health probe's): `200 ok` or, once a test clears
//!   `health_ok`, `500 down`. Not counted in `hits`.
//! - `/slow`: answers after 400 ms (drain and timeout tests).
//! - `/ws`: `101` and a minimal WebSocket echo.
//! - `/drop` on a backend built with `drops_requests`: reads the request, then
//!   closes the connection without an answer.
//! - anything else: the backend's name (`Reply::Name`) or the JSON
//!   description of the request (`Reply::Json`).

use std::{collections::BTreeMap, sync::atomic::Ordering, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

use super::{Reply, Shared};

pub(super) async fn serve(shared: Arc<Shared>, tcp: TcpStream) {
    let service = service_fn(move |req| {
        let shared = shared.clone();
        async move { handle(&shared, req).await }
    });
    // Client resets are normal in load tests; nothing to report.
    let _ = http1::Builder::new().serve_connection(TokioIo::new(tcp), service).with_upgrades().await;
}

fn text(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder().status(status).header("content-type", "text/plain").body(Full::new(body.into())).expect("static response parts are valid")
}

/// An `Err` makes hyper close the connection without answering.
async fn handle(shared: &Shared, mut req: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let path = req.uri().path().to_owned();
    let is_check = req.headers().get("user-agent").is_some_and(|u| u == "xdplb-health");
    if path == "/health" || path == "/healthz" || is_check {
        return Ok(if shared.health_ok.load(Ordering::Relaxed) { text(200, "ok\n") } else { text(500, "down\n") });
    }
    shared.hits.fetch_add(1, Ordering::Relaxed);
    if req.method() == hyper::Method::POST {
        shared.posts.fetch_add(1, Ordering::Relaxed);
    }
    let headers: BTreeMap<String, String> = req.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned())).collect();
    // Only alb's tests read the headers back; the lab's backends serve
    // benchmarks and must not grow without bound.
    if shared.reply == Reply::Json {
        shared.seen.lock().unwrap().push(headers.clone());
    }
    match path.as_str() {
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
                .body(Full::new(Bytes::new()))
                .expect("static response parts are valid"));
        }
        _ => {}
    }
    let name = shared.name.as_str();
    let response = match shared.reply {
        Reply::Json => {
            let body_len = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
            let json = serde_json::json!({"backend": name, "headers": headers, "body_len": body_len});
            Response::builder().header("content-type", "application/json").body(Full::new(Bytes::from(json.to_string())))
        }
        Reply::Name | Reply::GreetEcho => Response::builder().header("content-type", "text/plain").body(Full::new(Bytes::from(format!("{name}\n")))),
    };
    let mut response = response.expect("static response parts are valid");
    response.headers_mut().insert("x-backend", name.parse().expect("backend names are valid header values"));
    Ok(response)
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
