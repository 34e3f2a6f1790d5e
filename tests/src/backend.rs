//! The lab backend: an HTTP server that says who it is, plus a UDP echo.
//!
//! `/health` answers `200 ok`; every other path answers `200 <name>\n` with an
//! `x-backend: <name>` header, so tests can see which backend served a
//! request. UDP datagrams on the same address are echoed back prefixed with
//! `<name>:`. Tests and `cargo xtask run` start it in each backend namespace.

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, UdpSocket};

/// The TCP/UDP port the lab's backends listen on.
pub const PORT: u16 = 8080;

fn respond(name: &str, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let body = if req.uri().path() == "/health" { "ok\n".to_owned() } else { format!("{name}\n") };
    Response::builder()
        .header("x-backend", name)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

async fn serve_http(name: Arc<str>, listener: TcpListener) -> Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let name = name.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let resp = respond(&name, &req);
                async move { Ok::<_, Infallible>(resp) }
            });
            // Client resets are normal in load tests; nothing to report.
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

async fn serve_udp(name: Arc<str>, socket: UdpSocket) -> Result<()> {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, peer) = socket.recv_from(&mut buf).await?;
        let mut reply = format!("{name}:").into_bytes();
        reply.extend_from_slice(&buf[..n]);
        socket.send_to(&reply, peer).await?;
    }
}

/// Serves HTTP and UDP echo on every address until an error or the task is dropped.
pub async fn run(name: &str, addrs: &[SocketAddr]) -> Result<()> {
    let name: Arc<str> = Arc::from(name);
    let mut tasks = tokio::task::JoinSet::new();
    for addr in addrs {
        let tcp = TcpListener::bind(addr).await.with_context(|| format!("binding TCP {addr}"))?;
        let udp = UdpSocket::bind(addr).await.with_context(|| format!("binding UDP {addr}"))?;
        tasks.spawn(serve_http(name.clone(), tcp));
        tasks.spawn(serve_udp(name.clone(), udp));
    }
    eprintln!("lab-backend {name}: serving HTTP and UDP echo on {addrs:?}");
    match tasks.join_next().await {
        Some(result) => result.context("server task panicked")?,
        None => Ok(()),
    }
}
