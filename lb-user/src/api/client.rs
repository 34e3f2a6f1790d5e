//! The operator CLI's side of the API: one request per call over a fresh
//! HTTP/1.1 connection, the answer's JSON or a typed error: nothing listens
//! there ([`NotListening`], exit status 69), or the API refused the request
//! ([`Refused`], with its message).

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{client::conn::http1, header, Method};
use hyper_util::rt::TokioIo;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::Value;

/// Connecting, and then the whole exchange, each within this.
pub const TIMEOUT: Duration = Duration::from_secs(15);
/// `GET /api/state` of a large config is well below this.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// Nothing accepted the connection on the API address.
#[derive(Debug, thiserror::Error)]
#[error("no lb-user is listening on {addr} (is lb-user attach running with an api listener? see docs/operations.md)")]
pub struct NotListening {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// The API answered with an error.
#[derive(Debug, thiserror::Error)]
#[error("{message} (HTTP {status})")]
pub struct Refused {
    pub status: u16,
    pub message: String,
}

/// Characters left alone in a path segment: `198.18.1.11:8080` stays
/// readable, `[`, `]`, `/`, `%` and the like are encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'.').remove(b':').remove(b'-').remove(b'_');

/// `/api/vips/{vip}/backends[/{backend}]` with the segments encoded.
pub fn backends_path(vip: &str, backend: Option<SocketAddr>) -> String {
    let mut path = format!("/api/vips/{}/backends", utf8_percent_encode(vip, SEGMENT));
    if let Some(b) = backend {
        path.push('/');
        path.extend(utf8_percent_encode(&b.to_string(), SEGMENT));
    }
    path
}

/// `method path` with a JSON `body` on the API at `api`; the answer's JSON.
pub fn call(api: SocketAddr, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the client's runtime")?;
    runtime.block_on(async {
        let stream = match tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(api)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(NotListening { addr: api, source }.into()),
            Err(_) => anyhow::bail!("connecting to the lb-user API on {api} timed out after {} s", TIMEOUT.as_secs()),
        };
        match tokio::time::timeout(TIMEOUT, exchange(stream, api, method.clone(), path, body)).await {
            Ok(Ok(v)) => Ok(v),
            // The API's own message is the error, not a cause of one.
            Ok(Err(e)) if e.is::<Refused>() => Err(e),
            Ok(Err(e)) => Err(e.context(format!("{method} http://{api}{path}"))),
            Err(_) => anyhow::bail!("{method} http://{api}{path}: no answer within {} s", TIMEOUT.as_secs()),
        }
    })
}

async fn exchange(stream: tokio::net::TcpStream, api: SocketAddr, method: Method, path: &str, body: Option<&Value>) -> Result<Value> {
    let (mut sender, conn) = http1::handshake(TokioIo::new(stream)).await.context("HTTP handshake")?;
    let driver = tokio::spawn(conn);
    let mut request = hyper::Request::builder().method(method).uri(path).header(header::HOST, api.to_string());
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request.body(Full::new(Bytes::from(body.map(Value::to_string).unwrap_or_default()))).context("building the request")?;
    let response = sender.send_request(request).await.context("sending the request")?;
    let status = response.status();
    let bytes = Limited::new(response.into_body(), MAX_ANSWER).collect().await.map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?.to_bytes();
    driver.abort();
    let value: Value =
        serde_json::from_slice(&bytes).with_context(|| format!("the answer (HTTP {}) is not JSON: {:?}", status.as_u16(), String::from_utf8_lossy(&bytes)))?;
    if status.is_success() {
        return Ok(value);
    }
    let message = value["error"].as_str().map_or_else(|| value.to_string(), str::to_owned);
    Err(Refused { status: status.as_u16(), message }.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_encode_what_a_segment_cannot_hold() {
        assert_eq!(backends_path("web", None), "/api/vips/web/backends");
        assert_eq!(backends_path("web", Some("198.18.1.11:8080".parse().unwrap())), "/api/vips/web/backends/198.18.1.11:8080");
        assert_eq!(backends_path("web", Some("[fd00::11]:8080".parse().unwrap())), "/api/vips/web/backends/%5Bfd00::11%5D:8080");
        assert_eq!(backends_path("a/b", None), "/api/vips/a%2Fb/backends");
    }

    #[test]
    fn nothing_listening_is_its_own_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let err = call(port, Method::GET, "/api/state", None).unwrap_err();
        let nl = err.downcast_ref::<NotListening>().expect("NotListening");
        assert_eq!(nl.addr, port);
        assert!(err.to_string().starts_with(&format!("no lb-user is listening on {port} (")), "{err}");
    }
}
