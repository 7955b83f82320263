//! Backend bodies for the unit tests of the answer path: fed frame by frame through a
//! channel, so a test decides what arrives, when, and whether the body ends, fails or
//! stalls (a sender kept open and silent).

use super::upstream::BoxError;
use bytes::Bytes;
use http_body::{Body, Frame};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// A body fed by a channel; it ends when every sender is gone.
pub(crate) struct ChannelBody(mpsc::UnboundedReceiver<Result<Bytes, BoxError>>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

/// A body and the sender that feeds it.
pub(crate) fn channel() -> (mpsc::UnboundedSender<Result<Bytes, BoxError>>, ChannelBody) {
    let (tx, rx) = mpsc::unbounded_channel();
    (tx, ChannelBody(rx))
}

/// A body of these frames, then its end.
pub(crate) fn of(frames: &[Bytes]) -> ChannelBody {
    let (tx, body) = channel();
    for f in frames {
        tx.send(Ok(f.clone())).unwrap();
    }
    body
}

/// `data` cut into frames of `size` bytes.
pub(crate) fn frames(data: &[u8], size: usize) -> Vec<Bytes> {
    data.chunks(size).map(Bytes::copy_from_slice).collect()
}
