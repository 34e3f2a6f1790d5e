//! Configuration files for everything the benchmark runs: the nginx
//! backends, the peers (nftables, HAProxy, nginx stream and TLS), lb-user
//! (XDP and proxy) and alb. Pure text templates; the orchestration writes
//! them into the run's work directory. Every address is a lab address.

use std::{net::SocketAddr, path::Path};

use super::cases::{self, Lb};

/// The TLS material, from `certgen::demo`.
pub struct Certs<'a> {
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
    /// Certificate and key in one file (HAProxy's `crt`).
    pub combined: &'a Path,
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// `text` ending in a newline (empty stays empty).
fn line_end(text: &str) -> String {
    if text.is_empty() || text.ends_with('\n') {
        text.to_owned()
    } else {
        format!("{text}\n")
    }
}

/// Backend `i`'s nginx: one worker, a small static answer on every
/// per-case port, `/health` for readiness.
pub fn backend_nginx(dir: &Path, i: u8) -> String {
    let listens: String = cases::backend_ports().iter().map(|port| format!("    listen {port} reuseport;\n")).collect();
    format!(
        "worker_processes 1;\ndaemon off;\npid {dir}/be{i}.pid;\nerror_log {dir}/be{i}.err.log warn;\n\
events {{ worker_connections 8192; }}\n\
http {{\n  access_log off;\n  keepalive_requests 100000000;\n  keepalive_timeout 120s;\n  default_type text/plain;\n\
  client_body_temp_path {dir}/be{i}-body;\n  proxy_temp_path {dir}/be{i}-proxy;\n  fastcgi_temp_path {dir}/be{i}-fcgi;\n  uwsgi_temp_path {dir}/be{i}-uwsgi;\n  scgi_temp_path {dir}/be{i}-scgi;\n\
  server {{\n{listens}    location = /health {{ return 200 \"ok\\n\"; }}\n    location / {{ return 200 \"be{i}\\n\"; }}\n  }}\n}}\n",
        dir = dir.display()
    )
}

fn backend_list(port: u16) -> Vec<SocketAddr> {
    (1..=cases::BACKENDS).map(|i| cases::backend(i, port)).collect()
}

/// nftables DNAT of the nft VIP to the backends (round robin per connection).
pub fn nft_rules() -> String {
    let (vip, port) = (cases::vip(Lb::Nft), cases::port(Lb::Nft));
    let map: Vec<String> = backend_list(port).iter().enumerate().map(|(n, b)| format!("{n} : {} . {}", b.ip(), b.port())).collect();
    format!(
        "table ip {table} {{\n  chain pre {{\n    type nat hook prerouting priority dstnat; policy accept;\n    \
ip daddr {ip} tcp dport {vport} dnat ip to numgen inc mod {n} map {{ {map} }}\n  }}\n}}\n",
        table = cases::NFT_TABLE,
        ip = vip.ip(),
        vport = vip.port(),
        n = cases::BACKENDS,
        map = map.join(", ")
    )
}

/// HAProxy `mode tcp`, one thread.
pub fn haproxy_tcp() -> String {
    let servers: String = backend_list(cases::port(Lb::HaproxyTcp)).iter().enumerate().map(|(n, b)| format!("  server be{} {b}\n", n + 1)).collect();
    format!(
        "global\n  nbthread 1\n  maxconn 4096\n\
defaults\n  mode tcp\n  timeout connect 3s\n  timeout client 60s\n  timeout server 60s\n\
frontend l4\n  bind {vip}\n  default_backend be\n\
backend be\n  balance roundrobin\n{servers}",
        vip = cases::vip(Lb::HaproxyTcp)
    )
}

/// HAProxy `mode http` with TLS 1.3 (`ssl crt`), one thread; the mTLS port
/// requires a client certificate from the demo CA.
pub fn haproxy_tls(certs: &Certs) -> String {
    let servers: String = backend_list(cases::TLS_BACKEND_PORT).iter().enumerate().map(|(n, b)| format!("  server be{} {b}\n", n + 1)).collect();
    let ip = cases::tls_ip(Lb::HaproxyTls);
    format!(
        "global\n  nbthread 1\n  maxconn 4096\n\
  ssl-default-bind-options ssl-min-ver TLSv1.3\n\
defaults\n  mode http\n  option http-keep-alive\n  http-reuse always\n  timeout connect 3s\n  timeout client 60s\n  timeout server 60s\n  timeout http-keep-alive 60s\n\
frontend tls\n  bind {ip}:{port} ssl crt {crt}\n  bind {ip}:{mport} ssl crt {crt} ca-file {ca} verify required\n  default_backend be\n\
backend be\n  balance roundrobin\n{servers}",
        port = cases::TLS_PORT,
        mport = cases::MTLS_PORT,
        crt = p(certs.combined),
        ca = p(certs.ca)
    )
}

