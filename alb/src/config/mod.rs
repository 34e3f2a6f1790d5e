//! The YAML configuration file.
//!
//! It accepts the seed project's (infra-for-fun) `app_loadbalancer_config.yaml`
//! unchanged — `host`, `protocol`, `port`, `ca_location`, `cert_location`,
//! `key_location`, `backend_servers`, `waf.allowedIPs`, `waf.allowedPorts` —
//! plus extended sections. Every struct denies unknown fields so a typo is
//! an error naming the key instead of a silently ignored setting.
//! [`Config::load`] parses *and* validates; a config that loads is one the
//! server can run (apart from unreadable certificate files, which the TLS
//! module reports with their path).

use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

use lb_common::userspace::runtime::RuntimeConfig;
use lb_common::userspace::{duration, select};

/// Why a configuration was refused. The Display form starts with the file
/// (`<config>` for text given to [`Config::parse`]).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the config file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// YAML syntax, an unknown key or a wrongly typed value. yaml_serde's
    /// message carries the key path (`mtls.mode: unknown variant ...`) and
    /// the line.
    #[error("{path}: {msg}")]
    Parse { path: String, msg: String },
    /// Values that parsed but make no sense: every one validation found,
    /// one per line after a count when there are several (lb-user's
    /// layout).
    #[error("{file}: {}", display_problems(.problems))]
    Invalid { file: String, problems: Vec<Problem> },
}

/// One value that parsed but makes no sense, naming its key and value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {value:?}: {reason}")]
pub struct Problem {
    /// Like `pools[1].backends[0].weight`.
    pub key: String,
    /// The value as written (or `(missing)`).
    pub value: String,
    /// What is wrong and what is allowed.
    pub reason: String,
}

fn display_problems(problems: &[Problem]) -> String {
    lb_common::report::problem_list(problems)
}

