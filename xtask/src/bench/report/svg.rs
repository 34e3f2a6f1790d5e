//! chart.svg: req/s and CPU per request of every case as bars.

use std::fmt::Write as _;

use super::{fmt_rps, model::Summary};

pub(crate) fn esc(t: &str) -> String {
    t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Position on a log10 axis from `lo` to `hi`, 0..=1 (values below `lo` at 0).
pub(crate) fn log_pos(v: f64, lo: f64, hi: f64) -> f64 {
    if v <= lo {
        return 0.0;
    }
    ((v / lo).log10() / (hi / lo).log10()).clamp(0.0, 1.0)
}

/// chart.svg: two bar panels side by side on log scales (the cases span
/// three orders of magnitude): req/s, and machine CPU µs/request with the
/// LB's share darker, for every case.
pub fn svg(s: &Summary) -> String {
    let rows: Vec<(String, f64, f64, f64)> = s
        .cases
        .iter()
        .map(|c| {
            let st = c.stats();
            (c.case.id(), st.rps, st.machine_us, s.lb_cost(c).unwrap_or(0.0).max(0.0))
        })
        .collect();
    let (label_w, bar_w, row_h, top) = (230.0, 300.0, 18.0, 58.0);
    let width = label_w + 2.0 * (bar_w + 90.0);
    let height = top + rows.len() as f64 * row_h + 30.0;
    let decade_up = |v: f64| 10f64.powf(v.max(1.0).log10().ceil());
    let (rps_lo, rps_hi) = (100.0, decade_up(rows.iter().map(|r| r.1).fold(1000.0, f64::max)));
    let (cpu_lo, cpu_hi) = (1.0, decade_up(rows.iter().map(|r| r.2.max(r.3)).fold(10.0, f64::max)));
    let mut o = String::new();
    let _ = writeln!(o, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="11">"#);
    let _ = writeln!(o, r##"<rect width="100%" height="100%" fill="#fff"/>"##);
    let x1 = label_w;
    let x2 = label_w + bar_w + 90.0;
    let _ = writeln!(o, r#"<text x="{x1}" y="16" font-size="13" font-weight="bold">requests/s (median, log scale)</text>"#);
    let _ = writeln!(o, r#"<text x="{x2}" y="16" font-size="13" font-weight="bold">CPU µs/request (log): machine light, LB dark</text>"#);
    let _ = writeln!(
        o,
        r##"<text x="{x1}" y="30" fill="#555">{}</text>"##,
        esc(&format!("{} s × {} reps, {} conns{}", s.duration_s, s.repetitions, s.conns, if s.quick { ", quick: not for comparison" } else { "" }))
    );
    // Decade grid lines with labels.
    let bottom = top + rows.len() as f64 * row_h;
    for (x0, lo, hi) in [(x1, rps_lo, rps_hi), (x2, cpu_lo, cpu_hi)] {
        let mut d = lo;
        while d <= hi * 1.0001 {
            let x = x0 + log_pos(d, lo, hi) * bar_w;
            let _ = writeln!(o, r##"<line x1="{x:.1}" y1="{:.0}" x2="{x:.1}" y2="{bottom:.0}" stroke="#ddd"/>"##, top - 4.0);
            let label = if d >= 1000.0 { format!("{}k", d / 1000.0) } else { format!("{d}") };
            let _ = writeln!(o, r##"<text x="{x:.1}" y="{:.0}" text-anchor="middle" fill="#777">{label}</text>"##, top - 8.0);
            d *= 10.0;
        }
    }
    for (i, (id, rps, cpu, lb)) in rows.iter().enumerate() {
        let y = top + i as f64 * row_h;
        let color = if id.starts_with("xdp") {
            "#2a7"
        } else if id.starts_with("direct") {
            "#888"
        } else if id.starts_with("alb") || id.starts_with("lb-user") {
            "#27a"
        } else {
            "#c73"
        };
        let _ = writeln!(o, r#"<text x="{:.0}" y="{:.0}" text-anchor="end">{}</text>"#, label_w - 6.0, y + 12.0, esc(id));
        let w = log_pos(*rps, rps_lo, rps_hi) * bar_w;
        let _ = writeln!(o, r#"<rect x="{x1}" y="{:.0}" width="{w:.1}" height="{:.0}" fill="{color}"/>"#, y + 2.0, row_h - 4.0);
        let _ = writeln!(o, r#"<text x="{:.1}" y="{:.0}">{}</text>"#, x1 + w + 4.0, y + 12.0, fmt_rps(*rps));
        let wc = log_pos(*cpu, cpu_lo, cpu_hi) * bar_w;
        let wl = log_pos(*lb, cpu_lo, cpu_hi) * bar_w;
        let _ = writeln!(o, r#"<rect x="{x2}" y="{:.0}" width="{wc:.1}" height="{:.0}" fill="{color}" fill-opacity="0.35"/>"#, y + 2.0, row_h - 4.0);
        let _ = writeln!(o, r#"<rect x="{x2}" y="{:.0}" width="{wl:.1}" height="{:.0}" fill="{color}"/>"#, y + 2.0, row_h - 4.0);
        let _ = writeln!(o, r#"<text x="{:.1}" y="{:.0}">{:.1} / {:.1}</text>"#, x2 + wc.max(wl) + 4.0, y + 12.0, cpu, lb);
    }
    let _ = writeln!(o, "</svg>");
    o
}
