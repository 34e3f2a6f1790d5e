//! The `/metrics` HTTP endpoint both `lb-user attach` (the BPF counters,
//! read from the pins on each scrape: `crate::exporter`) and `lb-user proxy`
//! (its own registry) serve: one request per connection, `GET /metrics` only.

use std::{sync::Arc, time::Duration};

use prometheus::{Encoder as _, Registry, TextEncoder};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// The registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = Vec::new();
    // Encoding gathered families into a Vec cannot fail.
    let _ = TextEncoder::new().encode(&registry.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Serves `GET /metrics` (HTTP/1.x, one request per connection) until the
/// task is aborted.
pub async fn serve(listener: TcpListener, registry: Registry) {
    serve_with(listener, Arc::new(move || Ok(render(&registry)))).await
}

/// Produces the `/metrics` body on each request; `Err` is answered with a
/// 500 and the message (e.g. the XDP program is not attached).
pub type MetricsBody = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// [`serve`] with a body computed per request (shared with
/// `crate::exporter`, which reads the pinned BPF maps on every scrape).
pub async fn serve_with(listener: TcpListener, body: MetricsBody) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let body = body.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(10), respond(stream, &body)).await;
                });
            }
            Err(e) => {
                log::warn!("metrics endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn respond(mut stream: TcpStream, source: &MetricsBody) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > 16 * 1024 {
            return Ok(());
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = buf.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let (status, ctype, body) = match (method, path) {
        (b"GET", b"/metrics") => match source() {
            Ok(text) => ("200 OK", prometheus::TEXT_FORMAT, text),
            Err(e) => ("500 Internal Server Error", "text/plain", format!("{e}\n")),
        },
        (b"GET", _) => ("404 Not Found", "text/plain", "not found; try /metrics\n".to_owned()),
        _ => ("405 Method Not Allowed", "text/plain", "only GET\n".to_owned()),
    };
    let head = format!("HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
