//! The admin listener (127.0.0.1:9090 by default; never expose it):
//! `GET /api/health`, `GET /api/stats`, `POST /api/backends`,
//! `DELETE /api/backends/{id}`, `GET /metrics`, and the dashboard at `/`.
//! A change asked by a web page of another origin is refused (403): the
//! listener has no authentication (`lb_common::userspace::dashboard`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use lb_common::userspace::dashboard::{foreign_origin, foreign_origin_message};
use lb_common::userspace::rates::SampleWindow;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::pool::Backend;
use crate::proxy::json_response;
use crate::state::State;
use crate::stats::{self, Sample};
use crate::upstream::ProxyBody;

pub async fn serve(l: TcpListener, st: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    // The samples `/api/stats` computes rates from, shared by its clients.
    let window: Arc<SampleWindow<Sample>> = Arc::default();
    loop {
        let (tcp, _) = tokio::select! {
            r = l.accept() => match r { Ok(x) => x, Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue } },
            _ = shutdown.changed() => return,
        };
        let (st, window) = (st.clone(), window.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let (st, window) = (st.clone(), window.clone());
                async move { Ok::<_, std::convert::Infallible>(handle(st, &window, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc).await;
        });
    }
}

fn err(status: StatusCode, msg: impl std::fmt::Display) -> Response<ProxyBody> {
    json_response(status, serde_json::json!({ "error": msg.to_string() }).to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBackend {
    url: String,
    #[serde(default)]
    pool: Option<String>,
    #[serde(default = "one")]
    weight: u32,
    #[serde(default)]
    id: Option<String>,
}

fn one() -> u32 {
    1
}

fn backend_json(b: &Backend) -> serde_json::Value {
    serde_json::json!({
        "id": b.id, "url": b.url, "weight": b.weight,
        "healthy": b.is_healthy(), "ejected": b.is_ejected(),
        "draining": b.draining.load(Ordering::Relaxed),
        "available": b.available(),
        "in_flight": b.in_flight.load(Ordering::Relaxed),
    })
}

async fn handle(st: Arc<State>, window: &SampleWindow<Sample>, req: Request<Incoming>) -> Response<ProxyBody> {
    let path = req.uri().path().to_string();
    if let Some(r) = crate::dashboard::serve(req.method(), &path) {
        return r;
    }
    if req.method() != Method::GET {
        let text = |name| req.headers().get(name).and_then(|v: &hyper::header::HeaderValue| v.to_str().ok());
        let (origin, host) = (text(hyper::header::ORIGIN), text(hyper::header::HOST));
        if let Some(origin) = origin.filter(|_| foreign_origin(origin, host)) {
            return err(StatusCode::FORBIDDEN, foreign_origin_message(origin));
        }
    }
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/api/stats") => json_response(StatusCode::OK, stats::render(&st.metrics, window).to_string()),
        (Method::GET, "/metrics") => {
            let mut r = json_response(StatusCode::OK, st.metrics.render());
            r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"));
            r
        }
        (Method::GET, "/api/health") => {
            let pools: Vec<_> = st
                .pools()
                .iter()
                .map(|p| {
                    let bs: Vec<_> = p.snapshot().iter().map(|b| backend_json(b)).collect();
                    let up = p.snapshot().iter().filter(|b| b.available()).count();
                    serde_json::json!({"name": p.name, "algorithm": format!("{:?}", p.algorithm), "available": up, "backends": bs})
                })
                .collect();
            let any = st.pools().iter().any(|p| p.snapshot().iter().any(|b| b.available()));
            let status = if any { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            json_response(status, serde_json::json!({"status": if any {"ok"} else {"no healthy backend"}, "pools": pools}).to_string())
        }
        (Method::POST, "/api/backends") => {
            let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return err(StatusCode::BAD_REQUEST, e),
            };
            add_backend(&st, &body)
        }
        (Method::DELETE, p) if p.starts_with("/api/backends/") => {
            let id = &p["/api/backends/".len()..];
            remove_backend(&st, id)
        }
        _ => err(StatusCode::NOT_FOUND, "unknown endpoint"),
    }
}

fn add_backend(st: &State, body: &Bytes) -> Response<ProxyBody> {
    let a: AddBackend = match serde_json::from_slice(body) {
        Ok(a) => a,
        Err(e) => return err(StatusCode::BAD_REQUEST, format!("body: {e}")),
    };
    if a.weight == 0 {
        return err(StatusCode::BAD_REQUEST, "weight must be >= 1");
    }
    let pools = st.pools();
    let pool = match &a.pool {
        Some(n) => pools.iter().find(|p| &p.name == n),
        None => pools.first(),
    };
    let Some(pool) = pool else {
        return err(StatusCode::NOT_FOUND, format!("no pool {:?}", a.pool));
    };
    let b = match Backend::new(&a.url, a.weight, a.id.as_deref()) {
        Ok(b) => b,
        Err(e) => return err(StatusCode::BAD_REQUEST, format!("url {:?}: {e}", a.url)),
    };
    let mut v = pool.backends.write().unwrap();
    if v.iter().any(|x| x.id == b.id) {
        return err(StatusCode::CONFLICT, format!("backend {} exists in pool {}", b.id, pool.name));
    }
    if pool.algorithm.needs_distinct_addresses() && v.iter().any(|x| x.authority == b.authority) {
        return err(StatusCode::CONFLICT, format!("pool {} ({}) has a backend at {} already", pool.name, pool.algorithm.select(), b.authority));
    }
    log::info!("admin: added backend {} ({}) to pool {}", b.id, b.url, pool.name);
    let j = backend_json(&b);
    v.push(Arc::new(b));
    drop(v);
    st.sync_health();
    // Note: added backends live until the next reload, which rebuilds
    // pools from the file.
    json_response(StatusCode::CREATED, serde_json::json!({"pool": pool.name, "backend": j}).to_string())
}

/// Marks the backend draining (no new requests), waits in the background
/// until its in-flight requests finish (bounded by the drain timeout),
/// then removes it.
fn remove_backend(st: &Arc<State>, id: &str) -> Response<ProxyBody> {
    let mut found = Vec::new();
    for p in st.pools().iter() {
        for b in p.snapshot() {
            if b.id == id {
                b.draining.store(true, Ordering::Relaxed);
                found.push((p.clone(), b));
            }
        }
    }
    if found.is_empty() {
        return err(StatusCode::NOT_FOUND, format!("no backend {id:?}"));
    }
    let drain = st.cfg().timeouts.drain.0;
    let st2 = st.clone();
    tokio::spawn(async move {
        let deadline = Instant::now() + drain;
        for (p, b) in found {
            while b.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            p.backends.write().unwrap().retain(|x| !Arc::ptr_eq(x, &b));
            st2.sync_health();
            let _ = st2.metrics.backend_healthy.remove_label_values(&[&p.name, &b.id]);
            log::info!("admin: removed backend {} from pool {} ({} in flight left)", b.id, p.name, b.in_flight.load(Ordering::Relaxed));
        }
    });
    json_response(StatusCode::ACCEPTED, serde_json::json!({"draining": id}).to_string())
}