fn nginx_head(dir: &Path, name: &str) -> String {
    format!(
        "worker_processes 1;\ndaemon off;\npid {dir}/{name}.pid;\nerror_log {dir}/{name}.err.log warn;\nevents {{ worker_connections 8192; }}\n",
        dir = dir.display()
    )
}

/// nginx `stream` proxy, one worker.
pub fn nginx_stream(dir: &Path) -> String {
    let servers: String = backend_list(cases::port(Lb::NginxStream)).iter().map(|b| format!("    server {b};\n")).collect();
    format!(
        "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n{head}\
stream {{\n  upstream be {{\n{servers}  }}\n  server {{\n    listen {vip};\n    proxy_pass be;\n  }}\n}}\n",
        head = nginx_head(dir, "nginx-stream"),
        vip = cases::vip(Lb::NginxStream)
    )
}

/// nginx terminating TLS 1.3 (explicitly: 1.22 defaults to 1.2 only in
/// some builds), one worker, keep-alive to the backends; the mTLS server
/// block requires a client certificate.
pub fn nginx_tls(dir: &Path, certs: &Certs) -> String {
    let servers: String = backend_list(cases::TLS_BACKEND_PORT).iter().map(|b| format!("    server {b};\n")).collect();
    let ip = cases::tls_ip(Lb::NginxTls);
    let block = |port: u16, mtls: bool| {
        let verify = if mtls { format!("    ssl_client_certificate {};\n    ssl_verify_client on;\n", p(certs.ca)) } else { String::new() };
        format!(
            "  server {{\n    listen {ip}:{port} ssl;\n    ssl_certificate {cert};\n    ssl_certificate_key {key};\n    ssl_protocols TLSv1.3;\n{verify}\
    location / {{ proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection \"\"; }}\n  }}\n",
            cert = p(certs.cert),
            key = p(certs.key)
        )
    };
    format!(
        "{head}http {{\n  access_log off;\n  keepalive_requests 100000000;\n  keepalive_timeout 120s;\n\
  client_body_temp_path {d}/tls-body;\n  proxy_temp_path {d}/tls-proxy;\n  fastcgi_temp_path {d}/tls-fcgi;\n  uwsgi_temp_path {d}/tls-uwsgi;\n  scgi_temp_path {d}/tls-scgi;\n\
  upstream be {{\n{servers}    keepalive 64;\n  }}\n{plain}{mtls}}}\n",
        head = nginx_head(dir, "nginx-tls"),
        d = dir.display(),
        plain = block(cases::TLS_PORT, false),
        mtls = block(cases::MTLS_PORT, true)
    )
}

/// alb's runtime in the main bench: one thread, as the peers get, and the
/// `per_core` scheduler, which the levers bench measured cheaper than
/// `shared` (docs/benchmarks.md, "Levers").
pub const ALB_RUNTIME: &str = "runtime: { workers: 1, scheduler: per_core }";

/// alb on one port, with or without required client certificates. Health
/// checks, admin API, reload polling and HTTP/2 off (the peers speak
/// HTTP/1.1 and check nothing either).
pub fn alb(certs: &Certs, mtls: bool) -> String {
    let port = if mtls { cases::MTLS_PORT } else { cases::TLS_PORT };
    alb_with(certs, SocketAddr::new(cases::tls_ip(Lb::Alb), port), mtls, ALB_RUNTIME)
}

/// [`alb`] on `listen`, with `extra` (top-level YAML lines, e.g.
/// `runtime: { workers: 1 }`) appended: the variants of `bench levers`.
pub fn alb_with(certs: &Certs, listen: SocketAddr, mtls: bool, extra: &str) -> String {
    let backends: String = backend_list(cases::TLS_BACKEND_PORT).iter().map(|b| format!("  - http://{b}\n")).collect();
    let mtls_block = if mtls { format!("mtls:\n  mode: required\n  ca: {}\n", p(certs.ca)) } else { "mtls:\n  mode: off\n".into() };
    format!(
        "listen: [\"{listen}\"]\nprotocol: https\ncert_location: {cert}\nkey_location: {key}\nbackend_servers:\n{backends}{mtls_block}\
algorithm: round_robin\nhealth: {{ enabled: false }}\npassive_health: {{ enabled: false }}\nadmin: {{ enabled: false }}\n\
reload: {{ poll_interval: 0 }}\nhttp2: false\nlimits: {{ rate_limit_rps: 0 }}\ntimeouts: {{ drain: 1s }}\n{extra}",
        extra = line_end(extra),
        cert = p(certs.cert),
        key = p(certs.key)
    )
}

