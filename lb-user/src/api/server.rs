//! The API's listener: HTTP/1.1 (keep-alive allowed) on the supervisor's
//! tokio runtime, at most [`MAX_CONNECTIONS`] at a time, each request's
//! headers within [`HEADER_TIMEOUT`]. Requests reach the supervisor through
//! its command channel ([`Shared::ask`]).

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{Context as _, Result};
use hyper::{server::conn::http1, service::service_fn, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot, Semaphore},
    task::JoinSet,
};

use super::{handlers, state::RateBase, ApiError, Reply, Request};
use crate::supervisor::Command;

/// Open connections at most; more wait to be accepted. The API is for a
/// few operators and scripts, and each connection holds a task.
pub const MAX_CONNECTIONS: usize = 64;
/// A client has this long to send a request's headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request waits for the supervisor (a reload or a table
/// rebuild may be running) before a 503.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The running API; dropping it closes the listener and every connection.
pub struct ApiHandle {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl ApiHandle {
    /// The address it listens on (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ApiHandle {
    fn drop(&mut self) {
        // The accept task owns the connections' JoinSet: aborting it ends them.
        self.task.abort();
    }
}

/// What every connection shares.
pub(super) struct Shared {
    commands: mpsc::Sender<Command>,
    pub(super) rates: RateBase,
}

impl Shared {
    /// Sends `request` to the supervisor and waits for its answer.
    pub(super) async fn ask(&self, request: Request) -> Result<Reply, ApiError> {
        let stopping = || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "lb-user is stopping");
        let (tx, rx) = oneshot::channel();
        let exchange = async {
            self.commands.send(Command::Api(request, tx)).await.map_err(|_| stopping())?;
            rx.await.map_err(|_| stopping())?
        };
        tokio::time::timeout(ANSWER_TIMEOUT, exchange).await.unwrap_or_else(|_| {
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("lb-user did not answer within {} s; try again", ANSWER_TIMEOUT.as_secs())))
        })
    }
}

/// Binds `listen` (an error names it) and serves the API on the current
/// tokio runtime, sending requests to `commands`.
pub fn spawn(listen: SocketAddr, commands: mpsc::Sender<Command>) -> Result<ApiHandle> {
    let listener = std::net::TcpListener::bind(listen).with_context(|| format!("binding the control API on {listen} (api.listen)"))?;
    listener.set_nonblocking(true).context("control API: set_nonblocking")?;
    let addr = listener.local_addr().context("control API: local_addr")?;
    let listener = TcpListener::from_std(listener).context("control API: registering the listener")?;
    let shared = Arc::new(Shared { commands, rates: RateBase::default() });
    let task = tokio::spawn(accept(listener, shared));
    Ok(ApiHandle { addr, task })
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors and the like: wait a little, keep serving.
                log::warn!("control API: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        connections.spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handlers::handle(&shared, req).await) }
            });
            let conn = http1::Builder::new().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT).serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                log::debug!("control API connection: {e}");
            }
        });
        while connections.try_join_next().is_some() {}
    }
}
