//! The `alb-request-head` target's input and judgement.
//!
//! Input: one setup byte, then an HTTP/1 request head. The setup byte picks
//! what alb knows about the connection and its config (bit 0: append to
//! X-Forwarded-For instead of replacing it; 1: a custom identity header
//! name; 2: TLS; 3: a verified client identity; 4–5: the peer, IPv4, IPv6,
//! IPv4-mapped IPv6 or loopback; 6: the request came as HTTP/2). The head is
//! parsed with httparse and checked the way hyper's HTTP/1 server does
//! before alb sees it, then goes through `alb::proxy::prepare` — the same
//! function `alb::proxy::handle` runs on every request.
//!
//! The invariants are stated independently of alb's code: no hop-by-hop
//! header survives (nor one the client's `Connection` names), apart from
//! the `Upgrade` / `Connection: upgrade` pair of an upgrade;
//! X-Forwarded-For is the client's chain (when appending) and ends with the
//! peer; Host and X-Forwarded-Host are the host alb routed by; the pool is
//! the most specific match as docs/alb.md defines it; no value carries CR,
//! LF or NUL; the backend gets an origin-form HTTP/1.1 request.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use alb::config::Config;
use alb::pool::Pool;
use alb::proxy::{prepare, ConnInfo, Prepared, Refusal};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{Method, Request, Uri, Version};

/// The pools of every setup: (name, host as matched, path prefix), in
/// file order. The hosts are written in the file in other spellings (case,
/// port, brackets) that must match the same.
const POOLS: &[(&str, Option<&str>, Option<&str>)] = &[
    ("default", None, None),
    ("api", None, Some("/api/")),
    ("www", Some("www.example.test"), None),
    ("www-api", Some("www.example.test"), Some("/api/")),
    ("v6", Some("::1"), None),
    ("v6-bracketed", Some("fd00:198:18::1"), None),
    ("alt", Some("alt.test"), Some("/")),
];

