//! The TCP data path of `lb-user proxy`: bind, accept (admission), pick and
//! connect a backend (one fallback), then copy both ways with byte counters.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use lb_common::userspace::select::Flow;
use prometheus::IntCounter;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::watch,
};

use super::{
    current,
    limits::{self, IpPermit, Reject},
    splice, OpenGuard, Shared, VipCell, VipState, BACKLOG,
};
use crate::config::{CopyMode, Protocol};

/// A listening socket with SO_REUSEADDR and a large backlog.
pub(super) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Accepts on one VIP socket until `stop`; each connection is handled with
/// the VIP's state current at its accept.
pub(super) async fn accept_loop(shared: Arc<Shared>, cell: VipCell, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                log::warn!("vip={} accept failed: {e}", current(&cell).name);
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let vip = current(&cell);
        let admitted =
            if !limits::allowed(vip.config.allowlist.as_ref(), peer.ip(), vip.addr.port()) { Err(Reject::Allowlist) } else { shared.limiter.admit(peer.ip()) };
        match admitted {
            Ok(permit) => {
                let guard = OpenGuard::new(&shared.open, &vip.metrics.active);
                tokio::spawn(connection(shared.clone(), vip, stream, peer, permit, guard));
            }
            Err(reason) => reject(&vip, stream, peer, reason),
        }
    }
    log::info!("vip={} stopped accepting address={}", current(&cell).name, current(&cell).addr);
}

/// Closes `stream` with a reset and counts it.
pub(super) fn reject(vip: &VipState, stream: TcpStream, peer: SocketAddr, reason: Reject) {
    vip.metrics.rejected[reason.index()].inc();
    log::debug!("rejected vip={} client={peer} reason={}", vip.name, reason.label());
    let _ = stream.set_zero_linger();
}

async fn connection(shared: Arc<Shared>, vip: Arc<VipState>, client: TcpStream, peer: SocketAddr, permit: IpPermit, guard: OpenGuard) {
    let _permit = permit;
    let _guard = guard;
    let mut kill = shared.kill.clone();
    tokio::select! {
        _ = forward(&shared, &vip, client, peer) => {}
        _ = kill.wait_for(|k| *k) => log::debug!("vip={} client={peer}: closed at the end of the drain", vip.name),
    }
}

async fn connect(shared: &Shared, vip: &VipState, id: u32) -> io::Result<TcpStream> {
    let addr = vip.backends[id as usize];
    let r = match tokio::time::timeout(shared.connect_timeout, TcpStream::connect(addr)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, format!("connect timed out after {:?}", shared.connect_timeout))),
    };
    if let Err(e) = &r {
        vip.metrics.backends[id as usize].connect_errors.inc();
        log::warn!("backend connect failed vip={} backend={addr} error={e}", vip.name);
    }
    r
}

async fn forward(shared: &Shared, vip: &VipState, client: TcpStream, peer: SocketAddr) {
    let flow = Flow { src: peer, dst: vip.addr, protocol: Protocol::Tcp.number() };
    // The first choice, then one fallback if connecting to it fails.
    let picks = vip.balancer.picks(&flow, 2);
    let Some(&first) = picks.first() else {
        return reject(vip, client, peer, Reject::NoBackend);
    };
    let (id, backend) = match connect(shared, vip, first).await {
        Ok(s) => (first, s),
        Err(_) => match picks.get(1) {
            Some(&next) => match connect(shared, vip, next).await {
                Ok(s) => (next, s),
                Err(_) => return reject(vip, client, peer, Reject::ConnectFailed),
            },
            None => return reject(vip, client, peer, Reject::ConnectFailed),
        },
    };
    let _ = client.set_nodelay(true);
    let _ = backend.set_nodelay(true);
    let m = &vip.metrics.backends[id as usize];
    m.connections.inc();
    log::debug!("forwarding vip={} client={peer} backend={}", vip.name, vip.backends[id as usize]);
    let copied = match vip.config.proxy.copy {
        CopyMode::Splice => splice::bidirectional(&client, &backend, &m.bytes_to_backend, &m.bytes_to_client).await,
        CopyMode::Buffered => {
            let mut client = Counted { inner: client, read: m.bytes_to_backend.clone() };
            let mut backend = Counted { inner: backend, read: m.bytes_to_client.clone() };
            tokio::io::copy_bidirectional(&mut client, &mut backend).await.map(|_| ())
        }
    };
    if let Err(e) = copied {
        log::debug!("vip={} client={peer}: connection ended: {e}", vip.name);
    }
}

/// A stream that counts the bytes read from it.
struct Counted {
    inner: TcpStream,
    read: IntCounter,
}

impl AsyncRead for Counted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.read.inc_by(n as u64);
        }
        r
    }
}

impl AsyncWrite for Counted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
