//! HAProxy's rise/fall state machine for one backend.

/// A backend goes *down* after `fall` consecutive failed checks and back
/// *up* after `rise` consecutive successful ones; any other result resets
/// the opposite streak.
///
/// **A new backend starts up**, as in HAProxy, which considers servers up
/// when it starts: a freshly started balancer must not drop all traffic
/// while the first `rise` checks warm up. A dead backend is taken out after
/// `fall` checks, i.e. within about `fall × interval`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracker {
    pub up: bool,
    /// Consecutive successes while down.
    pub successes: u32,
    /// Consecutive failures while up.
    pub failures: u32,
    pub rise: u32,
    pub fall: u32,
}

impl Tracker {
    /// Starts up (see above).
    pub fn new(rise: u32, fall: u32) -> Tracker {
        Tracker::starting(true, rise, fall)
    }

    /// Starts in state `up`: a backend that stays across a reload keeps its
    /// state while its check restarts.
    pub fn starting(up: bool, rise: u32, fall: u32) -> Tracker {
        Tracker { up, successes: 0, failures: 0, rise: rise.max(1), fall: fall.max(1) }
    }

    /// Records one check result; returns the new state when it changed.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.failures = 0;
            if !self.up {
                self.successes += 1;
                if self.successes >= self.rise {
                    self.up = true;
                    self.successes = 0;
                    return Some(true);
                }
            }
        } else {
            self.successes = 0;
            if self.up {
                self.failures += 1;
                if self.failures >= self.fall {
                    self.up = false;
                    self.failures = 0;
                    return Some(false);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rise_and_fall() {
        let mut t = Tracker::new(2, 3);
        assert!(t.up);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None); // resets the failure streak
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(false));
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None); // resets the success streak
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(true));
        assert_eq!(t.record(true), None);
        let mut one = Tracker::new(1, 1);
        assert_eq!(one.record(false), Some(false));
        assert_eq!(one.record(true), Some(true));
        let mut zero = Tracker::starting(false, 0, 0);
        assert_eq!((zero.rise, zero.fall), (1, 1), "0 means 1");
        assert_eq!(zero.record(true), Some(true));
    }
}
