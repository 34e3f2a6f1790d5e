//! The raw TCP greeter and the UDP echo of the mock backend.

use anyhow::Result;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::UdpSocket,
};

use super::conn::Conn;

/// `<name>\n` on connect, then every byte back until EOF; each write waits
/// for the knobs' hang and delay first.
pub(super) async fn greet_echo<S: AsyncRead + AsyncWrite + Unpin>(conn: Conn, mut tcp: S) {
    conn.before_answer().await;
    if tcp.write_all(format!("{}\n", conn.shared.name).as_bytes()).await.is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    while let Ok(n) = tcp.read(&mut buf).await {
        if n == 0 {
            return;
        }
        conn.before_answer().await;
        if tcp.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Answers every datagram with `<name>:<datagram>`.
pub(super) async fn udp_echo(name: String, socket: UdpSocket) -> Result<()> {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, peer) = socket.recv_from(&mut buf).await?;
        let mut reply = format!("{name}:").into_bytes();
        reply.extend_from_slice(&buf[..n]);
        socket.send_to(&reply, peer).await?;
    }
}
