//! The backend simulator's knobs (the L4-Proxy-LB seed's server settings):
//! how long to wait before each answer, how many connections to hold at
//! once, when to close an idle one, how often to drop a connection right
//! after accept, and whether to answer at all. They are set at start (the
//! `lab-backend` flags, [`super::Builder::settings`]) and changed at runtime
//! (the control endpoint, [`super::Backend::knobs`]); every connection reads
//! them when it needs them, so a change applies to open connections too.
//! Health forced up/down is not here: it is the backend's one health flag,
//! [`super::Backend::health_ok`], which tests already flip directly.

use std::{fmt, str::FromStr, time::Duration};

use lb_common::userspace::duration::{parse_duration, show};
use tokio::sync::watch;

/// The wait before every answer (an HTTP response, an echo `ACK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delay {
    /// Always this long (`0s`: no delay).
    Fixed(Duration),
    /// Uniformly random in `lo..=hi`, drawn per answer.
    Range(Duration, Duration),
}

impl Default for Delay {
    fn default() -> Delay {
        Delay::Fixed(Duration::ZERO)
    }
}

impl Delay {
    /// The delay of one answer.
    pub fn pick(&self) -> Duration {
        match *self {
            Delay::Fixed(d) => d,
            Delay::Range(lo, hi) => {
                // MAX_DELAY in nanoseconds fits u64 many times over.
                let (lo_ns, hi_ns) = (lo.as_nanos() as u64, hi.as_nanos() as u64);
                Duration::from_nanos(fastrand::u64(lo_ns..=hi_ns))
            }
        }
    }
}

/// The longest delay: an answer held longer is a hang, which has its own
/// knob (and the bound keeps a range's nanoseconds well inside u64).
pub const MAX_DELAY: Duration = Duration::from_secs(600);

fn delay(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d > MAX_DELAY {
        return Err(format!("delay {} is above the maximum {} (for no answer at all, use hang)", show(d), show(MAX_DELAY)));
    }
    Ok(d)
}

/// `50ms` (fixed) or `10ms..200ms` (a range), in the shared duration grammar.
impl FromStr for Delay {
    type Err = String;

    fn from_str(text: &str) -> Result<Delay, String> {
        match text.split_once("..") {
            None => Ok(Delay::Fixed(delay(text)?)),
            Some((lo, hi)) => {
                let (lo, hi) = (delay(lo)?, delay(hi)?);
                if lo > hi {
                    return Err(format!("{text:?} is not a delay range: its low end {} is above its high end {}", show(lo), show(hi)));
                }
                Ok(Delay::Range(lo, hi))
            }
        }
    }
}

impl fmt::Display for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Delay::Fixed(d) => f.write_str(&show(d)),
            Delay::Range(lo, hi) => write!(f, "{}..{}", show(lo), show(hi)),
        }
    }
}

/// A chaos percentage: `0` (never) to `100` (every connection).
pub fn parse_chaos(n: u64) -> Result<u8, String> {
    u8::try_from(n).ok().filter(|p| *p <= 100).ok_or_else(|| format!("chaos percentage {n} is out of range; it must be 0..=100"))
}

/// An idle timeout: a duration, or `off` (also `0s`) for none.
pub fn parse_idle_timeout(text: &str) -> Result<Option<Duration>, String> {
    if text.trim() == "off" {
        return Ok(None);
    }
    let d = parse_duration(text).map_err(|e| format!("{e}, or \"off\""))?;
    Ok((!d.is_zero()).then_some(d))
}

/// Every knob's current value. The defaults change nothing: a backend
/// without knobs behaves as the plain mock backend always did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub delay: Delay,
    /// Connections served at once; beyond it a new one is closed at once
    /// and counted as refused. 0: unlimited.
    pub max_conns: usize,
    /// Close a connection that has sent and received nothing, with no
    /// answer pending, for this long. None: never.
    pub idle_timeout: Option<Duration>,
    /// The percentage of connections closed right after accept.
    pub chaos_pct: u8,
    /// Accept and read, never answer (until hang is turned off).
    pub hang: bool,
}

impl Settings {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "delay": self.delay.to_string(),
            "max_conns": self.max_conns,
            "idle_timeout": self.idle_timeout.map_or_else(|| "off".to_owned(), show),
            "chaos_pct": self.chaos_pct,
            "hang": self.hang,
        })
    }
}

/// The live knobs: a watch channel, so a connection waiting on hang or an
/// idle timer wakes up when they change.
pub struct Knobs(watch::Sender<Settings>);

impl Knobs {
    pub(super) fn new(settings: Settings) -> Knobs {
        Knobs(watch::Sender::new(settings))
    }

    pub fn get(&self) -> Settings {
        self.0.borrow().clone()
    }

    pub fn set(&self, settings: Settings) {
        self.0.send_replace(settings);
    }

    pub fn update(&self, change: impl FnOnce(&mut Settings)) {
        self.0.send_modify(change);
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<Settings> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_parse_fixed_and_ranges_and_refuse_the_rest() {
        let ms = Duration::from_millis;
        assert_eq!("50ms".parse(), Ok(Delay::Fixed(ms(50))));
        assert_eq!("10ms..200ms".parse(), Ok(Delay::Range(ms(10), ms(200))));
        assert_eq!("1s..1s".parse::<Delay>().unwrap().to_string(), "1s..1s");
        let err = "200ms..10ms".parse::<Delay>().unwrap_err();
        assert!(err.contains("low end 200ms is above its high end 10ms"), "{err}");
        assert!("11m".parse::<Delay>().unwrap_err().contains("above the maximum 600s"));
        assert!("1s..1000000d".parse::<Delay>().unwrap_err().contains("above the maximum"));
        for bad in ["", "50", "10ms..", "..5s", "fast"] {
            assert!(bad.parse::<Delay>().unwrap_err().contains("not a duration"), "{bad}");
        }
        let range = Delay::Range(ms(10), ms(20));
        assert!((0..100).map(|_| range.pick()).all(|d| (ms(10)..=ms(20)).contains(&d)));
        assert_eq!(parse_chaos(100), Ok(100));
        assert!(parse_chaos(101).unwrap_err().contains("0..=100"));
        assert_eq!(parse_idle_timeout("off"), Ok(None));
        assert_eq!(parse_idle_timeout("0s"), Ok(None));
        assert_eq!(parse_idle_timeout("2s"), Ok(Some(Duration::from_secs(2))));
        assert!(parse_idle_timeout("2").unwrap_err().contains("\"off\""));
    }
}