impl ConfigError {
    /// The problems validation found (empty for read and syntax errors).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

/// A duration in the shared grammar (`250ms`, `5s`, `1m30s`, `1h`, `1d`),
/// or a number of seconds (`5`, `0.5`, as a YAML number or a string):
/// alb's duration keys were bare seconds before the shared grammar
/// existed, so its file keeps taking them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub Duration);

/// A number or a string, as a visitor: written by hand because serde's
/// untagged enums answer anything else with "did not match any variant of
/// untagged enum" and a Rust type name; this says what the key takes
/// (and whether a fractional number is one of them).
struct NumOrStr {
    expecting: &'static str,
    floats: bool,
}

enum NumOrStrValue {
    Int(i64),
    Float(f64),
    Str(String),
}

impl de::Visitor<'_> for NumOrStr {
    type Value = NumOrStrValue;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumOrStrValue, E> {
        Ok(NumOrStrValue::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumOrStrValue, E> {
        Ok(NumOrStrValue::Int(i64::try_from(v).unwrap_or(i64::MAX)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumOrStrValue, E> {
        if !self.floats {
            return Err(de::Error::invalid_value(de::Unexpected::Float(v), &self));
        }
        Ok(NumOrStrValue::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<NumOrStrValue, E> {
        Ok(NumOrStrValue::Str(v.to_owned()))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let parsed = match d.deserialize_any(NumOrStr { expecting: "a duration (\"250ms\", \"5s\", \"1m30s\") or a number of seconds", floats: true })? {
            NumOrStrValue::Int(n) => duration::seconds(n as f64),
            NumOrStrValue::Float(n) => duration::seconds(n),
            NumOrStrValue::Str(s) => duration::parse_duration_or_seconds(&s),
        };
        parsed.map(Dur).map_err(de::Error::custom)
    }
}

/// `protocol:` of the seed file.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TLS-terminating listener (the seed's only mode).
    #[default]
    Https,
    /// Plain HTTP listener, for tests and behind another TLS terminator.
    Http,
}

/// `waf.allowedPorts` entry: a port number or `"*"` (any). Any integer is
/// taken here so that 0 or 70000 get the allowlist's range message
/// instead of serde's "did not match any variant".
#[derive(Clone, Debug)]
pub enum PortSpec {
    Num(i64),
    Str(String),
}

impl<'de> Deserialize<'de> for PortSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_any(NumOrStr { expecting: "a port number or \"*\"", floats: false })? {
            NumOrStrValue::Int(n) => Ok(PortSpec::Num(n)),
            // The visitor refuses fractions already (with the key's path).
            NumOrStrValue::Float(n) => Err(de::Error::invalid_value(de::Unexpected::Float(n), &"a port number or \"*\"")),
            NumOrStrValue::Str(s) => Ok(PortSpec::Str(s)),
        }
    }
}

/// The seed's mini-WAF: source CIDRs (bare IPs mean /32 or /128) and
/// listener ports, under the shared allowlist rules (see
/// `crate::allowlist`). A key left out allows everything; an empty list is
/// an error, so a list emptied by mistake never opens the door.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waf {
    #[serde(rename = "allowedIPs", default)]
    pub allowed_ips: Option<Vec<String>>,
    #[serde(rename = "allowedPorts", default)]
    pub allowed_ports: Option<Vec<PortSpec>>,
}

/// Extra certificates for SNI. `server_names` defaults to the DNS SANs of
/// the certificate.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    #[serde(default)]
    pub server_names: Vec<String>,
}

/// Client-certificate policy.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MtlsMode {
    Off,
    Optional,
    Required,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtlsConfig {
    /// Default: `required` when `ca_location` (or `mtls.ca`) is set — the
    /// seed enforces mTLS whenever it has a CA — otherwise `off`.
    pub mode: Option<MtlsMode>,
    /// Client CA bundle; defaults to the seed's `ca_location`.
    pub ca: Option<PathBuf>,
    /// PEM CRL file(s) from the client CA.
    #[serde(default)]
    pub crl: Vec<PathBuf>,
    /// If non-empty, only these identities (CN, full subject or any SAN)
    /// are accepted.
    #[serde(default)]
    pub allowed_identities: Vec<String>,
    /// Header carrying the verified identity to backends.
    pub identity_header: Option<String>,
}

/// Balancing algorithm names, as alb's file has always spelled them; each
/// is one of the shared selection algorithms ([`Algorithm::select`]).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    #[default]
    RoundRobin,
    WeightedRoundRobin,
    LeastConnections,
    IpHash,
    Random,
    P2c,
    Maglev,
    MaglevSrc,
}

impl Algorithm {
    /// The shared algorithm this name stands for.
    pub fn select(self) -> select::Algorithm {
        match self {
            Algorithm::RoundRobin => select::Algorithm::RoundRobin,
            Algorithm::WeightedRoundRobin => select::Algorithm::WeightedRoundRobin,
            Algorithm::LeastConnections => select::Algorithm::LeastConnections,
            Algorithm::IpHash => select::Algorithm::SourceHash,
            Algorithm::Random => select::Algorithm::Random,
            Algorithm::P2c => select::Algorithm::PowerOfTwo,
            Algorithm::Maglev => select::Algorithm::Maglev,
            Algorithm::MaglevSrc => select::Algorithm::MaglevSrc,
        }
    }

