//! Shared helpers of the `api_*` tests: the real supervisor and control API
//! over a stand-in for the attachment, no root needed.
//!
//! The stand-in ([`Fake`]) builds the same map contents as the real
//! attachment (`Desired::build`: ids, Maglev tables, round-robin lists) but
//! keeps them instead of writing BPF maps, so a test can look at what the
//! data path would do: which backends are in a VIP's Maglev table. Live
//! flows and counters are whatever the test sets.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use hyper::Method;
use lb_common::{lb::NO_BACKEND, userspace::watch::ConfigFile};
use lb_user::{
    api::client,
    config::Config,
    desired::{Desired, IdBook},
    health::HealthSnapshot,
    neighbours::Neighbours,
    stats::Report,
    supervisor::{Command, Supervisor, Tables},
};
use serde_json::Value;
use tokio::sync::mpsc;

/// What the stand-in holds, shared with the test.
pub struct Seen {
    pub config: Config,
    pub desired: Desired,
    /// Table rebuilds so far (reloads and health changes).
    pub rebuilds: usize,
    /// Live flows per (VIP, backend); backends not listed have `default_flows`.
    pub flows: BTreeMap<(String, SocketAddr), u64>,
    pub default_flows: u64,
    pub counters: Report,
}

pub struct Fake {
    ids: IdBook,
    health: HealthSnapshot,
    ifaces: Vec<String>,
    seen: Arc<Mutex<Seen>>,
    config: Config,
}

impl Fake {
    fn new(config: Config) -> (Fake, Arc<Mutex<Seen>>) {
        let mut ids = IdBook::default();
        let health = HealthSnapshot::all_up(&config);
        let desired = Desired::build(&config, &mut ids, &|_, _| true).unwrap();
        let seen =
            Arc::new(Mutex::new(Seen { config: config.clone(), desired, rebuilds: 0, flows: BTreeMap::new(), default_flows: 1, counters: Report::default() }));
        let ifaces = config.interfaces.iter().map(|i| i.name.clone()).collect();
        (Fake { ids, health, ifaces, seen: seen.clone(), config }, seen)
    }

    fn rebuild(&mut self, config: &Config, health: &HealthSnapshot) -> Result<()> {
        let mut ids = self.ids.clone();
        let desired = Desired::build(config, &mut ids, &|v, b| health.is_up(v, b))?;
        self.ids = ids;
        self.health = health.clone();
        self.config = config.clone();
        let mut seen = self.seen.lock().unwrap();
        seen.config = config.clone();
        seen.desired = desired;
        seen.rebuilds += 1;
        Ok(())
    }
}

impl Tables for Fake {
    fn ifaces(&self) -> &[String] {
        &self.ifaces
    }
    fn config(&self) -> Option<&Config> {
        Some(&self.config)
    }
    fn reload(&mut self, config: &Config, health: &HealthSnapshot) -> Result<()> {
        self.rebuild(config, health)
    }
    fn set_health(&mut self, health: &HealthSnapshot) -> Result<()> {
        let config = self.config.clone();
        self.rebuild(&config, health)
    }
    fn live_flows(&mut self) -> Result<BTreeMap<(String, SocketAddr), u64>> {
        let seen = self.seen.lock().unwrap();
        let all = self.config.vips.iter().flat_map(|v| v.backends.iter().map(|b| (v.name.clone(), b.socket_addr())));
        Ok(all.map(|k| (k.clone(), seen.flows.get(&k).copied().unwrap_or(seen.default_flows))).collect())
    }
    fn ids(&self) -> Vec<(u32, Vec<u32>)> {
        self.seen.lock().unwrap().desired.vips.iter().map(|v| (v.info.vip_id, v.backend_ids.clone())).collect()
    }
    fn counters(&self) -> Result<Report> {
        Ok(self.seen.lock().unwrap().counters.clone())
    }
    fn detach(self) -> Result<()> {
        Ok(())
    }
}

/// `interfaces: [lo]`, a Maglev size, `extra` top-level YAML and `api` on
/// an ephemeral loopback port, then `vips` (YAML list items).
pub fn yaml(extra: &str, vips: &str) -> String {
    format!("interfaces: [{{ name: lo }}]\nmaglev: {{ size: 251 }}\napi: {{ listen: \"127.0.0.1:0\" }}\n{extra}\nvips:\n{vips}")
}

/// Two NAT VIPs: `web` (Maglev, backends 127.0.0.1:{11,12}) and `rr`.
pub fn two_vips(extra: &str) -> String {
    yaml(
        extra,
        "  - { name: web, address: 198.18.100.1, port: 80, backends: [{ address: 198.18.1.11, port: 80 }, { address: 198.18.1.12, port: 80 }] }\n  \
         - { name: rr, address: 198.18.100.2, port: 80, algorithm: round_robin, backends: [{ address: 198.18.1.11, port: 81 }] }\n",
    )
}

