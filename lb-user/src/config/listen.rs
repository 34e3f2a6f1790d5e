//! The listeners a config asks for: the Prometheus endpoint (`metrics`) and
//! the control API (`api`, see docs/operations.md).
//!
//! The API has no authentication and changes what the balancer forwards, so
//! it listens on loopback unless `allow_remote: true` says otherwise: a
//! non-loopback address (the unspecified `0.0.0.0` and `::` included) alone
//! is an error naming both fields.

use std::net::SocketAddr;

use super::raw::{RawApi, RawMetrics};
use super::validate::Check;
use super::{limits, ApiConfig, MetricsConfig};

pub(super) fn metrics(c: &mut Check, r: &RawMetrics) -> Option<MetricsConfig> {
    let Some(text) = r.listen.as_deref() else {
        c.err("metrics.listen", "missing; give address:port, e.g. \"127.0.0.1:9100\"");
        return None;
    };
    socket_addr(c, "metrics.listen", text, "127.0.0.1:9100").map(|listen| MetricsConfig { listen })
}

pub(super) fn api(c: &mut Check, r: &RawApi) -> Option<ApiConfig> {
    let allow_remote = r.allow_remote.unwrap_or(false);
    let listen = match r.listen.as_deref() {
        None => limits::DEFAULT_API_LISTEN,
        Some(text) => socket_addr(c, "api.listen", text, "127.0.0.1:9901")?,
    };
    if !listen.ip().is_loopback() && !allow_remote {
        c.err(
            "api.listen",
            format!(
                "\"{listen}\" is not a loopback address; the API has no authentication and can change what the balancer forwards, so it listens on loopback (127.0.0.1, ::1) unless api.allow_remote is true"
            ),
        );
        return None;
    }
    Some(ApiConfig { listen, allow_remote })
}

fn socket_addr(c: &mut Check, path: &str, text: &str, example: &str) -> Option<SocketAddr> {
    match text.trim().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            let port = example.rsplit(':').next().unwrap_or_default();
            c.err(path, format!("{text:?} is not address:port; write e.g. \"{example}\" or \"[::1]:{port}\""));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{limits, Config, ConfigError};

    const BASE: &str = "interfaces: [{ name: eth0 }]\nvips: [{ name: web, address: 198.18.100.1, port: 80, backends: [{ address: 198.18.1.11, port: 80 }] }]\n";

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("{BASE}{extra}"), "lb.yaml")
    }

    #[test]
    fn api_defaults_to_loopback_and_is_off_without_the_block() {
        assert_eq!(parse("").unwrap().api, None);
        let api = parse("api: {}\n").unwrap().api.unwrap();
        assert_eq!((api.listen, api.allow_remote), (limits::DEFAULT_API_LISTEN, false));
        assert_eq!(api.listen.to_string(), "127.0.0.1:9901");
        assert_eq!(parse("api: { listen: \"[::1]:0\" }\n").unwrap().api.unwrap().listen, "[::1]:0".parse().unwrap());
    }

    #[test]
    fn a_remote_api_needs_allow_remote() {
        for addr in ["0.0.0.0:9901", "198.18.0.1:9901", "[::]:9901"] {
            let e = parse(&format!("api: {{ listen: \"{addr}\" }}\n")).unwrap_err().to_string();
            assert!(e.contains("api.listen") && e.contains(addr) && e.contains("not a loopback address") && e.contains("api.allow_remote"), "{e}");
        }
        let api = parse("api: { listen: \"0.0.0.0:9901\", allow_remote: true }\n").unwrap().api.unwrap();
        assert!(api.allow_remote);
        let e = parse("api: { listen: \"localhost:9901\" }\n").unwrap_err().to_string();
        assert!(e.contains("api.listen: \"localhost:9901\" is not address:port"), "{e}");
        let e = parse("api: { listen: \"127.0.0.1:9901\", allow: true }\n").unwrap_err().to_string();
        assert!(e.contains("unknown field `allow`"), "{e}");
    }
}
