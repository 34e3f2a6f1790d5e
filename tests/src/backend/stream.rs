//! The raw TCP greeter and the UDP echo of the mock backend.

use anyhow::Result;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
};

/// `<name>\n` on connect, then every byte back until EOF.
pub(super) async fn greet_echo(name: &str, mut tcp: TcpStream) {
    if tcp.write_all(format!("{name}\n").as_bytes()).await.is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    while let Ok(n) = tcp.read(&mut buf).await {
        if n == 0 || tcp.write_all(&buf[..n]).await.is_err() {
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
