//! `GET /api/state`'s JSON: the supervisor's [`StateView`], each VIP and
//! backend with its counters (summed over CPUs) and per-second rates, and
//! the whole counter set as `lb-user stats --json` prints it (`counters`,
//! `rates`: the same shapes, `crate::stats`).
//!
//! Rates are computed between this request's sample and an earlier one at
//! least [`MIN_WINDOW`](lb_common::userspace::rates::MIN_WINDOW) older, kept from an earlier request; so the
//! first request has none (`null`), and clients polling faster than the
//! window still see rates over at least that long, not noise.

use std::time::Instant;

use lb_common::userspace::rates::SampleWindow;
use serde_json::{json, Map, Value};

use super::StateView;
use crate::stats::{Rate, Rates, Report};

/// The samples rates are computed from.
#[derive(Default)]
pub struct RateBase {
    samples: SampleWindow<Report>,
}

impl RateBase {
    /// Rates from the base sample to `now` (`None` until there is one at
    /// least [`MIN_WINDOW`](lb_common::userspace::rates::MIN_WINDOW) old), keeping `now` for later requests.
    pub fn rates(&self, now: &Report, at: Instant) -> Option<Rates> {
        self.samples.since_base(now, at, |before, elapsed| Rates::between(before, now, elapsed))
    }
}

fn counts(packets: impl Into<Value>, bytes: impl Into<Value>, new_flows: impl Into<Value>) -> Value {
    json!({"packets": packets.into(), "bytes": bytes.into(), "new_flows": new_flows.into()})
}

fn rate(r: Option<&Rate>) -> Value {
    r.map_or(Value::Null, |r| counts(r.packets, r.bytes, r.new_flows))
}

/// The JSON of `view`, with rates from `base`.
pub fn render(view: &StateView, base: &RateBase) -> Value {
    let (report, error) = match &view.counters {
        Ok(r) => (Some(r), None),
        Err(e) => (None, Some(e.clone())),
    };
    let rates = report.and_then(|r| base.rates(r, Instant::now()));
    let counter_of = |rows: &[(u32, lb_common::lb::FlowCounter)], id: Option<u32>| -> Value {
        let c = id.and_then(|id| rows.iter().find(|(i, _)| *i == id));
        c.map_or(Value::Null, |(_, c)| counts(c.packets, c.bytes, c.new_flows))
    };
    let rate_of = |rows: &[(u32, Rate)], id: Option<u32>| rate(id.and_then(|id| rows.iter().find(|(i, _)| *i == id).map(|(_, r)| r)));
    let vips: Vec<Value> = view
        .vips
        .iter()
        .map(|v| {
            let mut vip = to_map(v);
            let backends: Vec<Value> = v
                .backends
                .iter()
                .map(|b| {
                    let mut row = to_map(b);
                    row.insert("counters".into(), report.map_or(Value::Null, |r| counter_of(&r.backends, b.id)));
                    row.insert("rates".into(), rates.as_ref().map_or(Value::Null, |x| rate_of(&x.backends, b.id)));
                    Value::Object(row)
                })
                .collect();
            vip.insert("backends".into(), Value::Array(backends));
            vip.insert("counters".into(), report.map_or(Value::Null, |r| counter_of(&r.vips, v.id)));
            // The live table's fingerprint (null: not a Maglev VIP or no counters).
            vip.insert("maglev_fingerprint".into(), report.and_then(|r| r.maglev_fingerprint(v.id?)).into());
            vip.insert("rates".into(), rates.as_ref().map_or(Value::Null, |x| rate_of(&x.vips, v.id)));
            Value::Object(vip)
        })
        .collect();
    let mut out = json!({
        "vips": vips,
        "overrides": view.overrides,
        "counters": report.map_or(Value::Null, Report::to_json),
        "rates": match (report, &rates) {
            (Some(r), Some(x)) => x.to_json(r),
            _ => Value::Null,
        },
    });
    if let Some(e) = error {
        out["counters_error"] = e.into();
    }
    out
}

fn to_map(v: &impl serde::Serialize) -> Map<String, Value> {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::api::{BackendView, VipView};

    fn view(report: Report) -> StateView {
        let backend = BackendView {
            id: Some(0),
            address: "198.18.1.11:8080".parse().unwrap(),
            weight: 1,
            mac: None,
            in_file: true,
            health: "up",
            next_hop: None,
            drain: "active",
            seconds_left: None,
            live_flows: None,
            in_tables: true,
        };
        let vip = VipView {
            name: "web".into(),
            id: Some(0),
            address: "198.18.100.1:80".parse().unwrap(),
            protocol: "tcp".into(),
            algorithm: Default::default(),
            forwarding: Default::default(),
            backends: vec![backend],
        };
        StateView { vips: vec![vip], overrides: Vec::new(), counters: Ok(report) }
    }

    #[test]
    fn counters_per_backend_and_rates_over_at_least_the_window() {
        let base = RateBase::default();
        let mut r = crate::stats::tests::sample();
        let t0 = Instant::now();
        assert!(base.rates(&r, t0).is_none(), "no earlier sample");
        assert!(base.rates(&r, t0 + Duration::from_millis(100)).is_none(), "too soon to be the base");
        let before = r.backends[0].1.packets;
        r.backends[0].1.packets += 100;
        let x = base.rates(&r, t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(x.seconds, 1.0);
        assert_eq!(x.backends[0].1.packets, 100.0);
        // A quick second poll: still over the full window from t0.
        let x = base.rates(&r, t0 + Duration::from_millis(1100)).unwrap();
        assert!((x.seconds - 1.1).abs() < 1e-9);

        let json = render(&view(r.clone()), &base);
        let b = &json["vips"][0]["backends"][0];
        assert_eq!(b["counters"]["packets"], before + 100);
        assert_eq!((b["health"].as_str(), b["drain"].as_str(), b["in_tables"].as_bool()), (Some("up"), Some("active"), Some(true)));
        assert!(b["rates"]["packets"].is_number(), "{b}");
        assert_eq!(json["vips"][0]["algorithm"], "maglev");
        assert_eq!(json["vips"][0]["maglev_fingerprint"], "39b5be73");
        assert_eq!(json["counters"], r.to_json(), "the stats --json shape");
        assert!(json.get("counters_error").is_none());

        let mut failed = view(r);
        failed.counters = Err("no xdplb program is attached".into());
        let json = render(&failed, &RateBase::default());
        assert_eq!((json["counters"].clone(), json["counters_error"].as_str()), (Value::Null, Some("no xdplb program is attached")));
        assert_eq!(json["vips"][0]["backends"][0]["counters"], Value::Null);
    }
}
