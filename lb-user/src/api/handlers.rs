//! Routes and bodies to [`Request`]s, and answers to JSON responses. The
//! parsing ([`route`], [`request`]) is plain functions over the method, the
//! path and the body bytes, so it is unit-tested without a socket.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::{body::Incoming, header, Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use lb_common::userspace::dashboard;

use super::{parse_backend, server::Shared, state, ApiError, Reply, Request};
use crate::config::BackendSpec;

/// Request bodies are small JSON objects.
pub const MAX_BODY: usize = 64 * 1024;

pub type Response = hyper::Response<Full<Bytes>>;

const ENDPOINTS: &str =
    "the API has GET /api/state, POST /api/vips/{vip}/backends, PATCH and DELETE /api/vips/{vip}/backends/{address:port}, and the dashboard at / (docs/operations.md)";

/// What a path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    State,
    Backends { vip: String },
    Backend { vip: String, backend: SocketAddr },
}

impl Route {
    fn allowed(&self) -> &'static [Method] {
        match self {
            Route::State => &[Method::GET],
            Route::Backends { .. } => &[Method::POST],
            Route::Backend { .. } => &[Method::PATCH, Method::DELETE],
        }
    }
}

/// The route of `path`; segments may be percent-encoded
/// (`%5Bfd00%3A%3A11%5D%3A8080`).
pub fn route(path: &str) -> Result<Route, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, format!("no endpoint {path}; {ENDPOINTS}"));
    let segments: Vec<&str> = path.strip_prefix("/api/").ok_or_else(not_found)?.split('/').collect();
    let decode = |s: &str| -> Result<String, ApiError> {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, format!("{s:?} is not UTF-8 once percent-decoded")))
    };
    match segments.as_slice() {
        ["state"] => Ok(Route::State),
        ["vips", vip, "backends"] if !vip.is_empty() => Ok(Route::Backends { vip: decode(vip)? }),
        ["vips", vip, "backends", b] if !vip.is_empty() => {
            let backend = parse_backend(&decode(b)?).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
            Ok(Route::Backend { vip: decode(vip)?, backend })
        }
        _ => Err(not_found()),
    }
}

/// `PATCH`'s body: one change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    weight: Option<i64>,
    drain: Option<bool>,
}

fn bad_body(message: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, format!("request body: {message}"))
}

/// The request `method` on `route` with `body` asks for.
pub fn request(method: &Method, route: Route, body: &[u8]) -> Result<Request, ApiError> {
    if !route.allowed().contains(method) {
        let allowed: Vec<&str> = route.allowed().iter().map(Method::as_str).collect();
        return Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed here; use {}", allowed.join(" or "))));
    }
    match (route, method) {
        (Route::State, _) => Ok(Request::State),
        (Route::Backends { vip }, _) => Ok(Request::Add { vip, spec: BackendSpec::from_json(body).map_err(bad_body)? }),
        (Route::Backend { vip, backend }, &Method::DELETE) => Ok(Request::Remove { vip, backend }),
        (Route::Backend { vip, backend }, _) => {
            let patch: Patch = serde_json::from_slice(body).map_err(|e| bad_body(e.to_string().replace("expected i64", "expected an integer")))?;
            match (patch.weight, patch.drain) {
                (Some(weight), None) => Ok(Request::Weight { vip, backend, weight }),
                (None, Some(drain)) => Ok(Request::Drain { vip, backend, drain }),
                _ => Err(bad_body("give one change: {\"weight\": N} or {\"drain\": true|false}")),
            }
        }
    }
}

/// Serves one request.
pub(super) async fn handle(shared: &Shared, req: hyper::Request<Incoming>) -> Response {
    let method = req.method().clone();
    if let Some(answer) = super::dashboard::serve(&method, req.uri().path()) {
        return answer.unwrap_or_else(|e| error(&e));
    }
    if method != Method::GET {
        let text = |name| req.headers().get(name).and_then(|v: &header::HeaderValue| v.to_str().ok());
        if let Some(origin) = text(header::ORIGIN).filter(|_| dashboard::foreign_origin(text(header::ORIGIN), text(header::HOST))) {
            return error(&ApiError::new(StatusCode::FORBIDDEN, dashboard::foreign_origin_message(origin)));
        }
    }
    let route = match route(req.uri().path()) {
        Ok(r) => r,
        Err(e) => return error(&e),
    };
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return error(&ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body over {MAX_BODY} bytes")))
        }
        Err(e) => return error(&bad_body(e)),
    };
    let request = match request(&method, route, &body) {
        Ok(r) => r,
        Err(e) => return error(&e),
    };
    match shared.ask(request).await {
        Ok(Reply::State(view)) => json_response(StatusCode::OK, &state::render(&view, &shared.rates)),
        Ok(Reply::Backend { status, vip, backend }) => json_response(status, &json!({"vip": vip, "backend": backend})),
        Err(e) => error(&e),
    }
}

