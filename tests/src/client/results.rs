//! What the client simulator counts, per kind: clients started, completed,
//! failed by [`Reason`], cancelled at the end of the run, latency samples
//! (p50/p99 by nearest rank, [`crate::tls_clients::Dist`]), and for `https`
//! the statuses, backends, client identities and protocols seen. A
//! [`Recorder`] collects while the run goes; [`Report`] is the JSON the
//! `lab-client` binary prints every second (`--live-json`) and at the end
//! (`--json`), shared with its readers so both sides use one definition.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::kind::Kind;
use crate::tls_clients::Dist;

/// Why a client failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// The TCP connect failed other than by a refusal (no route, unreachable, connect timeout).
    Connect,
    /// Refused (RST to the SYN), reset, or closed by the other side before the exchange ended.
    RefusedReset,
    /// An answer did not arrive within `--timeout`.
    Timeout,
    /// An answer that is not the expected one (wrong ACK, `ERR`, bad HTTP, the ALPN protocol asked not agreed).
    Protocol,
    /// An HTTP status outside 200..=299.
    HttpStatus,
    /// The TLS handshake failed or TLS broke later (certificate refused, alert).
    Tls,
}

impl Reason {
    pub const ALL: [Reason; 6] = [Reason::Connect, Reason::RefusedReset, Reason::Timeout, Reason::Protocol, Reason::HttpStatus, Reason::Tls];

    pub fn name(self) -> &'static str {
        match self {
            Reason::Connect => "connect",
            Reason::RefusedReset => "refused_reset",
            Reason::Timeout => "timeout",
            Reason::Protocol => "protocol",
            Reason::HttpStatus => "http_status",
            Reason::Tls => "tls",
        }
    }
}

/// A failed client: the reason counted, and a message kept as an example.
#[derive(Debug)]
pub struct Failure {
    pub reason: Reason,
    pub detail: String,
}

impl Failure {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Failure {
        Failure { reason, detail: detail.into() }
    }
}

/// Latency samples kept per kind; beyond it, reservoir sampling keeps a
/// uniform sample of them all, so a long run stays bounded in memory and
/// its percentiles unbiased.
const MAX_SAMPLES: usize = 100_000;
/// Distinct failure messages kept per kind (the rest only counted).
const MAX_ERRORS: usize = 16;

#[derive(Default)]
struct Tally {
    started: u64,
    completed: u64,
    cancelled: u64,
    failed: BTreeMap<Reason, u64>,
    exchanges: u64,
    bytes_sent: u64,
    closed_by_peer: u64,
    seen_samples: u64,
    samples: Vec<f64>,
    status: BTreeMap<String, u64>,
    backends: BTreeMap<String, u64>,
    identities: BTreeMap<String, u64>,
    protocols: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn sample(&mut self, ms: f64, rng: &mut fastrand::Rng) {
        self.seen_samples += 1;
        if self.samples.len() < MAX_SAMPLES {
            self.samples.push(ms);
        } else {
            // Algorithm R: the n-th sample replaces a kept one with probability MAX/n.
            let slot = rng.u64(0..self.seen_samples) as usize;
            if slot < MAX_SAMPLES {
                self.samples[slot] = ms;
            }
        }
    }

    fn report(&self) -> KindReport {
        let dist = Dist::of(&mut self.samples.clone());
        let done = self.completed + self.cancelled + self.failed.values().sum::<u64>();
        let mut errors: Vec<(String, u64)> = self.errors.iter().map(|(k, v)| (k.clone(), *v)).collect();
        errors.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        errors.truncate(5);
        KindReport {
            started: self.started,
            active: self.started - done,
            completed: self.completed,
            failed: Reason::ALL.iter().map(|r| (r.name().to_owned(), self.failed.get(r).copied().unwrap_or(0))).collect(),
            cancelled: self.cancelled,
            exchanges: self.exchanges,
            bytes_sent: self.bytes_sent,
            closed_by_peer: self.closed_by_peer,
            samples: self.seen_samples,
            p50_ms: round3(dist.p50),
            p99_ms: round3(dist.p99),
            status: self.status.clone(),
            backends: self.backends.clone(),
            identities: self.identities.clone(),
            protocols: self.protocols.clone(),
            errors,
        }
    }
}