/// A supervisor on its own thread and runtime, serving the API.
pub struct Harness {
    pub api: SocketAddr,
    pub seen: Arc<Mutex<Seen>>,
    pub file: PathBuf,
    _dir: tempfile::TempDir,
    commands: mpsc::Sender<Command>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Harness {
    pub fn start(yaml: &str) -> Harness {
        Harness::start_edited(yaml, None)
    }

    /// [`Harness::start`], with the file replaced by `edit` (when given)
    /// after the supervisor's config was read from it and before the
    /// supervisor starts: an edit that lands while lb-user attaches.
    pub fn start_edited(yaml: &str, edit: Option<&str>) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lb.yaml");
        std::fs::write(&file, yaml).unwrap();
        let config_file = ConfigFile::new(&file);
        let config = Config::from_file(&file).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        if let Some(y) = edit {
            let tmp = file.with_extension("tmp");
            std::fs::write(&tmp, y).unwrap();
            std::fs::rename(&tmp, &file).unwrap();
        }
        let (fake, seen) = Fake::new(config);
        let (tx, rx) = mpsc::channel(16);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let commands = tx.clone();
        let thread = std::thread::spawn(move || -> Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let supervisor = Supervisor::new(fake, Some(config_file), Neighbours::new(), commands)?;
                addr_tx.send(supervisor.api_addr().expect("the config has an api block")).unwrap();
                supervisor.run(rx).await
            })
        });
        let api = addr_rx.recv_timeout(Duration::from_secs(10)).expect("the supervisor started");
        Harness { api, seen, file, _dir: dir, commands: tx, thread: Some(thread) }
    }

    /// The API's answer, or its error.
    pub fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        client::call(self.api, method, path, body.as_ref())
    }

    /// Status and message of a refused call.
    pub fn refused(&self, method: Method, path: &str, body: Option<Value>) -> (u16, String) {
        match self.call(method, path, body) {
            Ok(v) => panic!("accepted: {v}"),
            Err(e) => {
                let r = e.downcast_ref::<client::Refused>().unwrap_or_else(|| panic!("not refused by the API: {e:#}"));
                (r.status, r.message.clone())
            }
        }
    }

    pub fn state(&self) -> Value {
        self.call(Method::GET, "/api/state", None).unwrap()
    }

    /// The backend `addr` of `vip` in `GET /api/state`.
    pub fn backend(&self, vip: &str, addr: &str) -> Value {
        let s = self.state();
        let v = s["vips"].as_array().unwrap().iter().find(|v| v["name"] == vip).unwrap_or_else(|| panic!("no vip {vip} in {s}"));
        v["backends"].as_array().unwrap().iter().find(|b| b["address"] == addr).cloned().unwrap_or(Value::Null)
    }

    /// The backends in `vip`'s Maglev table (or round-robin list) as built
    /// by the last rebuild: who gets new flows.
    pub fn in_tables(&self, vip: &str) -> BTreeSet<String> {
        let seen = self.seen.lock().unwrap();
        let (vi, v) = seen.config.vips.iter().enumerate().find(|(_, v)| v.name == vip).unwrap();
        let d = &seen.desired.vips[vi];
        let ids: BTreeSet<u32> = d.maglev.iter().chain(&d.round_robin).copied().filter(|id| *id != NO_BACKEND).collect();
        v.backends.iter().zip(&d.backend_ids).filter(|(_, id)| ids.contains(id)).map(|(b, _)| b.socket_addr().to_string()).collect()
    }

    /// Sets the live flows of a backend (what a conntrack count would say).
    pub fn set_flows(&self, vip: &str, addr: &str, n: u64) {
        self.seen.lock().unwrap().flows.insert((vip.to_owned(), addr.parse().unwrap()), n);
    }

    /// Writes `yaml` (when given) to the file and reloads as SIGHUP does;
    /// returns once the reload was handled (the supervisor answers in order).
    pub fn reload(&self, yaml: Option<&str>) {
        if let Some(y) = yaml {
            let tmp = self.file.with_extension("tmp");
            std::fs::write(&tmp, y).unwrap();
            std::fs::rename(&tmp, &self.file).unwrap();
        }
        self.commands.blocking_send(Command::Reload("test".into())).unwrap();
        self.state();
    }

    /// Polls `f` until it holds (at most `limit`).
    pub fn wait_for(&self, what: &str, limit: Duration, f: impl Fn(&Harness) -> bool) -> Result<()> {
        let deadline = Instant::now() + limit;
        while !f(self) {
            if Instant::now() > deadline {
                bail!("{what}: not within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.commands.blocking_send(Command::Stop("test over".into()));
        if let Some(t) = self.thread.take() {
            let r = t.join();
            if !std::thread::panicking() {
                r.expect("supervisor thread").expect("supervisor run");
            }
        }
    }
}

/// `method path` with a raw `body` on a fresh connection: status and body
/// (for requests the CLI's client cannot make: bad JSON, huge bodies).
pub fn raw(api: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", body.len()).unwrap();
    // The server may answer (413) before reading all of a huge body.
    let _ = s.write_all(body);
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}
