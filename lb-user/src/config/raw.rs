//! The YAML file as written: serde structs with every key optional so that
//! validation (in `validate.rs`) can name missing keys and out-of-range values
//! itself. Numbers are `i64` so a negative or too-large value reaches
//! validation and gets an error naming it instead of a bare type error.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub interfaces: Option<Vec<RawInterface>>,
    pub attach_mode: Option<RawAttachMode>,
    pub maglev: Option<RawMaglev>,
    pub conntrack: Option<RawConntrack>,
    pub allowlist: Option<RawAllowlist>,
    pub vips: Option<Vec<RawVip>>,
    pub metrics: Option<RawMetrics>,
    pub api: Option<RawApi>,
    pub proxy: Option<RawProxy>,
    pub group: Option<RawGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInterface {
    pub name: Option<String>,
    pub role: Option<super::InterfaceRole>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawAttachMode {
    Auto,
    Native,
    Skb,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMaglev {
    pub size: Option<i64>,
    pub seed: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConntrack {
    pub max_flows: Option<i64>,
    pub tcp_timeout: Option<RawDuration>,
    pub udp_timeout: Option<RawDuration>,
    pub drain_timeout: Option<RawDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAllowlist {
    pub cidrs: Option<Vec<String>>,
    pub ports: Option<Vec<RawPort>>,
    pub scope: Option<super::AllowlistScope>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVip {
    pub name: Option<String>,
    pub address: Option<String>,
    pub port: Option<i64>,
    pub protocol: Option<super::Protocol>,
    pub algorithm: Option<super::Algorithm>,
    pub forwarding: Option<super::Forwarding>,
    pub backends: Option<Vec<RawBackend>>,
    pub health_check: Option<RawHealthCheck>,
}

/// Also the body of the control API's add request (`crate::api`), so a
/// backend added at runtime is read and checked exactly as one in the file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    pub address: Option<String>,
    pub port: Option<i64>,
    pub weight: Option<i64>,
    pub mac: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum RawCheckType {
    Tcp,
    Http,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealthCheck {
    #[serde(rename = "type")]
    pub kind: Option<RawCheckType>,
    pub path: Option<String>,
    pub expect_status: Option<i64>,
    pub interval: Option<RawDuration>,
    pub timeout: Option<RawDuration>,
    pub rise: Option<i64>,
    pub fall: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    pub listen: Option<String>,
    pub allow_remote: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProxy {
    pub max_conns_per_ip: Option<i64>,
    pub max_new_conns_per_minute: Option<i64>,
    pub drain_timeout: Option<RawDuration>,
    pub copy: Option<super::CopyMode>,
    pub runtime: Option<lb_common::userspace::runtime::RuntimeConfig>,
}

/// `group:` — this node's part in an ECMP group (`super::group`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroup {
    pub node: Option<String>,
    pub table: Option<i64>,
    pub grace: Option<RawDuration>,
}

/// A duration as written ("2s"); parsed during validation so errors can name
/// the field. Bare numbers are rejected here with a hint about units.
#[derive(Debug)]
pub(super) struct RawDuration(pub String);

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration with a unit, e.g. \"2s\", \"500ms\" or \"1m30s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDuration, E> {
                Ok(RawDuration(v.to_owned()))
            }
        }
        d.deserialize_str(V)
    }
}

/// An allowlist port: a number or `"*"`.
#[derive(Debug)]
pub(super) enum RawPort {
    Number(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawPort;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port number 1..=65535 or \"*\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawPort, E> {
                Ok(RawPort::Number(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawPort, E> {
                Ok(RawPort::Number(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawPort, E> {
                Ok(RawPort::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}
