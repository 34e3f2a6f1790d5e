//! The web dashboard at `/` of the control API's listener
//! (docs/operations.md, "Dashboard"): lb-user's own page and script
//! (`lb-user/assets/dashboard/`) with the page code shared with alb's
//! dashboard (`lb_common::userspace::dashboard`). The page reads
//! `GET /api/state` and acts through the same API as the CLI.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, Method, StatusCode};
use lb_common::userspace::dashboard::Page;

use super::{handlers::Response, ApiError};

/// lb-user's page, embedded in the binary.
pub const PAGE: Page = Page { html: include_str!("../../assets/dashboard/index.html"), script: include_str!("../../assets/dashboard/lb-user.js") };

/// The dashboard file at `path` (GET or HEAD), a 405 for another method on
/// one, or `None` when `path` is no dashboard file (an API path, then).
pub fn serve(method: &Method, path: &str) -> Option<Result<Response, ApiError>> {
    let asset = PAGE.asset(path)?;
    if method != Method::GET && method != Method::HEAD {
        return Some(Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed here; use GET"))));
    }
    let body = if method == Method::HEAD { Bytes::new() } else { Bytes::from_static(asset.body.as_bytes()) };
    let mut r = hyper::Response::new(Full::new(body));
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(asset.content_type));
    for (name, value) in Page::headers() {
        r.headers_mut().insert(name, header::HeaderValue::from_static(value));
    }
    Some(Ok(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_its_script_and_the_shared_files() {
        let page = serve(&Method::GET, "/").unwrap().unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(page.headers()["content-security-policy"].to_str().unwrap().starts_with("default-src 'self'"));
        for path in ["/dashboard/page.js", "/dashboard/common.js", "/dashboard/common.css"] {
            assert!(PAGE.html.contains(&format!("\"{path}\"")), "the page loads {path}");
            assert_eq!(serve(&Method::GET, path).unwrap().unwrap().status(), StatusCode::OK, "{path}");
        }
        assert!(PAGE.script.contains("\"/api/state\""), "the page reads the state");
        let e = serve(&Method::POST, "/").unwrap().unwrap_err();
        assert_eq!((e.status, e.message.as_str()), (StatusCode::METHOD_NOT_ALLOWED, "POST is not allowed here; use GET"));
        assert!(serve(&Method::GET, "/api/state").is_none());
        assert!(serve(&Method::GET, "/dashboard/other.js").is_none());
    }
}
