//! The backend's response body as sent to the client: it keeps the
//! backend's in-flight count and hands the backend connection back to the
//! pool once the body was read to its end. Streamed, never buffered whole.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::pool::Backend;
use crate::upstream::Lease;

/// Response body that keeps the backend's in-flight count up until the
/// body has been fully sent (or dropped), for least_connections, p2c and
/// draining, and hands the backend connection back to the pool when the
/// body was read to its end.
pub(super) struct Tracked {
    inner: Incoming,
    lease: Option<Lease>,
    /// Read to its end: the last frame was polled (chunked bodies), or a
    /// known length has been read completely (hyper may stop polling then).
    done: bool,
    _guard: InFlight,
}

impl Tracked {
    pub(super) fn new(inner: Incoming, lease: Option<Lease>, guard: InFlight) -> Tracked {
        Tracked { inner, lease, done: false, _guard: guard }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(l) = self.lease.take() {
            if self.done || self.inner.is_end_stream() {
                l.release();
            }
        }
    }
}

/// Counts one request in flight to a backend for as long as it lives.
pub(super) struct InFlight(Arc<Backend>);

impl InFlight {
    pub(super) fn new(b: Arc<Backend>) -> InFlight {
        b.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(b)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(r, Poll::Ready(None)) {
            self.done = true;
        }
        r
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
