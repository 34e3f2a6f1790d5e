//! `proxy.runtime`, `per_core`: every runtime accepts on its own
//! `SO_REUSEPORT` listener of a VIP and carries what it accepted, so with
//! the first runtime's thread blocked the second still answers the
//! connections the kernel gave its listener (and the first answers its own
//! once unblocked); a reload reaches VIPs on every runtime; a given
//! listener without `SO_REUSEPORT` is refused by name.

use std::time::Duration;

use lb_common::userspace::runtime::{bind_reuseport, RuntimeConfig, Runtimes, Scheduler};
use lb_user::{
    config::Config,
    proxy::{Proxy, ProxyOptions},
};

use crate::proxy_support::*;

fn yaml(port: u16, backend: &Backend) -> String {
    config_yaml(
        &[VipSpec { name: "web", port, algorithm: "round_robin", backends: &[backend], health_check: "" }],
        "proxy: { runtime: { workers: 2, scheduler: per_core } }\n",
    )
}

fn per_core(workers: usize) -> Runtimes {
    Runtimes::start(&RuntimeConfig { workers, scheduler: Scheduler::PerCore }, "proxy-test").unwrap()
}

fn options(runtimes: &Runtimes, listener: std::net::TcpListener) -> ProxyOptions {
    ProxyOptions {
        listeners: [("web".to_owned(), listener)].into(),
        connect_timeout: Duration::from_millis(500),
        workers: runtimes.workers().to_vec(),
        ..ProxyOptions::default()
    }
}

/// 64 connections, a thread each (std, blocking): the greeting each got,
/// sent on `tx` as it arrives.
fn connect_all(vip: std::net::SocketAddr, tx: std::sync::mpsc::Sender<std::io::Result<String>>) {
    use std::io::BufRead as _;
    for _ in 0..64 {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let got = (|| {
                let s = std::net::TcpStream::connect_timeout(&vip, IO_TIMEOUT)?;
                s.set_read_timeout(Some(Duration::from_secs(10)))?;
                let mut line = String::new();
                std::io::BufReader::new(s).read_line(&mut line)?;
                Ok(line.trim_end().to_owned())
            })();
            let _ = tx.send(got);
        });
    }
}

#[test]
fn per_core_runtimes_each_accept_and_a_reload_reaches_them_all() {
    // The backends run on a runtime of their own, so blocking the proxy's
    // first runtime below blocks nothing but the proxy.
    let backends = tokio::runtime::Runtime::new().unwrap();
    let (a, b) = {
        let _in = backends.enter();
        (greeter("a"), greeter("b"))
    };
    let runtimes = per_core(2);
    runtimes.block_on(async {
        // The given listener has SO_REUSEPORT, so the second runtime can
        // bind its own on the same port.
        let given = bind_reuseport("127.0.0.1:0".parse().unwrap(), 128).unwrap().into_std().unwrap();
        let port = given.local_addr().unwrap().port();
        let config = Config::parse(&yaml(port, &a), "test.yaml").unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = Proxy::start(config, options(&runtimes, given), async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
        let vip = handle.local_addr("web").unwrap();

        // This thread is the first runtime: while it blocks here, only the
        // second runtime's listener and connections move. The kernel puts
        // about half of the 64 connections on each listener.
        let (tx, rx) = std::sync::mpsc::channel();
        connect_all(vip, tx);
        let first = rx.recv_timeout(Duration::from_secs(10)).expect("no connection answered while the first runtime was blocked");
        assert_eq!(first.expect("the first answer"), "a");
        // Unblocked, the first runtime serves the ones queued on its listener.
        let rest: Vec<String> = tokio::task::spawn_blocking(move || (1..64).map(|_| rx.recv().unwrap().unwrap()).collect()).await.unwrap();
        assert!(rest.iter().all(|n| n == "a"), "{rest:?}");

        // A reload that moves the VIP to backend b (and asks for other
        // threads, which only warns) applies on both runtimes' listeners.
        let moved = yaml(port, &b).replace("workers: 2", "workers: 3");
        handle.reload(Config::parse(&moved, "test.yaml").unwrap()).await.unwrap();
        let clients: Vec<_> = (0..64).map(|_| tokio::spawn(request("127.0.0.1", vip))).collect();
        for (i, c) in clients.into_iter().enumerate() {
            assert_eq!(c.await.unwrap().unwrap_or_else(|e| panic!("connection {i} after the reload: {e}")), "b");
        }
        let _ = stop.send(());
        handle.wait().await.unwrap();
    });
    drop((a, b));
}

#[test]
fn per_core_refuses_a_given_listener_without_so_reuseport() {
    let runtimes = per_core(2);
    let (given, port) = reserve();
    let err = runtimes.block_on(async {
        let a = greeter("a");
        let config = Config::parse(&yaml(port, &a), "test.yaml").unwrap();
        Proxy::start(config, options(&runtimes, given), std::future::pending()).await.err().expect("a plain given listener must be refused")
    });
    let text = format!("{err:#}");
    assert!(text.contains("VIP web") && text.contains("SO_REUSEPORT") && text.contains(&port.to_string()), "{text}");
}