fn round3(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// Collects every client's outcome; shared by the client tasks.
pub struct Recorder {
    start: Instant,
    inner: Mutex<(BTreeMap<Kind, Tally>, fastrand::Rng)>,
}

impl Recorder {
    /// A recorder listing `kinds` (even before any of them started).
    pub fn new(kinds: &[Kind]) -> Arc<Recorder> {
        let tallies = kinds.iter().map(|k| (*k, Tally::default())).collect();
        Arc::new(Recorder { start: Instant::now(), inner: Mutex::new((tallies, fastrand::Rng::new())) })
    }

    fn with<R>(&self, kind: Kind, f: impl FnOnce(&mut Tally, &mut fastrand::Rng) -> R) -> R {
        let mut inner = self.inner.lock().unwrap();
        let (tallies, rng) = &mut *inner;
        f(tallies.entry(kind).or_default(), rng)
    }

    /// Counts one client of `kind` as started; its [`Client`] records the rest.
    pub fn start(self: &Arc<Recorder>, kind: Kind) -> Client {
        self.with(kind, |t, _| t.started += 1);
        Client { recorder: self.clone(), kind, finished: false }
    }

    /// Every kind's counters now.
    pub fn report(&self, is_final: bool) -> Report {
        let inner = self.inner.lock().unwrap();
        Report { t_s: round3(self.start.elapsed().as_secs_f64()), is_final, kinds: inner.0.iter().map(|(k, t)| (k.name().to_owned(), t.report())).collect() }
    }
}

/// One running client. Dropped without [`Client::complete`] or
/// [`Client::fail`] (its task was cut at the end of the run), it counts as
/// cancelled.
pub struct Client {
    recorder: Arc<Recorder>,
    kind: Kind,
    finished: bool,
}

impl Client {
    pub fn kind(&self) -> Kind {
        self.kind
    }

    fn with(&self, f: impl FnOnce(&mut Tally, &mut fastrand::Rng)) {
        self.recorder.with(self.kind, f)
    }

    /// One latency sample.
    pub fn latency(&self, d: Duration) {
        self.with(|t, rng| t.sample(d.as_secs_f64() * 1000.0, rng));
    }

    /// One request answered as expected (an ACK, a PONG, an HTTP response).
    pub fn exchange(&self) {
        self.with(|t, _| t.exchanges += 1);
    }

    pub fn sent(&self, bytes: usize) {
        self.with(|t, _| t.bytes_sent += bytes as u64);
    }

    /// The other side closed a connection the client meant to keep open (counted, not a failure).
    pub fn closed_by_peer(&self) {
        self.with(|t, _| t.closed_by_peer += 1);
    }

    /// `https`: one response's status, the backend that served it (if it
    /// said), and the identity alb passed on (`(none)` when the echo showed none).
    pub fn response(&self, status: u16, backend: Option<&str>, identity: Option<&str>) {
        self.with(|t, _| {
            *t.status.entry(status.to_string()).or_default() += 1;
            if let Some(b) = backend {
                *t.backends.entry(b.to_owned()).or_default() += 1;
            }
            if let Some(i) = identity {
                *t.identities.entry(i.to_owned()).or_default() += 1;
            }
        });
    }

    /// `https`: the protocol a connection agreed (`h2`, `http/1.1`).
    pub fn protocol(&self, name: &str) {
        self.with(|t, _| *t.protocols.entry(name.to_owned()).or_default() += 1);
    }

    pub fn complete(mut self) {
        self.finished = true;
        self.with(|t, _| t.completed += 1);
    }

    pub fn fail(mut self, failure: Failure) {
        self.finished = true;
        self.with(|t, _| {
            *t.failed.entry(failure.reason).or_default() += 1;
            if t.errors.len() < MAX_ERRORS || t.errors.contains_key(&failure.detail) {
                *t.errors.entry(failure.detail).or_default() += 1;
            }
        });
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if !self.finished {
            self.with(|t, _| t.cancelled += 1);
        }
    }
}

/// One kind's counters. `started = active + completed + cancelled + Σ failed`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KindReport {
    pub started: u64,
    /// Running now.
    pub active: u64,
    pub completed: u64,
    /// Every [`Reason`] by name, zeros included.
    pub failed: BTreeMap<String, u64>,
    /// Still running when the run ended (after its grace period).
    pub cancelled: u64,
    /// Requests answered as expected (ACKs, PONGs, HTTP responses of any status).
    pub exchanges: u64,
    pub bytes_sent: u64,
    /// Connections the other side closed while the client meant to keep them (idle).
    pub closed_by_peer: u64,
    /// Latency samples taken (the percentiles are over them).
    pub samples: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// `https`: responses by status, backend (the echo's `backend`),
    /// client identity (the echo's identity header) and protocol agreed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub status: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub backends: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub identities: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub protocols: BTreeMap<String, u64>,
    /// The most frequent failure messages (at most 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<(String, u64)>,
}

