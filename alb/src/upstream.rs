//! Connections to backends: HTTP/1.1 over TCP, kept alive and reused.
//!
//! alb manages its own pool (instead of hyper-util's client) for one
//! reason: it must know whether a failed request *could have reached* the
//! backend. `try_send_request` hands the request back when it was never
//! written, and a failed connect never consumed it, so such requests are
//! retried on another backend whatever their method; anything that may
//! have been sent is only retried when it is idempotent (see `proxy`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::timeout;

pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Idle connections kept per backend; more are closed after use. Sized
/// for the peak number of requests in flight to one backend, not the
/// average: when a burst of client requests arrives together (hundreds of
/// keep-alive clients each sending their next request), every one of them
/// needs a backend connection at that moment, and each connection closed
/// for lack of room afterwards is a new TCP connection in the next burst.
/// With 128 that churn cost more CPU than the requests themselves at a few
/// hundred clients. Unused connections still go after `timeouts.idle`.
const MAX_IDLE_PER_BACKEND: usize = 1024;

#[derive(Debug)]
pub enum SendError {
    /// The request never left alb (connect failed, or a pooled connection
    /// was found closed before writing); it is handed back for a retry.
    NotSent(Box<Request<ProxyBody>>, String),
    /// The request may have reached the backend.
    Sent(String),
}

/// Idle senders per backend authority, with the time they became idle.
type IdleMap = HashMap<String, Vec<(Instant, SendRequest<ProxyBody>)>>;

pub struct Upstream {
    idle: Mutex<IdleMap>,
    keep_idle: Duration,
}

pub struct Timeouts {
    pub connect: Duration,
    pub response: Duration,
}

impl Upstream {
    /// `keep_idle`: how long an unused backend connection is kept.
    pub fn new(keep_idle: Duration) -> Arc<Upstream> {
        Arc::new(Upstream { idle: Mutex::new(HashMap::new()), keep_idle })
    }

    /// The most recently used idle sender. It may not be ready yet (its
    /// connection finishing the previous response), see [`Upstream::send`].
    fn checkout(&self, authority: &str) -> Option<SendRequest<ProxyBody>> {
        let mut m = self.idle.lock().unwrap();
        let v = m.get_mut(authority)?;
        while let Some((t, s)) = v.pop() {
            if t.elapsed() < self.keep_idle && !s.is_closed() {
                return Some(s);
            }
        }
        None
    }

    fn checkin(&self, authority: String, s: SendRequest<ProxyBody>) {
        let mut m = self.idle.lock().unwrap();
        let v = m.entry(authority).or_default();
        if v.len() < MAX_IDLE_PER_BACKEND {
            v.push((Instant::now(), s));
        }
    }

    /// Number of idle pooled connections (tests, admin).
    pub fn idle_count(&self) -> usize {
        self.idle.lock().unwrap().values().map(Vec::len).sum()
    }

    /// Sends `req` to `authority`, reusing an idle connection if there is
    /// one. `upgrade` requests get a fresh connection that is never pooled.
    pub async fn send(
        self: &Arc<Self>,
        authority: &str,
        mut req: Request<ProxyBody>,
        t: &Timeouts,
        upgrade: bool,
    ) -> Result<(Response<Incoming>, Option<Lease>), SendError> {
        if !upgrade {
            while let Some(mut s) = self.checkout(authority) {
                // Checked in when its response body ended, a connection is
                // idle again as soon as its task has read that far, which
                // is normally already the case; one that closes instead
                // (the backend said `Connection: close`) fails here, before
                // anything was written to it.
                if s.ready().await.is_err() {
                    continue;
                }
                match self.exchange(s, req, authority, t).await {
                    Err(SendError::NotSent(r, _)) => req = *r,
                    other => return other,
                }
            }
        }
        let stream = match timeout(t.connect, TcpStream::connect(authority)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(SendError::NotSent(Box::new(req), format!("connect {authority}: {e}"))),
            Err(_) => return Err(SendError::NotSent(Box::new(req), format!("connect {authority}: timed out"))),
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = match http1::Builder::new().handshake(TokioIo::new(stream)).await {
            Ok(x) => x,
            Err(e) => return Err(SendError::NotSent(Box::new(req), format!("handshake {authority}: {e}"))),
        };
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        self.exchange(sender, req, authority, t).await
    }

    async fn exchange(
        self: &Arc<Self>,
        mut sender: SendRequest<ProxyBody>,
        req: Request<ProxyBody>,
        authority: &str,
        t: &Timeouts,
    ) -> Result<(Response<Incoming>, Option<Lease>), SendError> {
        let res = match timeout(t.response, sender.try_send_request(req)).await {
            Err(_) => return Err(SendError::Sent(format!("{authority}: no response within {:?}", t.response))),
            Ok(Ok(r)) => r,
            Ok(Err(mut e)) => {
                return Err(match e.take_message() {
                    Some(r) => SendError::NotSent(Box::new(r), format!("{authority}: {}", e.into_error())),
                    None => SendError::Sent(format!("{authority}: {}", e.into_error())),
                })
            }
        };
        // Switching protocols: the connection becomes the tunnel.
        let lease = (res.status() != StatusCode::SWITCHING_PROTOCOLS).then(|| Lease { upstream: self.clone(), authority: authority.to_string(), sender });
        Ok((res, lease))
    }
}

/// A pooled backend connection lent to one response. The proxy returns it
/// with [`Lease::release`] once the response body has been read to its
/// end; dropped instead (a body the client abandoned, which makes hyper
/// close the connection), it is not pooled. Returning it from the body,
/// rather than from a task spawned to await the connection's readiness,
/// saves a task per request.
pub struct Lease {
    upstream: Arc<Upstream>,
    authority: String,
    sender: SendRequest<ProxyBody>,
}

impl Lease {
    pub fn release(self) {
        self.upstream.checkin(self.authority, self.sender);
    }
}
