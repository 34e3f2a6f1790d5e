//! Scripted stories for the demo: what happens to which piece, and when.
//! Times are fractions of the run's duration (a third in, two thirds in),
//! so `--duration 30s` kills at 10 s and restores at 20 s, and a shorter
//! run (a test) tells the same story faster.

use std::{fmt, str::FromStr, time::Duration};

use anyhow::Result;

use super::topology::{Topology, ALBS};

/// `--scenario`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// No fault: steady load.
    Steady,
    /// Kill a backend simulator at 1/3, start it again at 2/3.
    Failover,
    /// Delay a backend's answers (200..400 ms) at 1/3, undo at 2/3.
    SlowBackend,
    /// 30 % of a backend's connections closed right after accept at 1/3, 0 at 2/3.
    Chaos,
    /// Kill an alb at 1/3, start it again at 2/3.
    AlbDown,
}

impl Scenario {
    pub const ALL: [Scenario; 5] = [Scenario::Steady, Scenario::Failover, Scenario::SlowBackend, Scenario::Chaos, Scenario::AlbDown];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Steady => "steady",
            Scenario::Failover => "failover",
            Scenario::SlowBackend => "slow-backend",
            Scenario::Chaos => "chaos",
            Scenario::AlbDown => "alb-down",
        }
    }

    /// The steps of this story for a run of `duration`, in time order.
    pub fn plan(self, duration: Duration) -> Vec<Step> {
        let (first, second) = (duration / 3, duration * 2 / 3);
        let be = target_backend();
        let pair = |a: Action, b: Action| vec![Step { at: first, action: a }, Step { at: second, action: b }];
        match self {
            Scenario::Steady => Vec::new(),
            Scenario::Failover => pair(Action::KillBackend(be), Action::StartBackend(be)),
            Scenario::SlowBackend => pair(Action::Delay(be, "200ms..400ms"), Action::Delay(be, "0s")),
            Scenario::Chaos => pair(Action::Chaos(be, 30), Action::Chaos(be, 0)),
            Scenario::AlbDown => pair(Action::KillAlb(ALBS), Action::StartAlb(ALBS)),
        }
    }
}

/// The backend the stories act on: the first simulator.
pub fn target_backend() -> u8 {
    *Topology::backend_ids().start()
}

impl FromStr for Scenario {
    type Err = String;

    fn from_str(s: &str) -> Result<Scenario, String> {
        Scenario::ALL.into_iter().find(|sc| sc.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
            format!("unknown scenario {s:?}: use one of {}", names.join(", "))
        })
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One step of a story.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Since the load started.
    pub at: Duration,
    pub action: Action,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    KillBackend(u8),
    StartBackend(u8),
    /// A delay in the simulator's grammar (`50ms`, `10ms..200ms`, `0s`).
    Delay(u8, &'static str),
    Chaos(u8, u8),
    KillAlb(u8),
    StartAlb(u8),
}

impl Action {
    /// Does it to the running system.
    pub fn apply(&self, topo: &mut Topology) -> Result<()> {
        match *self {
            Action::KillBackend(id) => topo.kill_backend(id),
            Action::StartBackend(id) => topo.start_backend(id),
            Action::Delay(id, delay) => topo.set_knob(id, "/delay", &format!("{{\"delay\": \"{delay}\"}}")),
            Action::Chaos(id, pct) => topo.set_knob(id, "/chaos", &format!("{{\"percent\": {pct}}}")),
            Action::KillAlb(i) => topo.kill_alb(i),
            Action::StartAlb(i) => topo.start_alb(i),
        }
    }

    /// The piece it acts on, as the live view and timeline name it.
    pub fn target(&self) -> String {
        match *self {
            Action::KillBackend(id) | Action::StartBackend(id) | Action::Delay(id, _) | Action::Chaos(id, _) => format!("be{id}"),
            Action::KillAlb(i) | Action::StartAlb(i) => format!("alb{i}"),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.target();
        match self {
            Action::KillBackend(_) | Action::KillAlb(_) => write!(f, "SIGKILL {t}"),
            Action::StartBackend(_) | Action::StartAlb(_) => write!(f, "start {t} again"),
            Action::Delay(_, d) => write!(f, "{t}: POST /delay {d}"),
            Action::Chaos(_, p) => write!(f, "{t}: POST /chaos {p} %"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_unknown_ones_are_refused() {
        for s in Scenario::ALL {
            assert_eq!(s.name().parse::<Scenario>(), Ok(s));
        }
        let err = "fail-over".parse::<Scenario>().unwrap_err();
        assert!(err.contains("\"fail-over\"") && err.contains("alb-down"), "{err}");
    }

    #[test]
    fn plans_scale_with_the_duration() {
        let plan = Scenario::Failover.plan(Duration::from_secs(30));
        assert_eq!(
            plan,
            vec![Step { at: Duration::from_secs(10), action: Action::KillBackend(3) }, Step { at: Duration::from_secs(20), action: Action::StartBackend(3) },]
        );
        assert_eq!(Scenario::AlbDown.plan(Duration::from_secs(60))[0], Step { at: Duration::from_secs(20), action: Action::KillAlb(2) });
        assert!(Scenario::Steady.plan(Duration::from_secs(30)).is_empty());
    }
}
