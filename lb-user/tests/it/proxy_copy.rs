//! `proxy.copy`: both copy modes (splice, buffered) forward bulk data both
//! ways across a half-close, count every byte, and end the client's
//! connection when the backend resets it.

use std::time::{Duration, Instant};

use crate::proxy_support::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

const UP: usize = 3 * 1024 * 1024 + 17;
const DOWN: usize = 5 * 1024 * 1024 + 3;

/// A byte pattern that a lost, duplicated or reordered chunk changes.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u64).wrapping_mul(2_654_435_761).wrapping_add(u64::from(seed)).to_le_bytes()[3]).collect()
}

/// The config of one VIP on `port` to the backend listening on `backend`.
fn yaml(port: u16, backend: u16, copy: &str) -> String {
    format!(
        "interfaces: [{{ name: lo }}]\nproxy: {{ copy: {copy} }}\nvips:\n  - name: bulk\n    address: 127.0.0.1\n    port: {port}\n    \
         backends:\n      - {{ address: 127.0.0.1, port: {backend} }}\n"
    )
}

async fn poll_metric(p: &Running, name: &str, labels: &[(&str, &str)], want: f64) {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let got = metric(&p.metrics(), name, labels);
        if got == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{name}{labels:?} is {got:?}, want {want}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The client sends UP bytes and half-closes; the backend reads them to EOF
/// and only then answers DOWN bytes (so the answer crosses a connection whose
/// other direction is closed) and closes.
async fn bulk_both_ways_with_half_close(copy: &str) {
    let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_addr = backend.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = backend.accept().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        s.write_all(&pattern(DOWN, 2)).await.unwrap();
        s.shutdown().await.unwrap();
        got
    });
    let (l, port) = reserve();
    let mut p = start(&yaml(port, b_addr.port(), copy), vec![("bulk", l)], None).await;
    let client = TcpStream::connect(p.vip("bulk")).await.unwrap();
    let (mut rd, mut wr) = client.into_split();
    let up = pattern(UP, 1);
    let sender = tokio::spawn(async move {
        wr.write_all(&up).await.unwrap();
        wr.shutdown().await.unwrap();
        wr
    });
    let mut down = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut down)).await.expect("the answer in time").unwrap();
    let _wr = sender.await.unwrap();
    let got = server.await.unwrap();
    assert!(got.len() == UP && got == pattern(UP, 1), "{copy}: the backend got {} bytes, not the {UP} sent", got.len());
    assert!(down.len() == DOWN && down == pattern(DOWN, 2), "{copy}: the client got {} bytes, not the {DOWN} sent", down.len());
    let b = b_addr.to_string();
    poll_metric(&p, "xdplb_proxy_bytes_total", &[("vip", "bulk"), ("backend", &b), ("direction", "to_backend")], UP as f64).await;
    poll_metric(&p, "xdplb_proxy_bytes_total", &[("vip", "bulk"), ("backend", &b), ("direction", "to_client")], DOWN as f64).await;
    poll_metric(&p, "xdplb_proxy_active_connections", &[("vip", "bulk")], 0.0).await;
    p.stop();
    p.handle.wait().await.unwrap();
}

/// The backend answers a little, then resets: the client sees its
/// connection end (EOF or reset) while it is still sending, and the proxy
/// forgets the connection.
async fn backend_reset_ends_the_client_connection(copy: &str) {
    let backend = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_addr = backend.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut s, _) = backend.accept().await.unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(b"hi\n").await.unwrap();
        s.set_zero_linger().unwrap();
        drop(s);
    });
    let (l, port) = reserve();
    let mut p = start(&yaml(port, b_addr.port(), copy), vec![("bulk", l)], None).await;
    let mut client = TcpStream::connect(p.vip("bulk")).await.unwrap();
    client.write_all(b"hello").await.unwrap();
    server.await.unwrap();
    let mut got = Vec::new();
    let r = tokio::time::timeout(IO_TIMEOUT, client.read_to_end(&mut got)).await.expect("the connection ends after the backend's reset");
    // What arrived before the reset may be delivered or lost with it; the
    // connection ends either way.
    assert!(r.is_ok() || r.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset), "{copy}: {r:?}");
    assert!(b"hi\n".starts_with(&got), "{copy}: {got:?}");
    poll_metric(&p, "xdplb_proxy_active_connections", &[("vip", "bulk")], 0.0).await;
    poll_metric(&p, "xdplb_proxy_bytes_total", &[("vip", "bulk"), ("backend", &b_addr.to_string()), ("direction", "to_backend")], 5.0).await;
    p.stop();
    p.handle.wait().await.unwrap();
}

#[tokio::test]
async fn splice_forwards_bulk_both_ways_with_half_close() {
    bulk_both_ways_with_half_close("splice").await;
}

#[tokio::test]
async fn buffered_forwards_bulk_both_ways_with_half_close() {
    bulk_both_ways_with_half_close("buffered").await;
}

#[tokio::test]
async fn splice_ends_the_client_connection_on_backend_reset() {
    backend_reset_ends_the_client_connection("splice").await;
}

#[tokio::test]
async fn buffered_ends_the_client_connection_on_backend_reset() {
    backend_reset_ends_the_client_connection("buffered").await;
}
