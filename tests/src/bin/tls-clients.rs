//! `tls-clients`: opens TLS connections to one server at a bounded rate and
//! then closes, holds, uses or trickles each of them; reports how many are
//! open and how long handshakes (and requests) took, as JSON lines
//! (`xdplb_tests::tls_clients`). `cargo xtask bench reliability` runs it in
//! the lab's client namespace for its idle-TLS and slowloris cases
//! (docs/lab.md). The client simulator `lab-client` shares its TLS setup
//! (`xdplb_tests::client::tls`) and its open-files limit (`xdplb_tests::sys`).
//!
//! ```text
//! tls-clients --connect 198.18.2.11:443 --ca ca.crt --conns 2500 --rate 500 --then idle --until-stdin-closes
//! tls-clients --connect 198.18.2.11:443 --ca ca.crt --conns 300 --rate 50 --then close     # handshake times
//! tls-clients --connect 198.18.2.11:443 --ca ca.crt --conns 1000 --then trickle --reopen   # slowloris
//! ```
//!
//! One process holds at most what its open-files limit allows (it raises its
//! soft limit to the hard one); spread more connections over several.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};
use tokio_rustls::{client::TlsStream, TlsConnector};
use xdplb_tests::{
    client::tls::{self, Identity},
    sys,
    tls_clients::{Dist, Line, Progress, Summary},
};

/// What each connection does once its handshake is complete.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Then {
    /// Close it at once (only the handshake is measured); the tool ends
    /// when every connection has been made.
    Close,
    /// Keep it open without sending anything.
    Idle,
    /// Send one keep-alive `GET --path`, read the response, then keep it open.
    Request,
    /// Send a request head one byte per `--trickle-every`, never finishing it
    /// (slowloris).
    Trickle,
}

#[derive(Parser, Debug)]
#[command(name = "tls-clients", about = "Opens TLS connections at a bounded rate and holds, uses or trickles them; reports JSON lines")]
struct Args {
    /// Server address, IP:PORT.
    #[arg(long, value_name = "ADDR")]
    connect: SocketAddr,
    /// Name to verify the server certificate against (default: the IP of --connect).
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
    /// CA certificate(s) (PEM) that sign the server certificate.
    #[arg(long, value_name = "FILE")]
    ca: PathBuf,
    /// Client certificate (PEM) for mTLS; needs --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// Client key (PEM) for mTLS; needs --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// ALPN protocol to offer (repeatable).
    #[arg(long, value_name = "PROTO", default_value = "http/1.1")]
    alpn: Vec<String>,
    /// Connections: held open at once, or (with --then close) made in total.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    conns: u64,
    /// New connections per second, at most.
    #[arg(long, value_name = "PER_SECOND", default_value_t = 500.0)]
    rate: f64,
    /// What a connection does after its handshake.
    #[arg(long, value_enum, default_value = "idle")]
    then: Then,
    /// Path of the request (`request`, `trickle`).
    #[arg(long, value_name = "PATH", default_value = "/")]
    path: String,
    /// Pause between two trickled bytes.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "1s")]
    trickle_every: Duration,
    /// Replace connections that the server closes or that fail, so that
    /// --conns stay open (at most --rate new ones per second).
    #[arg(long)]
    reopen: bool,
    /// Stop (report and exit) after this long at the latest.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "10m")]
    duration: Duration,
    /// Also stop when stdin reaches end of file (the parent closed the pipe or died).
    #[arg(long)]
    until_stdin_closes: bool,
    /// Print a progress line this often.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "1s")]
    progress_every: Duration,
    /// Give up on a TCP connect + TLS handshake after this long.
    #[arg(long, value_name = "DURATION", value_parser = duration, default_value = "10s")]
    handshake_timeout: Duration,
}

fn duration(text: &str) -> Result<Duration, String> {
    let d = lb_common::userspace::duration::parse_duration_or_seconds(text)?;
    if d.is_zero() {
        return Err(format!("{text:?}: must be more than zero"));
    }
    Ok(d)
}

/// Counters and samples shared by the connection tasks.
#[derive(Default)]
struct Shared {
    open: AtomicU64,
    pending: AtomicU64,
    handshakes: AtomicU64,
    failed: AtomicU64,
    server_closed: AtomicU64,
    handshake_ms: Mutex<Vec<f64>>,
    request_ms: Mutex<Vec<f64>>,
    server_close_s: Mutex<Vec<f64>>,
    errors: Mutex<HashMap<String, u64>>,
}

