use std::time::Duration;

use super::*;

fn config(extra_vip: &str, backends: &[u16]) -> Config {
    let list: Vec<String> = backends.iter().map(|p| format!("{{ address: 198.18.1.11, port: {p} }}")).collect();
    Config::parse(
        &format!(
            "interfaces: [{{ name: lo }}]\nmaglev: {{ size: 251 }}\nvips:\n  \
             - {{ name: web, address: 198.18.100.1, port: 80{extra_vip}, backends: [{}] }}\n  \
             - {{ name: rr, address: 198.18.100.2, port: 80, algorithm: round_robin, backends: [{{ address: 198.18.1.12, port: 80 }}] }}\n",
            list.join(", ")
        ),
        "test.yaml",
    )
    .unwrap()
}

fn spec(json: &str) -> BackendSpec {
    BackendSpec::from_json(json.as_bytes()).unwrap()
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::new("198.18.1.11".parse().unwrap(), port)
}

fn ports(c: &Config) -> Vec<(u16, u32)> {
    c.vips[0].backends.iter().map(|b| (b.port, b.weight)).collect()
}

fn field_paths(r: Refusal) -> Vec<String> {
    match r {
        Refusal::Invalid(errors) => errors.iter().map(|e| e.to_string()).collect(),
        other => panic!("not a validation refusal: {other:?}"),
    }
}

