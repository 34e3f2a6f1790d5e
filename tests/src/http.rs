//! A deliberately tiny blocking HTTP/1.1 client for tests: one request per
//! connection, so each request is a new TCP flow (what L4 balancing sees),
//! in plain text or over TLS (rustls, verifying the server against a CA).

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    sync::Arc,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName};

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

/// `POST path` with a JSON `body` on a new connection to `addr` (the
/// backend simulator's control endpoint takes these).
pub fn post_json(addr: SocketAddr, path: &str, body: &str, timeout: Duration) -> Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
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
        let raw = read_response(&mut self.stream, true).with_context(|| format!("response from {}", self.addr))?;
        parse(&raw)
    }
}

/// Reads one response: the head, then Content-Length bytes of body, or
/// (`keep_alive` false, no Content-Length) everything until the peer closes.
fn read_response(stream: &mut impl Read, keep_alive: bool) -> Result<Vec<u8>> {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        anyhow::ensure!(raw.len() < 16384, "response headers too long");
        stream.read_exact(&mut byte).context("reading response headers")?;
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).into_owned();
    let length = head.lines().find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()));
    match length {
        Some(n) => {
            let n: usize = n.parse().with_context(|| format!("bad Content-Length {n:?}"))?;
            let start = raw.len();
            raw.resize(start + n, 0);
            stream.read_exact(&mut raw[start..]).context("reading the response body")?;
        }
        None if keep_alive => bail!("response without Content-Length on a kept-alive connection"),
        // A TLS peer that closes without close_notify ends the body too.
        None => match stream.read_to_end(&mut raw) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {}
            Err(e) => return Err(e).context("reading the response body"),
        },
    }
    Ok(raw)
}

/// What [`get_tls`] trusts and checks: a CA and the name the server's
/// certificate must carry (also sent as SNI). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Tls {
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
}

impl Tls {
    /// Trusts the certificates in the PEM file `ca` and expects `server_name`.
    pub fn new(ca: &Path, server_name: &str) -> Result<Tls> {
        Tls::build(ca, server_name, None)
    }

    /// Like [`Tls::new`], also presenting the client certificate `cert`
    /// (PEM chain) with its private key `key` (for servers requiring mTLS).
    pub fn with_client_cert(ca: &Path, server_name: &str, cert: &Path, key: &Path) -> Result<Tls> {
        Tls::build(ca, server_name, Some((cert, key)))
    }

    fn build(ca: &Path, server_name: &str, client: Option<(&Path, &Path)>) -> Result<Tls> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("reading CA certificates from {}", ca.display()))? {
            roots.add(cert.with_context(|| format!("parsing {}", ca.display()))?).with_context(|| format!("adding a CA from {}", ca.display()))?;
        }
        // The provider alb uses (one crypto provider in the workspace).
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config =
            rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().context("TLS versions")?.with_root_certificates(roots);
        let config = match client {
            None => config.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .with_context(|| format!("reading the client certificate {}", cert.display()))?
                    .collect::<Result<Vec<_>, _>>()
                    .with_context(|| format!("parsing {}", cert.display()))?;
                let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading the client key {}", key.display()))?;
                config.with_client_auth_cert(chain, key).context("client certificate and key")?
            }
        };
        let server_name = ServerName::try_from(server_name.to_owned()).with_context(|| format!("bad TLS server name {server_name:?}"))?;
        Ok(Tls { config: Arc::new(config), server_name })
    }
}

/// `GET path` over TLS (HTTP/1.1) on a new connection to `addr`, with
/// `Connection: close`: a new TCP flow and a full handshake per request.
pub fn get_tls(addr: SocketAddr, tls: &Tls, path: &str, timeout: Duration) -> Result<Response> {
    let tcp = TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connecting to {addr}"))?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let conn = rustls::ClientConnection::new(tls.config.clone(), tls.server_name.clone()).context("TLS client")?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    let host = match &tls.server_name {
        ServerName::DnsName(name) => name.as_ref().to_owned(),
        _ => addr.to_string(),
    };
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").with_context(|| format!("TLS handshake or request to {addr}"))?;
    let raw = read_response(&mut stream, false).with_context(|| format!("response from {addr}"))?;
    parse(&raw).with_context(|| format!("response from {addr}"))
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
