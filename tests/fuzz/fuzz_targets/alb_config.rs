//! alb's config loader: YAML text → validated config, through
//! `alb::config::Config::parse_named`, what `Config::load` runs on the
//! file's text. Oracle: no panic, no hang, every error is clear
//! (`xdplb_fuzz::messages`), and a config that loads is one alb can run, as
//! its docs promise: the allowlist and every pool build, and every pool
//! picks a backend. Runs without network (`xdplb_fuzz::sandbox`).

#![no_main]

use std::sync::Arc;

use alb::config::{Config, ConfigError};
use alb::pool::Pool;
use lb_common::userspace::select::Flow;
use libfuzzer_sys::fuzz_target;
use xdplb_fuzz::messages::{assert_names_source, assert_points_at_problem, rust_type_in};

const SOURCE: &str = "fuzz.yaml";

fuzz_target!(init: xdplb_fuzz::sandbox::without_network(), |data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::parse_named(text, SOURCE) {
        Ok(cfg) => runs(&cfg),
        Err(err) => {
            let shown = err.to_string();
            assert_names_source(&shown, SOURCE);
            if let Some(t) = rust_type_in(&shown, text) {
                panic!("the error speaks Rust ({t:?}), not YAML: {shown:?}");
            }
            match &err {
                ConfigError::Read { .. } => panic!("parsing text read a file: {shown:?}"),
                ConfigError::Parse { msg, .. } => assert_points_at_problem(msg, &shown),
                ConfigError::Invalid { problems, .. } => {
                    assert!(!problems.is_empty(), "invalid without a problem: {shown:?}");
                    for p in problems {
                        assert!(!p.key.is_empty() && !p.reason.trim().is_empty(), "a problem without its key or reason: {shown:?}");
                    }
                }
            }
        }
    }
});

/// What `alb::state::State::apply` builds from a config, minus the TLS
/// files (which the fuzzer cannot name).
fn runs(cfg: &Config) {
    let addrs = cfg.listen_addrs().unwrap_or_else(|p| panic!("validated, yet its listeners fail: {p}"));
    assert!(!addrs.is_empty());
    alb::allowlist::from_waf(&cfg.waf).unwrap_or_else(|e| panic!("validated, yet its allowlist fails: {e}"));
    let flow = Flow::tcp("198.18.0.10:40000".parse().unwrap(), "198.18.0.1:443".parse().unwrap());
    for pc in cfg.all_pools() {
        let pool = Arc::new(Pool::from_config(&pc, None).unwrap_or_else(|e| panic!("validated, yet pool {} fails: {e}", pc.name)));
        if !pc.backends.is_empty() {
            assert!(pool.pick(&flow, &[]).is_some(), "pool {} ({:?}) picks no backend", pc.name, pc.algorithm);
        }
    }
}
