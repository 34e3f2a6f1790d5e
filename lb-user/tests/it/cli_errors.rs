//! The real `lb-user` binary's error output and exit status
//! (docs/lb-user.md): `lb-user: error: …`, one line per cause (an OS error
//! once, not twice), no backtrace even with RUST_BACKTRACE=1. No root
//! needed: every case fails before anything privileged.

use std::process::{Command, Output};

const LB_USER: &str = env!("CARGO_BIN_EXE_lb-user");

fn lb_user(args: &[&str]) -> Output {
    Command::new(LB_USER).args(args).env("RUST_BACKTRACE", "1").env("RUST_LOG", "off").output().expect("spawn lb-user")
}

fn plain(o: &Output) -> String {
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!e.contains("stack backtrace") && !e.contains("Stack backtrace") && !e.contains("Caused by"), "no Debug report:\n{e}");
    assert!(!e.contains("panicked"), "{e}");
    e
}

#[test]
fn missing_config_file_is_one_line_and_a_config_error() {
    let o = lb_user(&["proxy", "--config", "/nonexistent"]);
    let e = plain(&o);
    assert_eq!(e, "lb-user: error: /nonexistent: cannot read the config file: No such file or directory (os error 2)\n");
    assert_eq!(e.matches("os error 2").count(), 1, "{e}");
    assert_eq!(o.status.code(), Some(78), "{e}");
}

#[test]
fn every_config_problem_on_its_own_line() {
    let path = std::env::temp_dir().join(format!("lb-user-cli-errors-{}.yaml", std::process::id()));
    std::fs::write(&path, "interfaces: []\nvips: []\n").unwrap();
    let o = lb_user(&["proxy", "--config", path.to_str().unwrap()]);
    std::fs::remove_file(&path).unwrap();
    let e = plain(&o);
    let lines: Vec<&str> = e.lines().collect();
    assert!(lines.len() >= 3, "{e}");
    assert_eq!(lines[0], format!("lb-user: error: {}: {} problems:", path.display(), lines.len() - 1), "{e}");
    assert!(lines[1..].iter().all(|l| l.starts_with("  ") && !l.contains("caused by")), "{e}");
    assert!(e.contains("  interfaces: "), "{e}");
    assert_eq!(o.status.code(), Some(78), "{e}");
}

#[test]
fn usage_errors_exit_2_and_runtime_errors_1() {
    let o = lb_user(&["proxy"]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    // Nothing is attached to an interface that does not exist.
    let o = lb_user(&["stats", "--iface", "xdplb-none0"]);
    let e = plain(&o);
    assert!(e.starts_with("lb-user: error: "), "{e}");
    let lines: Vec<&str> = e.lines().collect();
    assert!(lines[1..].iter().all(|l| l.starts_with("  caused by: ")), "{e}");
    assert!(lines.windows(2).all(|w| !w[0].contains(w[1].trim_start_matches("  caused by: "))), "no cause repeats the line before: {e}");
    assert_eq!(o.status.code(), Some(1), "{e}");
}
