//! The access log (`access_log:` in the config, docs/alb.md): one JSON line
//! per request, written when the response has been sent (or the client went
//! away), so the line has the whole duration and the bytes sent.
//!
//! Cost on the request path: nothing when it is off (`State::access_log`
//! is `None`, no record is made). When on, a [`Record`] of cheap clones
//! travels with the response body and is handed to a writer thread over a
//! bounded channel; the JSON is formatted there, into a buffered writer
//! that is flushed whenever the queue runs empty (so lines batch under
//! load and appear at once when idle). A full queue drops the line and
//! counts it (`alb_access_log_dropped_total`): a slow disk never stalls
//! requests.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::http::uri::PathAndQuery;
use hyper::{Method, Version};
use prometheus::IntCounter;
use serde::Serialize;

use crate::config::{AccessLogConfig, AccessLogTarget};
use crate::pool::{Backend, Pool};
use crate::trace::TraceParent;

/// Lines waiting for the writer; beyond this they are dropped and counted.
const QUEUE: usize = 16 * 1024;

/// An open access log: the writer thread and its queue. Dropping the last
/// handle closes the queue; the thread writes what is queued, flushes and
/// ends, and the drop waits for that.
pub struct AccessLog {
    tx: Option<SyncSender<Record>>,
    dropped: IntCounter,
    thread: Option<JoinHandle<()>>,
}

impl AccessLog {
    /// Opens the file (appending) or standard output and starts the writer.
    pub fn open(cfg: &AccessLogConfig, dropped: IntCounter) -> anyhow::Result<AccessLog> {
        let out: Box<dyn Write + Send> = match cfg.target() {
            AccessLogTarget::Stdout => Box::new(std::io::stdout()),
            AccessLogTarget::File(p) => {
                Box::new(OpenOptions::new().create(true).append(true).open(p).with_context(|| format!("access_log.path: cannot open {}", p.display()))?)
            }
        };
        let where_ = cfg.path.display().to_string();
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("alb-access-log".into())
            .spawn(move || write_lines(rx, BufWriter::with_capacity(64 * 1024, out), &where_))
            .context("starting the access log's writer thread")?;
        Ok(AccessLog { tx: Some(tx), dropped, thread: Some(thread) })
    }

    fn send(&self, r: Record) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(r) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_lines(rx: Receiver<Record>, mut w: BufWriter<Box<dyn Write + Send>>, where_: &str) {
    let mut failing = false;
    let mut line = Vec::with_capacity(512);
    while let Ok(first) = rx.recv() {
        let mut result = Ok(());
        for r in std::iter::once(first).chain(rx.try_iter()) {
            line.clear();
            r.write_json(&mut line);
            result = result.and(w.write_all(&line));
        }
        let result = result.and_then(|()| w.flush());
        match (result, failing) {
            (Err(e), false) => {
                log::error!("access log {where_}: cannot write: {e}");
                failing = true;
            }
            (Ok(()), true) => {
                log::info!("access log {where_}: writing again");
                failing = false;
            }
            _ => {}
        }
    }
    let _ = w.flush();
}

/// One request's facts, filled in as it goes through alb; logged by the
/// [`Logged`] response body when that ends or is dropped.
pub struct Record {
    time: SystemTime,
    start: Instant,
    client: SocketAddr,
    identity: Option<String>,
    method: Method,
    path: Option<PathAndQuery>,
    version: Version,
    pub pool: Option<Arc<Pool>>,
    /// The backend that answered (none: alb answered itself).
    pub backend: Option<Arc<Backend>>,
    /// Time from sending to the backend's response headers (last attempt).
    pub upstream: Option<Duration>,
    pub trace: Option<TraceParent>,
    /// Request body bytes, counted by [`Counted`].
    pub bytes_in: Arc<AtomicU64>,
    status: u16,
    bytes_out: u64,
    total: Duration,
}

impl Record {
    pub fn new(client: SocketAddr, identity: Option<&str>, method: &Method, path: Option<&PathAndQuery>, version: Version) -> Record {
        Record {
            time: SystemTime::now(),
            start: Instant::now(),
            client,
            identity: identity.map(str::to_owned),
            method: method.clone(),
            path: path.cloned(),
            version,
            pool: None,
            backend: None,
            upstream: None,
            trace: None,
            bytes_in: Arc::new(AtomicU64::new(0)),
            status: 0,
            bytes_out: 0,
            total: Duration::ZERO,
        }
    }

