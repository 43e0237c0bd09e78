//! What one connection is doing, as its socket and its requests show it:
//! idle (fresh, or between keep-alive requests), receiving a request's head,
//! or serving a request. [`super::connections`] reads it to close a
//! connection whose phase ran out, and, at shutdown, to close at once a
//! connection that is not serving anything.
//!
//! This is bookkeeping beside hyper: it must never hold, change or reorder
//! a byte. It costs a few uncontended atomic operations and up to three
//! reads of the coarse clock per request ([`crate::clock::monotonic_ms`]).
//! Everything here is touched from the connection's own task (hyper calls
//! the service, polls the socket and drops response bodies there), so the
//! atomics are only there to make the types `Send`.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Duration, Instant};

/// One connection's activity.
pub struct Activity {
    epoch: Instant,
    /// [`crate::clock::monotonic_ms`] at `epoch`.
    epoch_ms: u64,
    /// Requests handed to the router whose response has not been written.
    serving: AtomicU32,
    /// Bytes arrived since the connection last became idle: a request's
    /// head is on its way.
    head: AtomicBool,
    /// An answer handed to hyper and not yet flushed to the socket.
    unflushed: AtomicBool,
    /// When the current head phase began, or when the connection last
    /// showed life while idle (opened, answered, or wrote a part of its
    /// answer), in ms after `epoch`.
    since_ms: AtomicU64,
}

/// What a connection is doing, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No request in progress and no byte of the next one yet.
    Idle(Instant),
    /// The first bytes of a request arrived at this time; its head is incomplete.
    Head(Instant),
    /// A request is being served (its body read, its answer computed or written).
    Serving,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            epoch: Instant::now(),
            epoch_ms: crate::clock::monotonic_ms(),
            serving: AtomicU32::new(0),
            head: AtomicBool::new(false),
            unflushed: AtomicBool::new(false),
            since_ms: AtomicU64::new(0),
        })
    }

    pub fn phase(&self) -> Phase {
        if self.serving.load(Relaxed) > 0 {
            return Phase::Serving;
        }
        let since = self.epoch + Duration::from_millis(self.since_ms.load(Relaxed));
        if self.head.load(Relaxed) {
            Phase::Head(since)
        } else {
            Phase::Idle(since)
        }
    }

    /// Nothing is being served and every answer is on the wire: closing
    /// now loses no response.
    pub fn quiet(&self) -> bool {
        self.serving.load(Relaxed) == 0 && !self.unflushed.load(Relaxed)
    }

    /// A request's head is complete and goes to the router; serving lasts
    /// until the returned guard (carried by the response body) is dropped.
    pub fn begin(self: &Arc<Self>) -> Serving {
        self.serving.fetch_add(1, Relaxed);
        self.head.store(false, Relaxed);
        Serving(self.clone())
    }

    fn mark(&self) {
        let ms = crate::clock::monotonic_ms().saturating_sub(self.epoch_ms);
        self.since_ms.store(ms, Relaxed);
    }

    fn bytes_written(&self) {
        self.unflushed.store(true, Relaxed);
        // A long answer to a slow reader is idle time only while nothing moves.
        if !self.head.load(Relaxed) {
            self.mark();
        }
    }

    fn bytes_read(&self) {
        // Bytes read while serving are the request's body (or the next
        // pipelined request, which is timed once this one is answered).
        if self.serving.load(Relaxed) == 0 && !self.head.load(Relaxed) {
            self.head.store(true, Relaxed);
            self.mark();
        }
    }
}

/// A request being served; see [`Activity::begin`].
pub struct Serving(Arc<Activity>);

impl Drop for Serving {
    fn drop(&mut self) {
        if self.0.serving.fetch_sub(1, Relaxed) == 1 {
            self.0.head.store(false, Relaxed);
            // hyper took the answer into its buffer; it is on the wire at
            // the next flush, not before.
            self.0.unflushed.store(true, Relaxed);
            self.0.mark();
        }
    }
}

/// A response body that keeps its request counted as served until hyper
/// has taken its last byte (and drops it), or until the request is
/// abandoned.
pub struct Tracked {
    inner: super::Body,
    _serving: Serving,
}

impl Tracked {
    pub fn new(inner: super::Body, serving: Serving) -> Tracked {
        Tracked {
            inner,
            _serving: serving,
        }
    }
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A socket that tells its connection's [`Activity`] when bytes come in
/// and when written bytes have been flushed.
pub struct Io<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Io<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> Io<T> {
        Io { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Io<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.bytes_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Io<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.bytes_written();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.bytes_written();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        if matches!(polled, Poll::Ready(Ok(()))) {
            this.activity.unflushed.store(false, Relaxed);
        }
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pause() {
        std::thread::sleep(std::time::Duration::from_millis(15));
    }

    fn since(phase: Phase) -> Instant {
        match phase {
            Phase::Idle(t) | Phase::Head(t) => t,
            Phase::Serving => panic!("no start time while serving"),
        }
    }

    #[test]
    fn phases_follow_bytes_requests_and_answers() {
        let a = Activity::new();
        let opened = since(a.phase());
        assert!(matches!(a.phase(), Phase::Idle(_)));
        pause();
        a.bytes_read();
        let first_byte = since(a.phase());
        assert!(matches!(a.phase(), Phase::Head(_)));
        assert!(first_byte > opened);
        // More bytes of the same head do not move its start.
        pause();
        a.bytes_read();
        assert_eq!(a.phase(), Phase::Head(first_byte));
        let serving = a.begin();
        assert_eq!(a.phase(), Phase::Serving);
        a.bytes_read(); // the body
        assert_eq!(a.phase(), Phase::Serving);
        pause();
        drop(serving);
        let answered = since(a.phase());
        assert!(matches!(a.phase(), Phase::Idle(_)));
        assert!(answered > first_byte);
        assert!(!a.quiet(), "the answer is not flushed yet");
        // A slow reader taking its answer in parts is not idle meanwhile.
        pause();
        a.bytes_written();
        assert!(since(a.phase()) > answered);
        a.unflushed.store(false, Relaxed);
        assert!(a.quiet());
    }
}
