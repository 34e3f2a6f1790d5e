//! The one mock backend of the workspace: the lab's `lab-backend` binary, the
//! alb tests' HTTP backends and the `lb-user proxy` tests' TCP backends are
//! all this server, so a fix or a new behaviour lands everywhere at once.
//!
//! Every flavour says who it is, so a test can see which backend served it:
//! - [`Reply::Name`] (the lab's, and what the benchmark peers imitate):
//!   HTTP `200 <name>\n` with an `x-backend: <name>` header.
//! - [`Reply::Json`] (alb's): HTTP, a JSON object describing the request the
//!   backend saw (its name, headers and body length), so a test can check
//!   what alb forwarded.
//! - [`Reply::GreetEcho`] (the L4 proxy's): raw TCP, `<name>\n` on connect,
//!   then an echo until EOF.
//!
//! HTTP paths are described in `http.rs`; an optional UDP echo on the same
//! addresses answers `<name>:<datagram>`.
//!
//! It is also the backend simulator (docs/simulators.md): the knobs of
//! `knobs.rs` (delay, max connections, idle timeout, chaos, hang; applied in
//! `conn.rs`), an optional REQ/ACK line echo on its own port (`echo.rs`), and
//! an optional control endpoint on another (`control.rs`) that changes the
//! knobs and health at runtime and serves the counters of `stats.rs`.

mod chunks;
mod conn;
mod control;
mod echo;
mod http;
pub mod knobs;
pub mod stats;
mod stream;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicUsize},
        Arc, Mutex,
    },
};

use anyhow::{Context as _, Result};
use conn::Kind;
pub use knobs::{Delay, Knobs, Settings};
pub use stats::Stats;
use tokio::{
    net::{TcpSocket, TcpStream, UdpSocket},
    sync::watch,
    task::{AbortHandle, JoinSet},
};

/// The TCP/UDP port the lab's backends listen on.
pub const PORT: u16 = 8080;

/// What a backend answers on TCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    Name,
    Json,
    GreetEcho,
}

/// What every handler of one backend shares: its behaviour and what it saw.
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) reply: Reply,
    pub(crate) drops_requests: bool,
    pub(crate) hits: Arc<AtomicUsize>,
    pub(crate) posts: Arc<AtomicUsize>,
    pub(crate) health_ok: Arc<AtomicBool>,
    pub(crate) seen: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
    pub(crate) knobs: Knobs,
    pub(crate) stats: Arc<Stats>,
}

/// Which listener a bound address is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Listener {
    Conn(Kind),
    Control,
}

/// How to start a backend; see [`Backend::builder`].
pub struct Builder {
    name: String,
    reply: Reply,
    addrs: Vec<SocketAddr>,
    udp_echo: bool,
    drops_requests: bool,
    tcp_echo: Vec<SocketAddr>,
    control: Vec<SocketAddr>,
    settings: Settings,
    healthy: bool,
}

impl Builder {
    /// Listen on `addr` (TCP, and UDP with [`Builder::udp_echo`]); repeat for
    /// several. Without any, 127.0.0.1 with an ephemeral port.
    pub fn listen(mut self, addr: SocketAddr) -> Builder {
        self.addrs.push(addr);
        self
    }

    pub fn reply(mut self, reply: Reply) -> Builder {
        self.reply = reply;
        self
    }

    /// Also echo UDP datagrams on every address.
    pub fn udp_echo(mut self) -> Builder {
        self.udp_echo = true;
        self
    }

    /// `/drop` reads the request, then closes the connection without an
    /// answer (on other backends `/drop` is an ordinary path).
    pub fn drops_requests(mut self) -> Builder {
        self.drops_requests = true;
        self
    }

    /// Also serve the REQ/ACK line echo (`echo.rs`) on `addr`; repeat for several.
    pub fn tcp_echo(mut self, addr: SocketAddr) -> Builder {
        self.tcp_echo.push(addr);
        self
    }

    /// Also serve the control endpoint (`control.rs`) on `addr`; repeat for several.
    pub fn control(mut self, addr: SocketAddr) -> Builder {
        self.control.push(addr);
        self
    }

    /// The knobs at start (default: all off).
    pub fn settings(mut self, settings: Settings) -> Builder {
        self.settings = settings;
        self
    }

    /// What `/health` answers at start: 200 when `up` (the default), 503 (forced down) when not.
    pub fn healthy(mut self, up: bool) -> Builder {
        self.healthy = up;
        self
    }

    /// Binds every address and starts serving on the current tokio runtime.
    pub fn start(self) -> Result<Backend> {
        // Every answer carries the name in `x-backend`; refuse it here rather than fail each request.
        if hyper::header::HeaderValue::from_str(&self.name).is_err() {
            anyhow::bail!("backend name {:?} cannot be sent in an HTTP header (use visible ASCII)", self.name);
        }
        let mut addrs = self.addrs;
        if addrs.is_empty() {
            addrs.push(SocketAddr::from(([127, 0, 0, 1], 0)));
        }
        let shared = Arc::new(Shared {
            name: self.name.clone(),
            reply: self.reply,
            drops_requests: self.drops_requests,
            hits: Arc::default(),
            posts: Arc::default(),
            health_ok: Arc::new(AtomicBool::new(self.healthy)),
            seen: Arc::default(),
            knobs: Knobs::new(self.settings),
            stats: Arc::default(),
        });
        let (kill_tx, kill_rx) = watch::channel(false);
        let mut backend = Backend {
            name: self.name.clone(),
            addr: addrs[0],
            addrs: Vec::new(),
            hits: shared.hits.clone(),
            posts: shared.posts.clone(),
            health_ok: shared.health_ok.clone(),
            seen: shared.seen.clone(),
            stats: shared.stats.clone(),
            echo_addrs: Vec::new(),
            control_addrs: Vec::new(),
            udp_echo: self.udp_echo,
            shared,
            kill_tx,
            kill_rx,
            listeners: JoinSet::new(),
            listener_handles: Vec::new(),
        };
        for addr in addrs {
            let bound = backend.bind(addr, Listener::Conn(Kind::Main))?;
            backend.addrs.push(bound);
        }
        for addr in self.tcp_echo {
            let bound = backend.bind(addr, Listener::Conn(Kind::Echo))?;
            backend.echo_addrs.push(bound);
        }
        for addr in self.control {
            let bound = backend.bind(addr, Listener::Control)?;
            backend.control_addrs.push(bound);
        }
        backend.addr = backend.addrs[0];
        Ok(backend)
    }
}

