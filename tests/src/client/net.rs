//! What every client kind does with its socket: connect within the
//! timeout, read one answer line within the timeout, and turn an I/O error
//! into a counted [`Failure`] reason.

use std::{io, net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncBufReadExt as _, AsyncRead, BufReader},
    net::TcpStream,
};

use super::results::{Failure, Reason};

/// The longest answer line read: the backend's own line limit is 1024 bytes.
const MAX_ANSWER: usize = 2048;

/// A TCP connection with Nagle off (the slow kind's bytes must leave one
/// at a time; the others' lines are small and latency-bound).
pub(super) async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, Failure> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => Err(Failure::new(Reason::Connect, format!("connect to {addr}: no answer within {timeout:?}"))),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => Err(Failure::new(Reason::RefusedReset, format!("connect to {addr}: {e}"))),
        Ok(Err(e)) => Err(Failure::new(Reason::Connect, format!("connect to {addr}: {e}"))),
        Ok(Ok(tcp)) => {
            let _ = tcp.set_nodelay(true);
            Ok(tcp)
        }
    }
}

/// The reason an I/O error after connect counts as: TLS when rustls raised
/// it, a timeout, otherwise the connection was refused, reset or closed.
pub(super) fn io_failure(what: &str, e: &io::Error) -> Failure {
    // tokio-rustls reports TLS errors as InvalidData; h2 re-creates the
    // I/O errors it hands each stream, keeping the kind but not the rustls
    // error inside, so the kind is what survives.
    let tls = e.kind() == io::ErrorKind::InvalidData || e.get_ref().is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some());
    let reason = if tls {
        Reason::Tls
    } else if e.kind() == io::ErrorKind::TimedOut {
        Reason::Timeout
    } else {
        Reason::RefusedReset
    };
    Failure::new(reason, format!("{what}: {e}"))
}

/// One line (without its `\n`/`\r\n`), within `timeout`. The other side
/// closing first is a [`Reason::RefusedReset`] failure.
pub(super) async fn read_line<R: AsyncRead + Unpin>(r: &mut BufReader<R>, timeout: Duration, what: &str) -> Result<String, Failure> {
    let mut line = Vec::with_capacity(16);
    let mut limited = tokio::io::AsyncReadExt::take(&mut *r, MAX_ANSWER as u64);
    let read = limited.read_until(b'\n', &mut line);
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(Failure::new(Reason::Timeout, format!("{what}: no answer within {timeout:?}"))),
        Ok(Err(e)) => Err(io_failure(what, &e)),
        Ok(Ok(0)) => Err(Failure::new(Reason::RefusedReset, format!("{what}: connection closed by the other side"))),
        Ok(Ok(_)) if line.last() != Some(&b'\n') => Err(Failure::new(Reason::Protocol, format!("{what}: an answer that is not a line ({} bytes)", line.len()))),
        Ok(Ok(_)) => {
            let text = String::from_utf8_lossy(&line);
            Ok(text.trim_end_matches(['\n', '\r']).to_owned())
        }
    }
}

/// Checks an answer line against the one expected.
pub(super) fn expect(answer: &str, want: &str, what: &str) -> Result<(), Failure> {
    if answer == want {
        Ok(())
    } else {
        let shown: String = answer.chars().take(80).collect();
        Err(Failure::new(Reason::Protocol, format!("{what}: expected {want:?}, got {shown:?}")))
    }
}
