//! `lab-backend` (the workspace's one mock backend) in the lab's backend
//! namespaces: start, stop like a crash, start again.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};

use super::{addr, Host, Lab};
use crate::{sys, workspace};

impl Lab {
    /// Starts `lab-backend` in every backend namespace and waits until each
    /// answers `/health` from the lb namespace (at most 10 s).
    pub fn start_backends(&mut self) -> Result<()> {
        self.start_backends_also_on(&[])
    }

    /// Like [`Lab::start_backends`], each backend also listening on `extra`
    /// addresses (e.g. a DSR VIP it holds on loopback).
    pub fn start_backends_also_on(&mut self, extra: &[SocketAddr]) -> Result<()> {
        let all: Vec<u8> = (1..=self.backends).collect();
        self.start_backends_on(&all, extra)
    }

    /// Starts `lab-backend` only in backend namespaces `ids` (the others can
    /// host something else, e.g. alb), each also listening on `extra`, and
    /// waits until each answers.
    pub fn start_backends_on(&mut self, ids: &[u8], extra: &[SocketAddr]) -> Result<()> {
        self.start_backends_with_echo(ids, extra, &[])
    }

    /// Like [`Lab::start_backends_on`], each backend also serving the
    /// REQ/ACK line echo on `echo` addresses (long-lived TCP connections).
    pub fn start_backends_with_echo(&mut self, ids: &[u8], extra: &[SocketAddr], echo: &[SocketAddr]) -> Result<()> {
        if let Some(bad) = ids.iter().find(|i| !(1..=self.backends).contains(*i)) {
            bail!("lab {:?} has backends 1..={}, not {bad}", self.name, self.backends);
        }
        for &i in ids {
            self.spawn_backend(i, extra, echo)?;
        }
        for &i in ids {
            self.wait_backend(i)?;
        }
        Ok(())
    }

    /// Puts a DSR VIP on every backend's loopback (with the ARP settings that
    /// keep backends from answering for it on the segment). Call before
    /// [`Lab::start_backends_also_on`] so the backends can listen on it.
    pub fn add_dsr_vip(&self, vip: IpAddr) -> Result<()> {
        if !addr::is_lab_address(vip) {
            bail!("{vip} is outside the lab ranges");
        }
        let prefix = if vip.is_ipv4() { 32 } else { 128 };
        for i in 1..=self.backends {
            let ns = self.ns(Host::Backend(i));
            sys::ip(&["-n", &ns, "addr", "add", &format!("{vip}/{prefix}"), "dev", "lo"])?;
            for (key, value) in [("arp_ignore", "1"), ("arp_announce", "2")] {
                let path = format!("/proc/sys/net/ipv4/conf/all/{key}");
                crate::netns::run_in(&ns, move || std::fs::write(&path, value).with_context(|| format!("writing {path}")))?;
            }
        }
        Ok(())
    }

    /// More `lab-backend` arguments (e.g. `--tcp-echo 0.0.0.0:9000`) for
    /// every backend started from now on, restarts included.
    pub fn set_backend_args(&mut self, args: &[&str]) {
        self.backend_args = args.iter().map(|a| (*a).to_owned()).collect();
    }

    /// The tracked-child label of backend `i`'s server.
    pub fn backend_label(i: u8) -> String {
        format!("backend be{i}")
    }

    fn spawn_backend(&mut self, i: u8, extra: &[SocketAddr], echo: &[SocketAddr]) -> Result<()> {
        let binary = workspace::binary("lab-backend")?;
        let mut args = vec![
            "--name".into(),
            format!("be{i}"),
            "--listen".into(),
            self.backend_addr(i, false).to_string(),
            "--listen".into(),
            self.backend_addr(i, true).to_string(),
        ];
        for a in extra {
            args.push("--listen".into());
            args.push(a.to_string());
        }
        for a in echo {
            args.push("--tcp-echo".into());
            args.push(a.to_string());
        }
        args.extend(self.backend_args.iter().cloned());
        self.spawn(Host::Backend(i), &Lab::backend_label(i), &binary, &args)?;
        Ok(())
    }

    fn wait_backend(&mut self, i: u8) -> Result<()> {
        for v6 in [false, true] {
            let addr = self.backend_addr(i, v6);
            self.wait_http_ready(Host::Lb, addr, Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Stops backend `i`'s server (SIGKILL: it vanishes like a crashed process).
    pub fn stop_backend(&mut self, i: u8) -> Result<()> {
        self.kill(&Lab::backend_label(i))
    }

    /// Starts backend `i`'s server again and waits until it answers.
    pub fn start_backend(&mut self, i: u8) -> Result<()> {
        self.start_backends_with_echo(&[i], &[], &[])
    }
}
