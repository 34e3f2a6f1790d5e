//! The lab's tracked child processes: started inside a host's namespace,
//! found again by label (to kill one the way a crash would, or to read its
//! memory), and stopped when the lab goes down.

use std::{
    fs::OpenOptions,
    net::SocketAddr,
    os::unix::process::CommandExt,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use super::{Host, Lab};

impl Lab {
    /// Starts `program args…` inside `host`'s namespace as a tracked child,
    /// stopped when the lab goes down. `label` names it in errors.
    pub fn spawn(&mut self, host: Host, label: &str, program: &Path, args: &[String]) -> Result<u32> {
        self.spawn_with(host, label, program, args, None)
    }

    /// Like [`Lab::spawn`], with the child's stdout and stderr appended to
    /// `log` (created if missing), so a test can read what it said and a
    /// restarted process adds to the same file.
    pub fn spawn_logged(&mut self, host: Host, label: &str, program: &Path, args: &[String], log: &Path) -> Result<u32> {
        self.spawn_with(host, label, program, args, Some(log))
    }

    fn spawn_with(&mut self, host: Host, label: &str, program: &Path, args: &[String], log: Option<&Path>) -> Result<u32> {
        if self.children.iter().any(|(l, _)| l == label) {
            bail!("{label} is already running in lab {:?}", self.name);
        }
        let ns = self.ns(host);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &ns]).arg(program).args(args).stdin(Stdio::null());
        if let Some(log) = log {
            let file = OpenOptions::new().create(true).append(true).open(log).with_context(|| format!("opening {}", log.display()))?;
            cmd.stdout(file.try_clone()?).stderr(file);
        }
        // Own process group: Ctrl-C in a terminal reaches only the
        // orchestrator, which tears the lab down in order.
        let child = cmd.process_group(0).spawn().with_context(|| format!("starting {label} in {ns}"))?;
        let pid = child.id();
        self.children.push((label.to_owned(), child));
        Ok(pid)
    }

    /// The pid of tracked child `label`. `ip netns exec` execs the program,
    /// so this is the program's own pid (for /proc/PID/status).
    pub fn pid(&self, label: &str) -> Option<u32> {
        self.children.iter().find(|(l, _)| l == label).map(|(_, c)| c.id())
    }

    /// SIGKILLs tracked child `label` and reaps it: it vanishes as a crashed
    /// process does, without any cleanup of its own.
    pub fn kill(&mut self, label: &str) -> Result<()> {
        let pos = self.children.iter().position(|(l, _)| l == label).with_context(|| format!("{label} is not running"))?;
        let (_, mut child) = self.children.remove(pos);
        child.kill().with_context(|| format!("killing {label}"))?;
        child.wait().with_context(|| format!("reaping {label}"))?;
        Ok(())
    }

    /// Polls `probe` (run on a thread inside `from`'s namespace) every
    /// 100 ms until it returns `Ok(true)`, for at most `limit`; fails early
    /// if a tracked child exits. `what` names the wait in the error, which
    /// also carries the last probe error.
    pub fn wait_until<F>(&mut self, from: Host, what: &str, limit: Duration, probe: F) -> Result<()>
    where
        F: Fn() -> Result<bool> + Clone + Send + 'static,
    {
        let deadline = Instant::now() + limit;
        let ns = self.ns(from);
        loop {
            self.check_children()?;
            let last = match crate::netns::run_in(&ns, probe.clone()) {
                Ok(true) => return Ok(()),
                Ok(false) => String::from("not yet"),
                Err(err) => format!("{err:#}"),
            };
            if Instant::now() >= deadline {
                bail!("{what}: not within {limit:?} (last attempt: {last})");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls `GET /health` on `addr` from `from` until it answers 200.
    pub fn wait_http_ready(&mut self, from: Host, addr: SocketAddr, limit: Duration) -> Result<()> {
        let probe = move || crate::http::get(addr, "/health", Duration::from_millis(500)).map(|r| r.status == 200);
        self.wait_until(from, &format!("{addr} answering /health"), limit, probe)
    }

    /// Fails if a tracked child has exited (it was meant to run until teardown).
    pub fn check_children(&mut self) -> Result<()> {
        for (label, child) in &mut self.children {
            if let Some(status) = child.try_wait()? {
                bail!("{label} exited early ({status})");
            }
        }
        Ok(())
    }

    pub(super) fn stop_children(&mut self) {
        for (_, child) in &mut self.children {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for (label, child) in &mut self.children {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(child.try_wait(), Ok(None)) {
                eprintln!("lab: {label} ignored SIGTERM; killing it");
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.children.clear();
    }
}
