//! A socket with bytes already read from it put back in front: for hyper (or a tunnel) to
//! carry on a connection a lean lane started reading.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::TcpStream;

/// `inner`, read from `prefix` first.
pub struct Prefixed {
    inner: TcpStream,
    prefix: Vec<u8>,
    at: usize,
}

impl Prefixed {
    /// `inner` with `prefix` (already read from it) to be read again first.
    pub fn new(inner: TcpStream, prefix: Vec<u8>) -> Self {
        Prefixed {
            inner,
            prefix,
            at: 0,
        }
    }
}

impl Prefixed {
    /// The socket.
    pub fn get_ref(&self) -> &TcpStream {
        &self.inner
    }

    /// The socket, and the prefix bytes not read yet.
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        let mut rest = self.prefix;
        rest.drain(..self.at);
        (self.inner, rest)
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.prefix.len() {
            let n = (this.prefix.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            if this.at == this.prefix.len() {
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

/// Implements `AsyncWrite` for a reading wrapper by handing every write, flush and
/// shutdown to its `inner` field untouched.
macro_rules! write_through_inner {
    ($ty:ty) => {
        impl tokio::io::AsyncWrite for $ty {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                tokio::io::AsyncWrite::poll_write(
                    std::pin::Pin::new(&mut self.get_mut().inner),
                    cx,
                    buf,
                )
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                tokio::io::AsyncWrite::poll_write_vectored(
                    std::pin::Pin::new(&mut self.get_mut().inner),
                    cx,
                    bufs,
                )
            }

            fn is_write_vectored(&self) -> bool {
                tokio::io::AsyncWrite::is_write_vectored(&self.inner)
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                tokio::io::AsyncWrite::poll_flush(std::pin::Pin::new(&mut self.get_mut().inner), cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                tokio::io::AsyncWrite::poll_shutdown(
                    std::pin::Pin::new(&mut self.get_mut().inner),
                    cx,
                )
            }
        }
    };
}
pub(crate) use write_through_inner;

write_through_inner!(Prefixed);
