//! Loading, path resolution and validation of [`Config`], and the
//! parsers for individual values (backend URLs; the allowlist is parsed by
//! `crate::allowlist`).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use super::*;

fn invalid(key: impl Into<String>, value: impl fmt::Display, reason: impl Into<String>) -> Problem {
    Problem { key: key.into(), value: value.to_string(), reason: reason.into() }
}

/// Default identity header.
pub const DEFAULT_IDENTITY_HEADER: &str = "x-client-identity";
/// Name of the pool built from the seed's `backend_servers`.
pub const DEFAULT_POOL: &str = "default";

impl Config {
    /// Reads, parses and validates `path`; relative file paths inside are
    /// resolved against the config file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let mut cfg = Config::parse_named(&text, &path.display().to_string())?;
        if let Some(dir) = path.parent() {
            cfg.resolve_paths(dir);
        }
        Ok(cfg)
    }

    /// Parses and validates YAML text (paths stay as written); errors
    /// name the source `<config>`.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_named(text, "<config>")
    }

    /// [`Config::parse`], naming `source` (a file name) in errors.
    pub fn parse_named(text: &str, source: &str) -> Result<Config, ConfigError> {
        // In YAML's terms and with its position, as lb-user shows it.
        let cfg: Config = yaml_serde::from_str(text).map_err(|e| ConfigError::Parse {
            path: source.into(),
            msg: lb_common::report::yaml_message(&e.to_string(), e.location().map(|l| (l.line(), l.column()))),
        })?;
        let problems = cfg.problems();
        if !problems.is_empty() {
            return Err(ConfigError::Invalid { file: source.into(), problems });
        }
        Ok(cfg)
    }

    fn resolve_paths(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        for p in [&mut self.ca_location, &mut self.cert_location, &mut self.key_location, &mut self.mtls.ca].into_iter().flatten() {
            fix(p);
        }
        self.mtls.crl.iter_mut().for_each(fix);
        for c in &mut self.certificates {
            fix(&mut c.cert);
            fix(&mut c.key);
        }
        if let Some(a) = &mut self.access_log {
            a.resolve(dir);
        }
    }

    /// Every file whose change should trigger a reload (besides the config).
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = [&self.ca_location, &self.cert_location, &self.key_location, &self.mtls.ca].into_iter().flatten().cloned().collect();
        v.extend(self.mtls.crl.iter().cloned());
        for c in &self.certificates {
            v.push(c.cert.clone());
            v.push(c.key.clone());
        }
        v
    }

    pub fn mtls_mode(&self) -> MtlsMode {
        self.mtls.mode.unwrap_or(if self.client_ca().is_some() { MtlsMode::Required } else { MtlsMode::Off })
    }

    pub fn client_ca(&self) -> Option<&Path> {
        self.mtls.ca.as_deref().or(self.ca_location.as_deref())
    }

    pub fn identity_header(&self) -> &str {
        self.mtls.identity_header.as_deref().unwrap_or(DEFAULT_IDENTITY_HEADER)
    }

    /// The listener addresses: `listen`, or `host` (its address part;
    /// `localhost` resolves to loopback) with `port` (or `host`'s port).
    pub fn listen_addrs(&self) -> Result<Vec<SocketAddr>, Problem> {
        if !self.listen.is_empty() {
            return self
                .listen
                .iter()
                .map(|l| l.parse::<SocketAddr>().map_err(|_| invalid("listen", l, "expected IP:PORT, e.g. 0.0.0.0:443 or [::]:443")))
                .collect();
        }
        let host = self.host.as_deref().unwrap_or("0.0.0.0");
        let (name, host_port) = split_host_port(host);
        let port = match (self.port, host_port) {
            (Some(p), _) => p,
            (None, Some(p)) => p,
            (None, None) => return Err(invalid("port", "(missing)", "set `port` or `listen`")),
        };
        let addrs: Vec<SocketAddr> = (name, port).to_socket_addrs().map_err(|e| invalid("host", host, format!("cannot resolve: {e}")))?.collect();
        // localhost may resolve to both families; one socket per family.
        let mut out: Vec<SocketAddr> = Vec::new();
        for a in addrs {
            if !out.iter().any(|o| o.is_ipv4() == a.is_ipv4()) {
                out.push(a);
            }
        }
        if out.is_empty() {
            return Err(invalid("host", host, "resolves to no address"));
        }
        Ok(out)
    }

    /// Pools: the seed's `backend_servers` as pool `default` (if any),
    /// then `pools`.
    pub fn all_pools(&self) -> Vec<PoolConfig> {
        let mut v = Vec::new();
        if !self.backend_servers.is_empty() {
            v.push(PoolConfig {
                name: DEFAULT_POOL.into(),
                algorithm: self.algorithm,
                backends: self.backend_servers.clone(),
                health: self.health.clone(),
                matcher: MatchConfig::default(),
            });
        }
        v.extend(self.pools.iter().cloned());
        v
    }

    /// Every problem of the parsed file, in file order (empty: valid).
    fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        if let Err(p) = self.listen_addrs() {
            out.push(p);
        }
        if self.protocol == Protocol::Https {
            if self.cert_location.is_none() && self.certificates.is_empty() {
                out.push(invalid("cert_location", "(missing)", "protocol https needs a certificate"));
            }
            if self.cert_location.is_some() != self.key_location.is_some() {
                out.push(invalid("key_location", "(missing)", "cert_location and key_location go together"));
            }
        } else if self.mtls_mode() != MtlsMode::Off && self.mtls.mode.is_some() {
            out.push(invalid("mtls.mode", format!("{:?}", self.mtls_mode()), "mTLS needs protocol https"));
        }
        if self.mtls_mode() != MtlsMode::Off && self.client_ca().is_none() {
            out.push(invalid("mtls.ca", "(missing)", "mTLS needs a client CA (mtls.ca or ca_location)"));
        }
        if let Some(h) = &self.mtls.identity_header {
            if hyper::header::HeaderName::from_bytes(h.as_bytes()).is_err() {
                out.push(invalid("mtls.identity_header", h, "not a valid header name"));
            }
        }
        if let Err(p) = crate::allowlist::check(&self.waf) {
            out.extend(p);
        }
        let pools = self.all_pools();
        if pools.is_empty() {
            out.push(invalid("backend_servers", "[]", "no backends: set backend_servers or pools"));
        }
        let mut names = std::collections::HashSet::new();
        let seed_pool = usize::from(!self.backend_servers.is_empty());
        for (i, p) in pools.iter().enumerate() {
            // Where this pool is in the file: the seed's top-level keys,
            // or its entry of `pools`.
            let (backends, health) = if i < seed_pool {
                ("backend_servers".to_string(), "health".to_string())
            } else {
                (format!("pools[{}].backends", i - seed_pool), format!("pools[{}].health", i - seed_pool))
            };
            if !names.insert(p.name.clone()) {
                out.push(invalid(format!("pools[{}].name", i - seed_pool), &p.name, "duplicate pool name"));
            }
            let mut seen = std::collections::HashSet::new();
            for (j, b) in p.backends.iter().enumerate() {
                match parse_backend_url(b.url()) {
                    Err(r) => out.push(invalid(format!("{backends}[{j}]"), b.url(), r)),
                    Ok(authority) => {
                        if p.algorithm.needs_distinct_addresses() && !seen.insert(authority.clone()) {
                            let reason = format!("another backend of this pool has the address {authority}; {} needs distinct ones", p.algorithm.select());
                            out.push(invalid(format!("{backends}[{j}]"), b.url(), reason));
                        }
                    }
                }
                if b.weight() == 0 {
                    out.push(invalid(format!("{backends}[{j}].weight"), 0, "weight must be >= 1"));
                }
            }
            let h = &p.health;
            for (key, v) in [("rise", h.rise), ("fall", h.fall)] {
                if v == 0 {
                    out.push(invalid(format!("{health}.{key}"), v, "must be >= 1"));
                }
            }
            if !h.path.starts_with('/') {
                out.push(invalid(format!("{health}.path"), &h.path, "must start with /"));
            }
            positive(&mut out, &format!("{health}.interval"), h.interval);
            if positive(&mut out, &format!("{health}.timeout"), h.timeout) && h.timeout.0 >= h.interval.0 && !h.interval.0.is_zero() {
                let reason = format!("must be less than the interval ({}), or a check would still run when the next is due", duration::show(h.interval.0));
                out.push(invalid(format!("{health}.timeout"), duration::show(h.timeout.0), reason));
            }
        }
        positive(&mut out, "passive_health.cooldown", self.passive_health.cooldown);
        let t = &self.timeouts;
        for (key, d) in [("header_read", t.header_read), ("idle", t.idle), ("backend_connect", t.backend_connect), ("backend_response", t.backend_response)] {
            positive(&mut out, &format!("timeouts.{key}"), d);
        }
        if self.limits.max_header_bytes < 8192 {
            out.push(invalid("limits.max_header_bytes", self.limits.max_header_bytes, "minimum is 8192"));
        }
        if self.limits.rate_limit_rps < 0.0 {
            out.push(invalid("limits.rate_limit_rps", self.limits.rate_limit_rps, "must be >= 0"));
        }
        if !(0.0..=100.0).contains(&self.retries.budget_percent) {
            out.push(invalid("retries.budget_percent", self.retries.budget_percent, "0..=100"));
        }
        if self.admin.enabled && self.admin.listen.parse::<SocketAddr>().is_err() {
            out.push(invalid("admin.listen", &self.admin.listen, "expected IP:PORT"));
        }
        if let Some(a) = &self.access_log {
            out.extend(a.problems());
        }
        out
    }
}

