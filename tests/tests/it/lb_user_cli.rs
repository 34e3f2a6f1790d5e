//! lb-user's failure modes: one clear line and a non-zero exit.

use std::{os::unix::fs::PermissionsExt, process::Command};

use xdplb_tests::{lab::Lab, require_root, workspace};

fn lb_user() -> std::path::PathBuf {
    workspace::binary("lb-user").expect("lb-user is built")
}

/// The error line of a failed run: stderr is exactly one `lb-user: error:`
/// line, followed only by its `  caused by:` lines (lb_common::report's
/// style), and nothing else (no log noise, no backtrace).
fn one_error_line(out: std::process::Output) -> String {
    assert!(!out.status.success(), "expected failure, got {}", out.status);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.first().is_some_and(|l| l.starts_with("lb-user: error: ")), "expected one error line first, got {stderr:?}");
    assert!(lines[1..].iter().all(|l| l.starts_with("  caused by: ")), "expected only cause lines after it, got {stderr:?}");
    lines[0].to_owned()
}

#[test]
fn attach_on_a_missing_interface_says_so() {
    require_root!();
    let out = Command::new(lb_user()).args(["attach", "--iface", "xdplb-nope0"]).output().unwrap();
    let line = one_error_line(out);
    assert!(line.contains("interface \"xdplb-nope0\" not found"), "{line}");
}

#[test]
fn attach_without_privileges_says_it_needs_root() {
    // As root, drop to `nobody` with no capabilities; as a normal user, run directly.
    let binary = lb_user();
    // Removed on drop, also when an assertion below fails.
    let dir = tempfile::Builder::new().prefix("xdplb-priv-").tempdir().unwrap();
    let mut cmd = if xdplb_tests::privileged::is_root() {
        // nobody may not be able to traverse the build directory: run a copy.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.path().join("lb-user");
        std::fs::copy(&binary, &copy).unwrap();
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]).arg(copy);
        c
    } else {
        Command::new(binary)
    };
    cmd.args(["attach", "--iface", "lo"]);
    // The copy was open for writing a moment ago; a child forked meanwhile by
    // another test thread can still hold that fd, and exec then fails with
    // ETXTBSY until it execs itself. Retry that case only (bounded).
    let mut out = cmd.output().unwrap();
    for _ in 0..50 {
        if !String::from_utf8_lossy(&out.stderr).contains("Text file busy") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        out = cmd.output().unwrap();
    }
    let line = one_error_line(out);
    assert!(line.contains("needs root privileges") && line.contains("CAP_NET_ADMIN"), "{line}");
}

#[test]
fn stats_without_an_attached_program_names_the_missing_pin() {
    require_root!();
    let out = Command::new(lb_user()).args(["stats", "--iface", "xdplb-nope0"]).output().unwrap();
    let line = one_error_line(out);
    assert!(line.contains("no xdplb program is attached to xdplb-nope0"), "{line}");
}

#[test]
fn netns_option_rejects_an_unknown_namespace() {
    require_root!();
    let out = Command::new(lb_user()).args(["--netns", "xdplb-no-such-ns", "stats", "--iface", "lo"]).output().unwrap();
    let line = one_error_line(out);
    assert!(line.contains("network namespace \"xdplb-no-such-ns\" not found"), "{line}");
}

#[test]
fn a_second_attach_on_the_same_interface_is_refused() {
    require_root!();
    let lab = Lab::up_unique("xt", 1).unwrap();
    let ns = lab.ns(xdplb_tests::lab::Host::Lb);
    let iface = lab.lb_client_iface();
    let first = xdplb_tests::lbuser::LbUser::attach(&ns, &iface, &[]).unwrap();
    let out = Command::new(lb_user()).args(["--netns", &ns, "attach", "--iface", &iface]).output().unwrap();
    let line = one_error_line(out);
    assert!(line.contains("already attached"), "{line}");
    // The first one still works.
    first.stats_json().unwrap();
    assert!(first.stop().unwrap().success());
}

#[test]
fn pins_left_with_an_older_flow_map_layout_are_refused_and_detach_clears_them() {
    use lb_common::{
        lb::{FlowKey, GlobalConfig, ReverseNat},
        map_names,
    };
    use std::mem::size_of;
    use xdplb_tests::pins;
    require_root!();
    // The lab's teardown (also on panic) removes the pin directories of its
    // interfaces, these hand-made ones included.
    let lab = Lab::up_unique("xt", 1).unwrap();
    let ns = lab.ns(xdplb_tests::lab::Host::Lb);
    let iface = lab.lb_client_iface();
    lb_user::bpffs::ensure_mounted().unwrap();
    let dir = lb_user::bpffs::pin_dir(&iface);
    std::fs::create_dir_all(&dir).unwrap();
    // What an older build leaves behind: CONFIG (so attach adopts the pins)
    // and a REVERSE_NAT whose value is smaller than this build's.
    let old_value = size_of::<ReverseNat>() as u32 - 24;
    pins::pin_map(&dir.join(map_names::CONFIG), pins::MAP_TYPE_ARRAY, 4, size_of::<GlobalConfig>() as u32, 1).unwrap();
    pins::pin_map(&dir.join(map_names::REVERSE_NAT), pins::MAP_TYPE_LRU_HASH, size_of::<FlowKey>() as u32, old_value, 16).unwrap();

    let out = Command::new(lb_user()).args(["--netns", &ns, "attach", "--iface", &iface]).output().unwrap();
    let line = one_error_line(out);
    assert!(line.contains("REVERSE_NAT") && line.contains("another layout") && line.contains("lb-user detach"), "{line}");
    assert!(dir.join(map_names::REVERSE_NAT).exists(), "a refused attach must leave the old pins for `detach`");

    let out = Command::new(lb_user()).args(["--netns", &ns, "detach", "--iface", &iface]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.exists(), "detach left {}", dir.display());
}
