//! The real `alb` binary's error output and exit status (docs/alb.md,
//! "Errors and exit status"): `alb: error: …`, one line per cause, no
//! backtrace even with RUST_BACKTRACE=1.

use std::process::{Command, Output};

const ALB: &str = env!("CARGO_BIN_EXE_alb");

fn alb(args: &[&str]) -> Output {
    Command::new(ALB).args(args).env("RUST_BACKTRACE", "1").env_remove("ALB_CONFIG").output().expect("spawn alb")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn plain(o: &Output) -> String {
    let e = stderr(o);
    assert!(!e.contains("stack backtrace") && !e.contains("Stack backtrace") && !e.contains("Caused by"), "no Debug report:\n{e}");
    assert!(!e.contains("panicked"), "{e}");
    e
}

#[test]
fn missing_config_file_is_one_line_and_a_config_error() {
    let o = alb(&["--config", "/nonexistent/alb.yaml"]);
    let e = plain(&o);
    assert_eq!(e, "alb: error: /nonexistent/alb.yaml: cannot read the config file: No such file or directory (os error 2)\n");
    assert_eq!(o.status.code(), Some(78), "{e}");
}

#[test]
fn every_config_problem_on_its_own_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alb.yaml");
    std::fs::write(&path, "protocol: http\nport: 8080\nbackend_servers: [ftp://x]\nhealth: {interval: 2s, timeout: 5s}\n").unwrap();
    let o = alb(&["--config", path.to_str().unwrap(), "--check"]);
    let e = plain(&o);
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 3, "{e}");
    assert_eq!(lines[0], format!("alb: error: {}: 2 problems:", path.display()));
    assert!(lines[1].starts_with("  backend_servers[0]: \"ftp://x\": "), "{e}");
    assert!(lines[2].starts_with("  health.timeout: \"5s\": must be less than the interval (2s)"), "{e}");
    assert_eq!(o.status.code(), Some(78), "{e}");
}

#[test]
fn usage_errors_exit_2_and_runtime_errors_1() {
    let o = alb(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--config"), "{}", stderr(&o));

    // Valid, but 192.0.2.1 (TEST-NET-1) is no local address: bind fails.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alb.yaml");
    std::fs::write(&path, "protocol: http\nlisten: [\"192.0.2.1:1\"]\nbackend_servers: [http://127.0.0.1:9]\nadmin: {enabled: false}\n").unwrap();
    let o = alb(&["--config", path.to_str().unwrap()]);
    let e = plain(&o);
    let report: Vec<&str> = e.lines().filter(|l| !l.starts_with('[')).collect();
    assert_eq!(report.len(), 1, "{e}");
    assert!(report[0].starts_with("alb: error: cannot listen on 192.0.2.1:1: "), "{e}");
    assert_eq!(o.status.code(), Some(1), "{e}");
}
