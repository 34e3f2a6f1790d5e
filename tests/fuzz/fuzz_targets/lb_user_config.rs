//! lb-user's config loader: YAML text → validated config, through
//! `lb_user::config::Config::parse`, what `Config::from_file` runs on the
//! file's text. Oracle: no panic, no hang, and every error is clear
//! (`xdplb_fuzz::messages`).

#![no_main]

use lb_user::config::{Config, ConfigError};
use libfuzzer_sys::fuzz_target;
use xdplb_fuzz::messages::{assert_names_source, assert_points_at_problem, rust_type_in};

const SOURCE: &str = "fuzz.yaml";

fuzz_target!(|data: &[u8]| {
    // Not UTF-8: the file read fails before parsing (`ConfigError::Read`).
    let Ok(text) = std::str::from_utf8(data) else { return };
    let err = match Config::parse(text, SOURCE) {
        Ok(cfg) => {
            assert!(cfg.backend_count() >= cfg.vips.len(), "every VIP has backends");
            return;
        }
        Err(e) => e,
    };
    let shown = err.to_string();
    assert_names_source(&shown, SOURCE);
    if let Some(t) = rust_type_in(&shown, text) {
        panic!("the error speaks Rust ({t:?}), not YAML: {shown:?}");
    }
    match &err {
        ConfigError::Read { .. } => panic!("parsing text read a file: {shown:?}"),
        ConfigError::Syntax { message, .. } => assert_points_at_problem(message, &shown),
        ConfigError::Invalid { errors, .. } => {
            assert!(!errors.is_empty(), "invalid without a problem: {shown:?}");
            for e in errors {
                assert!(!e.path.is_empty() && !e.message.trim().is_empty(), "a problem without its field or message: {shown:?}");
            }
        }
    }
});
