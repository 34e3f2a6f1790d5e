//! Validity windows.
//!
//! `not_before` is backdated by [`CLOCK_SKEW`] so a certificate minted on
//! one host is already valid on a peer whose clock runs a little behind
//! (VMs in the lab resume with stale clocks). Times are truncated to whole
//! seconds because X.509 encodes seconds; the index then matches the
//! certificate exactly.

use time::{Duration, OffsetDateTime};

use crate::error::{Error, Result};

/// How far `not_before` (and a CRL's `thisUpdate`) is backdated.
pub const CLOCK_SKEW: Duration = Duration::minutes(5);
/// Default CA lifetime: 10 years.
pub const DEFAULT_CA_DAYS: u32 = 3650;
/// Default leaf lifetime: 1 year.
pub const DEFAULT_LEAF_DAYS: u32 = 365;
/// Default CRL lifetime (`nextUpdate - now`) for `certgen crl`.
pub const DEFAULT_CRL_DAYS: u32 = 30;
/// Upper bound for any `--days`: 100 years. Keeps date arithmetic far from
/// `time`'s range limits (which would otherwise panic) and catches typos.
pub const MAX_DAYS: u32 = 36_500;

/// When a certificate is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// From a few minutes ago ([`CLOCK_SKEW`]) until `days` days from now.
    Days(u32),
    /// An explicit window, e.g. entirely in the past for an expired test
    /// certificate. `not_before` must be earlier than `not_after`.
    Window {
        /// Start of validity.
        not_before: OffsetDateTime,
        /// End of validity.
        not_after: OffsetDateTime,
    },
}

impl Default for Validity {
    fn default() -> Self {
        Validity::Days(DEFAULT_LEAF_DAYS)
    }
}

impl Validity {
    /// Resolves to concrete `(not_before, not_after)`, validating inputs.
    pub fn resolve(&self, now: OffsetDateTime) -> Result<(OffsetDateTime, OffsetDateTime)> {
        match *self {
            Validity::Days(days) => {
                let days = check_days(days)?;
                let now = truncate(now);
                Ok((now - CLOCK_SKEW, now + days))
            }
            Validity::Window { not_before, not_after } => {
                let (nb, na) = (truncate(not_before), truncate(not_after));
                for t in [nb, na] {
                    // X.509 time cannot encode years outside 0..=9999 and
                    // the encoder would panic; dates before 1950 are
                    // pointless for a test CA.
                    if !(1950..=9999).contains(&t.year()) {
                        return Err(Error::invalid("validity window", t, "year must be within 1950..=9999"));
                    }
                }
                if nb >= na {
                    return Err(Error::invalid("validity window", format!("{nb} .. {na}"), "not_before must be earlier than not_after"));
                }
                Ok((nb, na))
            }
        }
    }
}

/// Validates a `--days` value and returns it as a duration.
pub(crate) fn check_days(days: u32) -> Result<Duration> {
    if days == 0 {
        return Err(Error::invalid("--days", days, "must be at least 1"));
    }
    if days > MAX_DAYS {
        return Err(Error::invalid("--days", days, format!("must be at most {MAX_DAYS} (100 years)")));
    }
    Ok(Duration::days(i64::from(days)))
}

/// Drops sub-second precision (X.509 time has none).
/// Also normalises to UTC so the index and displays agree with the DER.
pub(crate) fn truncate(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.checked_to_offset(time::UtcOffset::UTC).unwrap_or(t);
    t.replace_nanosecond(0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_window_is_backdated_and_bounded() {
        let now = OffsetDateTime::now_utc();
        let (nb, na) = Validity::Days(2).resolve(now).unwrap();
        assert_eq!(na - nb, Duration::days(2) + CLOCK_SKEW);
        assert!(nb < now && na > now);
        assert!(Validity::Days(0).resolve(now).is_err());
        assert!(Validity::Days(MAX_DAYS + 1).resolve(now).is_err());
        assert!(Validity::Days(u32::MAX).resolve(now).is_err());
    }

    #[test]
    fn window_must_be_ordered() {
        let now = OffsetDateTime::now_utc();
        let w = Validity::Window { not_before: now, not_after: now - Duration::days(1) };
        let err = w.resolve(now).unwrap_err().to_string();
        assert!(err.contains("not_before"), "{err}");
    }
}
