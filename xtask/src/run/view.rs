//! The live view: one screen per second (redrawn in place on a terminal,
//! appended otherwise) with every tier's figures and the latest events.

use std::{fmt::Write as _, io::IsTerminal as _};

use xdplb_tests::lab::demo::{Event, Frame, Observer};

/// How many recent events stay on screen.
const RECENT: usize = 8;

pub struct Live {
    tty: bool,
    recent: Vec<Event>,
}

impl Live {
    pub fn new() -> Live {
        Live { tty: std::io::stdout().is_terminal(), recent: Vec::new() }
    }
}

impl Observer for Live {
    fn started(&mut self, lab: &str, spec: &xdplb_tests::lab::demo::DemoSpec) {
        println!("[run] lab {lab} is up; load {} clients/s ({}) for {:?}; Ctrl-C stops early", spec.load.rate, spec.load.mix, spec.duration);
    }

    fn frame(&mut self, frame: &Frame, events: &[Event]) {
        self.recent.extend(events.iter().cloned());
        let skip = self.recent.len().saturating_sub(RECENT);
        self.recent.drain(..skip);
        let mut out = String::new();
        if self.tty {
            out.push_str("\x1b[H\x1b[2J");
        }
        out.push_str(&render(frame, &self.recent));
        print!("{out}");
    }
}

/// One screen.
pub fn render(f: &Frame, recent: &[Event]) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "── t = {:>5.1} s ─────────────────────────────────────────────────────", f.at.as_secs_f64());
    match &f.xdp {
        None => o.push_str("XDP   lb-user metrics not answering\n"),
        Some(x) => {
            let vips: Vec<String> = x.vip_flows.iter().map(|(v, r)| format!("{v} {r:.0} conn/s")).collect();
            let _ = writeln!(o, "XDP   {}", vips.join(" | "));
            let drops = if x.drops.is_empty() {
                String::from("none this second")
            } else {
                x.drops.iter().map(|(r, n)| format!("{r} {n:.0}")).collect::<Vec<_>>().join(", ")
            };
            let _ = writeln!(o, "      drops: {drops} (total {:.0})", x.drops_total);
            for ((vip, be), (rate, up)) in &x.backends {
                let _ = writeln!(o, "      {vip:<22} -> {be:<5} {rate:>5.0} conn/s  {}", if *up { "up" } else { "DOWN" });
            }
        }
    }
    for a in &f.albs {
        if !a.up {
            let _ = writeln!(o, "alb{}  not answering", a.id);
            continue;
        }
        let statuses: Vec<String> = a.statuses.iter().map(|(s, n)| format!("{s}:{n:.0}")).collect();
        let lat = match (a.p50_ms, a.p99_ms) {
            (Some(p50), Some(p99)) => format!("p50 <= {p50} ms, p99 <= {p99} ms"),
            _ => String::from("no requests"),
        };
        let _ = writeln!(o, "alb{}  {:>5.0} req/s  [{}]  {lat}", a.id, a.rps, statuses.join(" "));
        let bes: Vec<String> =
            a.backends.iter().filter(|(b, _)| b.as_str() != "none").map(|(b, (r, h))| format!("{b} {r:.0}/s {}", if *h { "up" } else { "DOWN" })).collect();
        let _ = writeln!(o, "      {}", bes.join(" | "));
    }
    for b in &f.backends {
        if b.up {
            let _ = writeln!(
                o,
                "be{}   http {:>5.0} req/s  echo {:>5.0} lines/s  {:>4.0} conn/s  refused/chaos {:.0}/s",
                b.id, b.http_rps, b.echo_per_s, b.conns_per_s, b.refused_chaos_per_s
            );
        } else {
            let _ = writeln!(o, "be{}   not answering (process down?)", b.id);
        }
    }
    o.push_str("client kind            started completed  failed      p50 ms   p99 ms\n");
    for k in &f.client {
        let reasons: Vec<String> = k.failed.iter().filter(|(_, n)| **n > 0).map(|(r, n)| format!("{r}:{n}")).collect();
        let _ = writeln!(
            o,
            "       {:<16} {:>7} {:>9} {:>7} {:>11.1} {:>8.1} {}",
            k.kind,
            k.started,
            k.completed,
            k.failed_total(),
            k.p50_ms,
            k.p99_ms,
            reasons.join(" ")
        );
    }
    if !recent.is_empty() {
        o.push_str("events:\n");
        for e in recent {
            let _ = writeln!(o, "  {e}");
        }
    }
    o
}
