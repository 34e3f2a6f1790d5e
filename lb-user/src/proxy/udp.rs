//! UDP VIPs: one session per client `address:port`.
//!
//! The first datagram of an unknown client is admitted like a TCP connection
//! (allowlist, per-IP limits: a session counts as a connection), a backend is
//! picked with the VIP's selector (protocol 17 in the flow), and a socket
//! connected to the backend carries the session. Replies from the backend are
//! sent back to the client from the VIP socket. A session ends after
//! `conntrack.udp_timeout` without a datagram in either direction. During the
//! drain existing sessions keep working and datagrams of new clients are
//! dropped. A reload changes the VIP's state for new sessions only; a
//! session keeps its backend (and its idle timeout) until it ends.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use prometheus::IntCounter;
use tokio::{net::UdpSocket, sync::watch, task::JoinHandle, time::Instant};

use super::{
    current,
    limits::{self, IpPermit, Reject},
    OpenGuard, Shared, VipCell, VipState,
};
use lb_common::userspace::select::Flow;

/// Largest datagram relayed (IPv4/IPv6 UDP payload limit).
const MAX_DATAGRAM: usize = 65_535;

struct Session {
    socket: Arc<UdpSocket>,
    /// Milliseconds since `epoch` of the last datagram either way.
    last: Arc<AtomicU64>,
    task: JoinHandle<()>,
    to_backend: IntCounter,
}

/// Relays one UDP VIP until `kill` (end of the drain); stops taking new
/// clients when `stop` is set.
pub(super) async fn udp_loop(shared: Arc<Shared>, cell: VipCell, socket: UdpSocket, mut stop: watch::Receiver<bool>, mut kill: watch::Receiver<bool>) {
    let socket = Arc::new(socket);
    let epoch = Instant::now();
    let mut sessions: HashMap<SocketAddr, Session> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut stopping = false;
    let mut sweep = tokio::time::interval(Duration::from_secs(5));
    loop {
        let (n, peer) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    log::debug!("vip={} udp receive failed: {e}", current(&cell).name);
                    continue;
                }
            },
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                log::info!("vip={} stopped taking new UDP clients; open sessions={}", current(&cell).name, sessions.len());
                continue;
            }
            _ = kill.wait_for(|k| *k) => break,
            _ = sweep.tick() => {
                sessions.retain(|_, s| !s.task.is_finished());
                if stopping && sessions.is_empty() {
                    break;
                }
                continue;
            }
        };
        let data = &buf[..n];
        if let Some(s) = sessions.get(&peer).filter(|s| !s.task.is_finished()) {
            s.last.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
            s.to_backend.inc_by(n as u64);
            if let Err(e) = s.socket.send(data).await {
                log::debug!("vip={} client={peer}: send to the backend failed: {e}", current(&cell).name);
            }
            continue;
        }
        sessions.remove(&peer);
        if stopping {
            continue;
        }
        let vip = current(&cell);
        let idle = vip.config.conntrack.udp_timeout;
        let admitted =
            if !limits::allowed(vip.config.allowlist.as_ref(), peer.ip(), vip.addr.port()) { Err(Reject::Allowlist) } else { shared.limiter.admit(peer.ip()) };
        let permit = match admitted {
            Ok(p) => p,
            Err(reason) => {
                vip.metrics.rejected[reason.index()].inc();
                log::debug!("rejected vip={} client={peer} reason={}", vip.name, reason.label());
                continue;
            }
        };
        let flow = Flow { src: peer, dst: vip.addr, protocol: 17 };
        let Some(id) = vip.balancer.pick(&flow) else {
            vip.metrics.rejected[Reject::NoBackend.index()].inc();
            continue;
        };
        let backend_addr = vip.backends[id as usize];
        let upstream = match connect_udp(backend_addr).await {
            Ok(s) => Arc::new(s),
            Err(e) => {
                vip.metrics.backends[id as usize].connect_errors.inc();
                vip.metrics.rejected[Reject::ConnectFailed.index()].inc();
                log::warn!("backend connect failed vip={} backend={backend_addr} error={e}", vip.name);
                continue;
            }
        };
        let m = &vip.metrics.backends[id as usize];
        m.connections.inc();
        m.bytes_to_backend.inc_by(n as u64);
        if let Err(e) = upstream.send(data).await {
            log::debug!("vip={} client={peer}: send to the backend failed: {e}", vip.name);
        }
        log::debug!("udp session vip={} client={peer} backend={backend_addr}", vip.name);
        let last = Arc::new(AtomicU64::new(epoch.elapsed().as_millis() as u64));
        let guard = OpenGuard::new(&shared.open, &vip.metrics.active);
        let task = tokio::spawn(session(vip.clone(), id, socket.clone(), upstream.clone(), peer, last.clone(), epoch, idle, (permit, guard)));
        let to_backend = vip.metrics.backends[id as usize].bytes_to_backend.clone();
        sessions.insert(peer, Session { socket: upstream, last, task, to_backend });
    }
    for s in sessions.values() {
        s.task.abort();
    }
    log::info!("vip={} UDP relay stopped", current(&cell).name);
}

async fn connect_udp(backend: SocketAddr) -> std::io::Result<UdpSocket> {
    let local: IpAddr = if backend.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
    let s = UdpSocket::bind(SocketAddr::new(local, 0)).await?;
    s.connect(backend).await?;
    Ok(s)
}

/// Relays replies of one session until it has been idle for `idle`.
#[allow(clippy::too_many_arguments)]
async fn session(
    vip: Arc<VipState>,
    id: u32,
    vip_socket: Arc<UdpSocket>,
    upstream: Arc<UdpSocket>,
    peer: SocketAddr,
    last: Arc<AtomicU64>,
    epoch: Instant,
    idle: Duration,
    _hold: (IpPermit, OpenGuard),
) {
    let bytes = vip.metrics.backends[id as usize].bytes_to_client.clone();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let deadline = epoch + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
        tokio::select! {
            r = upstream.recv(&mut buf) => match r {
                Ok(n) => {
                    last.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
                    bytes.inc_by(n as u64);
                    if let Err(e) = vip_socket.send_to(&buf[..n], peer).await {
                        log::debug!("vip={} client={peer}: send to the client failed: {e}", vip.name);
                    }
                }
                // ICMP port unreachable and the like: keep the session until idle.
                Err(e) => {
                    log::debug!("vip={} client={peer}: backend receive failed: {e}", vip.name);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                let idle_for = epoch.elapsed().saturating_sub(Duration::from_millis(last.load(Ordering::Relaxed)));
                if idle_for >= idle {
                    log::debug!("udp session idle vip={} client={peer}", vip.name);
                    return;
                }
            }
        }
    }
}
