//! The one duration grammar of every config file and command-line flag:
//! one or more `<integer><unit>` parts, optionally separated by spaces, e.g.
//! `2s`, `500ms`, `1m30s`, `1h 5m`. Units: `ns`, `us` (or `µs`), `ms`, `s`,
//! `m` (or `min`), `h`, `d`.
//!
//! [`parse_duration`] is the strict form (lb-user's config). A bare number
//! has no unit there and is refused, because `timeout: 5` could mean seconds
//! or milliseconds. [`parse_duration_or_seconds`] also takes a bare number of
//! seconds (`5`, `0.5`) for the places that always took one: alb's file (its
//! duration keys were bare seconds before this grammar existed) and flags
//! such as `--duration 6`.

use std::time::Duration;

const UNITS: &str = "ns, us, ms, s, m, h, d";

/// Parses `text` in the strict grammar. The error says what is wrong and
/// what is allowed (without the field path, which the caller adds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = |why: &str| format!("{text:?} is not a duration ({why}); write an integer with a unit ({UNITS}), e.g. \"2s\", \"500ms\" or \"1m30s\"");
    let s = text.trim();
    if s.is_empty() {
        return Err(bad("empty"));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad("expected a number"));
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad("number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c.is_whitespace()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let part = match unit {
            "ns" => Some(Duration::from_nanos(n)),
            "us" | "µs" => Some(Duration::from_micros(n)),
            "ms" => Some(Duration::from_millis(n)),
            "s" | "sec" => Some(Duration::from_secs(n)),
            "m" | "min" => n.checked_mul(60).map(Duration::from_secs),
            "h" => n.checked_mul(3600).map(Duration::from_secs),
            "d" => n.checked_mul(86_400).map(Duration::from_secs),
            "" => return Err(bad("missing unit")),
            other => return Err(bad(&format!("unknown unit {other:?}"))),
        };
        total = part.and_then(|p| total.checked_add(p)).ok_or_else(|| bad("too large"))?;
    }
    Ok(total)
}

/// [`parse_duration`], or a bare non-negative number of seconds (`5`,
/// `0.25`).
pub fn parse_duration_or_seconds(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return seconds(s.parse::<f64>().map_err(|_| format!("{text:?} is not a number of seconds"))?);
    }
    parse_duration(text).map_err(|e| format!("{e}, or a number of seconds"))
}

/// A number of seconds as a YAML or JSON number gives it.
pub fn seconds(n: f64) -> Result<Duration, String> {
    if n.is_finite() && n >= 0.0 {
        Duration::try_from_secs_f64(n).map_err(|_| format!("{n} seconds is too large"))
    } else {
        Err(format!("{n} is not a duration (negative or not a number)"))
    }
}

/// `d` as written in messages: whole seconds as `30s`, else milliseconds.
pub fn show(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{d:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        let ok = [
            ("2s", Duration::from_secs(2)),
            ("500ms", Duration::from_millis(500)),
            ("1m30s", Duration::from_secs(90)),
            ("1h 5m", Duration::from_secs(3900)),
            ("2min", Duration::from_secs(120)),
            ("1d", Duration::from_secs(86_400)),
            ("10us", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("0s", Duration::ZERO),
            (" 3s ", Duration::from_secs(3)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
            assert_eq!(parse_duration_or_seconds(text), Ok(want), "{text}");
        }
        for bad in ["", "2", "s", "2x", "1.5s", "-1s", "2 s", "99999999999999999999s", "9999999999999999999d"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")) && err.contains("e.g."), "{bad}: {err}");
        }
        assert_eq!(show(Duration::from_secs(30)), "30s");
        assert_eq!(show(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn seconds_form_takes_bare_numbers_only_where_asked() {
        assert_eq!(parse_duration_or_seconds("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration_or_seconds("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration_or_seconds("1m30s"), Ok(Duration::from_secs(90)));
        for bad in ["", "-1", "1.2.3", "5x", "1e3", "."] {
            assert!(parse_duration_or_seconds(bad).is_err(), "{bad}");
        }
        assert!(parse_duration_or_seconds("5x").unwrap_err().contains("or a number of seconds"));
        assert!(seconds(-1.0).is_err() && seconds(f64::NAN).is_err() && seconds(1e30).is_err());
        assert_eq!(seconds(1.5), Ok(Duration::from_millis(1500)));
    }
}