    /// Maglev places each backend by its `host:port`, so two backends of
    /// one pool must not share it (the table cannot be built).
    pub fn needs_distinct_addresses(self) -> bool {
        matches!(self, Algorithm::Maglev | Algorithm::MaglevSrc)
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Active checks on/off (default on).
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_health_path")]
    pub path: String,
    #[serde(default = "default_expected")]
    pub expected_status: u16,
    #[serde(default = "default_interval")]
    pub interval: Dur,
    #[serde(default = "default_health_timeout")]
    pub timeout: Dur,
    #[serde(default = "two")]
    pub rise: u32,
    #[serde(default = "three")]
    pub fall: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        yaml_serde::from_str("{}").expect("defaults")
    }
}

/// A backend: a URL string, or `{url, weight, id}`.
///
/// Deserialized by hand rather than as an untagged enum: serde's untagged
/// enums cannot deny unknown fields (a `wieght:` typo would be ignored)
/// and report every mistake as "did not match any variant". Here a wrong
/// key or value gets the same message, with the key path, as any other
/// struct of the file.
#[derive(Clone, Debug)]
pub enum BackendSpec {
    Url(String),
    Full { url: String, weight: u32, id: Option<String> },
}

impl<'de> Deserialize<'de> for BackendSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const FIELDS: &[&str] = &["url", "weight", "id"];
        struct Visit;
        impl<'de> de::Visitor<'de> for Visit {
            type Value = BackendSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a backend URL or a mapping {url, weight, id}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<BackendSpec, E> {
                Ok(BackendSpec::Url(v.to_owned()))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<BackendSpec, A::Error> {
                let (mut url, mut weight, mut id) = (None, None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "url" if url.is_none() => url = Some(map.next_value::<String>()?),
                        "weight" if weight.is_none() => weight = Some(map.next_value::<u32>()?),
                        "id" if id.is_none() => id = Some(map.next_value::<Option<String>>()?),
                        "url" | "weight" | "id" => return Err(de::Error::custom(format_args!("duplicate field `{key}`"))),
                        _ => return Err(de::Error::unknown_field(&key, FIELDS)),
                    }
                }
                let url = url.ok_or_else(|| de::Error::missing_field("url"))?;
                Ok(BackendSpec::Full { url, weight: weight.unwrap_or_else(one), id: id.flatten() })
            }
        }
        d.deserialize_any(Visit)
    }
}

impl BackendSpec {
    pub fn url(&self) -> &str {
        match self {
            BackendSpec::Url(u) | BackendSpec::Full { url: u, .. } => u,
        }
    }
    pub fn weight(&self) -> u32 {
        match self {
            BackendSpec::Url(_) => 1,
            BackendSpec::Full { weight, .. } => *weight,
        }
    }
    pub fn id(&self) -> Option<&str> {
        match self {
            BackendSpec::Full { id, .. } => id.as_deref(),
            BackendSpec::Url(_) => None,
        }
    }
}

/// Which requests a pool takes: any of `hosts` (empty = any) and the
/// longest matching `path_prefix`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    #[serde(default)]
    pub hosts: Vec<String>,
    pub path_prefix: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub name: String,
    #[serde(default)]
    pub algorithm: Algorithm,
    pub backends: Vec<BackendSpec>,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default, rename = "match")]
    pub matcher: MatchConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Consecutive connect errors / 5xx before ejection.
    #[serde(default = "three")]
    pub failures: u32,
    #[serde(default = "default_cooldown")]
    pub cooldown: Dur,
}

