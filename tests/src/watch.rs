//! Watching keyed up/down states (backends as a balancer reports them):
//! a thread inside a namespace samples them every `period` and records each
//! change with its time. A sampling period shorter than the shortest time a
//! state can last (for rise/fall health checks, `min(rise, fall) ×
//! interval`) sees every change.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

/// One observed change: `key` went up (or down) at `at` (the sample that saw it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub at: Instant,
    pub key: String,
    pub up: bool,
}

/// What a [`Watch`] saw.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub changes: Vec<Change>,
    /// The latest state of every key.
    pub last: BTreeMap<String, bool>,
    pub samples: usize,
    /// Samples that failed (the probe's error), and the last such error.
    pub errors: usize,
    pub last_error: Option<String>,
}

impl Seen {
    /// Changes of `key`.
    pub fn changes_of(&self, key: &str) -> usize {
        self.changes.iter().filter(|c| c.key == key).count()
    }
}

/// A running watch; see the module docs.
pub struct Watch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    handle: JoinHandle<Result<()>>,
}

impl Watch {
    /// Samples `probe` inside namespace `ns` every `period`, for at most `limit`.
    pub fn start<F>(ns: &str, period: Duration, limit: Duration, mut probe: F) -> Watch
    where
        F: FnMut() -> Result<BTreeMap<String, bool>> + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (ns, flag, sink) = (ns.to_owned(), stop.clone(), seen.clone());
        let handle = std::thread::spawn(move || {
            crate::netns::run_in(&ns, move || {
                let deadline = Instant::now() + limit;
                while !flag.load(Ordering::SeqCst) && Instant::now() < deadline {
                    let sample = probe();
                    let at = Instant::now();
                    let mut s = sink.lock().unwrap();
                    s.samples += 1;
                    match sample {
                        Ok(states) => {
                            for (key, up) in states {
                                let before = s.last.insert(key.clone(), up);
                                if before.is_some_and(|b| b != up) {
                                    s.changes.push(Change { at, key, up });
                                }
                            }
                        }
                        Err(err) => {
                            s.errors += 1;
                            s.last_error = Some(format!("{err:#}"));
                        }
                    }
                    drop(s);
                    std::thread::sleep(period);
                }
                Ok(())
            })
        });
        Watch { stop, seen, handle }
    }

    /// What was seen so far.
    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }

    /// Waits (at most `limit`) for a sample showing `key` in state `up`
    /// taken at or after `since`, and returns that sample's time.
    pub fn wait_for(&self, key: &str, up: bool, since: Instant, limit: Duration) -> Result<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            {
                let s = self.seen.lock().unwrap();
                if let Some(c) = s.changes.iter().find(|c| c.at >= since && c.key == key && c.up == up) {
                    return Ok(c.at);
                }
            }
            if Instant::now() > deadline || self.handle.is_finished() {
                let s = self.seen();
                bail!(
                    "{key} was not seen {} within {limit:?} (last state {:?}, last error {:?})",
                    if up { "up" } else { "down" },
                    s.last.get(key),
                    s.last_error
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops sampling and returns what was seen.
    pub fn stop(self) -> Result<Seen> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().map_err(|_| anyhow::anyhow!("the watch thread panicked"))??;
        let seen = self.seen.lock().unwrap().clone();
        Ok(seen)
    }
}
