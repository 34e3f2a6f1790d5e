//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>) `traceparent`:
//! checked on each request when the access log is on, passed to the backend
//! unchanged when valid, replaced by a fresh one when missing or invalid, so
//! the backend's logs and alb's access log name the same trace.
//!
//! alb forwards a valid header as it came (it does not start a span of its
//! own), so client, alb's log line and backend all see one `traceparent`.

use hyper::header::{HeaderMap, HeaderName, HeaderValue};

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// Vendor state that belongs to the client's trace; dropped with a
/// replaced `traceparent` (it would describe another trace).
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Where a request's `traceparent` came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The client sent a valid one; it is forwarded unchanged.
    Client,
    /// The client sent none; alb generated one.
    Generated,
    /// The client's was invalid (or there were several); alb generated one.
    Replaced,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Client => "client",
            Origin::Generated => "generated",
            Origin::Replaced => "replaced",
        }
    }
}

/// A request's trace context: the `traceparent` value the backend gets.
#[derive(Clone, Debug)]
pub struct TraceParent {
    /// The whole header value (55 characters for version 00).
    value: HeaderValue,
    pub origin: Origin,
}

impl TraceParent {
    /// The header value.
    pub fn value(&self) -> &str {
        // Only ASCII hex and dashes get here (checked or generated).
        self.value.to_str().unwrap_or_default()
    }

    /// The 32 lowercase hex digits of the trace id.
    pub fn trace_id(&self) -> &str {
        &self.value()[3..35]
    }

    /// The 16 lowercase hex digits of the parent (span) id.
    pub fn parent_id(&self) -> &str {
        &self.value()[36..52]
    }

    /// Reads the request's `traceparent` (one line, valid per
    /// [`parse`]) or makes a fresh one, and leaves exactly that one in
    /// `headers` for the backend. A replaced header's `tracestate` is
    /// removed with it.
    pub fn apply(headers: &mut HeaderMap) -> TraceParent {
        let mut lines = headers.get_all(&TRACEPARENT).iter();
        let (first, more) = (lines.next(), lines.next().is_some());
        let origin = match first {
            None => Origin::Generated,
            Some(v) if !more && parse(v.as_bytes()).is_some() => return TraceParent { value: v.clone(), origin: Origin::Client },
            Some(_) => Origin::Replaced,
        };
        let tp = TraceParent { value: generate(), origin };
        headers.insert(TRACEPARENT, tp.value.clone());
        if origin == Origin::Replaced {
            headers.remove(&TRACESTATE);
        }
        tp
    }
}

/// The fields of a valid `traceparent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fields<'a> {
    pub version: u8,
    pub trace_id: &'a str,
    pub parent_id: &'a str,
    pub flags: u8,
}

/// Parses a `traceparent` value per W3C Trace Context level 1 §3.2:
/// `version "-" trace-id "-" parent-id "-" trace-flags`, all lowercase hex;
/// version 2 digits and not `ff`; trace id 32 digits, not all zero; parent
/// id 16 digits, not all zero; flags 2 digits. Version 00 is exactly 55
/// characters; a later version may carry more after a `-` (§3.2.4: parse
/// what version 00 defines, ignore the rest). `None`: invalid.
pub fn parse(v: &[u8]) -> Option<Fields<'_>> {
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let version = hex_byte(&v[0..2])?;
    match version {
        0xff => return None,
        0 if v.len() != 55 => return None,
        _ if v.len() > 55 && v[55] != b'-' => return None,
        _ => {}
    }
    let (trace_id, parent_id) = (&v[3..35], &v[36..52]);
    let flags = hex_byte(&v[53..55])?;
    if !lower_hex_nonzero(trace_id) || !lower_hex_nonzero(parent_id) {
        return None;
    }
    // Checked as ASCII hex above.
    Some(Fields { version, trace_id: std::str::from_utf8(trace_id).ok()?, parent_id: std::str::from_utf8(parent_id).ok()?, flags })
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

fn lower_hex_nonzero(s: &[u8]) -> bool {
    s.iter().all(|&b| is_lower_hex(b)) && s.iter().any(|&b| b != b'0')
}

fn hex_byte(s: &[u8]) -> Option<u8> {
    if !s.iter().all(|&b| is_lower_hex(b)) {
        return None;
    }
    u8::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok()
}

