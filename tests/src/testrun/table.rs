//! Single-packet fixtures as a table, in the style of Katran's test
//! fixtures: each row is a description, an input frame, the expected verdict,
//! the expected output frame and the expected counters. One loop runs every
//! row and reports every failing row by its description, so a regression
//! shows all the cases it breaks at once instead of the first.
//!
//! Counters are checked per row, against a snapshot taken just before it:
//! every frame lands in exactly one per-action `Stat` (docs/xdp.md), so the
//! row's stat must grow by one packet of the frame's length and every other
//! stat must stay put. Rows that name traffic classes get the same check on
//! the traffic-class counters.
//!
//! Multi-step flows (conntrack, reverse NAT, table swaps) depend on the rows
//! before them and stay ordinary test functions.

use lb_common::{PacketCounter, Stat, TrafficClass};

use super::{verdict_name, Harness};
use crate::packet;

/// The frame a row expects the program to leave behind.
#[derive(Clone, Debug)]
pub enum Output {
    /// Byte for byte the input (passed or dropped without a rewrite).
    Unchanged,
    /// Byte for byte this frame, whose checksums must also verify (built
    /// independently, with fresh checksums).
    Frame(Vec<u8>),
}

#[derive(Clone, Debug)]
pub struct Fixture {
    pub description: String,
    /// Ingress ifindex for the `xdp_md` context; `None` passes no context.
    pub ingress: Option<u32>,
    pub input: Vec<u8>,
    pub verdict: u32,
    pub output: Output,
    pub stat: Stat,
    /// Traffic classes the frame is counted in; `None`: not checked.
    pub traffic: Option<Vec<TrafficClass>>,
}

impl Fixture {
    pub fn new(description: impl Into<String>, input: Vec<u8>, verdict: u32, output: Output, stat: Stat) -> Fixture {
        Fixture { description: description.into(), ingress: None, input, verdict, output, stat, traffic: None }
    }

    /// As received on `ifindex`.
    pub fn on(self, ifindex: u32) -> Fixture {
        Fixture { ingress: Some(ifindex), ..self }
    }

    /// Counted in exactly these traffic classes.
    pub fn traffic(self, classes: &[TrafficClass]) -> Fixture {
        Fixture { traffic: Some(classes.to_vec()), ..self }
    }
}

/// Runs every row in order; returns one message per failing row.
pub fn check(xdp: &mut Harness, fixtures: &[Fixture]) -> Vec<String> {
    let mut failures = Vec::new();
    for row in fixtures {
        let (stats_before, traffic_before) = (xdp.stats(), xdp.traffic());
        let out = match xdp.try_run(row.ingress, &row.input) {
            Ok(out) => out,
            Err(err) => {
                failures.push(format!("{}: {err:#}", row.description));
                continue;
            }
        };
        let mut wrong = Vec::new();
        if out.verdict != row.verdict {
            wrong.push(format!("verdict {} instead of {}", verdict_name(out.verdict), verdict_name(row.verdict)));
        }
        match &row.output {
            Output::Unchanged if out.frame != row.input => wrong.push(format!("frame changed:\n    in  {}\n    out {}", hex(&row.input), hex(&out.frame))),
            Output::Frame(want) if out.frame != *want => wrong.push(format!("output frame differs:\n    want {}\n    got  {}", hex(want), hex(&out.frame))),
            Output::Frame(_) => {
                if let Err(bad) = packet::verify_checksums(&untagged(&out.frame)) {
                    wrong.push(bad);
                }
            }
            Output::Unchanged => {}
        }
        let one = PacketCounter { packets: 1, bytes: row.input.len() as u64 };
        let stats_after = xdp.stats();
        for stat in Stat::ALL {
            let i = stat.index() as usize;
            let want = if stat == row.stat { add(stats_before[i], one) } else { stats_before[i] };
            if stats_after[i] != want {
                wrong.push(format!("stat {}: {:?} -> {:?}, expected {want:?}", stat.name(), stats_before[i], stats_after[i]));
            }
        }
        if let Some(classes) = &row.traffic {
            let traffic_after = xdp.traffic();
            for class in TrafficClass::ALL {
                let before = traffic_before.get(class);
                let want = if classes.contains(&class) { add(before, one) } else { before };
                if traffic_after.get(class) != want {
                    wrong.push(format!("traffic class {}: {before:?} -> {:?}, expected {want:?}", class.name(), traffic_after.get(class)));
                }
            }
        }
        if !wrong.is_empty() {
            failures.push(format!("{}:\n  {}", row.description, wrong.join("\n  ")));
        }
    }
    failures
}

/// Runs every row; panics listing every failing row.
pub fn run_table(xdp: &mut Harness, fixtures: &[Fixture]) {
    let failures = check(xdp, fixtures);
    assert!(failures.is_empty(), "{} of {} fixtures failed:\n{}", failures.len(), fixtures.len(), failures.join("\n"));
}

fn add(a: PacketCounter, b: PacketCounter) -> PacketCounter {
    PacketCounter { packets: a.packets + b.packets, bytes: a.bytes + b.bytes }
}

/// The frame without its 802.1Q tag, for the checksum check.
fn untagged(frame: &[u8]) -> Vec<u8> {
    if frame.len() >= 18 && frame[12..14] == [0x81, 0x00] {
        [&frame[..12], &frame[16..]].concat()
    } else {
        frame.to_vec()
    }
}

fn hex(frame: &[u8]) -> String {
    frame.iter().map(|b| format!("{b:02x}")).collect()
}