/// Samples kept per distribution, so a long `--reopen` run stays bounded.
const MAX_SAMPLES: usize = 1_000_000;

fn push(samples: &Mutex<Vec<f64>>, v: f64) {
    let mut s = samples.lock().unwrap();
    if s.len() < MAX_SAMPLES {
        s.push(v);
    }
}

impl Shared {
    fn progress(&self, started: Instant) -> Progress {
        Progress {
            t: started.elapsed().as_secs(),
            open: self.open.load(Relaxed),
            pending: self.pending.load(Relaxed),
            handshakes: self.handshakes.load(Relaxed),
            failed: self.failed.load(Relaxed),
            server_closed: self.server_closed.load(Relaxed),
        }
    }

    fn fail(&self, what: String) {
        self.failed.fetch_add(1, Relaxed);
        *self.errors.lock().unwrap().entry(what).or_default() += 1;
    }

    fn summary(&self, started: Instant) -> Summary {
        let dist = |m: &Mutex<Vec<f64>>| Dist::of(&mut m.lock().unwrap());
        let mut errors: Vec<(String, u64)> = self.errors.lock().unwrap().iter().map(|(k, v)| (k.clone(), *v)).collect();
        errors.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        errors.truncate(10);
        Summary {
            progress: self.progress(started),
            handshake_ms: dist(&self.handshake_ms),
            request_ms: dist(&self.request_ms),
            server_close_s: dist(&self.server_close_s),
            errors,
        }
    }
}

/// What every connection task needs.
struct Target {
    addr: SocketAddr,
    name: ServerName<'static>,
    connector: TlsConnector,
    then: Then,
    host: String,
    path: String,
    trickle_every: Duration,
    handshake_timeout: Duration,
}

fn client_config(args: &Args) -> Result<rustls::ClientConfig> {
    let identity = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => Some(Identity { cert, key }),
        _ => None,
    };
    let alpn: Vec<&str> = args.alpn.iter().map(String::as_str).collect();
    tls::client_config(&args.ca, identity, &alpn)
}

async fn handshake(t: &Target) -> Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(t.addr).await.context("connect")?;
    tcp.set_nodelay(true).context("TCP_NODELAY")?;
    t.connector.connect(t.name.clone(), tcp).await.context("TLS handshake")
}

/// One connection from connect to close; updates the counters.
async fn connection(t: Arc<Target>, s: Arc<Shared>) {
    let started = Instant::now();
    s.pending.fetch_add(1, Relaxed);
    let r = tokio::time::timeout(t.handshake_timeout, handshake(&t)).await;
    s.pending.fetch_sub(1, Relaxed);
    let mut tls = match r {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return s.fail(format!("{e:#}")),
        Err(_) => return s.fail(format!("no handshake within {:?}", t.handshake_timeout)),
    };
    s.handshakes.fetch_add(1, Relaxed);
    push(&s.handshake_ms, started.elapsed().as_secs_f64() * 1000.0);
    if t.then == Then::Close {
        let _ = tls.shutdown().await;
        return;
    }
    s.open.fetch_add(1, Relaxed);
    let established = Instant::now();
    match t.then {
        Then::Close => {}
        Then::Idle => idle(&mut tls).await,
        Then::Request => request(tls, &t, &s).await,
        Then::Trickle => trickle(&mut tls, &t).await,
    }
    // Only a server close ends the three behaviours above (the tool's own
    // stop exits the process with the tasks still running).
    s.open.fetch_sub(1, Relaxed);
    s.server_closed.fetch_add(1, Relaxed);
    push(&s.server_close_s, established.elapsed().as_secs_f64());
}

/// Reads until the server closes (it may send session tickets or an alert first).
async fn idle(tls: &mut TlsStream<TcpStream>) {
    let mut buf = [0u8; 512];
    while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {}
}