/// A fresh version-00 `traceparent`: random trace and parent ids (never all
/// zero) and flags `01` (sampled: alb's access log records the request).
/// fastrand (a per-thread generator seeded from the OS) is enough: the ids
/// must be unique, not secret.
fn generate() -> HeaderValue {
    let nonzero = |bits: u32| loop {
        let n = fastrand::u128(..) >> (128 - bits);
        if n != 0 {
            return n;
        }
    };
    let (trace, parent) = (nonzero(128), nonzero(64));
    let s = format!("00-{trace:032x}-{parent:016x}-01");
    HeaderValue::from_str(&s).expect("hex and dashes are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specs_example_parses_into_its_fields() {
        let f = parse(SPEC_EXAMPLE.as_bytes()).unwrap();
        assert_eq!(f, Fields { version: 0, trace_id: "4bf92f3577b34da6a3ce929d0e0e4736", parent_id: "00f067aa0ba902b7", flags: 1 });
        assert_eq!(parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap().flags, 0);
        assert_eq!(parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff").unwrap().flags, 0xff);
    }

    #[test]
    fn invalid_values_are_refused() {
        let bad = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",     // no flags
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", // version 00 is 55 characters
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-011", // ditto
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // version ff
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // version not hex
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // trace id all zero
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // parent id all zero
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // uppercase
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",  // misplaced dash
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",  // flags not hex
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",  // separators
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",  // trace id not hex
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", // later version: more needs a dash
        ];
        for b in bad {
            assert_eq!(parse(b.as_bytes()), None, "{b:?} must be refused");
        }
    }

    #[test]
    fn a_later_version_is_read_as_version_00_with_the_rest_ignored() {
        let f = parse(b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds").unwrap();
        assert_eq!((f.version, f.trace_id, f.flags), (0xcc, "4bf92f3577b34da6a3ce929d0e0e4736", 1));
        assert!(parse(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_some());
    }

    #[test]
    fn generated_values_are_valid_fresh_and_sampled() {
        let a = generate();
        let f = parse(a.as_bytes()).unwrap_or_else(|| panic!("{a:?} is not valid"));
        assert_eq!((f.version, f.flags, a.len()), (0, 1, 55));
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| generate().to_str().unwrap()[3..35].to_owned()).collect();
        assert_eq!(ids.len(), 1000, "trace ids repeat");
    }

    #[test]
    fn apply_keeps_a_valid_one_and_replaces_missing_invalid_and_repeated_ones() {
        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_static(SPEC_EXAMPLE));
        h.insert(TRACESTATE, HeaderValue::from_static("congo=t61rcWkgMzE"));
        let tp = TraceParent::apply(&mut h);
        assert_eq!(
            (tp.origin, tp.value(), tp.trace_id(), tp.parent_id()),
            (Origin::Client, SPEC_EXAMPLE, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
        );
        assert_eq!((h.get(&TRACEPARENT).unwrap(), h.get(&TRACESTATE).is_some()), (&HeaderValue::from_static(SPEC_EXAMPLE), true));

        let mut h = HeaderMap::new();
        let tp = TraceParent::apply(&mut h);
        assert_eq!(tp.origin, Origin::Generated);
        assert_eq!(h.get(&TRACEPARENT).unwrap().to_str().unwrap(), tp.value());
        assert!(parse(tp.value().as_bytes()).is_some());

        let mut h = HeaderMap::new();
        h.insert(TRACEPARENT, HeaderValue::from_static("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
        h.insert(TRACESTATE, HeaderValue::from_static("congo=t61rcWkgMzE"));
        let tp = TraceParent::apply(&mut h);
        assert_eq!(tp.origin, Origin::Replaced);
        assert_eq!(h.get_all(&TRACEPARENT).iter().collect::<Vec<_>>(), [tp.value()]);
        assert!(h.get(&TRACESTATE).is_none(), "the replaced trace's tracestate goes with it");

        let mut h = HeaderMap::new();
        h.append(TRACEPARENT, HeaderValue::from_static(SPEC_EXAMPLE));
        h.append(TRACEPARENT, HeaderValue::from_static(SPEC_EXAMPLE));
        let tp = TraceParent::apply(&mut h);
        assert_eq!(tp.origin, Origin::Replaced, "two lines are not one trace context");
        assert_eq!(h.get_all(&TRACEPARENT).iter().count(), 1);
        assert_ne!(tp.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
