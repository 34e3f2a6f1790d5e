//! The override rule (docs/operations.md): runtime changes hold until the
//! config file changes, then the file wins; a reload of an unchanged file
//! (SIGHUP) or a refused reload keeps them.

use std::time::Duration;

use hyper::Method;
use serde_json::json;

use crate::api_support::{two_vips, Harness};

const WEB: &str = "/api/vips/web/backends";

fn changes(h: &Harness) -> Vec<String> {
    h.state()["overrides"].as_array().unwrap().iter().map(|c| format!("{} {}", c["change"].as_str().unwrap(), c["backend"].as_str().unwrap())).collect()
}

/// Adds .13, drains .12, sets .11's weight to 5.
fn change_all(h: &Harness) {
    h.call(Method::POST, WEB, Some(json!({"address": "198.18.1.13", "port": 80}))).unwrap();
    h.call(Method::PATCH, &format!("{WEB}/198.18.1.12:80"), Some(json!({"drain": true}))).unwrap();
    h.call(Method::PATCH, &format!("{WEB}/198.18.1.11:80"), Some(json!({"weight": 5}))).unwrap();
}

const ALL: [&str; 3] = ["weight 198.18.1.11:80", "added 198.18.1.13:80", "drained 198.18.1.12:80"];

#[test]
fn an_unchanged_file_keeps_runtime_changes_and_a_changed_one_discards_them() {
    let file = two_vips("conntrack: { drain_timeout: 30s }");
    let h = Harness::start(&file);
    change_all(&h);
    assert_eq!(changes(&h), ALL);

    // SIGHUP with the file as it was; then the same config with a comment.
    h.reload(None);
    assert_eq!(changes(&h), ALL, "a reload of the same file keeps them");
    h.reload(Some(&format!("# edited, same config\n{file}")));
    assert_eq!(changes(&h), ALL, "a file that says the same keeps them");
    assert_eq!(h.backend("web", "198.18.1.12:80")["drain"], "draining", "a drained backend stays drained");
    // A refused reload keeps everything.
    h.reload(Some("vips: []\n"));
    assert_eq!(changes(&h), ALL);

    // The file changes: it wins.
    h.reload(Some(&two_vips("conntrack: { drain_timeout: 20s }")));
    assert!(changes(&h).is_empty());
    let b11 = h.backend("web", "198.18.1.11:80");
    assert_eq!(b11["weight"], 1);
    assert_eq!(h.backend("web", "198.18.1.12:80")["drain"], "active");
    assert!(h.in_tables("web").contains("198.18.1.12:80"));
    // The backend only the API had added drains out like one the file dropped.
    let b13 = h.backend("web", "198.18.1.13:80");
    assert_eq!(b13["drain"], "leaving", "{b13}");
    assert!(b13["seconds_left"].as_u64().unwrap() <= 20, "the new file's drain_timeout");
    assert!(!h.in_tables("web").contains("198.18.1.13:80"));
}

#[test]
fn a_removed_file_backend_comes_back_when_the_file_changes() {
    let h = Harness::start(&two_vips("conntrack: { drain_timeout: 30s }"));
    h.call(Method::DELETE, &format!("{WEB}/198.18.1.12:80"), None).unwrap();
    assert_eq!(changes(&h), ["removed 198.18.1.12:80"]);
    assert_eq!(h.backend("web", "198.18.1.12:80")["drain"], "leaving");
    h.reload(None);
    assert_eq!(h.backend("web", "198.18.1.12:80")["drain"], "leaving", "still removed after a SIGHUP");
    // The file changes (the allowlist here) and still lists it: back, active.
    h.reload(Some(&two_vips("conntrack: { drain_timeout: 30s }\nallowlist: { cidrs: [198.18.0.0/15] }")));
    let b = h.backend("web", "198.18.1.12:80");
    assert_eq!((b["drain"].as_str(), b["in_file"].as_bool()), (Some("active"), Some(true)));
    assert!(h.in_tables("web").contains("198.18.1.12:80"));
}

/// The watch dates from before the attach read the file: an edit made
/// while attaching is reloaded, not taken as the watch's starting point.
#[test]
fn an_edit_while_attaching_is_reloaded() {
    let h = Harness::start_edited(&two_vips(""), Some(&two_vips("allowlist: { cidrs: [198.18.0.0/15] }")));
    h.wait_for("the edit made while attaching is applied", Duration::from_secs(10), |h| h.seen.lock().unwrap().config.allowlist.is_some()).unwrap();
}

#[test]
fn the_file_watch_sees_a_change_too() {
    let h = Harness::start(&two_vips(""));
    h.call(Method::PATCH, &format!("{WEB}/198.18.1.11:80"), Some(json!({"drain": true}))).unwrap();
    // Written without a SIGHUP: the supervisor's file watch reloads it.
    let tmp = h.file.with_extension("tmp");
    std::fs::write(&tmp, two_vips("allowlist: { cidrs: [198.18.0.0/15] }")).unwrap();
    std::fs::rename(&tmp, &h.file).unwrap();
    h.wait_for("the watched file's change discards the drain", Duration::from_secs(10), |h| h.backend("web", "198.18.1.11:80")["drain"] == "active").unwrap();
}