#[test]
fn add_weight_and_remove_change_the_applied_config_and_are_listed() {
    let file = config("", &[1, 2]);
    let o = Overrides::new();
    assert_eq!(o.apply(&file), file);
    let (o, b) = o.add(&file, "web", &spec(r#"{"address": "198.18.1.11", "port": 3, "weight": 4}"#)).unwrap();
    assert_eq!((b.port, b.weight), (3, 4));
    let (o, before) = o.set_weight(&file, "web", addr(1), 7).unwrap();
    assert_eq!(before, 1);
    let o = o.remove(&file, "web", addr(2)).unwrap();
    assert_eq!(ports(&o.apply(&file)), [(1, 7), (3, 4)]);
    assert!(o.is_added(&file, "web", addr(3)) && !o.is_added(&file, "web", addr(1)));
    let changes: Vec<String> = o.changes(&file).iter().map(ToString::to_string).collect();
    assert_eq!(
        changes,
        ["weight vip=web backend=198.18.1.11:1 weight=7", "added vip=web backend=198.18.1.11:3 weight=4", "removed vip=web backend=198.18.1.11:2"]
    );
    // Undoing every change by hand leaves no override at all.
    let (o, _) = o.set_weight(&file, "web", addr(1), 1).unwrap();
    let (o, _) = o.add(&file, "web", &spec(r#"{"address": "198.18.1.11", "port": 2}"#)).unwrap();
    let o = o.remove(&file, "web", addr(3)).unwrap();
    // The list order differs from the file's (2 was appended), which is
    // still a change of order only: Maglev keys by address, so nothing moves.
    assert_eq!(ports(&o.apply(&file)), [(1, 1), (2, 1)]);
}

#[test]
fn drained_backends_stay_but_are_gated_down_until_undrained() {
    let file = config("", &[1, 2]);
    let (o, changed) = Overrides::new().set_drain(&file, "web", addr(2), true).unwrap();
    assert!(changed);
    let (o, again) = o.set_drain(&file, "web", addr(2), true).unwrap();
    assert!(!again, "draining twice changes nothing");
    let applied = o.apply(&file);
    assert_eq!(ports(&applied), [(1, 1), (2, 1)], "a drained backend stays in its VIP");
    assert_eq!(o.gate(&applied, HealthSnapshot::all_up(&applied)).up, vec![vec![true, false], vec![true]]);
    assert_eq!(o.changes(&file)[0].to_string(), "drained vip=web backend=198.18.1.11:2");
    let (o, changed) = o.set_drain(&file, "web", addr(2), false).unwrap();
    assert!(changed && o.is_empty());
    // Removing a drained backend forgets the drain.
    let (o, _) = o.set_drain(&file, "web", addr(2), true).unwrap();
    assert!(o.remove(&file, "web", addr(2)).unwrap().changes(&file).iter().all(|c| c.change == "removed"));
}

#[test]
fn refusals_name_the_problem() {
    let file = config("", &[1]);
    let o = Overrides::new();
    let err = |r: Result<Overrides, Refusal>| r.unwrap_err();
    assert_eq!(err(o.set_drain(&file, "nope", addr(1), true).map(|(o, _)| o)), Refusal::NotFound("no vip named \"nope\"; the vips are web, rr".into()));
    assert!(
        matches!(err(o.set_drain(&file, "web", addr(9), true).map(|(o, _)| o)), Refusal::NotFound(m) if m.contains("vip web has no backend 198.18.1.11:9"))
    );
    assert!(
        matches!(err(o.add(&file, "web", &spec(r#"{"address": "198.18.1.11", "port": 1}"#)).map(|(o, _)| o)), Refusal::Conflict(m) if m.contains("already has backend 198.18.1.11:1"))
    );
    assert!(matches!(err(o.remove(&file, "web", addr(1))), Refusal::Conflict(m) if m.contains("last backend of vip web")));
}

#[test]
fn added_backends_and_weights_obey_the_files_rules() {
    let file = config("", &[1]);
    let o = Overrides::new();
    let add = |json: &str| field_paths(o.add(&file, "web", &spec(json)).unwrap_err());
    assert_eq!(add(r#"{"address": "198.18.1.11", "port": 2, "weight": 500}"#), ["weight: 500 is out of range; a weight must be 1..=100"]);
    assert_eq!(
        add(r#"{"address": "fd00::1", "port": 2}"#)[0],
        "address: fd00::1 is IPv6 but the VIP 198.18.100.1 is IPv4; a backend must have its VIP's address family"
    );
    assert!(add(r#"{"address": "198.18.1.11", "port": 2, "mac": "02:00:00:00:00:01"}"#)[0].starts_with("mac: is used only with forwarding: dsr"));
    assert_eq!(add(r#"{"address": "224.0.0.1", "port": 0}"#).len(), 2, "every problem, as in the file");
    assert!(add(r#"{"port": 2}"#)[0].starts_with("address: missing"));
    // Round robin takes no weights, as in the file.
    let rr = field_paths(o.set_weight(&file, "rr", "198.18.1.12:80".parse().unwrap(), 3).unwrap_err());
    assert!(rr[0].starts_with("weight: 3 has no effect: round_robin"), "{rr:?}");
    // The Maglev table must hold the total weight (251 slots here).
    let (o, _) = o.add(&file, "web", &spec(r#"{"address": "198.18.1.11", "port": 2, "weight": 100}"#)).unwrap();
    let (o, _) = o.add(&file, "web", &spec(r#"{"address": "198.18.1.11", "port": 3, "weight": 100}"#)).unwrap();
    let big = field_paths(o.set_weight(&file, "web", addr(1), 100).unwrap_err());
    assert!(big[0].starts_with("maglev.size: 251 is smaller than the total backend weight 300 of vips[0] (web)"), "{big:?}");
    // DSR: the VIP's port, as in the file.
    let dsr = config(", forwarding: dsr", &[80]);
    let e = field_paths(Overrides::new().add(&dsr, "web", &spec(r#"{"address": "198.18.1.13", "port": 8080}"#)).unwrap_err());
    assert!(e[0].starts_with("port: 8080 differs from the VIP's port 80"), "{e:?}");
    assert!(Overrides::new().add(&dsr, "web", &spec(r#"{"address": "198.18.1.13", "port": 80, "mac": "02:00:00:00:00:13"}"#)).is_ok());
}

#[test]
fn request_bodies_are_read_like_the_file() {
    let e = BackendSpec::from_json(br#"{"address": "198.18.1.11", "port": 80, "wieght": 2}"#).unwrap_err();
    assert!(e.contains("unknown field `wieght`") && e.contains("expected one of `address`, `port`, `weight`, `mac`"), "{e}");
    let e = BackendSpec::from_json(br#"{"address": "198.18.1.11", "port": "80"}"#).unwrap_err();
    assert!(e.contains("expected an integer"), "{e}");
    assert!(BackendSpec::from_json(b"[1]").is_err());
}

#[test]
fn a_changed_file_discards_every_change_and_an_unchanged_one_keeps_them() {
    let file = config("", &[1, 2]);
    let (mut o, _) = Overrides::new().set_drain(&file, "web", addr(2), true).unwrap();
    let (o2, _) = o.add(&file, "web", &spec(r#"{"address": "198.18.1.11", "port": 3}"#)).unwrap();
    o = o2;
    let kept = o.clone();
    assert!(o.follow_reload(&file, &config("", &[1, 2])).is_empty(), "the same file again");
    assert_eq!(o, kept);
    let mut changed = config("", &[1, 2]);
    changed.conntrack.drain_timeout = Duration::from_secs(5);
    let gone: Vec<&str> = o.follow_reload(&file, &changed).iter().map(|c| c.change).collect();
    assert_eq!(gone, ["added", "drained"]);
    assert!(o.is_empty());
    assert_eq!(o.apply(&changed), changed, "the file as written");
}