/// Refuses a zero duration at `key` (negative ones do not parse); true if
/// `d` is positive.
fn positive(out: &mut Vec<Problem>, key: &str, d: Dur) -> bool {
    if d.0.is_zero() {
        out.push(invalid(key, duration::show(d.0), "must be greater than zero"));
    }
    !d.0.is_zero()
}

fn split_host_port(s: &str) -> (&str, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((h, p)) = rest.split_once(']') {
            return (h, p.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, p.parse().ok()),
        _ => (s, None),
    }
}

/// A backend URL: `http://host:port` (the port defaults to 80). Returns
/// the authority used for connecting and the Host header.
pub fn parse_backend_url(u: &str) -> Result<String, String> {
    let uri: hyper::Uri = u.parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(s) => return Err(format!("scheme {s} not supported (backends speak plain http)")),
        None => return Err("missing scheme, expected http://host:port".into()),
    }
    let auth = uri.authority().ok_or("missing host")?;
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err("backend URLs take no path".into());
    }
    let port = auth.port_u16().unwrap_or(80);
    Ok(format!("{}:{port}", auth.host()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = include_str!("../../examples/seed-config.yaml");

    #[test]
    fn seed_file_as_is() {
        let c = Config::parse(SEED).unwrap();
        assert_eq!(c.port, Some(3002));
        assert_eq!(c.mtls_mode(), MtlsMode::Required);
        assert_eq!(c.backend_servers.len(), 2);
        let allow = crate::allowlist::from_waf(&c.waf).unwrap();
        assert_eq!(allow.ports, lb_common::userspace::allowlist::Ports::Any);
        assert_eq!(allow.sources.len(), 4);
        assert!(c.listen_addrs().unwrap().iter().all(|a| a.ip().is_loopback() && a.port() == 3002));
    }

    #[test]
    fn extended_example_parses() {
        let c = Config::parse(include_str!("../../examples/alb.yaml")).unwrap();
        assert!(c.all_pools().len() >= 2);
    }

    #[test]
    fn every_example_loads_unchanged() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut loaded = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
                loaded += 1;
            }
        }
        assert!(loaded >= 2, "examples missing in {}", dir.display());
    }

    #[test]
    fn yaml_errors_name_the_file_the_field_path_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alb.yaml");
        let file = path.display().to_string();
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap();
            let e = Config::load(&path).unwrap_err().to_string();
            println!("{e}");
            e
        };
        let e = load(&format!("{SEED}mtls:\n  mode: sometimes\n"));
        assert_eq!(e, format!("{file}: mtls.mode: unknown variant `sometimes`, expected one of `off`, `optional`, `required` at line 21 column 9"));
        let e = load(&SEED.replace("  allowedPorts:", "  allowedPort:"));
        assert!(e.starts_with(&format!("{file}: waf: unknown field `allowedPort`")) && e.ends_with(" at line 16 column 3"), "{e}");
        let e = load(&format!("{SEED}limits:\n  max_header_bytes: lots\n"));
        assert!(e.starts_with(&format!("{file}: limits.max_header_bytes: invalid type: string \"lots\"")) && e.ends_with(" at line 21 column 21"), "{e}");
        let e = load("backend_servers: [http://localhost:8080\n");
        assert!(e.starts_with(&format!("{file}: ")) && e.contains(" at line 2 column 1"), "{e}");
    }

    /// Found by the alb-config fuzz target: a file that is a list or a
    /// plain word got `expected struct Config` without a position.
    #[test]
    fn errors_at_the_start_of_the_file_say_where_in_yaml_terms() {
        for text in ["- 1\n", "x", "!!binary aGVsbG8=\n"] {
            let e = Config::parse(text).unwrap_err().to_string();
            assert!(e.starts_with("<config>: invalid type: ") && e.ends_with("expected a mapping of keys at line 1 column 1"), "{e}");
        }
        let e = Config::parse(&format!("{SEED}limits:\n  max_header_bytes: -1\n")).unwrap_err().to_string();
        assert!(e.contains("limits.max_header_bytes: ") && e.contains("expected a whole number >= 0") && !e.contains("usize"), "{e}");
    }

    /// Found by the alb-config fuzz target: a port or duration of another
    /// type got "data did not match any variant of untagged enum PortSpec".
    #[test]
    fn ports_and_durations_of_another_type_say_what_they_take() {
        let e = Config::parse(&SEED.replace("  allowedPorts:", "  allowedPorts:\n    - {a: 1}")).unwrap_err().to_string();
        assert!(e.contains("waf.allowedPorts[0]: ") && e.contains("expected a port number or \"*\"") && !e.contains("enum"), "{e}");
        let e = Config::parse(&SEED.replace("  allowedPorts:", "  allowedPorts:\n    - 80.5")).unwrap_err().to_string();
        assert!(e.contains("waf.allowedPorts[0]: ") && e.contains("80.5") && e.contains("a port number"), "{e}");
        let e = Config::parse(&format!("{SEED}timeouts:\n  idle: [5]\n")).unwrap_err().to_string();
        assert!(e.contains("timeouts.idle: ") && e.contains("a duration") && !e.contains("enum"), "{e}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::parse(&format!("{SEED}\nbogus_key: 1\n")).unwrap_err().to_string();
        assert!(e.contains("bogus_key"), "{e}");
        let e = Config::parse(&format!("{SEED}\nmtls:\n  mod: required\n")).unwrap_err().to_string();
        assert!(e.contains("mod") && e.contains("mtls"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let bad = SEED.replace("10.0.0.0/8", "10.0.0.0/99");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("waf.allowedIPs[0]") && e.contains("10.0.0.0/99"), "{e}");
        let bad = SEED.replace("http://localhost:8080", "ftp://x");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("backend_servers[0]") && e.contains("ftp://x"), "{e}");
        let e = Config::parse(&format!("{SEED}\nalgorithm: fastest\n")).unwrap_err().to_string();
        assert!(e.contains("fastest"), "{e}");
        let e = Config::parse(&format!("{SEED}\ntimeouts:\n  idle: 5 parsecs\n")).unwrap_err().to_string();
        assert!(e.contains("parsecs"), "{e}");
    }

    /// A typo in a `{url, weight, id}` backend is an error naming the
    /// backend and the key, in `backend_servers` and in `pools`.
    #[test]
    fn unknown_backend_keys_are_named() {
        let bad = SEED.replace("  - http://localhost:8081", "  - {url: http://localhost:8081, wieght: 3}");
        let e = Config::parse(&bad).unwrap_err().to_string();
        assert!(e.contains("backend_servers[1]") && e.contains("unknown field `wieght`") && e.contains("`weight`"), "{e}");
        let pools = format!("{SEED}pools:\n  - name: api\n    backends:\n      - {{url: http://localhost:9000, id: a, weigth: 2}}\n");
        let e = Config::parse(&pools).unwrap_err().to_string();
        assert!(e.contains("pools[0].backends[0]") && e.contains("unknown field `weigth`"), "{e}");
        let e = Config::parse(&SEED.replace("  - http://localhost:8081", "  - {weight: 3}")).unwrap_err().to_string();
        assert!(e.contains("backend_servers[1]") && e.contains("missing field `url`"), "{e}");
        let ok = Config::parse(&SEED.replace("  - http://localhost:8081", "  - {url: http://localhost:8081, weight: 3, id: b}")).unwrap();
        assert_eq!((ok.backend_servers[1].url(), ok.backend_servers[1].weight(), ok.backend_servers[1].id()), ("http://localhost:8081", 3, Some("b")));
    }

    /// Every problem is reported, each naming its key and value, after the
    /// file name and a count, one per line (lb-user's layout).
    #[test]
    fn every_problem_is_reported_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alb.yaml");
        let text = SEED.replace("http://localhost:8080", "ftp://x") + "limits:\n  max_header_bytes: 100\nadmin:\n  listen: nowhere\n";
        std::fs::write(&path, text).unwrap();
        let e = Config::load(&path).unwrap_err().to_string();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines[0], format!("{}: 3 problems:", path.display()), "{e}");
        assert_eq!(lines.len(), 4, "{e}");
        assert!(lines[1].starts_with("  backend_servers[0]: ") && lines[1].contains("\"ftp://x\""), "{e}");
        assert!(lines[2].starts_with("  limits.max_header_bytes: ") && lines[2].contains("100") && lines[2].contains("8192"), "{e}");
        assert!(lines[3].starts_with("  admin.listen: ") && lines[3].contains("nowhere"), "{e}");
        // One problem: one line, still after the file name.
        std::fs::write(&path, SEED.replace("http://localhost:8080", "ftp://x")).unwrap();
        let e = Config::load(&path).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: backend_servers[0]: ", path.display())) && !e.contains('\n'), "{e}");
        // Several bad allowlist entries are each reported.
        let e = Config::parse(&SEED.replace("10.0.0.0/8", "10.0.0.1/8").replace("172.16.0.0/12", "x")).unwrap_err().to_string();
        assert!(e.contains("2 problems:") && e.contains("waf.allowedIPs[0]") && e.contains("waf.allowedIPs[2]"), "{e}");
    }

    /// Zero where zero makes no sense, and a health timeout not below the
    /// interval, are refused; the drain and the reload poll may be 0.
    #[test]
    fn zero_durations_and_health_timeout() {
        let with = |extra: &str| Config::parse(&format!("{SEED}{extra}")).map_err(|e| e.to_string());
        for (yaml, key) in [
            ("timeouts:\n  header_read: 0s\n", "timeouts.header_read"),
            ("timeouts:\n  idle: 0\n", "timeouts.idle"),
            ("timeouts:\n  backend_connect: 0ms\n", "timeouts.backend_connect"),
            ("timeouts:\n  backend_response: 0\n", "timeouts.backend_response"),
            ("passive_health:\n  cooldown: 0s\n", "passive_health.cooldown"),
            ("health:\n  interval: 0s\n", "health.interval"),
            ("health:\n  timeout: 0s\n", "health.timeout"),
            ("health:\n  interval: 2s\n  timeout: 2s\n", "health.timeout"),
            ("health:\n  interval: 1s\n", "health.timeout"),
            ("pools:\n  - name: api\n    backends: [http://localhost:9000]\n    health: {interval: 1s, timeout: 3s}\n", "pools[0].health.timeout"),
        ] {
            let e = with(yaml).expect_err(yaml);
            assert!(e.contains(&format!("{key}: ")), "{yaml}: names {key}: {e}");
        }
        let e = with("timeouts:\n  idle: 0\n  backend_connect: 0\n").unwrap_err();
        assert!(e.contains("2 problems:") && e.contains("timeouts.idle") && e.contains("timeouts.backend_connect"), "{e}");
        let c = with("timeouts:\n  drain: 0s\nreload:\n  poll_interval: 0\nhealth:\n  interval: 1s\n  timeout: 500ms\n").unwrap();
        assert_eq!(c.timeouts.drain.0, Duration::ZERO);
        assert!(with("health:\n  interval: -1s\n").is_err(), "negative durations do not parse");
    }

    fn dur(v: &str) -> Result<Duration, String> {
        Config::parse(&format!("{SEED}\ntimeouts:\n  idle: {v}\n")).map(|c| c.timeouts.idle.0).map_err(|e| e.to_string())
    }

    /// The shared grammar, plus bare seconds (YAML numbers or strings) as
    /// alb's file always took them.
    #[test]
    fn durations() {
        assert_eq!(dur("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(dur("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(dur("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(dur("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(dur("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(dur("\"0.25\""), Ok(Duration::from_millis(250)));
        assert_eq!(dur("7"), Ok(Duration::from_secs(7)));
        for bad in ["x", "1.5s", "-1", "\"-1s\"", "5x"] {
            let e = dur(bad).unwrap_err();
            assert!(e.contains("idle") || e.contains("timeouts"), "{bad}: names the key: {e}");
        }
        assert!(dur("1.5s").unwrap_err().contains("e.g."), "says what to write");
    }

    /// Every shared algorithm under its shared name, and the Maglev ones
    /// refuse two backends at one address.
    #[test]
    fn algorithms() {
        for a in lb_common::userspace::select::Algorithm::ALL {
            let c = Config::parse(&format!("{SEED}\nalgorithm: {}\n", a.name())).unwrap();
            assert_eq!(c.algorithm.select(), a);
        }
        let dup = SEED.replace("http://localhost:8081", "http://localhost:8080");
        Config::parse(&dup).expect("round robin does not mind");
        let e = Config::parse(&format!("{dup}\nalgorithm: maglev\n")).unwrap_err().to_string();
        assert!(e.contains("backend_servers[1]") && e.contains("localhost:8080"), "{e}");
    }
}
