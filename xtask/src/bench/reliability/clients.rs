//! `tls-clients` processes (tests/src/bin/tls-clients.rs) in a lab
//! namespace: start them, follow their progress lines, collect their
//! summaries. A process started with `--until-stdin-closes` stops when its
//! [`Clients`] value closes the pipe (finish, drop, or this process dying).

use std::{
    io::{BufRead as _, BufReader},
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Child, ChildStdin, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use xdplb_tests::tls_clients::{Line, Progress, Summary};

#[derive(Default)]
struct Seen {
    last: Progress,
    summary: Option<Summary>,
    /// Lines that were not report lines (kept for the error message).
    other: Vec<String>,
}

/// One running `tls-clients`.
pub struct Clients {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    seen: Arc<Mutex<Seen>>,
}

impl Clients {
    /// Runs `bin args…` in namespace `ns` (stdout parsed, stderr shown).
    pub fn start(ns: &str, bin: &Path, label: &str, args: &[String]) -> Result<Clients> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(bin)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Own process group: a terminal's Ctrl-C reaches only xtask,
            // which then stops the clients in order.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {label} ({})", bin.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let sink = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                match Line::parse(&line) {
                    Ok(Line::Progress(p)) => s.last = p,
                    Ok(Line::Summary(sum)) => {
                        s.last = sum.progress;
                        s.summary = Some(sum);
                    }
                    Err(_) if s.other.len() < 20 => s.other.push(line),
                    Err(_) => {}
                }
            }
        });
        Ok(Clients { label: label.to_owned(), child, stdin, seen })
    }

    /// The latest counters the process reported.
    pub fn progress(&self) -> Progress {
        self.seen.lock().unwrap().last
    }

    /// Fails if the process has exited (it was meant to keep running).
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let other = self.seen.lock().unwrap().other.join(" | ");
            bail!("{} exited early ({status}){}", self.label, if other.is_empty() { String::new() } else { format!(": {other}") });
        }
        Ok(())
    }

    /// Closes its stdin (a `--until-stdin-closes` process then stops) and
    /// waits at most `limit` for its summary and exit.
    pub fn finish(mut self, limit: Duration) -> Result<Summary> {
        drop(self.stdin.take());
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                bail!("{} did not finish within {limit:?}", self.label);
            }
            super::check_stop()?;
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader thread may still be on the last line: give it a moment.
        let seen = super::poll(&format!("{}'s summary", self.label), Duration::from_secs(2), Duration::from_millis(10), || {
            Ok(self.seen.lock().unwrap().summary.clone())
        });
        match seen {
            Ok(summary) if status.success() => Ok(summary),
            _ => {
                let other = self.seen.lock().unwrap().other.join(" | ");
                bail!("{} ended with {status} without a summary: {other}", self.label)
            }
        }
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The counters of several processes added up (`t` is the largest).
pub fn total(group: &[Clients]) -> Progress {
    group.iter().map(Clients::progress).fold(Progress::default(), |a, p| Progress {
        t: a.t.max(p.t),
        open: a.open + p.open,
        pending: a.pending + p.pending,
        handshakes: a.handshakes + p.handshakes,
        failed: a.failed + p.failed,
        server_closed: a.server_closed + p.server_closed,
    })
}
