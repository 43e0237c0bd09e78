//! Graceful shutdown of open connections: when the service stops, each
//! connection finishes the request it is serving and then closes, and
//! [`Connections::shutdown`] waits for the last one.
//!
//! hyper-util's `GracefulShutdown` does the same, but polls a watch channel
//! (a mutex) every time a connection is polled, about 2% of the CPU of a
//! small `/inbox` request. Here a connection checks one atomic flag per poll;
//! the notification that wakes it at shutdown is registered once, on its
//! first poll. This module must never drop a connection's open request:
//! shutdown only asks hyper to close after the current one.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;
use tokio_util::task::TaskTracker;

/// The open connections, spawned through [`Connections::spawn`].
#[derive(Default)]
pub struct Connections {
    shared: Arc<Shared>,
    tracker: TaskTracker,
}

#[derive(Default)]
struct Shared {
    begun: AtomicBool,
    wake: Arc<Notify>,
}

impl Connections {
    /// Serves `conn` on a task of its own until it ends or shutdown closes it.
    pub fn spawn<S, F>(&self, conn: http1::Connection<TokioIo<TcpStream>, S>, done: F)
    where
        S: HttpService<Incoming, ResBody = super::Body> + Send + 'static,
        S::Future: Send,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        F: FnOnce(Result<(), hyper::Error>) + Send + 'static,
    {
        let watched = Watched {
            conn,
            shared: self.shared.clone(),
            wake: None,
            closing: false,
        };
        // Its own task: the waker registered on the first poll stays the one
        // that wakes this connection (see `Watched::poll`).
        self.tracker.spawn(async move { done(watched.await) });
    }

    /// Asks every connection to close after its current request; true when
    /// all of them ended within `grace`.
    pub async fn shutdown(self, grace: Duration) -> bool {
        self.shared.begun.store(true, Ordering::SeqCst);
        self.shared.wake.notify_waiters();
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }
}

/// A connection that closes gracefully once shutdown has begun.
struct Watched<S>
where
    S: HttpService<Incoming>,
{
    conn: http1::Connection<TokioIo<TcpStream>, S>,
    shared: Arc<Shared>,
    /// Registered on the first poll; wakes this task when shutdown begins.
    wake: Option<Pin<Box<OwnedNotified>>>,
    closing: bool,
}

impl<S> Future for Watched<S>
where
    S: HttpService<Incoming, ResBody = super::Body>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = Result<(), hyper::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if !this.closing {
            if this.wake.is_none() {
                // Registered before the flag is read: a shutdown that sets
                // the flag after this read still finds us to wake.
                let mut wake = Box::pin(this.shared.wake.clone().notified_owned());
                let _ = wake.as_mut().poll(cx);
                this.wake = Some(wake);
            }
            if this.shared.begun.load(Ordering::SeqCst) {
                this.closing = true;
                Pin::new(&mut this.conn).graceful_shutdown();
            }
        }
        Pin::new(&mut this.conn).poll(cx)
    }
}
