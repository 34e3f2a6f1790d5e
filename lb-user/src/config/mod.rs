//! The lb-user configuration: a YAML file (see `docs/config.md` and
//! `docs/xdplb.example.yaml`) turned into a validated [`Config`].
//!
//! Parsing is two steps: serde reads the file into the raw structs of
//! `raw.rs` (unknown keys rejected), then `validate.rs` checks every rule and
//! builds the types below. Every error names the file, the field path (like
//! `vips[1].backends[0].weight`), the offending value and what is allowed.
//! Validation reports all the problems it finds, not only the first.

mod backends;
mod group;
mod listen;
mod raw;
#[cfg(test)]
mod tests;
mod validate;

use lb_common::userspace::runtime::RuntimeConfig;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

pub use lb_common::userspace::duration::parse_duration;

/// Defaults and limits (see `docs/config.md`).
pub mod limits {
    use std::time::Duration;

    pub const DEFAULT_MAGLEV_SIZE: u32 = lb_common::lb::DEFAULT_MAGLEV_SIZE;
    pub const MAGLEV_SIZE_MIN: u32 = 251;
    pub const MAGLEV_SIZE_MAX: u32 = 1_000_003;
    pub const DEFAULT_MAX_FLOWS: u32 = 65_536;
    pub const MAX_FLOWS_MIN: u32 = 1024;
    pub const MAX_FLOWS_MAX: u32 = 16_777_216;
    pub const DEFAULT_TCP_TIMEOUT: Duration = Duration::from_secs(300);
    pub const DEFAULT_UDP_TIMEOUT: Duration = Duration::from_secs(30);
    /// Conntrack timeouts are whole seconds in 1s..=7 days.
    pub const CONNTRACK_TIMEOUT_MAX: Duration = Duration::from_secs(7 * 24 * 3600);
    pub const WEIGHT_MIN: u32 = 1;
    pub const WEIGHT_MAX: u32 = 100;
    pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(2);
    pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
    pub const CHECK_INTERVAL_MIN: Duration = Duration::from_millis(100);
    pub const CHECK_INTERVAL_MAX: Duration = Duration::from_secs(3600);
    pub const DEFAULT_RISE: u32 = 2;
    pub const DEFAULT_FALL: u32 = 3;
    pub const RISE_FALL_MAX: u32 = 100;
    pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DRAIN_TIMEOUT_MAX: Duration = Duration::from_secs(3600);
    pub const VIP_NAME_MAX: usize = 32;
    /// Linux IFNAMSIZ - 1.
    pub const IFNAME_MAX: usize = 15;
    pub const MAX_VIPS: u32 = lb_common::lb::MAX_VIPS;
    pub const MAX_BACKENDS: u32 = lb_common::lb::MAX_BACKENDS;
    pub const MAX_BACKENDS_PER_VIP: u32 = lb_common::lb::MAX_RR_BACKENDS;
    /// Where the control API listens without `api.listen` (and where the
    /// operator CLI looks without `--api`).
    pub const DEFAULT_API_LISTEN: std::net::SocketAddr = std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9901);
}

/// A validated configuration.
/// How to attach: let the kernel pick (native when the driver supports it,
/// generic otherwise), force the driver's native mode, or force generic/skb mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    #[default]
    Auto,
    Native,
    Skb,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Interfaces to attach to, at least one, names unique.
    pub interfaces: Vec<Interface>,
    pub attach_mode: AttachMode,
    pub maglev: MaglevConfig,
    pub conntrack: ConntrackConfig,
    /// `None`: every source and port is allowed.
    pub allowlist: Option<Allowlist>,
    /// At least one, at most `MAX_VIPS`; index = VIP id order of the file.
    pub vips: Vec<Vip>,
    pub metrics: Option<MetricsConfig>,
    /// The control API of `lb-user attach` (`None`: no API).
    pub api: Option<ApiConfig>,
    pub proxy: ProxyConfig,
    /// This node's part in an ECMP group: VIPs announced through a routing
    /// table a BGP daemon exports (`crate::announce`; `None`: no group).
    pub group: Option<GroupConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub role: InterfaceRole,
}

/// What arrives on an interface: VIP traffic from clients, or NAT replies
/// from backends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterfaceRole {
    #[default]
    Client,
    Backend,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaglevConfig {
    /// Table size, prime.
    pub size: u32,
    /// Seed of the table permutations and of the flow hash.
    pub seed: u32,
}

