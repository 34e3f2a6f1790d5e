//! The web dashboards in headless Chromium (docs/operations.md
//! "Dashboard", docs/alb.md): lb-user's at `/` of its control API with
//! backends and traffic in the lab, alb's at `/` of its admin listener with
//! requests through it. Each page loads without console errors and
//! fetches nothing from another origin, shows the lab's backends, its live
//! figures move while a bounded traffic loop runs, and its buttons act
//! through the API (checked through the API, not the page). Screenshots go
//! to `target/screenshots/`.
//!
//! Chromium runs in the namespace that serves the page (`browser`): both
//! listeners stay on that namespace's loopback, as they are meant to.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::Result;
use serde_json::Value;
use xdplb_tests::{
    browser::Browser,
    http,
    lab::{
        alb_tier::{self, AlbTier, TierSpec},
        config::{Check, LbConfig, Vip},
        Host, Lab,
    },
    lbuser::LbUser,
    netns, require_root,
};

const WAIT: Duration = Duration::from_secs(15);
const CHECK: Check = Check { interval: Duration::from_millis(200), timeout: Duration::from_millis(150), rise: 1, fall: 3 };

/// Requests from namespace `ns` until stopped, at most 3000 or 60 s.
struct Traffic {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Traffic {
    fn start(ns: String, request: impl Fn() -> Result<http::Response> + Send + 'static) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let _ = netns::run_in(&ns, move || {
                let end = Instant::now() + Duration::from_secs(60);
                for _ in 0..3000 {
                    if flag.load(Ordering::Relaxed) || Instant::now() > end {
                        break;
                    }
                    let _ = request();
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(())
            });
        });
        Traffic { stop, thread: Some(thread) }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// No console errors, and every resource the page loaded is its own.
fn assert_clean(browser: &Browser, origin: &str) {
    let errors = browser.console_errors().unwrap();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    let urls = browser.eval("return performance.getEntriesByType('resource').map(e => e.name)").unwrap();
    for u in urls.as_array().unwrap() {
        assert!(u.as_str().unwrap().starts_with(origin), "{u} is not from {origin}");
    }
}

#[test]
fn lb_user_dashboard_shows_backends_and_rates_and_drains_on_a_click() {
    require_root!();
    let started = Instant::now();
    let mut lab = Lab::up_unique("xd", 2).unwrap();
    lab.start_backends().unwrap();
    let api: SocketAddr = "127.0.0.1:9901".parse().unwrap();
    let vip: SocketAddr = "198.18.100.1:80".parse().unwrap();
    let config =
        LbConfig::new(&lab).api(api).vip(Vip::new("web", "198.18.100.1", 80).health_check(&CHECK.lb_user_tcp()).backends([1, 2], 8080, false)).write().unwrap();
    let lb = LbUser::attach_config(&lab.ns(Host::Lb), &lab.lb_client_iface(), config.path()).unwrap();
    let browser = Browser::start_in(&lab.ns(Host::Lb)).unwrap();
    let origin = format!("http://{api}");
    browser.goto(&format!("{origin}/")).unwrap();

    let rows = "return document.querySelectorAll('section.vip[data-vip=\"web\"] tr[data-backend]').length";
    let shown = browser.wait_for("both backends shown", &format!("{rows} === 2 || null"), WAIT).unwrap();
    assert_eq!(shown, Value::Bool(true));
    for i in 1..=2 {
        let b = lab.backend_addr(i, false);
        let health =
            browser.wait_for("health up", &format!("return document.querySelector('tr[data-backend=\"{b}\"][data-health=\"up\"]') !== null || null"), WAIT);
        assert!(health.is_ok(), "{b} shown up: {health:?}");
    }

    // The live rate moves while traffic runs.
    let traffic = Traffic::start(lab.ns(Host::Client), move || http::get(vip, "/", Duration::from_secs(2)));
    let moving =
        "return [...document.querySelectorAll('section.vip[data-vip=\"web\"] tr[data-backend] span.num')].some(s => Number(s.dataset.value) > 0) || null";
    browser.wait_for("a backend's rate above zero", moving, WAIT).unwrap();
    let figure = browser.eval("return document.querySelector('[data-field=\"packets\"]').textContent").unwrap();
    assert_ne!(figure.as_str(), Some("-"), "the VIP packets/s figure has a value");

    // A click on "drain" drains the backend, as the API says.
    let b1 = lab.backend_addr(1, false).to_string();
    browser.click(&format!("section.vip[data-vip=\"web\"] tr[data-backend=\"{b1}\"] button.drain")).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let rows: Value = serde_json::from_str(&lb.cli(&["backends", "list", "--json"]).unwrap()).unwrap();
        let row = rows.as_array().unwrap().iter().find(|r| r["address"] == b1.as_str()).cloned().unwrap();
        if row["drain"] == "draining" {
            break;
        }
        assert!(Instant::now() < deadline, "not drained through the page: {row}");
        std::thread::sleep(Duration::from_millis(100));
    }
    browser
        .wait_for(
            "the page shows it draining",
            &format!("return document.querySelector('tr[data-backend=\"{b1}\"][data-drain=\"draining\"] button.undrain') !== null || null"),
            WAIT,
        )
        .unwrap();
    drop(traffic);
    let shot = browser.screenshot("lb-user-dashboard").unwrap();
    assert_clean(&browser, &origin);
    drop(browser);
    assert!(lb.stop().unwrap().success());
    eprintln!("lb-user dashboard test: {:.1} s, screenshot {}", started.elapsed().as_secs_f64(), shot.display());
}