const CONFIG: &str = r#"protocol: http
listen: ["127.0.0.1:8080"]
backend_servers: [http://198.18.1.11:8080]
pools:
  - {name: api, backends: [http://198.18.1.12:8080], match: {path_prefix: /api/}}
  - {name: www, backends: [http://198.18.1.13:8080], match: {hosts: [WWW.Example.Test]}}
  - {name: www-api, backends: [http://198.18.1.14:8080], match: {hosts: [www.example.test], path_prefix: /api/}}
  - {name: v6, backends: [http://198.18.1.15:8080], match: {hosts: ["::1"]}}
  - {name: v6-bracketed, backends: [http://198.18.1.16:8080], match: {hosts: ["[fd00:198:18::1]:443"]}}
  - {name: alt, backends: [http://198.18.1.17:8080], match: {hosts: ["alt.test:8443"], path_prefix: /}}
"#;

const CUSTOM_IDENTITY: &str = "x-ssl-subject";
const IDENTITY: &str = "CN=client.example.test,O=xdplb";

/// A config and its pools, built once per (append, custom identity).
struct Fixture {
    cfg: Config,
    pools: Vec<Arc<Pool>>,
}

fn fixture(append: bool, custom_identity: bool) -> &'static Fixture {
    static FIXTURES: OnceLock<Vec<Fixture>> = OnceLock::new();
    let all = FIXTURES.get_or_init(|| {
        let mut v = Vec::new();
        for (append, custom) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut text = CONFIG.to_owned();
            if append {
                text.push_str("headers: {x_forwarded_for: append}\n");
            }
            if custom {
                text.push_str(&format!("mtls: {{identity_header: {CUSTOM_IDENTITY}}}\n"));
            }
            let cfg = Config::parse(&text).unwrap_or_else(|e| panic!("the fixture config: {e}"));
            let pools = cfg.all_pools().iter().map(|p| Arc::new(Pool::from_config(p, None).expect("fixture pool"))).collect();
            v.push(Fixture { cfg, pools });
        }
        v
    });
    &all[usize::from(append) + 2 * usize::from(custom_identity)]
}

/// The connection a head arrives on, from the setup byte.
pub struct Setup {
    pub append: bool,
    pub custom_identity: bool,
    pub h2: bool,
    pub conn: ConnInfo,
}

impl Setup {
    pub fn from_byte(b: u8) -> Setup {
        let peer: SocketAddr = match (b >> 4) & 3 {
            0 => "198.18.0.10:40000",
            1 => "[fd00:198:18::10]:40000",
            2 => "[::ffff:198.18.0.10]:40000",
            _ => "127.0.0.1:40000",
        }
        .parse()
        .expect("peer");
        let local: SocketAddr = "198.18.0.1:443".parse().expect("local");
        let tls = b & 4 != 0;
        let identity = (b & 8 != 0).then(|| IDENTITY.to_owned());
        Setup { append: b & 1 != 0, custom_identity: b & 2 != 0, h2: b & 64 != 0, conn: ConnInfo::new(peer, local, tls, identity) }
    }

    fn identity_header(&self) -> HeaderName {
        HeaderName::from_static(if self.custom_identity { CUSTOM_IDENTITY } else { alb::config::DEFAULT_IDENTITY_HEADER })
    }
}

/// hyper's limit on the request target (`MAX_URI_LEN`).
const MAX_URI_LEN: usize = (u16::MAX - 1) as usize;

/// The request hyper's HTTP/1 server would hand alb for `bytes`, or `None`
/// where hyper answers 400 itself (or waits for more bytes). With `h2` the
/// same head is given the HTTP/2 version (hyper's HTTP/2 server carries the
/// host in the URI, which an absolute-form target gives).
pub fn request(bytes: &[u8], h2: bool) -> Option<Request<()>> {
    let mut headers = [httparse::EMPTY_HEADER; 100];
    let mut parsed = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(_) = parsed.parse(bytes).ok()? else { return None };
    let path = parsed.path?;
    if path.len() > MAX_URI_LEN {
        return None;
    }
    let method = Method::from_bytes(parsed.method?.as_bytes()).ok()?;
    let uri = Uri::try_from(path).ok()?;
    let version = match (h2, parsed.version?) {
        (true, _) => Version::HTTP_2,
        (false, 1) => Version::HTTP_11,
        (false, _) => Version::HTTP_10,
    };
    let mut req = Request::builder().method(method).uri(uri).version(version).body(()).ok()?;
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        // hyper refuses Transfer-Encoding in HTTP/1.0.
        if name == header::TRANSFER_ENCODING && version == Version::HTTP_10 {
            return None;
        }
        req.headers_mut().append(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    Some(req)
}

/// Runs one input through `prepare` and checks every invariant.
pub fn run(data: &[u8]) {
    let Some((&setup_byte, head)) = data.split_first() else { return };
    let setup = Setup::from_byte(setup_byte);
    let Some(mut req) = request(head, setup.h2) else { return };
    let fx = fixture(setup.append, setup.custom_identity);
    let before = clone_head(&req);
    let result = prepare(&mut req, &fx.cfg, &fx.pools, &setup.conn);
    check(&before, &req, result, &setup, &fx.cfg);
}

fn clone_head(req: &Request<()>) -> Request<()> {
    let mut c = Request::new(());
    *c.method_mut() = req.method().clone();
    *c.uri_mut() = req.uri().clone();
    *c.version_mut() = req.version();
    *c.headers_mut() = req.headers().clone();
    c
}

const HOP_BY_HOP: &[&str] = &["connection", "proxy-connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy-authenticate"];

fn values<'a>(h: &'a HeaderMap, name: &str) -> Vec<&'a [u8]> {
    h.get_all(name).iter().map(HeaderValue::as_bytes).collect()
}

/// The header names the client's `Connection` lines list (RFC 9110 §7.6.1),
/// read byte by byte: a line that is not all ASCII still names its tokens.
fn connection_tokens(h: &HeaderMap) -> Vec<HeaderName> {
    h.get_all(header::CONNECTION).iter().flat_map(|v| v.as_bytes().split(|&b| b == b',')).filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok()).collect()
}

/// The host the request names: its URI's authority, else its Host line.
fn named_host(req: &Request<()>) -> Option<Vec<u8>> {
    match req.uri().authority() {
        Some(a) => Some(a.as_str().as_bytes().to_vec()),
        None => req.headers().get(header::HOST).map(|v| v.as_bytes().to_vec()),
    }
}

/// The routing key of a valid `host[:port]`: its host part, lowercase,
/// without port and brackets. Judged by the `http` crate's authority parser
/// and std's IPv6 parser, not by alb's code; `None` for a host RFC 9110
/// §7.2 does not allow (userinfo, a port that is not digits, an IPv6
/// address without brackets or a broken one, brackets elsewhere).
fn host_key(host: &[u8]) -> Option<String> {
    let a = Authority::try_from(host).ok()?;
    let (name, port) = (a.host(), &a.as_str()[a.host().len()..]);
    let port_ok = port.is_empty() || port.strip_prefix(':').is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
    if a.as_str().contains('@') || !port_ok || name.is_empty() {
        return None;
    }
    match name.strip_prefix('[') {
        Some(v6) => {
            let inner = v6.strip_suffix(']')?;
            inner.parse::<std::net::Ipv6Addr>().ok()?;
            Some(inner.to_ascii_lowercase())
        }
        // The http crate takes brackets anywhere; RFC 3986 only around an IP literal.
        None if name.contains([':', '[', ']']) => None,
        None => Some(name.to_ascii_lowercase()),
    }
}

fn lossy(v: &[&[u8]]) -> Vec<String> {
    v.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect()
}

/// The pool docs/alb.md names for (host key, path): the longest matching
/// `path_prefix`, then a `hosts` match over none, then the earlier pool;
/// the first pool when none matches.
fn expected_pool(host: Option<&str>, path: &str) -> &'static str {
    let mut best: Option<((usize, bool), &str)> = None;
    for &(name, pool_host, prefix) in POOLS {
        if pool_host.is_some_and(|h| Some(h) != host) {
            continue;
        }
        let score = match prefix {
            Some(p) if path.starts_with(p) => (p.len() + 1, pool_host.is_some()),
            Some(_) => continue,
            None => (0, pool_host.is_some()),
        };
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, name));
        }
    }
    best.map_or(POOLS[0].0, |(_, name)| name)
}

fn check(before: &Request<()>, after: &Request<()>, result: Result<Prepared, Refusal>, setup: &Setup, cfg: &Config) {
    let head_bytes: usize = before.headers().iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    let host_lines = values(before.headers(), "host");
    let host = named_host(before).filter(|v| !v.is_empty());
    let key = host.as_deref().map(host_key);
    let bad_host = host_lines.len() > 1 || key.as_ref().is_some_and(Option::is_none);
    let prepared = match result {
        Err(Refusal::HeadTooLarge) => return assert!(head_bytes > cfg.limits.max_header_bytes, "431 for a head of {head_bytes} bytes"),
        Err(Refusal::NoPool) => panic!("no pool, although every setup has pools"),
        Err(Refusal::BadHost) => {
            return assert!(bad_host, "400 for the good host {:?} (Host lines {:?})", host.as_deref().map(String::from_utf8_lossy), lossy(&host_lines))
        }
        Ok(p) => {
            assert!(head_bytes <= cfg.limits.max_header_bytes, "a head of {head_bytes} bytes was forwarded");
            assert!(!bad_host, "forwarded with the bad host {:?} (Host lines {:?})", host.as_deref().map(String::from_utf8_lossy), lossy(&host_lines));
            p
        }
    };
    let h = after.headers();

    // The backend gets an origin-form HTTP/1.1 request.
    assert_eq!(after.version(), Version::HTTP_11);
    assert!(after.uri().scheme().is_none() && after.uri().authority().is_none(), "not origin form: {}", after.uri());
    assert_eq!(after.uri().path_and_query().map(|p| p.as_str()), Some(prepared.path.as_str()));

    // Hop-by-hop headers, and the ones the client's Connection names, are gone.
    let is_upgrade = before.version() == Version::HTTP_11
        && before.headers().contains_key(header::UPGRADE)
        && connection_tokens(before.headers()).iter().any(|t| t == "upgrade");
    assert_eq!(prepared.upgrade, is_upgrade, "upgrade");
    for &n in HOP_BY_HOP {
        if prepared.upgrade && (n == "upgrade" || n == "connection") {
            continue;
        }
        assert!(!h.contains_key(n), "hop-by-hop {n} survived: {h:?}");
    }
    if prepared.upgrade {
        assert_eq!(lossy(&values(h, "connection")), ["upgrade"]);
        assert_eq!(lossy(&values(h, "upgrade")), lossy(&values(before.headers(), "upgrade")[..1]));
    }
    let id_name = setup.identity_header();
    let alb_sets = |n: &HeaderName| {
        [header::HOST, HeaderName::from_static("x-forwarded-for"), HeaderName::from_static("x-forwarded-proto"), HeaderName::from_static("x-forwarded-host")]
            .contains(n)
            || *n == id_name
            || (prepared.upgrade && (n == header::UPGRADE || n == header::CONNECTION))
    };
    for t in connection_tokens(before.headers()) {
        assert!(alb_sets(&t) || !h.contains_key(&t), "{t}, named in Connection, survived: {h:?}");
    }

    // X-Forwarded-For: the client's chain when appending, and the peer last.
    let peer = setup.conn.peer.ip().to_canonical().to_string();
    let xff = values(h, "x-forwarded-for");
    assert_eq!(xff.len(), 1, "one X-Forwarded-For: {h:?}");
    let mut want: Vec<&[u8]> = Vec::new();
    // A chain the client's Connection names was for the hop before alb.
    if setup.append && !connection_tokens(before.headers()).iter().any(|t| t == "x-forwarded-for") {
        want = values(before.headers(), "x-forwarded-for").into_iter().filter(|v| v.is_ascii()).map(<[u8]>::trim_ascii).filter(|v| !v.is_empty()).collect();
    }
    want.push(peer.as_bytes());
    assert_eq!(
        lossy(&xff),
        lossy(&[&want.join(&b", "[..])]),
        "X-Forwarded-For (append: {}) from {:?}",
        setup.append,
        lossy(&values(before.headers(), "x-forwarded-for"))
    );

    assert_eq!(lossy(&values(h, "x-forwarded-proto")), [if setup.conn.tls { "https" } else { "http" }]);

    // The identity is alb's, never the client's.
    match &setup.conn.identity {
        Some(id) => assert_eq!(lossy(&values(h, id_name.as_str())), [id.as_str()]),
        None => assert!(!h.contains_key(&id_name), "the client's own {id_name} survived"),
    }

    // Host and X-Forwarded-Host are the host alb routed by.
    match &host {
        Some(v) => {
            assert_eq!(lossy(&values(h, "host")), lossy(&[v]), "Host sent to the backend");
            assert_eq!(lossy(&values(h, "x-forwarded-host")), lossy(&[v]), "X-Forwarded-Host");
        }
        None => {
            assert!(!h.contains_key("x-forwarded-host"), "X-Forwarded-Host without a host: {h:?}");
            assert!(values(h, "host").iter().all(|v| v.is_empty()), "a Host nobody routed by: {h:?}");
        }
    }
    let key = key.flatten();
    let want_pool = expected_pool(key.as_deref(), before.uri().path());
    assert_eq!(prepared.pool.name, want_pool, "pool for host {key:?} path {:?}", before.uri().path());

    // Nothing that could split a header line reaches the backend.
    for (n, v) in h {
        assert!(!v.as_bytes().iter().any(|b| matches!(b, b'\r' | b'\n' | 0)), "{n} carries CR, LF or NUL: {v:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_keys_follow_rfc_9110() {
        for (host, key) in [("WWW.Example.Test:8443", "www.example.test"), ("a.test:", "a.test"), ("[::1]:8443", "::1"), ("[FD00:198:18::1]", "fd00:198:18::1")]
        {
            assert_eq!(host_key(host.as_bytes()).as_deref(), Some(key), "{host}");
        }
        for bad in ["[::1", "[::1]:x", "::1", "u@a.test", "a[b]", "[zz::1]", "a%41.test"] {
            assert_eq!(host_key(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn the_expected_pool_is_the_most_specific() {
        assert_eq!(expected_pool(None, "/"), "default");
        assert_eq!(expected_pool(Some("other.test"), "/api/x"), "api");
        assert_eq!(expected_pool(Some("www.example.test"), "/api/v1"), "www-api");
        assert_eq!(expected_pool(Some("www.example.test"), "/apix"), "www");
        assert_eq!(expected_pool(Some("alt.test"), "/api/"), "api", "a longer prefix beats a host");
        assert_eq!(expected_pool(Some("alt.test"), "/x"), "alt");
        assert_eq!(expected_pool(Some("fd00:198:18::1"), "/"), "v6-bracketed");
    }

    #[test]
    fn heads_parse_as_hyper_would_hand_them_over() {
        let r = request(b"GET http://a.test/x HTTP/1.1\r\nHost: b.test\r\nX-A: 1\r\nX-A: 2\r\n\r\n", false).unwrap();
        assert_eq!((r.version(), r.uri().authority().map(|a| a.as_str())), (Version::HTTP_11, Some("a.test")));
        assert_eq!(r.headers().get_all("x-a").iter().count(), 2);
        assert_eq!(request(b"GET / HTTP/1.1\r\nHost: a", false).map(|_| ()), None, "incomplete");
        assert_eq!(request(b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", false).map(|_| ()), None, "hyper refuses it");
        assert_eq!(request(b"GET / HTTP/1.1\r\n\r\n", true).unwrap().version(), Version::HTTP_2);
    }

    /// Every committed seed passes the judgement (the fixes it found stay).
    #[test]
    fn every_seed_head_holds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/alb-request-head");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            run(&std::fs::read(entry.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n >= 10, "{n} seeds");
    }
}