impl Default for MaglevConfig {
    fn default() -> Self {
        MaglevConfig { size: limits::DEFAULT_MAGLEV_SIZE, seed: 0 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConntrackConfig {
    pub max_flows: u32,
    /// Whole seconds.
    pub tcp_timeout: Duration,
    /// Whole seconds.
    pub udp_timeout: Duration,
    /// How long a backend that a reload removed keeps its established flows
    /// (it gets no new ones); 0 cuts them at once. See `crate::drain`.
    pub drain_timeout: Duration,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        ConntrackConfig {
            max_flows: limits::DEFAULT_MAX_FLOWS,
            tcp_timeout: limits::DEFAULT_TCP_TIMEOUT,
            udp_timeout: limits::DEFAULT_UDP_TIMEOUT,
            drain_timeout: Duration::ZERO,
        }
    }
}

/// The shared allowlist (one rule set with alb: bare addresses mean one
/// host, host bits and empty lists are errors) and where it applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowlist {
    pub rules: lb_common::userspace::allowlist::Allowlist,
    pub scope: AllowlistScope,
}

/// Allowed destination ports (`Any` for `["*"]`).
pub use lb_common::userspace::allowlist::Ports as AllowedPorts;

/// Which traffic the allowlist applies to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllowlistScope {
    /// Only traffic to a VIP.
    #[default]
    Vips,
    /// All ingress on the attached interfaces.
    All,
}

