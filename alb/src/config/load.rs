//! Loading, path resolution and validation of [`Config`], and the
//! parsers for individual values (backend URLs; the allowlist is parsed by
//! `crate::allowlist`).

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use super::*;

fn invalid(key: impl Into<String>, value: impl fmt::Display, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), value: value.to_string(), reason: reason.into() }
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
        let mut cfg = Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { msg, .. } => ConfigError::Parse { path: path.display().to_string(), msg },
            other => other,
        })?;
        if let Some(dir) = path.parent() {
            cfg.resolve_paths(dir);
        }
        Ok(cfg)
    }

    /// Parses and validates YAML text (paths stay as written).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = yaml_serde::from_str(text).map_err(|e| ConfigError::Parse { path: "<config>".into(), msg: e.to_string() })?;
        cfg.validate()?;
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
    pub fn listen_addrs(&self) -> Result<Vec<SocketAddr>, ConfigError> {
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

    fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addrs()?;
        if self.protocol == Protocol::Https {
            if self.cert_location.is_none() && self.certificates.is_empty() {
                return Err(invalid("cert_location", "(missing)", "protocol https needs a certificate"));
            }
            if self.cert_location.is_some() != self.key_location.is_some() {
                return Err(invalid("key_location", "(missing)", "cert_location and key_location go together"));
            }
        } else if self.mtls_mode() != MtlsMode::Off && self.mtls.mode.is_some() {
            return Err(invalid("mtls.mode", format!("{:?}", self.mtls_mode()), "mTLS needs protocol https"));
        }
        if self.mtls_mode() != MtlsMode::Off && self.client_ca().is_none() {
            return Err(invalid("mtls.ca", "(missing)", "mTLS needs a client CA (mtls.ca or ca_location)"));
        }
        if let Some(h) = &self.mtls.identity_header {
            hyper::header::HeaderName::from_bytes(h.as_bytes()).map_err(|_| invalid("mtls.identity_header", h, "not a valid header name"))?;
        }
        crate::allowlist::from_waf(&self.waf)?;
        let pools = self.all_pools();
        if pools.is_empty() {
            return Err(invalid("backend_servers", "[]", "no backends: set backend_servers or pools"));
        }
        let mut names = std::collections::HashSet::new();
        for (i, p) in pools.iter().enumerate() {
            if !names.insert(p.name.clone()) {
                return Err(invalid(format!("pools[{i}].name"), &p.name, "duplicate pool name"));
            }
            let key = if p.name == DEFAULT_POOL && i == 0 && !self.backend_servers.is_empty() {
                "backend_servers".to_string()
            } else {
                format!("pools[{}].backends", i - usize::from(!self.backend_servers.is_empty()))
            };
            let mut seen = std::collections::HashSet::new();
            for (j, b) in p.backends.iter().enumerate() {
                let authority = parse_backend_url(b.url()).map_err(|r| invalid(format!("{key}[{j}]"), b.url(), r))?;
                if p.algorithm.needs_distinct_addresses() && !seen.insert(authority.clone()) {
                    return Err(invalid(
                        format!("{key}[{j}]"),
                        b.url(),
                        format!("another backend of this pool has the address {authority}; {} needs distinct ones", p.algorithm.select()),
                    ));
                }
                if b.weight() == 0 {
                    return Err(invalid(format!("{key}[{j}].weight"), 0, "weight must be >= 1"));
                }
            }
            if p.health.rise == 0 || p.health.fall == 0 {
                return Err(invalid("health.rise/fall", 0, "must be >= 1"));
            }
            if !p.health.path.starts_with('/') {
                return Err(invalid("health.path", &p.health.path, "must start with /"));
            }
        }
        if self.limits.max_header_bytes < 8192 {
            return Err(invalid("limits.max_header_bytes", self.limits.max_header_bytes, "minimum is 8192"));
        }
        if self.limits.rate_limit_rps < 0.0 {
            return Err(invalid("limits.rate_limit_rps", self.limits.rate_limit_rps, "must be >= 0"));
        }
        if !(0.0..=100.0).contains(&self.retries.budget_percent) {
            return Err(invalid("retries.budget_percent", self.retries.budget_percent, "0..=100"));
        }
        if self.admin.enabled {
            self.admin.listen.parse::<SocketAddr>().map_err(|_| invalid("admin.listen", &self.admin.listen, "expected IP:PORT"))?;
        }
        Ok(())
    }
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
