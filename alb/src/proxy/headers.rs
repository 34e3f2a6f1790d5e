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

    /// Found by the alb-request-head fuzz target: one non-ASCII token made
    /// the whole Connection line unreadable, so the headers it named
    /// reached the backend.
    #[test]
    fn connection_tokens_are_read_past_a_non_ascii_one() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_bytes(b"x-a, \xff, x-b").unwrap());
        h.insert("x-a", HeaderValue::from_static("1"));
        h.insert("x-b", HeaderValue::from_static("2"));
        h.insert("x-keep", HeaderValue::from_static("yes"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-keep"]);
    }

    fn req(target: &str, hosts: &[&[u8]]) -> Request<()> {
        let mut r = Request::builder().uri(target).body(()).unwrap();
        for h in hosts {
            r.headers_mut().append(header::HOST, HeaderValue::from_bytes(h).unwrap());
        }
        r
    }

    fn host_of(r: &Request<()>) -> Result<Option<String>, Refusal> {
        routing_host(r).map(|h| h.map(|v| v.to_str().unwrap().to_owned()))
    }

    /// Found by the alb-request-head fuzz target: a second Host line, or a
    /// Host alb could not route by, was forwarded to the backend as sent.
    #[test]
    fn several_or_malformed_hosts_are_refused() {
        for good in [&b"a.test"[..], b"A.Test:8443", b"a.test:", b"198.18.0.1:80", b"[::1]", b"[::1]:8443", b"[fd00:198:18::1]:443"] {
            assert_eq!(host_of(&req("/", &[good])), Ok(Some(String::from_utf8(good.to_vec()).unwrap())), "{good:?}");
        }
        for bad in
            [&b"[::1"[..], b"[::1]:x", b"[::1]x", b"[zz::1]", b"::1", b"a.test:80:80", b"user@a.test", b"a%41.test", b"a[b]", b"www.\xe9xample.test", b":80"]
        {
            assert_eq!(host_of(&req("/", &[bad])), Err(Refusal::BadHost), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(host_of(&req("/", &[b"a.test", b"a.test"])), Err(Refusal::BadHost), "two Host lines");
        assert_eq!(host_of(&req("http://u@a.test/", &[])), Err(Refusal::BadHost), "userinfo in the target");
        // No Host, or the empty one RFC 9112 allows: no routing host.
        assert_eq!(host_of(&req("/", &[])), Ok(None));
        assert_eq!(host_of(&req("/", &[b""])), Ok(None));
    }

    fn config(extra: &str) -> crate::config::Config {
        crate::config::Config::parse(&format!("protocol: http\nlisten: [\"127.0.0.1:8080\"]\nbackend_servers: [http://198.18.1.11:8080]\n{extra}")).unwrap()
    }

    fn rewritten(mut r: Request<()>, cfg: &crate::config::Config) -> HeaderMap {
        let ci = ConnInfo::new("198.18.0.10:40000".parse().unwrap(), "198.18.0.1:443".parse().unwrap(), false, None);
        let host = routing_host(&r).unwrap();
        rewrite_request(&mut r, cfg, &ci, host, false);
        r.headers().clone()
    }

    /// Found by the alb-request-head fuzz target: an absolute-form target
    /// was routed by its authority but forwarded with the client's other
    /// Host (RFC 9112 §3.2.2: the authority replaces it).
    #[test]
    fn the_backend_gets_the_host_alb_routed_by() {
        let h = rewritten(req("http://alt.test:8443/x", &[b"other.test"]), &config(""));
        assert_eq!(h.get_all(header::HOST).iter().collect::<Vec<_>>(), ["alt.test:8443"]);
        assert_eq!(h.get_all(&X_FORWARDED_HOST).iter().collect::<Vec<_>>(), ["alt.test:8443"]);
        let h = rewritten(req("/", &[b""]), &config(""));
        assert!(!h.contains_key(&X_FORWARDED_HOST), "no X-Forwarded-Host for an empty Host: {h:?}");
    }

    /// Found by the alb-request-head fuzz target: appending kept only the
    /// first of several X-Forwarded-For lines, and an empty one became ", ".
    #[test]
    fn appending_keeps_every_forwarded_for_line() {
        let mut r = req("/", &[b"a.test"]);
        for v in ["198.19.0.7", "", "198.19.0.8, 198.19.0.9 "] {
            r.headers_mut().append(&X_FORWARDED_FOR, HeaderValue::from_static(v));
        }
        let h = rewritten(clone(&r), &config("headers: {x_forwarded_for: append}\n"));
        assert_eq!(h.get_all(&X_FORWARDED_FOR).iter().collect::<Vec<_>>(), ["198.19.0.7, 198.19.0.8, 198.19.0.9, 198.18.0.10"]);
        let h = rewritten(r, &config(""));
        assert_eq!(h.get_all(&X_FORWARDED_FOR).iter().collect::<Vec<_>>(), ["198.18.0.10"], "replace");
    }

    fn clone(r: &Request<()>) -> Request<()> {
        let mut c = Request::builder().uri(r.uri().clone()).body(()).unwrap();
        *c.headers_mut() = r.headers().clone();
        c
    }
}