impl Default for PassiveConfig {
    fn default() -> Self {
        yaml_serde::from_str("{}").expect("defaults")
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Extra attempts per request on another backend.
    #[serde(default = "two")]
    pub max_retries: u32,
    /// Retries may add at most this percentage of requests...
    #[serde(default = "default_budget_percent")]
    pub budget_percent: f64,
    /// ...plus this many retries per second regardless of load.
    #[serde(default = "default_min_retries")]
    pub min_per_second: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        yaml_serde::from_str("{}").expect("defaults")
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// TLS handshake plus request headers must arrive within this.
    #[serde(default = "default_header_timeout")]
    pub header_read: Dur,
    /// Keep-alive client connections with no traffic are closed after this.
    #[serde(default = "default_idle")]
    pub idle: Dur,
    #[serde(default = "default_connect")]
    pub backend_connect: Dur,
    /// Time to the backend's response headers.
    #[serde(default = "default_response")]
    pub backend_response: Dur,
    /// Graceful shutdown / backend removal drain limit.
    #[serde(default = "default_drain")]
    pub drain: Dur,
}

impl Default for Timeouts {
    fn default() -> Self {
        yaml_serde::from_str("{}").expect("defaults")
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Total request-header bytes; more gets 431. hyper needs >= 8192.
    #[serde(default = "default_max_header")]
    pub max_header_bytes: usize,
    /// Requests per second per client IP; 0 disables the limit.
    #[serde(default)]
    pub rate_limit_rps: f64,
    /// Burst allowance for the rate limit (default: 2 x rps, at least 1).
    pub rate_limit_burst: Option<f64>,
}

impl Default for Limits {
    fn default() -> Self {
        yaml_serde::from_str("{}").expect("defaults")
    }
}

/// How X-Forwarded-For is written.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ForwardedMode {
    /// Drop whatever the client sent; alb is the edge.
    #[default]
    Replace,
    /// Append the peer to the client's list (alb behind a trusted proxy).
    Append,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderConfig {
    #[serde(default)]
    pub x_forwarded_for: ForwardedMode,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_admin")]
    pub listen: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        yaml_serde::from_str("{}").expect("defaults")
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadConfig {
    /// How often the config and certificate files are checked for
    /// changes; 0 turns file watching off (SIGHUP still works).
    #[serde(default = "default_poll")]
    pub poll_interval: Dur,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        yaml_serde::from_str("{}").expect("defaults")
    }
}

/// The whole file. The first block is the seed's format, verbatim.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub host: Option<String>,
    #[serde(default)]
    pub protocol: Protocol,
    pub port: Option<u16>,
    pub ca_location: Option<PathBuf>,
    pub cert_location: Option<PathBuf>,
    pub key_location: Option<PathBuf>,
    #[serde(default)]
    pub backend_servers: Vec<BackendSpec>,
    #[serde(default)]
    pub waf: Waf,

    /// Listener addresses; default `host`'s address with `port`.
    #[serde(default)]
    pub listen: Vec<String>,
    #[serde(default)]
    pub certificates: Vec<CertConfig>,
    #[serde(default)]
    pub mtls: MtlsConfig,
    /// Algorithm for the `backend_servers` pool.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Health checks for the `backend_servers` pool.
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub pools: Vec<PoolConfig>,
    #[serde(default)]
    pub passive_health: PassiveConfig,
    #[serde(default)]
    pub retries: RetryConfig,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub headers: HeaderConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub reload: ReloadConfig,
    /// Offer HTTP/2 via ALPN.
    #[serde(default = "yes")]
    pub http2: bool,
    /// The per-request log; none when left out.
    #[serde(default)]
    pub access_log: Option<AccessLogConfig>,
    /// Threads and scheduler (`lb_common::userspace::runtime`); read at
    /// start only.
    #[serde(default)]
    pub runtime: RuntimeConfig,
}

fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}
fn two() -> u32 {
    2
}
fn three() -> u32 {
    3
}
fn default_health_path() -> String {
    "/".into()
}
fn default_expected() -> u16 {
    200
}
fn default_interval() -> Dur {
    Dur(Duration::from_secs(5))
}
fn default_health_timeout() -> Dur {
    Dur(Duration::from_secs(2))
}
fn default_cooldown() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_budget_percent() -> f64 {
    20.0
}
fn default_min_retries() -> f64 {
    10.0
}
fn default_header_timeout() -> Dur {
    Dur(Duration::from_secs(10))
}
fn default_idle() -> Dur {
    Dur(Duration::from_secs(60))
}
fn default_connect() -> Dur {
    Dur(Duration::from_secs(3))
}
fn default_response() -> Dur {
    Dur(Duration::from_secs(30))
}
fn default_drain() -> Dur {
    Dur(Duration::from_secs(15))
}
fn default_max_header() -> usize {
    64 * 1024
}
fn default_admin() -> String {
    "127.0.0.1:9090".into()
}
fn default_poll() -> Dur {
    Dur(Duration::from_secs(2))
}

mod access_log;
mod load;
pub use access_log::{AccessLogConfig, AccessLogFormat, AccessLogTarget};
pub use load::*;
