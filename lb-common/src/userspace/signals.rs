//! The one signal mechanism of every xdplb binary: tokio's signal streams.
//!
//! `SIGINT`/`SIGTERM` ask for a stop (drain, detach), `SIGHUP` for a reload.
//! Async code awaits [`Signals::recv`]; synchronous tools (xtask) give
//! [`on_stop`] a callback, which a small thread with its own runtime calls. One
//! mechanism means one set of rules: no handler library that turns SIGHUP
//! into a stop, and no two handlers fighting over the same signal.

use std::io;

use tokio::signal::unix::{signal, Signal as Stream, SignalKind};

/// A signal an xdplb process acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
    Hangup,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::Hangup => "SIGHUP",
        }
    }

    /// Whether this signal asks the process to stop.
    pub fn is_stop(self) -> bool {
        self != Signal::Hangup
    }
}

/// SIGINT, SIGTERM and SIGHUP as one stream. Must be created inside a tokio
/// runtime; from then on those signals no longer kill the process.
pub struct Signals {
    int: Stream,
    term: Stream,
    hup: Stream,
}

impl Signals {
    pub fn new() -> io::Result<Signals> {
        Ok(Signals { int: signal(SignalKind::interrupt())?, term: signal(SignalKind::terminate())?, hup: signal(SignalKind::hangup())? })
    }

    /// The next signal.
    pub async fn recv(&mut self) -> Signal {
        tokio::select! {
            _ = self.int.recv() => Signal::Interrupt,
            _ = self.term.recv() => Signal::Terminate,
            _ = self.hup.recv() => Signal::Hangup,
        }
    }

    /// The next stop signal (SIGHUP is ignored meanwhile).
    pub async fn stop(&mut self) -> Signal {
        loop {
            let s = self.recv().await;
            if s.is_stop() {
                return s;
            }
        }
    }
}

/// Calls `f` on every SIGINT or SIGTERM, from a small thread with its own
/// runtime, for synchronous programs (the replacement for a Ctrl-C handler
/// crate). The signals are caught from the moment this returns.
pub fn on_stop(mut f: impl FnMut(Signal) + Send + 'static) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    // Register before returning, so a Ctrl-C right after is not lost.
    let mut signals = rt.block_on(async { Signals::new() })?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        rt.block_on(async {
            loop {
                f(signals.stop().await);
            }
        })
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_signal_to_ourselves_arrives_as_a_value() {
        let mut s = Signals::new().unwrap();
        // SIGHUP only: the test harness must not see a stop signal.
        unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), s.recv()).await.expect("the signal arrives");
        assert_eq!(got, Signal::Hangup);
        assert!(!got.is_stop() && Signal::Terminate.is_stop());
    }
}