#[test]
fn alb_dashboard_shows_pools_and_live_figures_and_removes_on_a_click() {
    require_root!();
    let started = Instant::now();
    let mut lab = Lab::up_unique("xd", 3).unwrap();
    let tier = AlbTier::start(&mut lab, TierSpec::new(1, 2, CHECK)).unwrap();
    let ns = lab.ns(AlbTier::host(1));
    let browser = Browser::start_in(&ns).unwrap();
    let origin = format!("http://{}", alb_tier::ADMIN);
    browser.goto(&format!("{origin}/")).unwrap();
    let ids: Vec<String> = tier.backend_health(&lab, 1).unwrap().into_keys().collect();
    assert_eq!(ids.len(), 2);
    for id in &ids {
        let up = format!("return document.querySelector('section.pool tr[data-backend=\"{id}\"][data-health=\"up\"]') !== null || null");
        browser.wait_for(&format!("backend {id} shown up"), &up, WAIT).unwrap();
    }

    // Requests/s and the latency percentiles move while traffic runs.
    let (addr, tls) = (AlbTier::addr(1), tier.tls().clone());
    let traffic = Traffic::start(lab.ns(Host::Lb), move || http::get_tls(addr, &tls, "/", Duration::from_secs(2)));
    let value = |field: &str| {
        format!("const v = document.querySelector('[data-field=\"{field}\"]').dataset.value; return v !== '' && Number(v) > 0 ? Number(v) : null")
    };
    let rps = browser.wait_for("requests/s above zero", &value("requests"), WAIT).unwrap();
    let p99 = browser.wait_for("a p99 latency", &value("p99"), WAIT).unwrap();
    assert!(rps.as_f64().unwrap() > 0.0 && p99.as_f64().unwrap() > 0.0);
    browser
        .wait_for(
            "a 200 series in the chart",
            "return [...document.querySelectorAll('.legend .series')].some(s => s.textContent.startsWith('200 ')) || null",
            WAIT,
        )
        .unwrap();

    // A click on "remove" (confirmed) drains and removes the backend, as the API says.
    browser.click(&format!("tr[data-backend=\"{}\"] button.remove", ids[0])).unwrap();
    browser.accept_dialog().unwrap();
    let deadline = Instant::now() + WAIT;
    while tier.backend_health(&lab, 1).unwrap().contains_key(&ids[0]) {
        assert!(Instant::now() < deadline, "{} not removed through the page", ids[0]);
        std::thread::sleep(Duration::from_millis(100));
    }
    browser.wait_for("the page drops it", &format!("return document.querySelector('tr[data-backend=\"{}\"]') === null || null", ids[0]), WAIT).unwrap();
    drop(traffic);
    let shot = browser.screenshot("alb-dashboard").unwrap();
    assert_clean(&browser, &origin);
    drop(browser);
    eprintln!("alb dashboard test: {:.1} s, screenshot {}", started.elapsed().as_secs_f64(), shot.display());
}
