//! The body of `/stream?chunks=N&interval_ms=M`: N lines, one every M ms,
//! sent as they are due (chunked encoding), so a client sees a long-lived
//! response that trickles in.

use std::{
    convert::Infallible,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use hyper::body::{Body, Frame};
use tokio::time::{sleep, Sleep};

pub(super) struct Chunks {
    name: String,
    sent: u64,
    total: u64,
    interval: Duration,
    /// Until the next chunk is due; None before the first, which goes at once.
    next: Option<Pin<Box<Sleep>>>,
}

impl Chunks {
    pub(super) fn new(name: &str, total: u64, interval: Duration) -> Chunks {
        Chunks { name: name.to_owned(), sent: 0, total, interval, next: None }
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.sent == self.total {
            return Poll::Ready(None);
        }
        if let Some(next) = self.next.as_mut() {
            if next.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        let interval = self.interval;
        self.next = Some(Box::pin(sleep(interval)));
        self.sent += 1;
        let line = format!("{} chunk {}/{}\n", self.name, self.sent, self.total);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(line)))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent == self.total
    }
}
