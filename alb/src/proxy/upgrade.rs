//! HTTP/1.1 Upgrade (WebSocket and the like): after a 101 from the backend,
//! the two upgraded connections are joined and copied both ways.

use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header;
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, Version};
use hyper_util::rt::TokioIo;

use super::body::InFlight;
use crate::upstream::ProxyBody;

pub(super) fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11 && req.headers().contains_key(header::UPGRADE) && super::headers::connection_tokens(req.headers()).any(|t| t == "upgrade")
}

/// Joins the client's upgraded connection to the backend's once both
/// upgrades complete, in a task of its own that keeps the backend counted
/// in flight; returns the 101 (without a body) for the client.
pub(super) fn tunnel(client: OnUpgrade, mut resp: Response<Incoming>, guard: InFlight) -> Response<ProxyBody> {
    let bu = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let _guard = guard;
        match tokio::try_join!(client, bu) {
            Ok((c, b)) => {
                let (mut c, mut b) = (TokioIo::new(c), TokioIo::new(b));
                let _ = tokio::io::copy_bidirectional(&mut c, &mut b).await;
            }
            Err(e) => log::debug!("upgrade failed: {e}"),
        }
    });
    let (parts, _) = resp.into_parts();
    Response::from_parts(parts, Empty::new().map_err(|never| match never {}).boxed())
}
