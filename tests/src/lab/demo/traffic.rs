//! The demo's load: the client simulator (`lab-client`, docs/simulators.md)
//! in the client namespace, raw-TCP kinds against the echo VIP and `https`
//! (with the tier's client certificate) against the TLS VIP. Its
//! `--live-json` lines (one per second, per-kind counters) are read on a
//! thread; its `--json` file is the final report.

use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::topology::Topology;
use crate::{
    lab::{
        alb_tier::SERVER_NAME,
        chain::{ECHO_VIP, TLS_VIP},
        Host,
    },
    workspace,
};

/// The default mix of client kinds (weights).
pub const DEFAULT_MIX: &str = "real=4,fire_and_forget=1,stream=1,idle=1,slow=1,https=4";

/// How hard to drive.
#[derive(Clone, Debug)]
pub struct Load {
    /// New clients per second.
    pub rate: u32,
    pub mix: String,
    pub max_concurrent: u32,
    /// Where the raw-TCP kinds connect (the echo VIP; `--compare` points
    /// it at each path in turn).
    pub tcp_target: std::net::SocketAddr,
}

impl Default for Load {
    fn default() -> Load {
        Load { rate: 20, mix: DEFAULT_MIX.to_owned(), max_concurrent: 200, tcp_target: ECHO_VIP }
    }
}

/// A running client simulator.
pub struct ClientSim {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, serde_json::Value)>>>,
    reader: Option<JoinHandle<()>>,
    json: PathBuf,
    _dir: tempfile::TempDir,
}

impl ClientSim {
    /// Starts `lab-client` in the client namespace for `duration`.
    pub fn start(topo: &Topology, load: &Load, duration: Duration) -> Result<ClientSim> {
        let binary = workspace::binary("lab-client")?;
        let dir = tempfile::Builder::new().prefix("xdplb-demo-client-").tempdir().context("creating the client's directory")?;
        let json = dir.path().join("client.json");
        let (cert, key, _) = topo.client_identity()?;
        let tier = &topo.chain.tier;
        let max_total = u64::from(load.rate) * duration.as_secs().max(1) + 100;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &topo.chain.lab.ns(Host::Client)]).arg(&binary);
        cmd.arg("--tcp-target").arg(load.tcp_target.to_string());
        cmd.arg("--https-target").arg(TLS_VIP.to_string());
        cmd.args(["--sni", SERVER_NAME, "--path", "/echo"]);
        cmd.arg("--ca").arg(tier.ca_cert()).arg("--cert").arg(&cert).arg("--key").arg(&key);
        cmd.args(["--mix", &load.mix, "--rate", &load.rate.to_string()]);
        cmd.args(["--duration", &format!("{}ms", duration.as_millis())]);
        cmd.args(["--max-concurrent", &load.max_concurrent.to_string(), "--max-total", &max_total.to_string()]);
        cmd.arg("--live-json").arg("--json").arg(&json);
        // Own process group: Ctrl-C reaches the orchestrator only, which
        // stops the client itself.
        // Its own messages (start line, final table) go to a log, not over the live view.
        let log = std::fs::File::create(dir.path().join("client.log")).context("creating the client's log")?;
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log).process_group(0);
        let mut child = cmd.spawn().with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().context("the client's stdout")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // Only JSON objects are reports; anything else is ignored
                // here (the client's messages go to stderr).
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if v.is_object() {
                        sink.lock().unwrap().push((Instant::now(), v));
                    }
                }
            }
        });
        Ok(ClientSim { child, lines, reader: Some(reader), json, _dir: dir })
    }

    /// The latest live report.
    pub fn latest(&self) -> Option<serde_json::Value> {
        self.lines.lock().unwrap().last().map(|(_, v)| v.clone())
    }

    /// Whether it has exited (its `--duration` is over).
    pub fn finished(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Waits (at most `grace`) for it to end on its own, else stops it
    /// (SIGINT, then SIGKILL), and returns its final report (the `--json`
    /// file; the last live line if it wrote none).
    pub fn finish(mut self, grace: Duration) -> Result<serde_json::Value> {
        let deadline = Instant::now() + grace;
        while !self.finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if !self.finished() {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(3);
            while !self.finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let status = self.child.wait().context("reaping lab-client")?;
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        match std::fs::read_to_string(&self.json) {
            Ok(text) => serde_json::from_str(&text).with_context(|| format!("lab-client's --json file {}", self.json.display())),
            Err(_) => self.latest().with_context(|| format!("lab-client ({status}) wrote neither --json nor a live report")),
        }
    }
}

impl Drop for ClientSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
