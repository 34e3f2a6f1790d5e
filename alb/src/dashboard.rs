//! The web dashboard at `/` of the admin listener (docs/alb.md,
//! "Dashboard"): alb's own page and script (`alb/assets/dashboard/`) with
//! the page code shared with lb-user's dashboard
//! (`lb_common::userspace::dashboard`). The page reads `GET /api/stats`
//! and `GET /api/health`, and adds and removes backends through the admin
//! API.

use hyper::header::HeaderValue;
use hyper::{Method, Response, StatusCode};
use lb_common::userspace::dashboard::Page;

use crate::proxy::json_response;
use crate::upstream::ProxyBody;

/// alb's page, embedded in the binary.
pub const PAGE: Page = Page { html: include_str!("../assets/dashboard/index.html"), script: include_str!("../assets/dashboard/alb.js") };

/// The dashboard file at `path` (GET), a 405 for another method on one, or
/// `None` when `path` is no dashboard file.
pub fn serve(method: &Method, path: &str) -> Option<Response<ProxyBody>> {
    let asset = PAGE.asset(path)?;
    if method != Method::GET {
        let mut r = json_response(StatusCode::METHOD_NOT_ALLOWED, serde_json::json!({"error": format!("{method} is not allowed here; use GET")}).to_string());
        r.headers_mut().insert(hyper::header::ALLOW, HeaderValue::from_static("GET"));
        return Some(r);
    }
    let mut r = json_response(StatusCode::OK, asset.body.to_owned());
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    for (name, value) in Page::headers() {
        r.headers_mut().insert(name, HeaderValue::from_static(value));
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_its_script_and_the_shared_files() {
        let page = serve(&Method::GET, "/").unwrap();
        assert_eq!((page.status(), page.headers()["content-type"].to_str().unwrap()), (StatusCode::OK, "text/html; charset=utf-8"));
        assert!(page.headers().contains_key("content-security-policy"));
        for path in ["/dashboard/page.js", "/dashboard/common.js", "/dashboard/common.css"] {
            assert!(PAGE.html.contains(&format!("\"{path}\"")), "the page loads {path}");
            assert_eq!(serve(&Method::GET, path).unwrap().status(), StatusCode::OK);
        }
        for api in ["\"/api/stats\"", "\"/api/health\"", "\"/api/backends\""] {
            assert!(PAGE.script.contains(api), "the page uses {api}");
        }
        assert_eq!(serve(&Method::DELETE, "/").unwrap().status(), StatusCode::METHOD_NOT_ALLOWED);
        assert!(serve(&Method::GET, "/metrics").is_none());
    }
}
