//! How a reload is reported: a one-line summary of what changed between two
//! configs (for the `reload applied` log line and the API's answer), and
//! multi-line errors folded onto one line.

use crate::config::Config;

/// A multi-line error (several config problems) on one line.
pub(super) fn one_line(msg: &str) -> String {
    let mut lines = msg.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default().to_owned();
    let rest: Vec<&str> = lines.collect();
    if rest.is_empty() {
        first
    } else {
        format!("{first} {}", rest.join("; "))
    }
}

/// One line naming what changed from `old` to `new`.
pub(super) fn describe(old: &Config, new: &Config) -> String {
    let mut parts = Vec::new();
    for v in &new.vips {
        let Some(o) = old.vips.iter().find(|o| o.name == v.name) else {
            parts.push(format!("vip {} added ({} {})", v.name, v.protocol, v.socket_addr()));
            continue;
        };
        if o == v {
            continue;
        }
        let mut ch = Vec::new();
        if (o.protocol, o.socket_addr()) != (v.protocol, v.socket_addr()) {
            ch.push(format!("moved to {} {}", v.protocol, v.socket_addr()));
        }
        if o.algorithm != v.algorithm {
            ch.push(format!("algorithm {:?} -> {:?}", o.algorithm, v.algorithm).to_lowercase());
        }
        for b in &v.backends {
            match o.backends.iter().find(|x| x.socket_addr() == b.socket_addr()) {
                None => ch.push(format!("+{}", b.key())),
                Some(x) if x.weight != b.weight => ch.push(format!("{} weight {} -> {}", b.key(), x.weight, b.weight)),
                Some(_) => {}
            }
        }
        for x in &o.backends {
            if !v.backends.iter().any(|b| b.socket_addr() == x.socket_addr()) {
                ch.push(format!("-{}", x.key()));
            }
        }
        if o.health_check != v.health_check {
            ch.push("health check changed".to_owned());
        }
        if ch.is_empty() {
            ch.push("changed (backend order or settings the proxy does not use)".to_owned());
        }
        parts.push(format!("vip {}: {}", v.name, ch.join(", ")));
    }
    for o in &old.vips {
        if !new.vips.iter().any(|v| v.name == o.name) {
            parts.push(format!("vip {} removed", o.name));
        }
    }
    if old.allowlist != new.allowlist {
        parts.push("allowlist changed".to_owned());
    }
    let limits = |c: &Config| (c.proxy.max_conns_per_ip, c.proxy.max_new_conns_per_minute);
    if limits(old) != limits(new) {
        let (c, r) = limits(new);
        parts.push(format!("limits max_conns_per_ip={c} max_new_conns_per_minute={r}"));
    }
    if old.proxy.drain_timeout != new.proxy.drain_timeout {
        parts.push(format!("drain_timeout={:?}", new.proxy.drain_timeout));
    }
    if old.proxy.copy != new.proxy.copy {
        parts.push(format!("copy={} (new connections)", new.proxy.copy.label()));
    }
    if old.maglev != new.maglev {
        parts.push(format!("maglev size={} seed={}", new.maglev.size, new.maglev.seed));
    }
    if old.conntrack.udp_timeout != new.conntrack.udp_timeout {
        parts.push(format!("udp_timeout={:?} (new sessions)", new.conntrack.udp_timeout));
    }
    if parts.is_empty() {
        parts.push("no change the proxy uses".to_owned());
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra_backend: bool, weight: u32, allow: &str) -> Config {
        let mut y = format!(
            "interfaces: [{{ name: lo }}]\nmaglev: {{ size: 251 }}\nvips:\n  - name: web\n    address: 127.0.0.1\n    port: 80\n    backends:\n      \
             - {{ address: 127.0.0.1, port: 8001, weight: {weight} }}\n"
        );
        if extra_backend {
            y += "      - { address: 127.0.0.1, port: 8002 }\n";
        }
        y += allow;
        Config::parse(&y, "t.yaml").unwrap()
    }

    #[test]
    fn describe_names_the_changes() {
        let a = cfg(false, 1, "");
        assert_eq!(describe(&a, &a), "no change the proxy uses");
        assert_eq!(describe(&a, &cfg(true, 2, "")), "vip web: 127.0.0.1:8001 weight 1 -> 2, +127.0.0.1:8002");
        assert_eq!(describe(&cfg(true, 1, ""), &a), "vip web: -127.0.0.1:8002");
        assert_eq!(describe(&a, &cfg(false, 1, "allowlist: { cidrs: [127.0.0.0/8] }\n")), "allowlist changed");
        let copy = if a.proxy.copy == crate::config::CopyMode::Splice { "buffered" } else { "splice" };
        assert_eq!(describe(&a, &cfg(false, 1, &format!("proxy: {{ copy: {copy} }}\n"))), format!("copy={copy} (new connections)"));
    }

    #[test]
    fn errors_on_one_line() {
        assert_eq!(one_line("f.yaml: 2 problems:\n  a: x\n  b: y"), "f.yaml: 2 problems: a: x; b: y");
        assert_eq!(one_line("plain"), "plain");
    }
}
