//! scaling.md (tables) and scaling.svg (cost against size, one panel per
//! dimension, in the style of the bench's chart.svg).

use std::fmt::Write as _;

use serde_json::Value;

use crate::bench::report::svg::{esc, log_pos};

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(0.0)
}

/// median (min–max) of a spread object.
fn range(v: &Value, digits: usize) -> String {
    format!("{:.d$} ({:.d$}–{:.d$})", f(v, "median"), f(v, "min"), f(v, "max"), d = digits)
}

fn failed(m: &mut String, part: &Value) -> bool {
    if let Some(e) = part["error"].as_str() {
        let _ = writeln!(m, "**not measured**: {e}\n");
        return true;
    }
    false
}

pub fn markdown(s: &Value) -> String {
    let mut m = String::new();
    let _ = writeln!(
        m,
        "# Scaling ({}{})\n",
        s["started"].as_str().unwrap_or(""),
        if s["quick"] == true { ", quick: sizes capped, not for comparison" } else { "" }
    );
    let _ = writeln!(m, "Figures are median (min–max) over the repetitions.\n\n## XDP program cost per established-flow NAT forward\n");
    let x = &s["xdp"];
    if !failed(&mut m, x) {
        let _ = writeln!(
            m,
            "Balancer alone: prologue → balancer minus prologue alone, {} repetitions; Maglev size {} for every point; \
the generator cycles over every conntrack entry.\n",
            x["reps"], x["maglev_size"]
        );
        let _ = writeln!(
            m,
            "| dimension | backends | conntrack entries (map capacity) | repeat | ns/packet, balancer | ns/packet with prologue |\n|---|---|---|---|---|---|"
        );
        for dim in ["backends", "conntrack"] {
            for p in x[dim].as_array().into_iter().flatten() {
                let _ = writeln!(
                    m,
                    "| {dim} | {} | {} ({}) | {} | {} | {} |",
                    p["backends"],
                    p["entries"],
                    p["max_flows"],
                    p["repeat"],
                    range(&p["ns"], 0),
                    range(&p["with_prologue_ns"], 0)
                );
            }
        }
    }
    let _ = writeln!(m, "\n## lb-user reload with many backends\n");
    let r = &s["reload"];
    if !failed(&mut m, r) {
        let _ = writeln!(
            m,
            "{} backends in {} VIPs, Maglev size {}, empty conntrack; from the config write (plus SIGHUP) to \"reload applied\".\n",
            r["backends"], r["vips"], r["maglev_size"]
        );
        let _ = writeln!(m, "| figure | value |\n|---|---|");
        let _ = writeln!(m, "| attach (startup) | {:.2} s |", f(r, "startup_s"));
        let _ = writeln!(m, "| reload, one backend removed or restored | {} ms |", range(&r["one_backend_ms"], 1));
        let _ = writeln!(m, "| reload, every backend's weight changed (every table rebuilt) | {} ms |", range(&r["reweight_all_ms"], 1));
        let _ = writeln!(m, "| lb-user RSS (peak) | {:.1} MiB ({:.1}) |", f(r, "lb_user_rss_mib"), f(r, "lb_user_hwm_mib"));
        let _ = writeln!(m, "| BPF maps held by lb-user (memlock) | {:.1} MiB |", f(r, "bpf_map_mib"));
    }
    let _ = writeln!(m, "\n## alb per keep-alive request with open connections\n");
    let a = &s["alb"];
    if !failed(&mut m, a) {
        let _ = writeln!(
            m,
            "| idle TLS connections open (held) | wrk conns | req/s | p99 ms | alb µs/request | errors | alb RSS MiB |\n|---|---|---|---|---|---|---|"
        );
        for l in a["levels"].as_array().into_iter().flatten() {
            let _ = writeln!(
                m,
                "| {} ({}) | {} | {} | {} | {} | {} | {:.1} |",
                l["open"],
                l["held"],
                l["conns"],
                range(&l["rps"], 0),
                range(&l["p99_ms"], 2),
                range(&l["lb_us"], 1),
                l["errors"],
                f(l, "alb_rss_mib")
            );
        }
    }
    m
}

/// A plotted point: size, median, min, max.
type Point = (f64, f64, f64, f64);

/// The panels' points: (title, x axis label, points).
fn panels(s: &Value) -> Vec<(&'static str, &'static str, Vec<Point>)> {
    let pts = |list: &Value, x: &str, y: &str| -> Vec<Point> {
        list.as_array().into_iter().flatten().map(|p| (f(p, x), f(&p[y], "median"), f(&p[y], "min"), f(&p[y], "max"))).collect()
    };
    vec![
        ("XDP ns/packet vs backends", "backends", pts(&s["xdp"]["backends"], "size", "ns")),
        ("XDP ns/packet vs conntrack entries", "conntrack entries", pts(&s["xdp"]["conntrack"], "size", "ns")),
        ("alb µs/request vs open connections", "idle TLS connections", pts(&s["alb"]["levels"], "open", "lb_us")),
    ]
}

