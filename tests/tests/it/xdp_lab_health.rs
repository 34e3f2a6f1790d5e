//! Health checks drive the XDP tables: a backend that stops answering stops
//! getting new flows within fall × interval (plus one interval and one turn
//! of lb-user's half-second loop); one that comes back gets flows again
//! within rise × interval (same allowances).

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use xdplb_tests::{
    http,
    lab::{
        addr,
        config::{LbConfig, Vip},
        Host, Lab,
    },
    lbuser::LbUser,
    netns, require_root,
};

const INTERVAL: Duration = Duration::from_millis(400);
const RISE: u32 = 2;
const FALL: u32 = 2;
/// lb-user looks at health verdicts twice a second.
const LOOP: Duration = Duration::from_millis(500);
/// Scheduling allowance for a loaded 2-core CI machine (process start of the
/// restarted backend, the table rebuild, late timers). Still well below one
/// extra health interval per rise/fall step, so a miscounted rise/fall fails.
const SLACK: Duration = Duration::from_millis(500);

/// (start of the request, its end, the backend's name or why it failed)
type Log = Arc<Mutex<Vec<(Instant, Instant, Result<String, String>)>>>;

/// The failed requests of `entries`, as "+<ms since t0>: <why>", for
/// assertion messages.
fn failures<'a>(entries: impl IntoIterator<Item = &'a (Instant, Instant, Result<String, String>)>, t0: Instant) -> Vec<String> {
    entries.into_iter().filter_map(|(t, _, w)| w.as_ref().err().map(|e| format!("+{} ms: {e}", t.duration_since(t0).as_millis()))).collect()
}

/// When lb-user logged be2 down and up, and the table rebuild after each,
/// relative to the stop and the restart: for the assertion messages, so a
/// failure says whether the checks or the tables were late, or the flows
/// went wrong with the tables on time.
fn timeline(lb: &LbUser, stopped: Instant, restarted: Instant) -> String {
    let at = |needle: &str, skip: usize| lb.wait_for_log_at(needle, skip, Duration::ZERO).ok();
    let ms = |t: Option<(usize, Instant)>, from: Instant| match t {
        Some((_, t)) if t >= from => format!("+{} ms", (t - from).as_millis()),
        Some((_, t)) => format!("-{} ms", (from - t).as_millis()),
        None => "never".to_owned(),
    };
    // How the health checks name be2 in their log lines.
    let be2 = format!("vip=web backend={}:8080", addr::backend_v4(2));
    let down = at(&format!("backend down {be2}"), 0);
    let rebuilt_down = down.and_then(|(n, _)| at("tables rebuilt", n));
    let up = at(&format!("backend up {be2}"), 0);
    let rebuilt_up = up.and_then(|(n, _)| at("tables rebuilt", n));
    format!(
        "lb-user logged be2 down {} and its tables rebuilt {} after the stop; be2 up {} and the tables rebuilt {} after the restart",
        ms(down, stopped),
        ms(rebuilt_down, stopped),
        ms(up, restarted),
        ms(rebuilt_up, restarted)
    )
}

#[test]
fn a_stopped_backend_stops_getting_flows_and_gets_them_again_when_it_returns() {
    require_root!();
    let mut lab = Lab::up_unique("xt", 3).unwrap();
    lab.start_backends().unwrap();
    let check =
        format!("{{ type: http, path: /health, expect_status: 200, interval: {}ms, timeout: 200ms, rise: {RISE}, fall: {FALL} }}", INTERVAL.as_millis());
    let config =
        LbConfig::new(&lab).maglev(251, None).vip(Vip::new("web", "198.18.100.1", 80).backends(1..=3, 8080, false).health_check(&check)).write().unwrap();
    let attached_at = Instant::now();
    let lb = LbUser::attach_config(&lab.ns(Host::Lb), &lab.lb_client_iface(), config.path()).unwrap();
    let vip: SocketAddr = "198.18.100.1:80".parse().unwrap();

    // Bounded load: a new connection per request for at most 20 s.
    let log: Log = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (log, stop, client) = (log.clone(), stop.clone(), lab.ns(Host::Client));
        std::thread::spawn(move || {
            netns::run_in(&client, move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                for _ in 0..50_000 {
                    if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                        break;
                    }
                    let started = Instant::now();
                    let who = match http::get(vip, "/", Duration::from_secs(5)) {
                        Ok(r) if r.status == 200 => Ok(r.body.trim().to_owned()),
                        Ok(r) => Err(format!("status {}", r.status)),
                        Err(e) => Err(format!("{e:#}")),
                    };
                    log.lock().unwrap().push((started, Instant::now(), who));
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(())
            })
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    let stopped = Instant::now();
    lab.stop_backend(2).unwrap();
    let settle = INTERVAL * FALL + INTERVAL + LOOP + SLACK;
    std::thread::sleep(settle + Duration::from_secs(2));
    let restarted = Instant::now();
    lab.start_backend(2).unwrap();
    std::thread::sleep(INTERVAL * RISE + INTERVAL + LOOP + Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    load.join().unwrap().unwrap();
    let timeline = timeline(&lb, stopped, restarted);
    assert!(lb.stop().unwrap().success());
    drop(config);

    let log = log.lock().unwrap();
    // Requests that ended before the stop: one still in flight on be2 when
    // it is killed may fail, as it would with any balancer.
    let before: Vec<_> = log.iter().filter(|(_, end, _)| *end < stopped).collect();
    let early = failures(before.iter().copied(), attached_at);
    assert!(
        early.is_empty(),
        "failures before the backend stopped (ms since the attach started, the stop at +{} ms; {} requests): {early:?}",
        (stopped - attached_at).as_millis(),
        before.len()
    );
    assert!(before.iter().any(|(_, _, w)| w.as_deref() == Ok("be2")), "be2 served nothing before it stopped");
    // Once the checks have had fall × interval (+ allowances), nothing fails
    // and nothing goes to be2 until it is back.
    let down: Vec<_> = log.iter().filter(|(t, _, _)| *t > stopped + settle && *t < restarted).collect();
    assert!(down.len() > 20, "too few requests while be2 was down: {}", down.len());
    let failed = failures(down.iter().copied(), stopped);
    assert!(failed.is_empty(), "new connections failed after the backend was marked down (ms since it stopped): {failed:?}; {timeline}");
    assert!(down.iter().all(|(_, _, w)| w.as_deref() != Ok("be2")), "be2 served after it was marked down; {timeline}");
    // Back: be2 serves again within rise × interval (+ allowances).
    let back = log.iter().find(|(t, _, w)| *t > restarted && w.as_deref() == Ok("be2")).map(|(t, _, _)| *t - restarted);
    let limit = INTERVAL * RISE + INTERVAL + LOOP;
    assert!(back.is_some_and(|d| d <= limit + SLACK), "be2 got traffic again after {back:?} (limit {limit:?}); {timeline}");
    let late = failures(log.iter().filter(|(t, _, _)| *t > restarted), restarted);
    assert!(late.is_empty(), "failures after be2 came back (ms since its restart): {late:?}; {timeline}");
}