impl AllowlistScope {
    /// `lb_common::lb::ALLOWLIST_SCOPE_*`.
    pub fn code(self) -> u8 {
        match self {
            AllowlistScope::Vips => lb_common::lb::ALLOWLIST_SCOPE_VIPS,
            AllowlistScope::All => lb_common::lb::ALLOWLIST_SCOPE_ALL,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vip {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub algorithm: Algorithm,
    pub forwarding: Forwarding,
    /// At least one; same family as `address`; `(address, port)` unique.
    pub backends: Vec<Backend>,
    pub health_check: Option<HealthCheck>,
}

impl Vip {
    /// Sum of the backends' weights.
    pub fn total_weight(&self) -> u32 {
        self.backends.iter().map(|b| b.weight).sum()
    }

    /// The VIP's `address:port`.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub address: IpAddr,
    pub port: u16,
    /// 1..=100.
    pub weight: u32,
    /// Destination MAC for DSR; `None` = resolve it (neighbour table).
    pub mac: Option<[u8; 6]>,
}

impl Backend {
    /// The backend's `address:port`.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }

    /// Stable identity for Maglev (`198.18.1.11:8080`, `[fd00::11]:8080`).
    pub fn key(&self) -> String {
        self.socket_addr().to_string()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    /// IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Maglev over the 5-tuple hash.
    #[default]
    Maglev,
    /// Maglev over the source address hash (client affinity).
    MaglevSrc,
    RoundRobin,
}

impl Algorithm {
    /// `lb_common::lb::ALG_*`.
    pub fn code(self) -> u8 {
        match self {
            Algorithm::Maglev => lb_common::lb::ALG_MAGLEV,
            Algorithm::MaglevSrc => lb_common::lb::ALG_MAGLEV_SRC,
            Algorithm::RoundRobin => lb_common::lb::ALG_ROUND_ROBIN,
        }
    }

    /// The shared selection algorithm of the same name.
    pub fn selection(self) -> lb_common::userspace::select::Algorithm {
        use lb_common::userspace::select::Algorithm as A;
        match self {
            Algorithm::Maglev => A::Maglev,
            Algorithm::MaglevSrc => A::MaglevSrc,
            Algorithm::RoundRobin => A::RoundRobin,
        }
    }

    pub fn uses_maglev(self) -> bool {
        matches!(self, Algorithm::Maglev | Algorithm::MaglevSrc)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Forwarding {
    #[default]
    Nat,
    Dsr,
}

impl Forwarding {
    /// `lb_common::lb::MODE_*`.
    pub fn code(self) -> u8 {
        match self {
            Forwarding::Nat => lb_common::lb::MODE_NAT,
            Forwarding::Dsr => lb_common::lb::MODE_DSR,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: HealthCheckKind,
    pub interval: Duration,
    /// Less than `interval`.
    pub timeout: Duration,
    /// Consecutive successes to become healthy.
    pub rise: u32,
    /// Consecutive failures to become unhealthy.
    pub fall: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HealthCheckKind {
    /// TCP connect to the backend's address:port.
    Tcp,
    /// HTTP/1.1 `GET path`, healthy when the status is `expect_status`.
    Http { path: String, expect_status: u16 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
}

/// `api:`: where `lb-user attach` serves its control API (docs/operations.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiConfig {
    /// Loopback unless `allow_remote`.
    pub listen: SocketAddr,
    pub allow_remote: bool,
}

pub use group::GroupConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyConfig {
    /// 0 = unlimited.
    pub max_conns_per_ip: u32,
    /// 0 = unlimited.
    pub max_new_conns_per_minute: u32,
    pub drain_timeout: Duration,
    /// How `lb-user proxy` copies a TCP connection's bytes.
    pub copy: CopyMode,
    /// Threads and scheduler of `lb-user proxy` (`lb_common::userspace::runtime`);
    /// read at start only.
    pub runtime: RuntimeConfig,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            max_conns_per_ip: 0,
            max_new_conns_per_minute: 0,
            drain_timeout: limits::DEFAULT_DRAIN_TIMEOUT,
            copy: CopyMode::default(),
            runtime: RuntimeConfig::default(),
        }
    }
}

/// `proxy.copy`: how the proxy moves a TCP connection's bytes (docs/proxy.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyMode {
    /// `splice(2)` through a pipe per direction: the bytes stay in the kernel.
    Splice,
    /// `read`/`write` through a userspace buffer per direction.
    #[default]
    Buffered,
}

impl CopyMode {
    pub fn label(self) -> &'static str {
        match self {
            CopyMode::Splice => "splice",
            CopyMode::Buffered => "buffered",
        }
    }
}

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Like `vips[1].backends[0].weight`; `.` for the whole file.
    pub path: String,
    /// Names the offending value and what is allowed.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a configuration was rejected. The Display form starts with the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read the config file: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// Not YAML, or not the schema (unknown key, wrong type or enum value);
    /// the message has the field path and the line.
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
    /// Well-formed but breaks rules; every problem found.
    #[error("{file}: {}", display_field_errors(.errors))]
    Invalid { file: String, errors: Vec<FieldError> },
}

fn display_field_errors(errors: &[FieldError]) -> String {
    lb_common::report::problem_list(errors)
}

impl ConfigError {
    /// The field problems (empty for read and syntax errors).
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            ConfigError::Invalid { errors, .. } => errors,
            _ => &[],
        }
    }
}

/// A backend as given at runtime (the body of the control API's add
/// request): the same keys as a backend in the file (`address`, `port`,
/// `weight`, `mac`; unknown keys are errors), checked by the same rules
/// ([`Vip::check_backend`]).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(transparent)]
pub struct BackendSpec(raw::RawBackend);

impl BackendSpec {
    /// Reads a JSON request body; the error is serde's message in plain
    /// words (the shared wording of the config loaders: it names the key and
    /// the line).
    pub fn from_json(body: &[u8]) -> Result<BackendSpec, String> {
        serde_json::from_slice(body).map_err(|e| lb_common::report::yaml_message(&e.to_string(), None))
    }

    /// `backend` with another weight (a weight change is checked as the
    /// backend with its new weight).
    pub fn with_weight(backend: &Backend, weight: i64) -> BackendSpec {
        BackendSpec(raw::RawBackend {
            address: Some(backend.address.to_string()),
            port: Some(i64::from(backend.port)),
            weight: Some(weight),
            mac: backend.mac.map(|m| m.map(|b| format!("{b:02x}")).join(":")),
        })
    }
}

impl Vip {
    /// `spec` as a backend of this VIP, by the rules of a backend listed
    /// under it in the file; the problems name the spec's keys.
    pub fn check_backend(&self, spec: &BackendSpec) -> Result<Backend, Vec<FieldError>> {
        backends::runtime_backend(&spec.0, self)
    }
}

impl Config {
    /// The rules over all backends that a runtime change can break: at
    /// most 256 per VIP and 1024 in all, and `maglev.size` at least every
    /// Maglev VIP's total weight. The file's validation applies the same.
    pub fn check_capacity(&self) -> Result<(), Vec<FieldError>> {
        let errors = backends::capacity_errors(self);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Reads and validates the YAML file at `path`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
        Config::parse(&text, &file)
    }

    /// Validates YAML `text`; `source` names it in errors (a file name).
    pub fn parse(text: &str, source: &str) -> Result<Config, ConfigError> {
        let raw: raw::RawConfig = if text.trim().is_empty() {
            raw::RawConfig::default()
        } else {
            // In YAML's terms, with the position even at the file's start.
            yaml_serde::from_str(text).map_err(|e| ConfigError::Syntax {
                file: source.to_owned(),
                message: lb_common::report::yaml_message(&e.to_string(), e.location().map(|l| (l.line(), l.column()))),
            })?
        };
        validate::validate(raw).map_err(|errors| ConfigError::Invalid { file: source.to_owned(), errors })
    }

    /// Number of backends over all VIPs.
    pub fn backend_count(&self) -> usize {
        self.vips.iter().map(|v| v.backends.len()).sum()
    }
}