    fn write_json(&self, out: &mut Vec<u8>) {
        let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        let trace = self.trace.as_ref();
        let line = Line {
            time: rfc3339_millis(self.time),
            client: SocketAddr::new(self.client.ip().to_canonical(), self.client.port()),
            identity: self.identity.as_deref(),
            method: self.method.as_str(),
            path: self.path.as_ref().map_or("/", PathAndQuery::as_str),
            protocol: match self.version {
                Version::HTTP_10 => "HTTP/1.0",
                Version::HTTP_11 => "HTTP/1.1",
                Version::HTTP_2 => "HTTP/2",
                _ => "other",
            },
            pool: self.pool.as_deref().map(|p| p.name.as_str()),
            backend: self.backend.as_deref().map(|b| b.id.as_str()),
            status: self.status,
            duration_ms: ms(self.total),
            upstream_ms: self.upstream.map(ms),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out,
            trace_id: trace.map(TraceParent::trace_id),
            traceparent: trace.map(TraceParent::value),
            trace_origin: trace.map(|t| t.origin.as_str()),
        };
        // Serializing plain strings and numbers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &line);
        out.push(b'\n');
    }
}

/// The JSON line; docs/alb.md lists the fields.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    client: SocketAddr,
    identity: Option<&'a str>,
    method: &'a str,
    path: &'a str,
    protocol: &'a str,
    pool: Option<&'a str>,
    backend: Option<&'a str>,
    status: u16,
    duration_ms: f64,
    upstream_ms: Option<f64>,
    bytes_in: u64,
    bytes_out: u64,
    trace_id: Option<&'a str>,
    traceparent: Option<&'a str>,
    trace_origin: Option<&'a str>,
}

/// `2026-12-02T17:30:05.123Z`: UTC, milliseconds. Written out here (days
/// to a civil date, H. Hinnant's algorithm) rather than pulling in a date
/// crate for one format.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (secs, millis) = (d.as_secs(), d.subsec_millis());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// A request body that counts its data bytes into a shared counter.
pub struct Counted<B> {
    inner: B,
    bytes: Arc<AtomicU64>,
}

impl<B> Counted<B> {
    pub fn new(inner: B, bytes: Arc<AtomicU64>) -> Counted<B> {
        Counted { inner, bytes }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r {
            if let Some(d) = f.data_ref() {
                self.bytes.fetch_add(d.len() as u64, Ordering::Relaxed);
            }
        }
        r
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The response body sent to the client; counts its bytes and logs the
/// record when dropped (hyper drops it after the last frame, or when the
/// client goes away).
pub struct Logged<B> {
    inner: B,
    record: Option<Record>,
    log: Arc<AccessLog>,
}

impl<B> Logged<B> {
    pub fn new(inner: B, mut record: Record, status: u16, log: Arc<AccessLog>) -> Logged<B> {
        record.status = status;
        Logged { inner, record: Some(record), log }
    }
}

impl<B> Drop for Logged<B> {
    fn drop(&mut self) {
        if let Some(mut r) = self.record.take() {
            r.total = r.start.elapsed();
            self.log.send(r);
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for Logged<B> {
    type Data = Bytes;
    type Error = B::Error;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r {
            if let (Some(d), Some(rec)) = (f.data_ref(), self.record.as_mut()) {
                rec.bytes_out += d.len() as u64;
            }
        }
        r
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        let at = |s: u64, ms: u64| rfc3339_millis(UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z"); // a leap day
        assert_eq!(at(1_764_696_605, 123), "2025-12-02T17:30:05.123Z");
        assert_eq!(at(4_102_444_799, 999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn a_record_is_one_json_line_with_every_field() {
        let path = PathAndQuery::from_static("/a?b=%22c\\");
        let mut r = Record::new("[::ffff:198.18.0.2]:40000".parse().unwrap(), Some("CN=client1"), &Method::POST, Some(&path), Version::HTTP_2);
        r.bytes_in.store(7, Ordering::Relaxed);
        r.status = 201;
        r.bytes_out = 9;
        r.total = Duration::from_micros(1500);
        let mut out = Vec::new();
        r.write_json(&mut out);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(out.ends_with(b"\n"));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["client"], "198.18.0.2:40000", "IPv4-mapped peers are shown as IPv4");
        assert_eq!(
            (v["identity"].as_str(), v["method"].as_str(), v["path"].as_str(), v["protocol"].as_str()),
            (Some("CN=client1"), Some("POST"), Some("/a?b=%22c\\"), Some("HTTP/2"))
        );
        assert_eq!(
            (v["status"].as_u64(), v["bytes_in"].as_u64(), v["bytes_out"].as_u64(), v["duration_ms"].as_f64()),
            (Some(201), Some(7), Some(9), Some(1.5))
        );
        for null in ["pool", "backend", "upstream_ms", "trace_id", "traceparent", "trace_origin"] {
            assert!(v[null].is_null(), "{null}: {v}");
        }
    }
}
