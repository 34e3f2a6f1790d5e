//! How a userspace tier runs its Tokio tasks: the `runtime:` key of alb's
//! file and of lb-user's `proxy:` section.
//!
//! - `shared`: one multi-thread runtime with `workers` worker threads. Any
//!   worker may run any task, so one listener feeds them all; with one
//!   worker this still pays for the multi-thread machinery (a cross-thread
//!   injection queue, the I/O driver handed between "parked" and "running").
//! - `per_core`: `workers` OS threads, each a current-thread runtime that
//!   only ever runs its own tasks. Each one accepts on its own listening
//!   socket bound with `SO_REUSEPORT` ([`bind_reuseport`]), so the kernel
//!   spreads new connections over the threads and a connection stays on
//!   the thread that accepted it.
//!
//! [`Runtimes::start`] builds either; the caller runs its shared work
//! (health checks, admin API, reload) with [`Runtimes::block_on`] and
//! spawns its per-listener work on every handle of
//! [`Runtimes::workers`].

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::thread::JoinHandle;

use serde::de::{self, Deserializer};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpSocket};
use tokio::runtime::{Builder, Handle, Runtime};
use tokio::sync::oneshot;

/// More worker threads than this is a typo, not a machine.
pub const MAX_WORKERS: usize = 1024;

/// The `runtime:` key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Worker threads (`shared`) or threads with a runtime each
    /// (`per_core`). Default: `TOKIO_WORKER_THREADS` if set, else the CPUs
    /// this process may run on.
    #[serde(default = "default_workers", deserialize_with = "workers")]
    pub workers: usize,
    #[serde(default)]
    pub scheduler: Scheduler,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheduler {
    /// One current-thread runtime per worker thread, each with its own
    /// `SO_REUSEPORT` listener.
    PerCore,
    /// One multi-thread runtime with `workers` worker threads.
    #[default]
    Shared,
}

impl Scheduler {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheduler::PerCore => "per_core",
            Scheduler::Shared => "shared",
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig { workers: default_workers(), scheduler: Scheduler::Shared }
    }
}

/// What a plain `tokio::runtime::Runtime::new()` would use, so leaving the
/// key out keeps the behaviour from before it existed: the
/// `TOKIO_WORKER_THREADS` environment variable when it holds a valid
/// count, else the CPUs this process may run on.
fn default_workers() -> usize {
    workers_or_cpus(std::env::var("TOKIO_WORKER_THREADS").ok().as_deref())
}

fn workers_or_cpus(env: Option<&str>) -> usize {
    let cpus = || std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let Some(v) = env else { return cpus() };
    match v.trim().parse::<u64>().map_err(|e| e.to_string()).and_then(check_workers) {
        Ok(n) => n,
        Err(e) => {
            // Not an error of the config file; said, not silently replaced.
            log::warn!("TOKIO_WORKER_THREADS={v:?} ignored ({e}); runtime.workers defaults to the {} CPUs", cpus());
            cpus()
        }
    }
}

fn workers<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = u64::deserialize(d)?;
    check_workers(n).map_err(de::Error::custom)
}

/// The rule for `workers`, also for callers that take it from elsewhere
/// (a flag). The message names the value and the allowed range.
pub fn check_workers(n: u64) -> Result<usize, String> {
    match usize::try_from(n) {
        Ok(0) => Err("workers: 0 is not a number of threads; write at least 1".into()),
        Ok(n) if n <= MAX_WORKERS => Ok(n),
        _ => Err(format!("workers: {n} is more than the {MAX_WORKERS} threads allowed")),
    }
}

/// The running runtimes. Dropping it stops the worker threads (their
/// tasks are cancelled) and waits for them.
pub struct Runtimes {
    /// `shared`: the multi-thread runtime. `per_core`: worker 0's
    /// current-thread runtime, driven by the thread calling
    /// [`Runtimes::block_on`].
    main: Runtime,
    /// `per_core`: workers 1..N, each on a thread of its own.
    others: Vec<Worker>,
    handles: Vec<Handle>,
    scheduler: Scheduler,
}

