//! One health check against one address.

use std::{future::Future, net::SocketAddr, pin::Pin, time::Duration};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The future a probe returns: `Err` holds the reason, for the log line.
pub type ProbeFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// One kind of check. `check` is bounded by the scheduler's timeout, so a
/// probe need not time itself out.
pub trait Probe: Send + Sync {
    fn check(&self, addr: SocketAddr) -> ProbeFuture<'_>;
    /// What the probe does, e.g. `tcp` or `http GET /health expect 200`: two
    /// probes that describe themselves alike are the same check (a reload
    /// that keeps it does not restart it).
    fn describe(&self) -> String;
}

/// Passes when a TCP connection is accepted.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpProbe;

impl Probe for TcpProbe {
    fn check(&self, addr: SocketAddr) -> ProbeFuture<'_> {
        Box::pin(async move { TcpStream::connect(addr).await.map(drop).map_err(|e| format!("connect: {e}")) })
    }
    fn describe(&self) -> String {
        "tcp".into()
    }
}

/// `GET path` over a fresh HTTP/1.1 connection (never a pooled one, so a
/// check measures the backend, not a stale socket); passes on exactly
/// `expect_status`.
#[derive(Clone, Debug)]
pub struct HttpProbe {
    pub path: String,
    pub expect_status: u16,
    /// `Host` header; the target's `address:port` when `None`.
    pub host: Option<String>,
}

impl HttpProbe {
    pub fn new(path: impl Into<String>, expect_status: u16) -> HttpProbe {
        HttpProbe { path: path.into(), expect_status, host: None }
    }

    async fn run(&self, addr: SocketAddr) -> Result<(), String> {
        let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (mut tx, conn) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await.map_err(|e| format!("HTTP handshake: {e}"))?;
        // The connection task ends when the response is read and `tx` drops.
        tokio::spawn(conn);
        let host = self.host.clone().unwrap_or_else(|| addr.to_string());
        let req = Request::get(self.path.as_str())
            .header(hyper::header::HOST, host)
            .header(hyper::header::USER_AGENT, "xdplb-health")
            .header(hyper::header::CONNECTION, "close")
            .body(Empty::new())
            .map_err(|e| format!("bad health check request: {e}"))?;
        let resp = tx.send_request(req).await.map_err(|e| format!("HTTP: {e}"))?;
        let status = resp.status().as_u16();
        if status == self.expect_status {
            Ok(())
        } else {
            Err(format!("HTTP status {status}, expected {}", self.expect_status))
        }
    }
}

impl Probe for HttpProbe {
    fn check(&self, addr: SocketAddr) -> ProbeFuture<'_> {
        Box::pin(self.run(addr))
    }
    fn describe(&self) -> String {
        format!("http GET {} expect {} host {:?}", self.path, self.expect_status, self.host)
    }
}

/// Runs `probe` once against `addr`, bounded by `timeout`.
pub(super) async fn check_within(probe: &dyn Probe, addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, probe.check(addr)).await {
        Ok(r) => r,
        Err(_) => Err(format!("timeout after {timeout:?}")),
    }
}
