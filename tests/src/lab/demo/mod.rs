//! The two-tier demo (`cargo xtask run`), as a library so the integration
//! tests run exactly what the command runs: [`Topology`] up, the client
//! simulator driving load, a [`Scenario`]'s steps at their times, every tier
//! sampled each second into a [`Frame`] for the caller's live view, health
//! watched every 100 ms, then teardown and a [`Report`] (timeline, final
//! samples, the client's final report). See docs/demo.md.

pub mod compare;
pub mod compare_figures;
pub mod figures;
pub mod sample;
pub mod scenario;
pub mod timeline;
pub mod topology;
pub mod traffic;

use std::{
    sync::mpsc::Receiver,
    time::{Duration, Instant},
};

use anyhow::Result;
pub use figures::Frame;
pub use scenario::{Action, Scenario};
pub use timeline::{Event, HealthChange};
pub use topology::Topology;

use super::{alb_tier, chain::Chain, config::Check, Host};
use crate::watch::{Seen, Watch};

/// What to run.
#[derive(Clone, Debug)]
pub struct DemoSpec {
    /// Lab name prefix (a unique suffix is added).
    pub prefix: String,
    /// How long the load runs.
    pub duration: Duration,
    pub scenario: Scenario,
    /// lb-user's `attach_mode` (`None`: auto).
    pub attach_mode: Option<String>,
    pub load: traffic::Load,
}

impl DemoSpec {
    pub fn new(duration: Duration, scenario: Scenario) -> DemoSpec {
        DemoSpec { prefix: "xr".into(), duration, scenario, attach_mode: None, load: traffic::Load::default() }
    }
}

/// What the caller sees while it runs.
pub trait Observer {
    /// Everything is up; the load starts now.
    fn started(&mut self, lab: &str, spec: &DemoSpec);
    /// One second: the figures, and what happened since the last frame.
    fn frame(&mut self, frame: &Frame, events: &[Event]);
}

/// What a run saw.
#[derive(Clone, Debug)]
pub struct Report {
    pub lab: String,
    pub spec: DemoSpec,
    pub check: Check,
    /// The identity alb passes on for the client's certificate.
    pub identity: String,
    /// Steps as applied (time, step).
    pub steps: Vec<(Duration, Action)>,
    pub frames: Vec<Frame>,
    /// The last sample, taken after the client simulator ended.
    pub last: sample::Sample,
    pub health: Vec<HealthChange>,
    /// The client simulator's final report (`--json`).
    pub client: serde_json::Value,
    /// The load's length as run (shorter after Ctrl-C).
    pub ran: Duration,
}

impl Report {
    /// Everything in time order: steps, health changes, bursts.
    pub fn timeline(&self) -> Vec<Event> {
        let mut events: Vec<Event> = self.steps.iter().map(|(at, a)| Event { at: *at, tier: "scenario".into(), what: a.to_string() }).collect();
        events.extend(self.health.iter().map(HealthChange::event));
        events.extend(timeline::bursts(&self.frames));
        events.sort_by(|a, b| a.at.cmp(&b.at).then_with(|| a.tier.cmp(&b.tier)));
        events
    }
}

/// Runs the demo until `spec.duration` is over or a message arrives on `stop`.
pub fn run(spec: &DemoSpec, stop: &Receiver<()>, observer: &mut dyn Observer) -> Result<Report> {
    let mut topo = Topology::up(&spec.prefix, spec.attach_mode.clone())?;
    let lab = topo.chain.lab.name().to_owned();
    let (_, _, identity) = topo.client_identity()?;
    let watch_limit = spec.duration + Duration::from_secs(120);
    let period = Duration::from_millis(100);
    let xdp_watch = Watch::start(&topo.chain.lab.ns(Host::Lb), period, watch_limit, Chain::lb_user_health);
    let alb_watches: Vec<(u8, Watch)> = Topology::alb_ids()
        .map(|i| (i, Watch::start(&topo.chain.lab.ns(Host::Backend(i)), period, watch_limit, || alb_tier::backend_health(alb_tier::ADMIN))))
        .collect();
    let client = traffic::ClientSim::start(&topo, &spec.load, spec.duration)?;
    let t0 = Instant::now();
    observer.started(&lab, spec);
    let mut plan = spec.scenario.plan(spec.duration).into_iter().peekable();
    let (mut steps, mut frames, mut health_seen) = (Vec::new(), Vec::new(), 0usize);
    let mut prev = sample::Sample::default();
    let mut tick = 1u32;
    let mut client = client;
    let ran = loop {
        let mut events = Vec::new();
        let next_tick = t0 + Duration::from_secs(u64::from(tick));
        let mut stopped = false;
        // Steps due before the next frame happen at their own time.
        while let Some(step) = plan.next_if(|s| t0 + s.at <= next_tick) {
            if wait_until(t0 + step.at, stop) {
                stopped = true;
                break;
            }
            step.action.apply(&mut topo)?;
            let at = t0.elapsed();
            events.push(Event { at, tier: "scenario".into(), what: step.action.to_string() });
            steps.push((at, step.action));
        }
        stopped = stopped || wait_until(next_tick, stop);
        let mut cur = sample::take(&topo.chain.lab, t0.elapsed())?;
        cur.client = client.latest();
        let frame = figures::frame(&prev, &cur);
        let health = health_changes(t0, &xdp_watch.seen(), &alb_watches);
        events.extend(health.iter().skip(health_seen).map(HealthChange::event));
        health_seen = health.len();
        observer.frame(&frame, &events);
        frames.push(frame);
        prev = cur;
        tick += 1;
        if stopped || t0.elapsed() >= spec.duration || client.finished() {
            break t0.elapsed().min(spec.duration);
        }
    };
    let client_report = client.finish(Duration::from_secs(8))?;
    let mut last = sample::take(&topo.chain.lab, t0.elapsed())?;
    last.client = Some(client_report.clone());
    let health = health_changes(t0, &xdp_watch.stop()?, &alb_watches);
    for (_, w) in alb_watches {
        w.stop()?;
    }
    topo.chain.stop()?;
    Ok(Report { lab, spec: spec.clone(), check: topology::check(), identity, steps, frames, last, health, client: client_report, ran })
}

/// Sleeps until `when`; true if a stop message came first.
fn wait_until(when: Instant, stop: &Receiver<()>) -> bool {
    stop.recv_timeout(when.saturating_duration_since(Instant::now())).is_ok()
}

/// The health changes so far, every tier, in time order.
fn health_changes(t0: Instant, xdp: &Seen, albs: &[(u8, Watch)]) -> Vec<HealthChange> {
    let since = |at: Instant| at.saturating_duration_since(t0);
    let mut out: Vec<HealthChange> = xdp
        .changes
        .iter()
        .map(|c| {
            let (vip, backend) = c.key.split_once(' ').unwrap_or(("?", &c.key));
            HealthChange { at: since(c.at), tier: "xdp".into(), backend: Topology::host_name(backend), vip: Some(vip.to_owned()), up: c.up }
        })
        .collect();
    for (i, w) in albs {
        out.extend(w.seen().changes.iter().map(|c| HealthChange {
            at: since(c.at),
            tier: format!("alb{i}"),
            backend: Topology::host_name(&c.key),
            vip: None,
            up: c.up,
        }));
    }
    out.sort_by_key(|c| c.at);
    out
}
