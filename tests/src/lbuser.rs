//! Running `lb-user attach` as a child process inside a lab, as an operator would.

use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::workspace;

/// Where lb-user pins the maps of `iface` (mirrors `lb_user::bpffs::pin_dir`).
pub fn pin_dir(iface: &str) -> PathBuf {
    PathBuf::from("/sys/fs/bpf/xdplb").join(iface)
}

/// A running `lb-user --netns NS attach --iface IF`. Dropping it kills the
/// process; [`LbUser::stop`] stops it the way Ctrl-C does and checks the exit.
pub struct LbUser {
    child: Option<Child>,
    /// The lb-user executable: the process and every `cli` call run it.
    binary: PathBuf,
    iface: String,
    netns: String,
    /// stderr lines so far with the time each arrived (also echoed to the
    /// test's stderr).
    log: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl LbUser {
    /// Starts `attach --iface IF extra…` and waits (at most 20 s) until the
    /// attach is complete.
    pub fn attach(netns: &str, iface: &str, extra: &[&str]) -> Result<LbUser> {
        let mut args = vec!["--iface", iface];
        args.extend_from_slice(extra);
        LbUser::start(workspace::binary("lb-user")?, netns, iface, &args, &[])
    }

    /// Starts `attach --config FILE`; `iface` is one of the config's
    /// interfaces, used to see when the maps are pinned and for `stats`.
    pub fn attach_config(netns: &str, iface: &str, config: &std::path::Path) -> Result<LbUser> {
        LbUser::attach_config_env(netns, iface, config, &[])
    }

    /// Like [`LbUser::attach_config`] with extra environment (e.g.
    /// `RUST_LOG=info,lb_common=debug` to log every failed health check).
    pub fn attach_config_env(netns: &str, iface: &str, config: &std::path::Path, env: &[(&str, &str)]) -> Result<LbUser> {
        LbUser::attach_config_from(workspace::binary("lb-user")?, netns, iface, config, env)
    }

    /// Like [`LbUser::attach_config_env`] with the executable given rather
    /// than the workspace's (`cargo xtask bench` runs the build it measures,
    /// the release one or `--bin-dir`'s, whatever the build next to xtask).
    pub fn attach_config_from(binary: PathBuf, netns: &str, iface: &str, config: &std::path::Path, env: &[(&str, &str)]) -> Result<LbUser> {
        let config = config.to_str().context("non-UTF-8 config path")?;
        LbUser::start(binary, netns, iface, &["--config", config], env)
    }

    fn start(binary: PathBuf, netns: &str, iface: &str, attach_args: &[&str], env: &[(&str, &str)]) -> Result<LbUser> {
        let child = Command::new(&binary)
            .envs(env.iter().copied())
            .args(["--netns", netns, "attach"])
            .args(attach_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own process group: a terminal Ctrl-C reaches only the
            // orchestrator, which then stops lb-user in order.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut child = child;
        let log = Arc::new(Mutex::new(Vec::new()));
        let ready = Arc::new(AtomicBool::new(false));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        // lb-user prints its "attached" line on stdout only once every map
        // and the link are pinned, the tables filled, and the signal
        // handlers, the config watch, metrics and API up. A pinned map alone
        // is not enough: maps are pinned one by one while the object loads,
        // long before the program is attached.
        let stdout = child.stdout.take().expect("piped stdout");
        let flag = ready.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("{line}");
                if line.starts_with(READY_LINE) {
                    flag.store(true, Ordering::SeqCst);
                }
            }
        });
        let mut me = LbUser { child: Some(child), binary, iface: iface.to_owned(), netns: netns.to_owned(), log };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready.load(Ordering::SeqCst) {
            if let Some(status) = me.child.as_mut().unwrap().try_wait()? {
                bail!("lb-user attach on {iface} exited before it was attached ({status})");
            }
            if Instant::now() > deadline {
                bail!("lb-user attach on {iface} did not report {READY_LINE:?} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(me)
    }

    /// Runs `lb-user --netns NS <args>` to completion (whatever its exit).
    pub fn cli_output(&self, args: &[&str]) -> Result<std::process::Output> {
        Ok(Command::new(&self.binary).args(["--netns", &self.netns]).args(args).env("RUST_LOG", "off").output()?)
    }

    /// Runs `lb-user --netns NS <args>` to completion and returns stdout.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let out = self.cli_output(args)?;
        if !out.status.success() {
            bail!("lb-user {args:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `lb-user stats --iface IF --json`, parsed.
    pub fn stats_json(&self) -> Result<serde_json::Value> {
        let text = self.cli(&["stats", "--iface", &self.iface, "--json"])?;
        serde_json::from_str(&text).with_context(|| format!("parsing stats JSON {text:?}"))
    }

    /// The lb-user process id (for /proc figures).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            // SAFETY: plain kill(2) on our child.
            unsafe { libc::kill(child.id() as i32, signal) };
        }
    }

    /// Waits (at most `limit`) for a stderr line containing `needle` that
    /// appeared after the first `skip` lines; returns the number of lines seen.
    pub fn wait_for_log(&self, needle: &str, skip: usize, limit: Duration) -> Result<usize> {
        self.wait_for_log_at(needle, skip, limit).map(|(n, _)| n)
    }

    /// Like [`LbUser::wait_for_log`], also returning when the line arrived
    /// (read by a thread blocked on the pipe, so within scheduling delay of
    /// lb-user writing it): for timing what lb-user logs.
    pub fn wait_for_log_at(&self, needle: &str, skip: usize, limit: Duration) -> Result<(usize, Instant)> {
        self.wait_for_any_log_at(&[needle], skip, limit).map(|(n, at, _)| (n, at))
    }

    /// Like [`LbUser::wait_for_log_at`] for the first line containing any of
    /// `needles`; also returns that line (for "applied" or "refused").
    pub fn wait_for_any_log_at(&self, needles: &[&str], skip: usize, limit: Duration) -> Result<(usize, Instant, String)> {
        let deadline = Instant::now() + limit;
        loop {
            {
                let lines = self.log.lock().unwrap();
                if let Some(pos) = lines.iter().skip(skip).position(|(_, l)| needles.iter().any(|n| l.contains(n))) {
                    let (at, line) = &lines[skip + pos];
                    return Ok((skip + pos + 1, *at, line.clone()));
                }
            }
            if Instant::now() > deadline {
                bail!("lb-user logged no line containing any of {needles:?} within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs the process and reaps it: nothing of lb-user's own cleanup runs.
    pub fn kill9(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Every stderr line so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().iter().map(|(_, l)| l.clone()).collect()
    }

    /// Number of stderr lines so far.
    pub fn log_len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// Sends SIGINT (what Ctrl-C sends) and waits at most 10 s for the exit.
    pub fn stop(self) -> Result<ExitStatus> {
        self.stop_with(libc::SIGINT)
    }

    /// Sends SIGTERM (what a service manager sends: withdraw, `group.grace`,
    /// detach) and waits at most 10 s for the exit.
    pub fn terminate(self) -> Result<ExitStatus> {
        self.stop_with(libc::SIGTERM)
    }

    fn stop_with(mut self, signal: i32) -> Result<ExitStatus> {
        let mut child = self.child.take().expect("child present until stop/drop");
        // SAFETY: plain kill(2) on our child.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("lb-user did not exit within 10 s of signal {signal}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for LbUser {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How lb-user's stdout line starts once the attach is complete.
const READY_LINE: &str = "xdplb attached to ";

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// `attach_config_from` runs the given executable, for the attach and
    /// for every later `cli` call: a stand-in script that answers like
    /// lb-user shows which program ran (the workspace's lb-user would fail
    /// here without root, or print something else).
    #[test]
    fn attach_config_from_runs_the_given_binary_for_attach_and_cli() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("lb-user");
        std::fs::write(&fake, format!("#!/bin/sh\n[ \"$3\" = attach ] && {{ echo '{READY_LINE}x-lc'; exec sleep 30; }}\necho \"stand-in $*\"\n")).unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let lb = LbUser::attach_config_from(fake.clone(), "x-lb", "x-lc", &dir.path().join("c.yaml"), &[]).unwrap();
        assert_eq!(lb.cli(&["stats", "--json"]).unwrap().trim(), "stand-in --netns x-lb stats --json");

        let missing = dir.path().join("nowhere/lb-user");
        let err = LbUser::attach_config_from(missing.clone(), "x-lb", "x-lc", &dir.path().join("c.yaml"), &[]).err().unwrap();
        assert!(format!("{err:#}").contains(&missing.display().to_string()), "{err:#}");
    }
}