/// `lb-user attach --config`: the XDP NAT and DSR VIPs; `attach_mode` is the
/// config's `attach_mode` (auto, native or skb).
pub fn lbuser_xdp(client_iface: &str, backend_iface: &str, attach_mode: &str) -> String {
    let vip = |lb: Lb, mode: &str| {
        let v = cases::vip(lb);
        let backends: String = backend_list(cases::port(lb)).iter().map(|b| format!("      - {{ address: {}, port: {} }}\n", b.ip(), b.port())).collect();
        format!("  - name: {}\n    address: {}\n    port: {}\n    forwarding: {mode}\n    backends:\n{backends}", lb.name(), v.ip(), v.port())
    };
    format!(
        "interfaces:\n  - {{ name: {client_iface}, role: client }}\n  - {{ name: {backend_iface}, role: backend }}\n\
attach_mode: {attach_mode}\nmaglev: {{ size: 251, seed: 7 }}\nvips:\n{}{}",
        vip(Lb::XdpNat, "nat"),
        vip(Lb::XdpDsr, "dsr")
    )
}

/// `lb-user proxy --config`: the proxy VIP (a local address on the lb's lo).
pub fn lbuser_proxy(client_iface: &str) -> String {
    lbuser_proxy_with(client_iface, cases::vip(Lb::Proxy), "")
}

/// [`lbuser_proxy`] on VIP `v`, with `proxy_extra` added inside the
/// `proxy:` mapping (e.g. `copy: splice`): the variants of `bench levers`.
pub fn lbuser_proxy_with(client_iface: &str, v: SocketAddr, proxy_extra: &str) -> String {
    let proxy_extra = if proxy_extra.is_empty() { String::new() } else { format!(", {proxy_extra}") };
    let backends: String = backend_list(cases::port(Lb::Proxy)).iter().map(|b| format!("      - {{ address: {}, port: {} }}\n", b.ip(), b.port())).collect();
    format!(
        "interfaces:\n  - {{ name: {client_iface}, role: client }}\nmaglev: {{ size: 251, seed: 7 }}\nproxy: {{ drain_timeout: 1s{proxy_extra} }}\nvips:\n  - name: proxy\n    address: {}\n    port: {}\n    backends:\n{backends}",
        v.ip(),
        v.port()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_use_lab_addresses_only() {
        let dir = Path::new("/tmp/x");
        let certs = Certs { ca: dir, cert: dir, key: dir, combined: dir };
        let all = [
            backend_nginx(dir, 1),
            nft_rules(),
            haproxy_tcp(),
            haproxy_tls(&certs),
            nginx_stream(dir),
            nginx_tls(dir, &certs),
            alb(&certs, true),
            lbuser_xdp("a-lc", "a-lb", "native"),
            lbuser_proxy("a-lc"),
        ];
        for text in &all {
            for word in text.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':')) {
                if let Ok(ip) = word.trim_end_matches(':').parse::<std::net::IpAddr>() {
                    assert!(xdplb_tests::lab::addr::is_lab_address(ip), "{ip} in {text}");
                }
            }
        }
        assert!(nft_rules().contains("dnat ip to numgen inc mod"));
        assert!(nginx_tls(dir, &certs).contains("ssl_protocols TLSv1.3;"));
        // The levers' variants: the extra YAML lands where it belongs.
        let listen: SocketAddr = "198.18.2.11:9401".parse().unwrap();
        let alb = alb_with(&certs, listen, false, "runtime: { workers: 1, scheduler: per_core }");
        assert!(
            alb.contains("listen: [\"198.18.2.11:9401\"]") && alb.ends_with("timeouts: { drain: 1s }\nruntime: { workers: 1, scheduler: per_core }\n"),
            "{alb}"
        );
        assert_eq!(super::alb(&certs, false), alb_with(&certs, "198.18.2.11:443".parse().unwrap(), false, ALB_RUNTIME));
        let proxy = lbuser_proxy_with("a-lc", "198.18.100.3:9001".parse().unwrap(), "copy: splice");
        assert!(proxy.contains("proxy: { drain_timeout: 1s, copy: splice }\n") && proxy.contains("port: 9001\n"), "{proxy}");
        assert_eq!(lbuser_proxy("a-lc"), lbuser_proxy_with("a-lc", cases::vip(Lb::Proxy), ""));
    }
}