async fn request(tls: TlsStream<TcpStream>, t: &Target, s: &Shared) {
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake::<_, Empty<bytes::Bytes>>(TokioIo::new(tls)).await else { return };
    let conn = async move {
        let _ = conn.await;
    };
    tokio::pin!(conn);
    let req = hyper::Request::get(&t.path).header(hyper::header::HOST, &t.host).body(Empty::new()).expect("a valid request");
    let started = Instant::now();
    let exchange = async {
        let resp = sender.send_request(req).await.ok()?;
        resp.into_body().collect().await.ok()
    };
    tokio::select! {
        done = exchange => {
            if done.is_some() {
                push(&s.request_ms, started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        () = &mut conn => return,
    }
    // Keep-alive: hold the connection until the server closes it.
    conn.await;
}

/// A request head that never ends: the request line and Host, then a header
/// value that grows by one byte per pause.
async fn trickle(tls: &mut TlsStream<TcpStream>, t: &Target) {
    let head = format!("GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tls-clients\r\nX-Trickle: ", t.path, t.host).into_bytes();
    let mut buf = [0u8; 512];
    let mut next = 0usize;
    loop {
        tokio::select! {
            r = tls.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                // An error response (408) before the close: keep reading to the EOF.
                Ok(_) => continue,
            },
            () = tokio::time::sleep(t.trickle_every) => {
                let byte = head.get(next).copied().unwrap_or(b'a');
                next += 1;
                if tls.write_all(&[byte]).await.is_err() || tls.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// One report line on stdout. A reader that went away (closed pipe) is
/// not an error worth a panic: the run is bounded and ends by itself.
fn print(line: &Line) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{}", line.to_json());
}

async fn run(args: Args) -> Result<()> {
    if !(args.rate.is_finite() && args.rate > 0.0) {
        bail!("--rate {}: must be a number of connections per second above 0", args.rate);
    }
    if !args.path.starts_with('/') {
        bail!("--path {:?}: must start with /", args.path);
    }
    // With --then close only the handshakes in flight hold a socket.
    let in_flight = if args.then == Then::Close { (args.rate * args.handshake_timeout.as_secs_f64()).ceil() as u64 + 1 } else { args.conns };
    // stdio, the runtime's epoll and eventfd, slack.
    sys::raise_nofile(in_flight.min(args.conns) + 32).map_err(|e| anyhow::anyhow!("--conns {}: {e:#}", args.conns))?;
    let name = args.server_name.clone().unwrap_or_else(|| args.connect.ip().to_string());
    let name = ServerName::try_from(name.clone()).with_context(|| format!("--server-name {name:?} is not a DNS name or IP address"))?;
    let host = match &name {
        ServerName::IpAddress(_) => args.connect.to_string(),
        other => other.to_str().into_owned(),
    };
    let target = Arc::new(Target {
        addr: args.connect,
        name,
        connector: TlsConnector::from(Arc::new(client_config(&args)?)),
        then: args.then,
        host,
        path: args.path.clone(),
        trickle_every: args.trickle_every,
        handshake_timeout: args.handshake_timeout,
    });
    let shared = Arc::new(Shared::default());
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + args.duration;
    let mut stdin_closed = std::pin::pin!(async {
        if !args.until_stdin_closes {
            return std::future::pending().await;
        }
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 64];
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
    });
    let mut progress = tokio::time::interval(args.progress_every);
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Pacing: one connection per 1/rate; a late loop does not catch up by
    // more than a short burst.
    let gap = Duration::from_secs_f64(1.0 / args.rate);
    let mut next_launch = Instant::now();
    let mut launched = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = progress.tick() => print(&Line::Progress(shared.progress(started))),
            () = tokio::time::sleep_until(deadline) => break,
            () = &mut stdin_closed => break,
        }
        while tasks.try_join_next().is_some() {}
        let active = shared.open.load(Relaxed) + shared.pending.load(Relaxed);
        // Without --reopen (and with --then close) the run ends when every
        // connection has been made and has ended.
        if (args.then == Then::Close || !args.reopen) && launched == args.conns && tasks.is_empty() {
            break;
        }
        let now = Instant::now();
        next_launch = next_launch.max(now.checked_sub(Duration::from_millis(20)).unwrap_or(now));
        let mut budget = active;
        while next_launch <= now && budget < args.conns && (args.reopen || launched < args.conns) {
            tasks.spawn(connection(target.clone(), shared.clone()));
            launched += 1;
            budget += 1;
            next_launch += gap;
        }
    }
    print(&Line::Summary(shared.summary(started)));
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // One thread: a process per few thousand connections is plenty, and its
    // CPU use stays easy to account for.
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tls-clients: error: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tls-clients: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