/// A running backend. Dropping it kills it.
pub struct Backend {
    pub name: String,
    /// The first (or only) address, with the port actually bound.
    pub addr: SocketAddr,
    pub addrs: Vec<SocketAddr>,
    /// HTTP requests served, health checks not included.
    pub hits: Arc<AtomicUsize>,
    pub posts: Arc<AtomicUsize>,
    /// What `/health` answers: 200 when true, 503 when false (forced down).
    pub health_ok: Arc<AtomicBool>,
    /// With [`Reply::Json`], the headers of every request counted in `hits`,
    /// in order (other backends keep none: they serve benchmarks).
    pub seen: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
    /// What the backend saw (also `GET /stats` on the control endpoint).
    pub stats: Arc<Stats>,
    /// The REQ/ACK echo and control addresses, with the ports actually bound.
    pub echo_addrs: Vec<SocketAddr>,
    pub control_addrs: Vec<SocketAddr>,
    udp_echo: bool,
    shared: Arc<Shared>,
    kill_tx: watch::Sender<bool>,
    kill_rx: watch::Receiver<bool>,
    listeners: JoinSet<Result<()>>,
    /// The tasks in `listeners`, abortable through `&self`: tests kill a
    /// backend they share with a running load task.
    listener_handles: Vec<AbortHandle>,
}

impl Backend {
    /// A backend called `name`, answering [`Reply::Name`] until told otherwise.
    pub fn builder(name: &str) -> Builder {
        Builder {
            name: name.to_owned(),
            reply: Reply::Name,
            addrs: Vec::new(),
            udp_echo: false,
            drops_requests: false,
            tcp_echo: Vec::new(),
            control: Vec::new(),
            settings: Settings::default(),
            healthy: true,
        }
    }

    /// The live knobs: a change applies to new and open connections.
    pub fn knobs(&self) -> &Knobs {
        &self.shared.knobs
    }

    /// The `GET /stats` document.
    pub fn stats_json(&self) -> serde_json::Value {
        control::stats_json(&self.shared)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Binds `addr` with SO_REUSEADDR (so a restarted backend gets its port
    /// back at once) and starts its accept loop (and, for the main
    /// addresses, the UDP echo).
    fn bind(&mut self, addr: SocketAddr, role: Listener) -> Result<SocketAddr> {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }?;
        socket.set_reuseaddr(true)?;
        socket.bind(addr).with_context(|| format!("binding TCP {addr}"))?;
        let listener = socket.listen(1024)?;
        let bound = listener.local_addr()?;
        let (shared, kill) = (self.shared.clone(), self.kill_rx.clone());
        let handle = self.listeners.spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await?;
                match role {
                    Listener::Conn(kind) => tokio::spawn(conn::serve(shared.clone(), kill.clone(), tcp, kind)),
                    Listener::Control => tokio::spawn(serve_control(shared.clone(), kill.clone(), tcp)),
                };
            }
        });
        self.listener_handles.push(handle);
        if self.udp_echo && role == Listener::Conn(Kind::Main) {
            let udp = std::net::UdpSocket::bind(bound).with_context(|| format!("binding UDP {bound}"))?;
            udp.set_nonblocking(true)?;
            let udp = UdpSocket::from_std(udp)?;
            let handle = self.listeners.spawn(stream::udp_echo(self.shared.name.clone(), udp));
            self.listener_handles.push(handle);
        }
        Ok(bound)
    }

    /// Closes the listeners: new connections are refused, open ones carry on.
    pub fn stop(&self) {
        self.listener_handles.iter().for_each(AbortHandle::abort);
    }

    /// Stops listening and drops every open connection (a crash).
    pub fn kill(&self) {
        self.kill_tx.send_replace(true);
        self.stop();
    }

    /// Listens again on the same addresses, after [`Backend::stop`] or
    /// [`Backend::kill`] (connections still open carry on).
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.listener_handles.clear();
        self.kill_tx.send_replace(false);
        let main = self.addrs.iter().map(|a| (*a, Listener::Conn(Kind::Main)));
        let echo = self.echo_addrs.iter().map(|a| (*a, Listener::Conn(Kind::Echo)));
        let control = self.control_addrs.iter().map(|a| (*a, Listener::Control));
        for (addr, role) in main.chain(echo).chain(control).collect::<Vec<_>>() {
            self.bind(addr, role)?;
        }
        Ok(())
    }

    /// Serves until a listener fails (the lab-backend binary's whole life).
    pub async fn wait(mut self) -> Result<()> {
        match self.listeners.join_next().await {
            Some(result) => result.context("backend task panicked")?,
            None => Ok(()),
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One control connection, until it ends or the backend is killed.
async fn serve_control(shared: Arc<Shared>, mut kill: watch::Receiver<bool>, tcp: TcpStream) {
    tokio::select! {
        _ = control::serve(shared, tcp) => {}
        _ = kill.wait_for(|killed| *killed) => {}
    }
}
