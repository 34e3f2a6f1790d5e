//! The `https` kind: one TLS connection (ALPN `h2` and/or `http/1.1`,
//! optionally a client certificate), a random number of `GET --path`
//! requests on it, one latency sample per request (sent → body read).
//! Each response's status is counted; with the backend simulator's `/echo`
//! JSON body, so are the backend that served it and the client identity
//! the TLS tier passed on in its identity header (alb's
//! `x-client-identity`), which is how a run shows mTLS working end to end.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::{client::conn, Request};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::time::Instant;
use tokio_rustls::{client::TlsStream, TlsConnector};

use super::{
    kind::Count,
    net::{connect, io_failure},
    results::{Client, Failure, Reason},
};

/// Which protocols a connection offers in ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    /// `h2, http/1.1`: the server picks (the default).
    Both,
    /// Only `h2`; a server that does not agree it is a protocol failure.
    H2,
    /// Only `http/1.1`.
    H1,
    /// Each client offers only `h2` or only `http/1.1`, half of them each.
    Mix,
}

/// How the `https` kind behaves (the `lab-client` flags of the same names).
pub struct HttpsParams {
    pub target: SocketAddr,
    /// The name sent as SNI and verified in the server certificate; also the `Host`.
    pub server_name: ServerName<'static>,
    pub alpn: Alpn,
    pub path: String,
    /// Requests per connection.
    pub requests: Count,
    /// The echo header that carries the client identity.
    pub identity_header: String,
    /// Connect, handshake and every response within this.
    pub timeout: Duration,
    /// TLS setups offering `h2, http/1.1`, only `h2`, only `http/1.1`.
    pub both: TlsConnector,
    pub h2: TlsConnector,
    pub h1: TlsConnector,
}

impl HttpsParams {
    /// The setups for each ALPN choice from one client config (CA, client certificate).
    pub fn connectors(config: &rustls::ClientConfig) -> [TlsConnector; 3] {
        [&["h2", "http/1.1"][..], &["h2"], &["http/1.1"]].map(|alpn| {
            let mut cfg = config.clone();
            cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
            TlsConnector::from(Arc::new(cfg))
        })
    }

    fn host(&self) -> String {
        match &self.server_name {
            ServerName::IpAddress(_) => self.target.to_string(),
            name => name.to_str().into_owned(),
        }
    }
}

/// Runs one `https` client to its end and records it.
pub(super) async fn run(p: &HttpsParams, client: Client) {
    match session(p, &client).await {
        Ok(()) => client.complete(),
        Err(f) => client.fail(f),
    }
}

/// The reason a hyper error counts as: TLS or I/O underneath, a
/// connection closed mid-exchange, or else a protocol failure.
fn hyper_failure(what: &str, e: &hyper::Error) -> Failure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io_failure(what, io);
        }
        if s.downcast_ref::<rustls::Error>().is_some() {
            return Failure::new(Reason::Tls, format!("{what}: {e}"));
        }
        source = s.source();
    }
    let reason = if e.is_incomplete_message() || e.is_canceled() || e.is_closed() { Reason::RefusedReset } else { Reason::Protocol };
    Failure::new(reason, format!("{what}: {e}"))
}

async fn handshake(p: &HttpsParams) -> Result<(TlsStream<tokio::net::TcpStream>, bool), Failure> {
    let tcp = connect(p.target, p.timeout).await?;
    let (connector, want_h2) = match p.alpn {
        Alpn::Both => (&p.both, None),
        Alpn::H2 => (&p.h2, Some(true)),
        Alpn::H1 => (&p.h1, Some(false)),
        Alpn::Mix if fastrand::bool() => (&p.h2, Some(true)),
        Alpn::Mix => (&p.h1, Some(false)),
    };
    let tls = match tokio::time::timeout(p.timeout, connector.connect(p.server_name.clone(), tcp)).await {
        Err(_) => return Err(Failure::new(Reason::Timeout, format!("TLS handshake: none within {:?}", p.timeout))),
        Ok(Err(e)) => {
            let mut f = io_failure("TLS handshake", &e);
            // A handshake the server cuts is still a TLS failure to the user.
            if f.reason == Reason::RefusedReset {
                f.reason = Reason::Tls;
            }
            return Err(f);
        }
        Ok(Ok(tls)) => tls,
    };
    let agreed = tls.get_ref().1.alpn_protocol().map(|a| String::from_utf8_lossy(a).into_owned());
    let h2 = agreed.as_deref() == Some("h2");
    if want_h2 == Some(true) && !h2 {
        return Err(Failure::new(Reason::Protocol, format!("offered only h2, the server agreed {agreed:?}")));
    }
    Ok((tls, h2))
}

/// A sender of either protocol over one connection.
enum Sender {
    H1(conn::http1::SendRequest<Empty<Bytes>>),
    H2(conn::http2::SendRequest<Empty<Bytes>>),
}

impl Sender {
    async fn send(&mut self, req: Request<Empty<Bytes>>) -> hyper::Result<hyper::Response<hyper::body::Incoming>> {
        match self {
            Sender::H1(s) => s.send_request(req).await,
            Sender::H2(s) => s.send_request(req).await,
        }
    }
}