impl KindReport {
    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum()
    }
}

/// Every kind's counters at one moment (`t_s` seconds into the run).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub t_s: f64,
    /// The end-of-run report (the live ones are not).
    #[serde(rename = "final", default)]
    pub is_final: bool,
    pub kinds: BTreeMap<String, KindReport>,
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain data serialises")
    }

    /// The human table (`--live` and the end of a run).
    pub fn table(&self) -> String {
        let mut out = format!(
            "t={:.1}s{}\n{:<16} {:>8} {:>7} {:>9} {:>7} {:>9} {:>9} {:>9}  failures\n",
            self.t_s,
            if self.is_final { " (final)" } else { "" },
            "kind",
            "started",
            "active",
            "completed",
            "failed",
            "cancelled",
            "p50_ms",
            "p99_ms"
        );
        for (name, k) in &self.kinds {
            let failures: Vec<String> = k.failed.iter().filter(|(_, n)| **n > 0).map(|(r, n)| format!("{r}={n}")).collect();
            let _ = writeln!(
                out,
                "{name:<16} {:>8} {:>7} {:>9} {:>7} {:>9} {:>9.2} {:>9.2}  {}",
                k.started,
                k.active,
                k.completed,
                k.failed_total(),
                k.cancelled,
                k.p50_ms,
                k.p99_ms,
                failures.join(" ")
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounting_adds_up_and_percentiles_rank() {
        let rec = Recorder::new(&[Kind::Real, Kind::Https, Kind::Idle]);
        for ms in 1..=100u64 {
            let c = rec.start(Kind::Real);
            c.latency(Duration::from_millis(ms));
            c.exchange();
            match ms % 10 {
                0 => c.fail(Failure::new(Reason::Timeout, "no ACK within 1s")),
                1 => c.fail(Failure::new(Reason::RefusedReset, "reset")),
                2 => drop(c),
                _ => c.complete(),
            }
        }
        let running = rec.start(Kind::Real);
        let h = rec.start(Kind::Https);
        h.protocol("h2");
        h.response(200, Some("be1"), Some("CN=client1"));
        h.response(503, Some("be2"), None);
        h.fail(Failure::new(Reason::HttpStatus, "status 503"));

        let r = rec.report(false);
        let real = &r.kinds["real"];
        assert_eq!((real.started, real.active, real.completed, real.cancelled), (101, 1, 70, 10));
        assert_eq!((real.failed["timeout"], real.failed["refused_reset"], real.failed["tls"], real.failed_total()), (10, 10, 0, 20));
        assert_eq!(real.started, real.active + real.completed + real.cancelled + real.failed_total());
        assert_eq!((real.samples, real.p50_ms, real.p99_ms, real.exchanges), (100, 50.0, 99.0, 100));
        assert_eq!(real.errors, vec![("no ACK within 1s".to_owned(), 10), ("reset".to_owned(), 10)]);
        let https = &r.kinds["https"];
        assert_eq!((https.status["200"], https.status["503"], https.backends["be2"], https.identities["CN=client1"], https.protocols["h2"]), (1, 1, 1, 1, 1));
        assert_eq!(r.kinds["idle"], KindReport { failed: Reason::ALL.iter().map(|r| (r.name().to_owned(), 0)).collect(), ..Default::default() });

        // The JSON round-trips; the https-only maps are absent for other kinds.
        let text = r.to_json();
        assert_eq!(serde_json::from_str::<Report>(&text).unwrap(), r);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(v["kinds"]["real"].get("status").is_none() && v["kinds"]["https"]["status"]["503"] == 1, "{v}");
        assert_eq!(v["final"], false);
        let table = r.table();
        assert!(table.lines().any(|l| l.starts_with("real") && l.contains("refused_reset=10 timeout=10")), "{table}");
        drop(running);
        assert_eq!(rec.report(true).kinds["real"].cancelled, 11);
    }

    #[test]
    fn the_reservoir_stays_bounded() {
        let rec = Recorder::new(&[Kind::Stream]);
        let c = rec.start(Kind::Stream);
        for i in 0..(MAX_SAMPLES as u64 + 5000) {
            c.latency(Duration::from_micros(i % 1000));
        }
        c.complete();
        let r = &rec.report(true).kinds["stream"];
        assert_eq!(r.samples, MAX_SAMPLES as u64 + 5000);
        assert!(rec.inner.lock().unwrap().0[&Kind::Stream].samples.len() == MAX_SAMPLES);
        assert!((0.4..0.6).contains(&r.p50_ms), "{r:?}");
    }
}