fn error(e: &ApiError) -> Response {
    let mut r = json_response(e.status, &json!({"error": e.message}));
    if e.status == StatusCode::METHOD_NOT_ALLOWED {
        // The message lists them; the header says the same for clients.
        let allow = e.message.rsplit("use ").next().unwrap_or_default().replace(" or ", ", ");
        if let Ok(v) = header::HeaderValue::from_str(&allow) {
            r.headers_mut().insert(header::ALLOW, v);
        }
    }
    r
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut text = body.to_string();
    text.push('\n');
    let mut r = hyper::Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(r: Result<impl std::fmt::Debug, ApiError>) -> (u16, String) {
        let e = r.unwrap_err();
        (e.status.as_u16(), e.message)
    }

    #[test]
    fn routes() {
        assert_eq!(route("/api/state").unwrap(), Route::State);
        assert_eq!(route("/api/vips/web/backends").unwrap(), Route::Backends { vip: "web".into() });
        let v6 = Route::Backend { vip: "web".into(), backend: "[fd00::11]:8080".parse().unwrap() };
        assert_eq!(route("/api/vips/web/backends/[fd00::11]:8080").unwrap(), v6);
        assert_eq!(route("/api/vips/web/backends/%5Bfd00%3A%3A11%5D%3A8080").unwrap(), v6);
        let (code, msg) = status(route("/api/vips/web/backends/198.18.1.11"));
        assert_eq!(code, 400);
        assert!(msg.contains("\"198.18.1.11\" is not a backend address:port"), "{msg}");
        for path in ["/", "/metrics", "/api/state/", "/api/vips//backends", "/api/vips/web", "/api/vips/web/backends/a/b"] {
            let (code, msg) = status(route(path));
            assert_eq!(code, 404, "{path}");
            assert!(msg.starts_with(&format!("no endpoint {path};")) && msg.contains("GET /api/state"), "{msg}");
        }
    }

    #[test]
    fn methods_and_bodies() {
        let b: SocketAddr = "198.18.1.11:80".parse().unwrap();
        let one = || Route::Backend { vip: "web".into(), backend: b };
        assert!(matches!(request(&Method::GET, Route::State, b""), Ok(Request::State)));
        let (code, msg) = status(request(&Method::POST, Route::State, b""));
        assert_eq!((code, msg.as_str()), (405, "POST is not allowed here; use GET"));
        assert_eq!(status(request(&Method::GET, one(), b"")).1, "GET is not allowed here; use PATCH or DELETE");
        assert!(matches!(request(&Method::DELETE, one(), b""), Ok(Request::Remove { .. })));
        assert!(matches!(request(&Method::PATCH, one(), br#"{"weight": 3}"#), Ok(Request::Weight { weight: 3, .. })));
        assert!(matches!(request(&Method::PATCH, one(), br#"{"drain": false}"#), Ok(Request::Drain { drain: false, .. })));
        for (body, want) in [
            (&br#"{"weight": 3, "drain": true}"#[..], "give one change"),
            (br#"{}"#, "give one change"),
            (br#"{"wait": 3}"#, "unknown field `wait`"),
            (br#"{"weight": 2.5}"#, "expected an integer"),
            (br#"{"drain": "yes"}"#, "expected a boolean"),
            (b"", "EOF while parsing"),
        ] {
            let (code, msg) = status(request(&Method::PATCH, one(), body));
            assert!(code == 400 && msg.starts_with("request body: ") && msg.contains(want), "{msg}");
        }
        let add = |body: &[u8]| request(&Method::POST, Route::Backends { vip: "web".into() }, body);
        assert!(matches!(add(br#"{"address": "198.18.1.13", "port": 80, "weight": 2}"#), Ok(Request::Add { .. })));
        let (code, msg) = status(add(br#"{"address": "198.18.1.13", "prot": 80}"#));
        assert!(code == 400 && msg.contains("unknown field `prot`"), "{msg}");
    }
}
