//! One accepted connection of the backend simulator: admission (max
//! connections, chaos), the idle timeout, and the gate every answer passes
//! (hang, delay). The protocols (`http.rs`, `echo.rs`, `stream.rs`) only
//! call [`Conn::before_answer`]; everything else about the knobs is here.

use std::{
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::watch,
};

use super::{echo, http, knobs::Settings, stats::Stats, stream, Reply, Shared};

/// Which listener accepted the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// The `--listen` addresses: HTTP, or the greet-and-echo TCP server.
    Main,
    /// `--tcp-echo`: the REQ/ACK line protocol.
    Echo,
}

/// When the connection last moved a byte, and whether an answer is being
/// prepared (a delayed or hung answer is not idleness).
pub(super) struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity { start: Instant::now(), last_ms: AtomicU64::new(0), busy: AtomicUsize::new(0) }
    }

    fn touch(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        self.start.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

struct Busy<'a>(&'a Activity);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a protocol handler gets: the backend and this connection's activity.
#[derive(Clone)]
pub(super) struct Conn {
    pub(super) shared: Arc<Shared>,
    activity: Arc<Activity>,
}

impl Conn {
    /// Waits while hang is on, then for the delay. The connection counts as
    /// busy meanwhile, so the idle timeout does not cut a pending answer.
    pub(super) async fn before_answer(&self) {
        self.activity.busy.fetch_add(1, Ordering::Relaxed);
        let _busy = Busy(&self.activity);
        let mut knobs = self.shared.knobs.subscribe();
        // Err: the knobs are gone with the backend; answer rather than hang forever.
        let delay = match knobs.wait_for(|s| !s.hang).await {
            Ok(settings) => settings.delay,
            Err(_) => return,
        };
        let delay = delay.pick();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

/// A stream that records every byte it moves in an [`Activity`], and
/// counts the bytes it receives in the backend's stats.
pub(super) struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
    shared: Arc<Shared>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let received = buf.filled().len() - before;
        if matches!(poll, Poll::Ready(Ok(()))) && received > 0 {
            self.activity.touch();
            self.shared.stats.bytes_in.fetch_add(received as u64, Ordering::Relaxed);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One TCP connection, until it ends, idles out or the backend is killed.
pub(super) async fn serve(shared: Arc<Shared>, mut kill: watch::Receiver<bool>, tcp: TcpStream, kind: Kind) {
    let stats = &shared.stats;
    Stats::bump(&stats.accepted);
    let settings = shared.knobs.get();
    // Dropping the stream closes it before a byte is sent: the refusal and
    // the chaos close look the same to the client, a connection that ends at once.
    let Some(_active) = stats.admit(settings.max_conns) else {
        Stats::bump(&stats.refused);
        return;
    };
    if settings.chaos_pct > 0 && fastrand::u8(0..100) < settings.chaos_pct {
        Stats::bump(&stats.chaos_closed);
        return;
    }
    let activity = Arc::new(Activity::new());
    let io = Tracked { inner: tcp, activity: activity.clone(), shared: shared.clone() };
    let conn = Conn { shared: shared.clone(), activity: activity.clone() };
    let protocol = async move {
        match (kind, conn.shared.reply) {
            (Kind::Echo, _) => echo::serve(conn, io).await,
            (Kind::Main, Reply::GreetEcho) => stream::greet_echo(conn, io).await,
            (Kind::Main, Reply::Name | Reply::Json) => http::serve(conn, io).await,
        }
    };
    tokio::select! {
        _ = protocol => {}
        _ = kill.wait_for(|killed| *killed) => {}
        _ = idle_out(&activity, shared.knobs.subscribe()) => Stats::bump(&stats.idle_closed),
    }
}

/// Returns once the connection has been idle for the idle timeout, which
/// it re-reads whenever the knobs change.
async fn idle_out(activity: &Activity, mut knobs: watch::Receiver<Settings>) {
    loop {
        let timeout = knobs.borrow_and_update().idle_timeout;
        let Some(timeout) = timeout else {
            if knobs.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            continue;
        };
        let idle = activity.idle_for();
        if idle >= timeout {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(timeout - idle) => {}
            changed = knobs.changed() => if changed.is_err() { std::future::pending::<()>().await },
        }
    }
}
