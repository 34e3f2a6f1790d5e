//! Active health checks. One supervisor task ticks every 100 ms, starts a
//! check for each backend whose interval has elapsed, and refreshes the
//! `alb_backend_healthy` gauges (which also reflect passive ejection and
//! draining). It reads the pools afresh each tick, so reloads and admin
//! changes are picked up without restarting anything. Passive ejection
//! lives in `pool::Backend::record_failure`, fed by `proxy`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::config::HealthConfig;
use crate::pool::Backend;
use crate::state::State;

/// One check: a fresh connection (never a pooled one, so a check measures
/// the backend, not a stale socket) and a GET of `path`.
pub async fn check(b: &Backend, h: &HealthConfig) -> Result<(), String> {
    let fut = async {
        let s = TcpStream::connect(&b.authority)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut tx, conn) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(s))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let req = Request::get(h.path.as_str())
            .header("host", &b.authority)
            .header("user-agent", "alb-health-check")
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let r = tx.send_request(req).await.map_err(|e| e.to_string())?;
        if r.status().as_u16() == h.expected_status {
            Ok(())
        } else {
            Err(format!(
                "status {} (want {})",
                r.status().as_u16(),
                h.expected_status
            ))
        }
    };
    match tokio::time::timeout(h.timeout.0, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {:?}", h.timeout.0)),
    }
}

/// Applies one check result with rise/fall hysteresis.
pub fn record(b: &Backend, h: &HealthConfig, ok: Result<(), String>, pool: &str) {
    match ok {
        Ok(()) => {
            b.streak_fail.store(0, Ordering::Relaxed);
            let n = b.streak_ok.fetch_add(1, Ordering::Relaxed) + 1;
            if !b.is_healthy() && n >= h.rise && b.set_healthy(true) {
                log::info!("pool {pool}: backend {} is UP after {n} good checks", b.id);
            }
        }
        Err(e) => {
            b.streak_ok.store(0, Ordering::Relaxed);
            let n = b.streak_fail.fetch_add(1, Ordering::Relaxed) + 1;
            if b.is_healthy() && n >= h.fall && b.set_healthy(false) {
                log::warn!(
                    "pool {pool}: backend {} is DOWN after {n} failed checks: {e}",
                    b.id
                );
            }
        }
    }
}

pub async fn run(st: Arc<State>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut last: HashMap<usize, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let pools = st.pools();
        let mut seen = Vec::new();
        for p in pools.iter() {
            for b in p.snapshot() {
                let key = Arc::as_ptr(&b) as usize;
                seen.push(key);
                st.metrics
                    .backend_healthy
                    .with_label_values(&[&p.name, &b.id])
                    .set(i64::from(b.available()));
                if !p.health.enabled {
                    continue;
                }
                let due = last
                    .get(&key)
                    .is_none_or(|t| t.elapsed() >= p.health.interval.0);
                if due {
                    last.insert(key, Instant::now());
                    let (h, name) = (p.health.clone(), p.name.clone());
                    tokio::spawn(async move {
                        let r = check(&b, &h).await;
                        record(&b, &h, r, &name);
                    });
                }
            }
        }
        last.retain(|k, _| seen.contains(k));
    }
}
