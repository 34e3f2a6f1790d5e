//! Header rewriting between client and backend: hop-by-hop removal per
//! RFC 9110 §7.6.1, the client identity, X-Forwarded-*, Host, and the
//! origin-form URI the backend is sent.

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::http::uri::PathAndQuery;
use hyper::{Uri, Version};

use super::ConnInfo;
use crate::config::ForwardedMode;

// Header names used on every request, parsed once (a `&str` name is
// parsed, and a non-standard one allocated, on every use).
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const DEFAULT_IDENTITY_HEADER: HeaderName = HeaderName::from_static(crate::config::DEFAULT_IDENTITY_HEADER);

/// RFC 9110 §7.6.1 connection-specific fields, plus the legacy ones every
/// proxy strips. Headers named in `Connection` are removed too.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
];

pub(super) fn strip_hop_by_hop(h: &mut HeaderMap) {
    if h.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for n in named {
            h.remove(n);
        }
    }
    for n in &HOP_BY_HOP {
        h.remove(n);
    }
}

/// Total size of the request head, as counted against `max_header_bytes`
/// (hyper enforces it for HTTP/1 while parsing; this covers HTTP/2).
pub(super) fn header_bytes(h: &HeaderMap) -> usize {
    h.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum()
}

/// Turns the client's request head into the one sent to the backend and
/// returns the origin-form path (also used in log lines). `host` is the
/// routing host, `upgrade` whether this is an HTTP/1.1 Upgrade request.
pub(super) fn rewrite_request(parts: &mut Parts, cfg: &crate::config::Config, ci: &ConnInfo, host: Option<HeaderValue>, upgrade: bool) -> PathAndQuery {
    let upgrade_value = parts.headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(u) = upgrade_value.filter(|_| upgrade) {
        parts.headers.insert(header::UPGRADE, u);
        parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    // TE: trailers is the one TE value a proxy may pass on; hyper's
    // HTTP/1 client does not need it, so it is simply dropped.
    let id_name = cfg.identity_header();
    let id_header = if id_name.eq_ignore_ascii_case(crate::config::DEFAULT_IDENTITY_HEADER) {
        DEFAULT_IDENTITY_HEADER
    } else {
        HeaderName::from_bytes(id_name.as_bytes()).expect("validated")
    };
    // Never trust an identity the client wrote itself.
    parts.headers.remove(&id_header);
    if let Some(id) = ci.identity_value.clone() {
        parts.headers.insert(id_header, id);
    }
    let prev_xff = match cfg.headers.x_forwarded_for {
        ForwardedMode::Append => parts.headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()),
        ForwardedMode::Replace => None,
    };
    let xff = match (prev_xff, &ci.peer_ip_value) {
        (Some(prev), Some(ip)) => HeaderValue::from_str(&format!("{prev}, {}", ip.to_str().unwrap_or(""))).ok(),
        (_, ip) => ip.clone(),
    };
    if let Some(v) = xff {
        parts.headers.insert(X_FORWARDED_FOR, v);
    }
    parts.headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(if ci.tls { "https" } else { "http" }));
    parts.headers.remove(&X_FORWARDED_HOST);
    if let Some(h) = host {
        parts.headers.insert(X_FORWARDED_HOST, h.clone());
        // HTTP/2 carries the host in :authority; backends speak HTTP/1.1
        // and need a Host header.
        parts.headers.entry(header::HOST).or_insert(h);
    }
    // Origin form for the backend; PathAndQuery shares the request's bytes.
    // An empty one (absolute form without a path) reads as "/" but would be
    // written as nothing.
    let path = parts.uri.path_and_query().filter(|p| p.as_str() != "/").cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    parts.uri = Uri::from(path.clone());
    parts.version = Version::HTTP_11;
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_removed_including_connection_tokens() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("keep-alive, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("x-keep", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-keep"));
    }
}
