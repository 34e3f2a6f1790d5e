//! The dashboard's side of the control API (docs/operations.md
//! "Dashboard"): the page at `/` with its security headers, and changes
//! from a web page of another origin refused while the dashboard's own
//! origin (and clients without `Origin`) may change things.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use crate::api_support::{two_vips, Harness};

/// The whole answer (head and body) to `method path` with `headers`.
fn exchange(api: SocketAddr, method: &str, path: &str, headers: &str, body: &str) -> String {
    let mut s = TcpStream::connect(api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\n{headers}Connection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn the_page_and_changes_only_from_its_own_origin() {
    let h = Harness::start(&two_vips(""));
    let host = format!("Host: {}\r\n", h.api);
    let page = exchange(h.api, "GET", "/", &host, "");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let head = page.to_ascii_lowercase();
    assert!(head.contains("content-type: text/html") && head.contains("content-security-policy: default-src 'self'"), "{page}");
    assert!(page.contains("/dashboard/page.js"));
    assert!(exchange(h.api, "GET", "/dashboard/common.js", &host, "").contains("const Dash ="));
    assert!(exchange(h.api, "POST", "/", &host, "").starts_with("HTTP/1.1 405"));

    let path = "/api/vips/web/backends/198.18.1.11:80";
    let drain = r#"{"drain": true}"#;
    let foreign = exchange(h.api, "PATCH", path, &format!("{host}Origin: http://evil.example\r\n"), drain);
    assert!(foreign.starts_with("HTTP/1.1 403") && foreign.contains(r#"a page from \"http://evil.example\""#), "{foreign}");
    assert_eq!(h.backend("web", "198.18.1.11:80")["drain"], "active", "the refused change changed nothing");
    let own = exchange(h.api, "PATCH", path, &format!("{host}Origin: http://{}\r\n", h.api), drain);
    assert!(own.starts_with("HTTP/1.1 200"), "{own}");
    assert_eq!(h.backend("web", "198.18.1.11:80")["drain"], "draining");
}
