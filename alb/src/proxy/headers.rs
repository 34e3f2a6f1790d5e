//! Header rewriting between client and backend: hop-by-hop removal per
//! RFC 9110 §7.6.1, the client identity, X-Forwarded-*, Host, and the
//! origin-form URI the backend is sent.

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Request, Uri, Version};

use std::net::Ipv6Addr;

use super::{ConnInfo, Refusal};
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

/// The header names a message's `Connection` lines list (RFC 9110 §7.6.1),
/// read as bytes: a line with one non-ASCII token still names the others.
pub(super) fn connection_tokens(h: &HeaderMap) -> impl Iterator<Item = HeaderName> + '_ {
    h.get_all(header::CONNECTION).iter().flat_map(|v| v.as_bytes().split(|&b| b == b',')).filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
}

pub(super) fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = connection_tokens(h).collect();
    for n in named {
        h.remove(n);
    }
    for n in &HOP_BY_HOP {
        h.remove(n);
    }
}

/// The host a request is routed by and sent to the backend with: the
/// target's authority (an absolute-form target's, or HTTP/2's `:authority`)
/// over `Host`, as RFC 9112 §3.2.2 asks of a proxy; `None` for none (no
/// `Host`, or the empty one RFC 9112 §3.2 allows). Refused, as RFC 9112 §3.2
/// asks, when there are several `Host` lines or the host is not
/// `host[:port]` (userinfo, a port that is not digits, a broken IPv6
/// literal, bytes outside visible ASCII).
pub(super) fn routing_host<B>(req: &Request<B>) -> Result<Option<HeaderValue>, Refusal> {
    let mut lines = req.headers().get_all(header::HOST).iter();
    let host = lines.next();
    if lines.next().is_some() {
        return Err(Refusal::BadHost);
    }
    let host = match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).map_err(|_| Refusal::BadHost)?,
        None => match host {
            Some(h) if !h.is_empty() => h.clone(),
            _ => return Ok(None),
        },
    };
    if is_host_port(host.as_bytes()) {
        Ok(Some(host))
    } else {
        Err(Refusal::BadHost)
    }
}

/// `uri-host [":" port]` (RFC 9110 §7.2, RFC 3986 §3.2.2): a bracketed IPv6
/// address, or a name or IPv4 address of reg-name characters; the port is
/// digits (possibly none). Percent-encoded names are refused, as hyper's
/// URI parser refuses them in an HTTP/2 `:authority`.
fn is_host_port(b: &[u8]) -> bool {
    let port = if let Some(rest) = b.strip_prefix(b"[") {
        let Some(end) = rest.iter().position(|&c| c == b']') else { return false };
        if std::str::from_utf8(&rest[..end]).ok().and_then(|a| a.parse::<Ipv6Addr>().ok()).is_none() {
            return false;
        }
        &rest[end + 1..]
    } else {
        let end = b.iter().position(|&c| c == b':').unwrap_or(b.len());
        let name = &b[..end];
        if name.is_empty() || !name.iter().all(|c| c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(c)) {
            return false;
        }
        &b[end..]
    };
    port.is_empty() || (port[0] == b':' && port[1..].iter().all(u8::is_ascii_digit))
}

/// Total size of the request head, as counted against `max_header_bytes`
/// (hyper enforces it for HTTP/1 while parsing; this covers HTTP/2).
pub(super) fn header_bytes(h: &HeaderMap) -> usize {
    h.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum()
}

/// Turns the client's request head into the one sent to the backend and
/// returns the origin-form path (also used in log lines). `host` is the
/// routing host ([`routing_host`]), `upgrade` whether this is an HTTP/1.1 Upgrade request.
pub(super) fn rewrite_request<B>(req: &mut Request<B>, cfg: &crate::config::Config, ci: &ConnInfo, host: Option<HeaderValue>, upgrade: bool) -> PathAndQuery {
    let headers = req.headers_mut();
    let upgrade_value = headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(headers);
    if let Some(u) = upgrade_value.filter(|_| upgrade) {
        headers.insert(header::UPGRADE, u);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
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
    headers.remove(&id_header);
    if let Some(id) = ci.identity_value.clone() {
        headers.insert(id_header, id);
    }
    // Appending keeps the client's whole chain: every X-Forwarded-For line
    // in order (RFC 9110 §5.3 lets a list span lines), without empty ones.
    let chain: Vec<&str> = match cfg.headers.x_forwarded_for {
        ForwardedMode::Append => headers.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty()).collect(),
        ForwardedMode::Replace => Vec::new(),
    };
    let xff = match (chain.is_empty(), &ci.peer_ip_value) {
        (false, Some(ip)) => HeaderValue::from_str(&format!("{}, {}", chain.join(", "), ip.to_str().unwrap_or(""))).ok(),
        (_, ip) => ip.clone(),
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR, v);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(if ci.tls { "https" } else { "http" }));
    headers.remove(&X_FORWARDED_HOST);
    if let Some(h) = host {
        headers.insert(X_FORWARDED_HOST, h.clone());
        // The backend sees the host alb routed by: HTTP/2 carries it in
        // :authority and backends speak HTTP/1.1, and an absolute-form
        // target's authority replaces the client's Host (RFC 9112 §3.2.2).
        headers.insert(header::HOST, h);
    }
    // Origin form for the backend; PathAndQuery shares the request's bytes.
    // An empty one (absolute form without a path) reads as "/" but would be
    // written as nothing.
    let path = req.uri().path_and_query().filter(|p| p.as_str() != "/").cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    *req.uri_mut() = Uri::from(path.clone());
    *req.version_mut() = Version::HTTP_11;
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
