//! Shared helpers of the `proxy_*` tests: loopback backends that say their
//! name and then echo, clients bound to chosen 127.0.0.0/8 sources, config
//! YAML with the ports bound here, and metric lookups. Everything runs on
//! 127.0.0.0/8 with ephemeral ports; no root needed.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use lb_user::{
    config::Config,
    proxy::{Proxy, ProxyHandle, ProxyOptions},
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpSocket, TcpStream},
    sync::oneshot,
};
pub use xdplb_tests::backend::{Backend, Reply};

pub const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// A backend on 127.0.0.1 (the workspace's one mock backend,
/// `xdplb_tests::backend`): greets every connection with `"{name}\n"`, then
/// echoes until EOF. `stop()` closes the listener (new connects are refused;
/// open connections carry on); `restart()` listens on the same port again.
pub fn greeter(name: &str) -> Backend {
    Backend::builder(name).reply(Reply::GreetEcho).start().unwrap()
}

/// A listener for a VIP on 127.0.0.1 with an ephemeral port.
pub fn reserve() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// One VIP: `name`, the port reserved for it, algorithm and backends.
pub struct VipSpec<'a> {
    pub name: &'a str,
    pub port: u16,
    pub algorithm: &'a str,
    pub backends: &'a [&'a Backend],
    /// Raw YAML for `health_check`, or "" for none.
    pub health_check: &'a str,
}

/// The config YAML: `vips`, then `extra` top-level YAML (allowlist, proxy,
/// metrics...).
pub fn config_yaml(vips: &[VipSpec], extra: &str) -> String {
    let mut y = String::from("interfaces: [{ name: lo }]\nmaglev: { size: 251, seed: 3 }\nvips:\n");
    for v in vips {
        y += &format!("  - name: {}\n    address: 127.0.0.1\n    port: {}\n    algorithm: {}\n    backends:\n", v.name, v.port, v.algorithm);
        for b in v.backends {
            y += &format!("      - {{ address: 127.0.0.1, port: {} }}\n", b.addr.port());
        }
        if !v.health_check.is_empty() {
            y += &format!("    health_check: {}\n", v.health_check);
        }
    }
    y += extra;
    y
}

/// A started proxy and its shutdown trigger.
pub struct Running {
    pub handle: ProxyHandle,
    pub shutdown: Option<oneshot::Sender<()>>,
}

impl Running {
    pub fn vip(&self, name: &str) -> SocketAddr {
        self.handle.local_addr(name).unwrap()
    }

    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    pub fn metrics(&self) -> String {
        self.handle.render_metrics()
    }
}

pub async fn start(yaml: &str, listeners: Vec<(&str, std::net::TcpListener)>, metrics: Option<std::net::TcpListener>) -> Running {
    let config = Config::parse(yaml, "test.yaml").unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let options = ProxyOptions {
        listeners: listeners.into_iter().map(|(n, l)| (n.to_owned(), l)).collect::<HashMap<_, _>>(),
        udp_sockets: HashMap::new(),
        metrics_listener: metrics,
        connect_timeout: Duration::from_millis(500),
        ..ProxyOptions::default()
    };
    let (tx, rx) = oneshot::channel::<()>();
    let handle = Proxy::start(config, options, async move {
        let _ = rx.await;
    })
    .await
    .unwrap();
    Running { handle, shutdown: Some(tx) }
}

/// A connection from `src` (any 127.0.0.0/8 address) through the proxy;
/// `Ok` with the greeting line once the backend answered, `Err` when the
/// proxy refused or closed it.
pub async fn open(src: &str, vip: SocketAddr) -> std::io::Result<(BufReader<TcpStream>, String)> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(src.parse::<IpAddr>().unwrap(), 0))?;
    let stream = tokio::time::timeout(IO_TIMEOUT, socket.connect(vip)).await??;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let n = tokio::time::timeout(IO_TIMEOUT, reader.read_line(&mut line)).await??;
    if n == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed by the proxy"));
    }
    Ok((reader, line.trim_end().to_owned()))
}

/// One request on a new connection: the name of the backend that answered.
pub async fn request(src: &str, vip: SocketAddr) -> std::io::Result<String> {
    open(src, vip).await.map(|(_, name)| name)
}

/// Sends `msg` and reads the echo.
pub async fn echo(conn: &mut BufReader<TcpStream>, msg: &str) -> std::io::Result<String> {
    conn.get_mut().write_all(format!("{msg}\n").as_bytes()).await?;
    let mut line = String::new();
    let n = tokio::time::timeout(IO_TIMEOUT, conn.read_line(&mut line)).await??;
    if n == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
    }
    Ok(line.trim_end().to_owned())
}

/// The value of the sample `name{labels}` in a Prometheus text exposition
/// (labels in any order; the sample must have exactly these labels).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
        if n != name {
            return None;
        }
        let body = rest.strip_suffix('}')?;
        let mut have: Vec<String> = if body.is_empty() { vec![] } else { body.split(',').map(str::to_owned).collect() };
        let mut want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        have.sort();
        want.sort();
        (have == want).then(|| value.parse().ok()).flatten()
    })
}