pub fn svg(s: &Value) -> String {
    let (pw, ph, gap, top, left) = (260.0, 180.0, 70.0, 48.0, 50.0);
    let all = panels(s);
    let width = left + all.len() as f64 * (pw + gap);
    let height = top + ph + 50.0;
    let mut o = String::new();
    let _ = writeln!(o, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="11">"#);
    let _ = writeln!(o, r##"<rect width="100%" height="100%" fill="#fff"/>"##);
    let note = if s["quick"] == true { "quick: sizes capped, not for comparison" } else { "median, bars: min–max of the repetitions" };
    let _ = writeln!(o, r##"<text x="{left}" y="14" fill="#555">{}</text>"##, esc(&format!("cost vs size ({note}); log x, linear y from 0")));
    for (i, (title, xlabel, points)) in all.iter().enumerate() {
        let x0 = left + i as f64 * (pw + gap);
        let bottom = top + ph;
        let _ = writeln!(o, r#"<text x="{x0}" y="{:.0}" font-size="13" font-weight="bold">{}</text>"#, top - 14.0, esc(title));
        let _ = writeln!(
            o,
            r##"<line x1="{x0}" y1="{bottom}" x2="{:.0}" y2="{bottom}" stroke="#777"/><line x1="{x0}" y1="{top}" x2="{x0}" y2="{bottom}" stroke="#777"/>"##,
            x0 + pw
        );
        let _ = writeln!(o, r##"<text x="{:.0}" y="{:.0}" text-anchor="middle" fill="#555">{}</text>"##, x0 + pw / 2.0, bottom + 32.0, esc(xlabel));
        if points.is_empty() {
            let _ = writeln!(o, r##"<text x="{:.0}" y="{:.0}" fill="#c33">not measured</text>"##, x0 + 10.0, top + ph / 2.0);
            continue;
        }
        let lo = points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min).max(1.0);
        let hi = points.iter().map(|p| p.0).fold(1.0, f64::max).max(lo * 10.0);
        let ymax = points.iter().map(|p| p.3.max(p.1)).fold(1.0, f64::max) * 1.15;
        let px = |v: f64| x0 + 10.0 + log_pos(v, lo, hi) * (pw - 20.0);
        let py = |v: f64| bottom - (v / ymax).clamp(0.0, 1.0) * ph;
        for k in 0..=4 {
            let v = ymax * f64::from(k) / 4.0;
            let _ = writeln!(o, r##"<line x1="{x0}" y1="{:.1}" x2="{:.0}" y2="{:.1}" stroke="#eee"/>"##, py(v), x0 + pw, py(v));
            let _ = writeln!(o, r##"<text x="{:.0}" y="{:.1}" text-anchor="end" fill="#777">{v:.0}</text>"##, x0 - 4.0, py(v) + 4.0);
        }
        let line: Vec<String> = points.iter().map(|p| format!("{:.1},{:.1}", px(p.0), py(p.1))).collect();
        let _ = writeln!(o, r##"<polyline points="{}" fill="none" stroke="#27a" stroke-width="2"/>"##, line.join(" "));
        for &(x, med, min, max) in points {
            let _ = writeln!(o, r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#27a"/>"##, px(x), py(min), px(x), py(max));
            let _ = writeln!(o, r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="#27a"/>"##, px(x), py(med));
            let _ = writeln!(o, r##"<text x="{:.1}" y="{:.0}" text-anchor="middle" fill="#555">{}</text>"##, px(x), bottom + 14.0, esc(&size_label(x)));
            let _ = writeln!(o, r#"<text x="{:.1}" y="{:.1}">{med:.0}</text>"#, px(x) + 5.0, py(med) - 5.0);
        }
    }
    let _ = writeln!(o, "</svg>");
    o
}

fn size_label(v: f64) -> String {
    if v >= 1e6 && v % 1e6 == 0.0 {
        format!("{}M", v / 1e6)
    } else if v >= 1e3 && v % 1e3 == 0.0 {
        format!("{}k", v / 1e3)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn outputs_show_every_point_and_name_a_failed_part() {
        let sp = |m: f64| json!({"median": m, "min": m - 1.0, "max": m + 1.0});
        let s = json!({
            "started": "t", "quick": false,
            "xdp": {"reps": 3, "maglev_size": 102407,
                "backends": [{"size": 1, "backends": 1, "entries": 1000, "ns": sp(250.0), "with_prologue_ns": sp(290.0)}, {"size": 1024, "backends": 1024, "entries": 1000, "ns": sp(260.0), "with_prologue_ns": sp(300.0)}],
                "conntrack": [{"size": 1000, "backends": 64, "entries": 1000, "ns": sp(250.0), "with_prologue_ns": sp(290.0)}]},
            "reload": {"error": "lab failed"},
            "alb": {"levels": [{"open": 1, "held": 1, "conns": 64, "rps": sp(9000.0), "p99_ms": sp(2.0), "lb_us": sp(30.0), "errors": 0, "alb_rss_mib": 20.0}]},
        });
        let md = super::markdown(&s);
        assert!(md.contains("| backends | 1024 | 1000") && md.contains("260 (259–261)"), "{md}");
        assert!(md.contains("**not measured**: lab failed"), "{md}");
        let svg = super::svg(&s);
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert!(svg.contains(">1k<") && svg.contains(">1024<"), "{svg}");
    }
}