struct Worker {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Runtimes {
    /// Builds the runtimes `cfg` asks for; threads are named `{name}-{i}`.
    pub fn start(cfg: &RuntimeConfig, name: &str) -> io::Result<Runtimes> {
        let workers = check_workers(cfg.workers as u64).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        match cfg.scheduler {
            Scheduler::Shared => {
                let main = Builder::new_multi_thread().worker_threads(workers).thread_name(format!("{name}-worker")).enable_all().build()?;
                let handles = vec![main.handle().clone()];
                Ok(Runtimes { main, others: Vec::new(), handles, scheduler: Scheduler::Shared })
            }
            Scheduler::PerCore => {
                let main = Builder::new_current_thread().enable_all().build()?;
                let mut rts = Runtimes { handles: vec![main.handle().clone()], main, others: Vec::new(), scheduler: Scheduler::PerCore };
                for i in 1..workers {
                    // On error, dropping `rts` stops the threads started so far.
                    rts.spawn_worker(format!("{name}-{i}"))?;
                }
                Ok(rts)
            }
        }
    }

    fn spawn_worker(&mut self, thread_name: String) -> io::Result<()> {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new().name(thread_name).spawn(move || {
            let rt = match Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = handle_tx.send(Err(e));
                    return;
                }
            };
            let _ = handle_tx.send(Ok(rt.handle().clone()));
            // Runs this runtime's tasks until told to stop (or the sender
            // is gone); dropping `rt` then cancels what is left.
            rt.block_on(async {
                let _ = stop_rx.await;
            });
        })?;
        let mut worker = Worker { stop: Some(stop_tx), thread: Some(thread) };
        match handle_rx.recv() {
            Ok(Ok(h)) => {
                self.handles.push(h);
                self.others.push(worker);
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => {
                worker.join();
                Err(io::Error::other("a runtime thread ended before it started"))
            }
        }
    }

    pub fn scheduler(&self) -> Scheduler {
        self.scheduler
    }

    /// Where per-listener work goes: one handle for `shared` (its tasks
    /// run on any worker), one per thread for `per_core`, the first being
    /// the runtime of [`Runtimes::block_on`].
    pub fn workers(&self) -> &[Handle] {
        &self.handles
    }

    /// Runs `f` to completion on the main runtime (`per_core`: worker 0,
    /// on the calling thread).
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.main.block_on(f)
    }

    /// Binds one listener per worker runtime on `addr`, each registered
    /// with its own runtime: for `per_core` with `SO_REUSEPORT` (the first
    /// bind fixes the port when `addr` says 0, the others reuse it); for
    /// `shared` a single ordinary listener (`SO_REUSEADDR` only, as
    /// `TcpListener::bind` makes it).
    pub fn bind(&self, addr: SocketAddr, backlog: u32) -> io::Result<Vec<TcpListener>> {
        match self.scheduler {
            Scheduler::Shared => {
                let _g = self.handles[0].enter();
                let s = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
                s.set_reuseaddr(true)?;
                s.bind(addr)?;
                Ok(vec![s.listen(backlog)?])
            }
            Scheduler::PerCore => {
                let mut out: Vec<TcpListener> = Vec::with_capacity(self.handles.len());
                for h in &self.handles {
                    let at = match out.first() {
                        Some(l) => l.local_addr()?,
                        None => addr,
                    };
                    let _g = h.enter();
                    out.push(bind_reuseport(at, backlog)?);
                }
                Ok(out)
            }
        }
    }
}

impl Worker {
    fn join(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Runtimes {
    fn drop(&mut self) {
        for w in &mut self.others {
            w.join();
        }
    }
}

/// A listener on `addr` with `SO_REUSEADDR` and `SO_REUSEPORT`, registered
/// with the runtime of the caller's context (call it inside that runtime
/// or under [`Handle::enter`]). Several such sockets on one address share
/// its connections, the kernel choosing one per connection by a hash of
/// its addresses.
pub fn bind_reuseport(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let s = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    s.set_reuseaddr(true)?;
    s.set_reuseport(true)?;
    s.bind(addr)?;
    s.listen(backlog)
}

#[cfg(test)]
#[path = "runtime_tests.rs"]
mod tests;
