//! A deliberately tiny blocking HTTP/1.1 client for tests: one request per
//! connection, so each request is a new TCP flow (what L4 balancing sees).

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

/// Status code and body of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// `GET path` on a new connection to `addr` with `Connection: close`.
pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).with_context(|| format!("reading response from {addr}"))?;
    parse(&raw).with_context(|| format!("response from {addr}"))
}

fn parse(raw: &[u8]) -> Result<Response> {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("no end of headers in {} bytes", raw.len());
    };
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    match (parts.next(), parts.next().map(str::parse::<u16>)) {
        (Some(v), Some(Ok(status))) if v.starts_with("HTTP/1.") => Ok(Response { status, body: body.to_owned() }),
        _ => bail!("bad status line {status_line:?}"),
    }
}

/// One kept-alive HTTP/1.1 connection for several requests: the same TCP
/// flow throughout, which is what a long-lived connection test needs.
pub struct KeepAlive {
    stream: TcpStream,
    addr: SocketAddr,
}

impl KeepAlive {
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<KeepAlive> {
        let stream = TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(KeepAlive { stream, addr })
    }

    /// `GET path` on this connection; the response must carry Content-Length.
    pub fn get(&mut self, path: &str) -> Result<Response> {
        write!(self.stream, "GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.addr)?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            anyhow::ensure!(head.len() < 16384, "response headers too long");
            self.stream.read_exact(&mut byte).with_context(|| format!("reading response headers from {}", self.addr))?;
            head.push(byte[0]);
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let length = text
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
            .context("response without Content-Length")?
            .parse::<usize>()?;
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body)?;
        let mut raw = head;
        raw.extend_from_slice(&body);
        parse(&raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_and_body() {
        let r = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbe1\n").unwrap();
        assert_eq!(r, Response { status: 200, body: "be1\n".into() });
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse(b"SSH-2.0-x\r\n\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
