//! The web dashboards' static files. Both lb-user (at `/` of its control
//! API) and alb (at `/` of its admin listener) serve a page of their own
//! plus the shared page code kept here once: [`COMMON_JS`] (API calls,
//! polling, DOM building, live SVG charts) and [`COMMON_CSS`]. Everything is
//! compiled into the binaries; the pages fetch nothing but their own API,
//! and the [`CONTENT_SECURITY_POLICY`] header makes the browser refuse
//! anything else.

/// The shared page code, at `/dashboard/common.js`.
pub const COMMON_JS: &str = include_str!("../../assets/dashboard/common.js");
/// The shared style sheet, at `/dashboard/common.css`.
pub const COMMON_CSS: &str = include_str!("../../assets/dashboard/common.css");

/// Sent with every dashboard file: scripts, styles, images and requests
/// from the serving origin only, no inline scripts, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// One embedded file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static str,
}

/// A binary's own page: its HTML (served at `/`) and its script (at
/// `/dashboard/page.js`), which uses the shared code.
#[derive(Clone, Copy, Debug)]
pub struct Page {
    pub html: &'static str,
    pub script: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

impl Page {
    /// The file at `path` (`/`, `/index.html`, `/dashboard/page.js`,
    /// `/dashboard/common.js`, `/dashboard/common.css`), if it is one.
    pub fn asset(&self, path: &str) -> Option<Asset> {
        let (content_type, body) = match path {
            "/" | "/index.html" => (HTML, self.html),
            "/dashboard/page.js" => (JS, self.script),
            "/dashboard/common.js" => (JS, COMMON_JS),
            "/dashboard/common.css" => (CSS, COMMON_CSS),
            _ => return None,
        };
        Some(Asset { content_type, body })
    }

    /// The headers every dashboard file is sent with, besides its
    /// content type: the policy above, no MIME sniffing, and no caching
    /// (a restarted, upgraded binary serves its own page at once).
    pub fn headers() -> [(&'static str, &'static str); 3] {
        [("content-security-policy", CONTENT_SECURITY_POLICY), ("x-content-type-options", "nosniff"), ("cache-control", "no-cache")]
    }
}

/// Whether a request that changes something comes from a page of another
/// origin. The APIs have no authentication, so without this any web page a
/// browser on the same host opens could drain or add backends (a POST with
/// a `text/plain` body needs no CORS preflight). Browsers send `Origin`
/// with every such request; curl and the CLI send none, and are let
/// through. The dashboard itself is served by the API's own listener, so
/// its origin is `http://` + the `Host` it was loaded from.
pub fn foreign_origin(origin: Option<&str>, host: Option<&str>) -> bool {
    match (origin, host) {
        (None, _) => false,
        (Some(origin), Some(host)) => origin.strip_prefix("http://") != Some(host),
        (Some(_), None) => true,
    }
}

/// The refusal of a [`foreign_origin`] request, for the error body.
pub fn foreign_origin_message(origin: &str) -> String {
    format!("refused: a change requested by a page from {origin:?}; only this listener's own dashboard (or a client without an Origin header) may change it")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_and_the_shared_files_by_path() {
        let page = Page { html: "<html>", script: "page()" };
        assert_eq!(page.asset("/"), Some(Asset { content_type: HTML, body: "<html>" }));
        assert_eq!(page.asset("/index.html").unwrap().body, "<html>");
        assert_eq!(page.asset("/dashboard/page.js"), Some(Asset { content_type: JS, body: "page()" }));
        assert_eq!(page.asset("/dashboard/common.js").unwrap().body, COMMON_JS);
        assert_eq!(page.asset("/dashboard/common.css").unwrap().content_type, CSS);
        for other in ["/dashboard/", "/dashboard/other.js", "/api/state", "/favicon.ico", "/dashboard/../index.html"] {
            assert_eq!(page.asset(other), None, "{other}");
        }
        assert!(COMMON_JS.contains("const Dash =") && COMMON_CSS.contains("figure.chart"));
    }

    #[test]
    fn only_the_listeners_own_pages_may_change_things() {
        assert!(!foreign_origin(None, Some("127.0.0.1:9901")), "curl, the CLI");
        assert!(!foreign_origin(Some("http://127.0.0.1:9901"), Some("127.0.0.1:9901")));
        assert!(!foreign_origin(Some("http://[::1]:9090"), Some("[::1]:9090")));
        for (origin, host) in [
            (Some("http://evil.example"), Some("127.0.0.1:9901")),
            (Some("http://127.0.0.1:8000"), Some("127.0.0.1:9901")),
            (Some("null"), Some("127.0.0.1:9901")),
            (Some("https://127.0.0.1:9901"), Some("127.0.0.1:9901")),
            (Some("http://127.0.0.1:9901"), None),
        ] {
            assert!(foreign_origin(origin, host), "{origin:?} {host:?}");
        }
        assert!(foreign_origin_message("http://evil.example").contains("\"http://evil.example\""));
    }
}