async fn session(p: &HttpsParams, client: &Client) -> Result<(), Failure> {
    let (tls, h2) = handshake(p).await?;
    client.protocol(if h2 { "h2" } else { "http/1.1" });
    let io = TokioIo::new(tls);
    let host = p.host();
    type Driver = std::pin::Pin<Box<dyn std::future::Future<Output = hyper::Result<()>> + Send>>;
    let (mut sender, driver): (Sender, Driver) = if h2 {
        let (s, c) = conn::http2::handshake(TokioExecutor::new(), io).await.map_err(|e| hyper_failure("h2 handshake", &e))?;
        (Sender::H2(s), Box::pin(c))
    } else {
        let (s, c) = conn::http1::handshake(io).await.map_err(|e| hyper_failure("HTTP/1.1 handshake", &e))?;
        (Sender::H1(s), Box::pin(c))
    };
    // The connection task ends when the sender is dropped (or the server closes).
    let mut driver = tokio::spawn(driver);
    let mut result = requests(p, client, &mut sender, &host, h2).await;
    drop(sender);
    // A request cut by a dead connection only says "canceled" or "closed":
    // the connection's own error says why when it read the TLS alert (a
    // client certificate refused after the handshake, as TLS 1.3 does it).
    // When its first write met the closed socket before it read the alert
    // (h2 writes its preface at once) the alert is lost: refused_reset.
    if let Err(f) = &mut result {
        if f.reason == Reason::RefusedReset {
            if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_millis(200), &mut driver).await {
                let cause = hyper_failure("connection", &e);
                if cause.reason == Reason::Tls {
                    *f = Failure::new(Reason::Tls, format!("{}; {}", f.detail, cause.detail));
                }
            }
        }
    }
    driver.abort();
    result
}

async fn requests(p: &HttpsParams, client: &Client, sender: &mut Sender, host: &str, h2: bool) -> Result<(), Failure> {
    let n = p.requests.pick(&mut fastrand::Rng::new());
    for i in 1..=n {
        let what = format!("GET {} ({i} of {n})", p.path);
        // h2 takes :authority from the URI; HTTP/1.1 the Host header.
        let req = if h2 { Request::get(format!("https://{host}{}", p.path)) } else { Request::get(&p.path).header(hyper::header::HOST, host) };
        let req = req.body(Empty::new()).map_err(|e| Failure::new(Reason::Protocol, format!("{what}: {e}")))?;
        let sent = Instant::now();
        let exchange = async {
            let resp = sender.send(req).await.map_err(|e| hyper_failure(&what, &e))?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map_err(|e| hyper_failure(&what, &e))?.to_bytes();
            Ok::<_, Failure>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(p.timeout, exchange)
            .await
            .map_err(|_| Failure::new(Reason::Timeout, format!("{what}: no response within {:?}", p.timeout)))??;
        client.latency(sent.elapsed());
        client.exchange();
        let (backend, identity) = echo_fields(&parts.headers, &body, &p.identity_header);
        let status = parts.status.as_u16();
        client.response(status, backend.as_deref(), identity.as_deref());
        if !parts.status.is_success() {
            return Err(Failure::new(Reason::HttpStatus, format!("{what}: status {status}")));
        }
    }
    Ok(())
}

/// The backend and the identity a response shows: from the `/echo` JSON
/// body (`backend`, `headers[identity_header]`, `(none)` without one), or
/// else the backend from the `x-backend` header and no identity.
fn echo_fields(headers: &hyper::HeaderMap, body: &[u8], identity_header: &str) -> (Option<String>, Option<String>) {
    let from_header = headers.get("x-backend").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let Ok(serde_json::Value::Object(echo)) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (from_header, None);
    };
    let backend = echo.get("backend").and_then(|b| b.as_str()).map(str::to_owned).or(from_header);
    let identity = echo.get("headers").and_then(|h| h.as_object()).map(|h| h.get(identity_header).and_then(|v| v.as_str()).unwrap_or("(none)").to_owned());
    (backend, identity)
}

#[cfg(test)]
mod tests {
    use super::echo_fields;

    #[test]
    fn echo_bodies_give_backend_and_identity() {
        let mut h = hyper::HeaderMap::new();
        h.insert("x-backend", "be9".parse().unwrap());
        let echo = br#"{"backend":"be1","headers":{"x-client-identity":"CN=client1"},"body_len":0}"#;
        assert_eq!(echo_fields(&h, echo, "x-client-identity"), (Some("be1".into()), Some("CN=client1".into())));
        let anonymous = br#"{"backend":"be1","headers":{"host":"x"}}"#;
        assert_eq!(echo_fields(&h, anonymous, "x-client-identity"), (Some("be1".into()), Some("(none)".into())));
        assert_eq!(echo_fields(&h, b"be9\n", "x-client-identity"), (Some("be9".into()), None));
        assert_eq!(echo_fields(&hyper::HeaderMap::new(), b"[1]", "x-client-identity"), (None, None));
    }
}
