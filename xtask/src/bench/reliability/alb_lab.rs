//! The lab of the alb cases: one backend (`lab-backend`), alb (release
//! build, default worker threads) in the lb namespace on the demo
//! certificate's lab address, clients in the client namespace.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::{Context as _, Result};
use xdplb_tests::{
    lab::{Host, Lab},
    sys,
    tls_clients::Summary,
};

use super::{clients::Clients, proc::Mem, Case, Ctx};

/// Most idle connections one `tls-clients` process holds (well inside the
/// 20,000 open-files limit per process).
pub const IDLE_PER_PROCESS: u32 = 2_500;
use crate::bench::{cases, stage};

pub struct AlbLab {
    pub lab: Lab,
    pub certs: certgen::DemoFiles,
    pub alb_pid: u32,
    /// alb's TLS listener.
    pub addr: SocketAddr,
    pub work: PathBuf,
    tls_clients: PathBuf,
}

impl AlbLab {
    /// Lab, backend and alb with `extra` YAML appended to the config
    /// (e.g. `timeouts: { idle: 15m }`).
    pub fn up(ctx: &Ctx, case: Case, extra: &str) -> Result<AlbLab> {
        let work = ctx.work(case)?;
        let alb = ctx.bin("alb")?;
        let tls_clients = ctx.bin("tls-clients")?;
        let demo = certgen::demo(work.join("certs"), &certgen::DemoOptions { force: true, ..Default::default() }).context("certgen demo")?;
        let certs = demo.files;
        let mut lab = Lab::up_unique("xr", 1)?;
        super::say(case, format!("lab {} up", lab.name()));
        lab.start_backends()?;
        // The demo server certificate names this address.
        let addr = SocketAddr::new(cases::tls_ip(cases::Lb::Alb), cases::TLS_PORT);
        let lb_ns = lab.ns(Host::Lb);
        sys::ip(&["-n", &lb_ns, "addr", "add", &format!("{}/32", addr.ip()), "dev", "lo"])?;
        // Many connections from one client address.
        xdplb_tests::netns::run_in(&lab.ns(Host::Client), || {
            std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", "1024 65535").context("widening the client's port range")
        })?;
        let config = work.join("alb.yaml");
        let yaml = format!(
            "listen: [\"{addr}\"]\nprotocol: https\ncert_location: {}\nkey_location: {}\nbackend_servers:\n  - http://{}\nmtls: {{ mode: off }}\n\
health: {{ enabled: false }}\npassive_health: {{ enabled: false }}\nadmin: {{ enabled: false }}\nreload: {{ poll_interval: 0 }}\n\
limits: {{ rate_limit_rps: 0 }}\n{extra}",
            certs.server_cert.display(),
            certs.server_key.display(),
            lab.backend_addr(1, false),
        );
        std::fs::write(&config, yaml).with_context(|| format!("writing {}", config.display()))?;
        let env = std::path::Path::new("/usr/bin/env");
        let args = ["RUST_LOG=warn,rustls=error".to_string(), alb.display().to_string(), "--config".into(), config.display().to_string()];
        let alb_pid = lab.spawn_logged(Host::Lb, "alb", env, &args, &work.join("alb.log"))?;
        stage::wait_tcp(&mut lab, Host::Client, addr, Duration::from_secs(20)).context("waiting for alb")?;
        super::say(case, format!("alb up on {addr} (pid {alb_pid}, log {})", work.join("alb.log").display()));
        Ok(AlbLab { lab, certs, alb_pid, addr, work, tls_clients })
    }

    pub fn alb_mem(&mut self) -> Result<Mem> {
        self.lab.check_children()?;
        Mem::of(self.alb_pid)
    }

    /// Starts `tls-clients --connect <alb> --ca <demo CA> args…` in the client namespace.
    pub fn clients(&self, label: &str, args: &[String]) -> Result<Clients> {
        let mut all = vec!["--connect".to_string(), self.addr.to_string(), "--ca".into(), self.certs.ca_cert.display().to_string()];
        all.extend_from_slice(args);
        Clients::start(&self.lab.ns(Host::Client), &self.tls_clients, label, &all)
    }

    /// Starts `tls-clients` processes that open `n` idle connections in all
    /// (handshake, then nothing until their stdin closes), at most
    /// [`IDLE_PER_PROCESS`] each (the open-files limit is per process), at
    /// about `total_rate` per second together; labels `{label}-{i}` with
    /// `i` from `first`. Returns the processes and their combined rate.
    pub fn open_idle(&self, n: u32, total_rate: u32, label: &str, first: usize) -> Result<(Vec<Clients>, u32)> {
        if n == 0 {
            return Ok((Vec::new(), total_rate.max(1)));
        }
        let procs = n.div_ceil(IDLE_PER_PROCESS);
        let rate = (total_rate / procs).max(1);
        let mut holders = Vec::new();
        for i in 0..procs {
            let conns = n / procs + u32::from(i < n % procs);
            let args: Vec<String> = [
                "--conns",
                &conns.to_string(),
                "--rate",
                &rate.to_string(),
                "--then",
                "idle",
                "--until-stdin-closes",
                "--duration",
                "30m",
                "--progress-every",
                "1s",
            ]
            .map(String::from)
            .to_vec();
            holders.push(self.clients(&format!("{label}-{}", first + i as usize), &args)?);
        }
        Ok((holders, rate * procs))
    }

    /// New clients' handshake times: `conns` connections at `rate` per
    /// second, each closed right after its handshake.
    pub fn handshake_probe(&self, label: &str, conns: u32, rate: u32) -> Result<Summary> {
        let args: Vec<String> = ["--conns", &conns.to_string(), "--rate", &rate.to_string(), "--then", "close", "--duration", "5m"].map(String::from).to_vec();
        // It ends by itself once every connection was made.
        self.clients(label, &args)?.finish(Duration::from_secs(u64::from(conns / rate.max(1)) + 60))
    }
}
