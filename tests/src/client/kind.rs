//! The client kinds (the L4-Proxy-LB seed's five, plus `https`), the
//! weighted mix they are drawn from, and the integer ranges (`1..10`) the
//! kinds draw their sizes from.

use std::{fmt, str::FromStr};

/// One kind of simulated client (docs/simulators.md has what each does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Real,
    FireAndForget,
    Stream,
    Idle,
    Slow,
    Https,
}

impl Kind {
    pub const ALL: [Kind; 6] = [Kind::Real, Kind::FireAndForget, Kind::Stream, Kind::Idle, Kind::Slow, Kind::Https];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Real => "real",
            Kind::FireAndForget => "fire_and_forget",
            Kind::Stream => "stream",
            Kind::Idle => "idle",
            Kind::Slow => "slow",
            Kind::Https => "https",
        }
    }

    /// Whether the kind speaks the REQ/ACK protocol to `--tcp-target`
    /// (the others: HTTPS to `--https-target`).
    pub fn is_raw_tcp(self) -> bool {
        self != Kind::Https
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = String;

    fn from_str(text: &str) -> Result<Kind, String> {
        Kind::ALL.into_iter().find(|k| k.name() == text).ok_or_else(|| {
            let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown client kind {text:?}; the kinds are {}", names.join(", "))
        })
    }
}

/// Relative weights of the kinds: `real=4,fire_and_forget=1,https=4`. A
/// kind with weight 0, or not named, is never drawn.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix(Vec<(Kind, u32)>);

impl Mix {
    /// The default mix of docs/simulators.md.
    pub fn default_mix() -> Mix {
        "real=4,fire_and_forget=1,stream=1,idle=1,slow=1,https=4".parse().expect("the default mix parses")
    }

    /// The kinds with a weight above 0, in [`Kind::ALL`] order.
    pub fn kinds(&self) -> Vec<Kind> {
        Kind::ALL.into_iter().filter(|k| self.weight(*k) > 0).collect()
    }

    pub fn weight(&self, kind: Kind) -> u32 {
        self.0.iter().find(|(k, _)| *k == kind).map_or(0, |(_, w)| *w)
    }

    /// Sets `kind`'s weight to 0 (e.g. its target is missing).
    pub fn without(&self, kind: Kind) -> Mix {
        Mix(self.0.iter().map(|&(k, w)| (k, if k == kind { 0 } else { w })).collect())
    }

    /// Draws a kind with probability weight / total; `None` when every weight is 0.
    pub fn pick(&self, rng: &mut fastrand::Rng) -> Option<Kind> {
        let total: u64 = self.0.iter().map(|(_, w)| u64::from(*w)).sum();
        if total == 0 {
            return None;
        }
        let mut ticket = rng.u64(0..total);
        for &(kind, w) in &self.0 {
            if ticket < u64::from(w) {
                return Some(kind);
            }
            ticket -= u64::from(w);
        }
        unreachable!("the ticket is below the total of the weights")
    }
}

impl FromStr for Mix {
    type Err = String;

    fn from_str(text: &str) -> Result<Mix, String> {
        let mut weights: Vec<(Kind, u32)> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, weight) = part.split_once('=').ok_or_else(|| format!("{part:?} is not KIND=WEIGHT (e.g. real=4)"))?;
            let kind: Kind = kind.trim().parse()?;
            let weight: u32 = weight.trim().parse().map_err(|_| format!("{kind}: weight {:?} is not a whole number", weight.trim()))?;
            if weights.iter().any(|(k, _)| *k == kind) {
                return Err(format!("{kind} is named twice"));
            }
            weights.push((kind, weight));
        }
        if weights.is_empty() {
            return Err(format!("{text:?} names no kind; write e.g. real=4,https=1"));
        }
        Ok(Mix(weights))
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, w)| format!("{k}={w}")).collect();
        f.write_str(&parts.join(","))
    }
}

/// A whole number drawn uniformly from `lo..=hi` per client: `5` or `1..10`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Count {
    pub lo: u64,
    pub hi: u64,
}

impl Count {
    pub fn pick(&self, rng: &mut fastrand::Rng) -> u64 {
        rng.u64(self.lo..=self.hi)
    }
}

impl FromStr for Count {
    type Err = String;

    fn from_str(text: &str) -> Result<Count, String> {
        let number = |s: &str| s.trim().parse::<u64>().map_err(|_| format!("{s:?} is not a whole number (write N or LO..HI, e.g. 1..10)"));
        let (lo, hi) = match text.split_once("..") {
            Some((lo, hi)) => (number(lo)?, number(hi)?),
            None => (number(text)?, number(text)?),
        };
        if lo == 0 {
            return Err(format!("{text:?}: the count must be at least 1"));
        }
        if lo > hi {
            return Err(format!("{text:?} is not a range: its low end {lo} is above its high end {hi}"));
        }
        Ok(Count { lo, hi })
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}..{}", self.lo, self.hi)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_and_draw_by_weight() {
        let mix: Mix = "real=3, https=1,idle=0".parse().unwrap();
        assert_eq!(mix.kinds(), vec![Kind::Real, Kind::Https]);
        assert_eq!(mix.to_string(), "real=3,https=1,idle=0");
        let mut rng = fastrand::Rng::with_seed(7);
        let real = (0..4000).filter(|_| mix.pick(&mut rng) == Some(Kind::Real)).count();
        assert!((2800..3200).contains(&real), "real drawn {real} times of 4000 at weight 3/4");
        assert_eq!(mix.without(Kind::Real).kinds(), vec![Kind::Https]);
        assert_eq!("idle=0".parse::<Mix>().unwrap().pick(&mut rng), None);
        assert_eq!(Mix::default_mix().kinds(), Kind::ALL.to_vec());
        for (bad, why) in [
            ("real", "KIND=WEIGHT"),
            ("bogus=1", "unknown client kind \"bogus\""),
            ("real=x", "not a whole number"),
            ("real=1,real=2", "twice"),
            ("", "names no kind"),
        ] {
            let err = bad.parse::<Mix>().unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn counts_parse_and_stay_in_range() {
        assert_eq!("5".parse(), Ok(Count { lo: 5, hi: 5 }));
        let c: Count = "2..4".parse().unwrap();
        let mut rng = fastrand::Rng::with_seed(1);
        assert!((0..100).map(|_| c.pick(&mut rng)).all(|n| (2..=4).contains(&n)));
        assert_eq!(c.to_string(), "2..4");
        assert!("4..2".parse::<Count>().unwrap_err().contains("low end 4 is above its high end 2"));
        assert!("0..3".parse::<Count>().unwrap_err().contains("at least 1"));
        assert!("x".parse::<Count>().unwrap_err().contains("not a whole number"));
    }
}
