//! Open connections: how many, how long each may take, and how they end.
//!
//! Each connection runs on a task of its own under a [`Watch`] that closes
//! it when its current phase (see [`super::activity`]) outlasts the
//! `[http]` settings: an idle connection after `idle_timeout`, a request
//! whose head is still arriving `header_timeout` after its first byte.
//! (hyper's own `header_read_timeout` counts from the moment a connection
//! waits for a request, so it would close idle keep-alive connections at
//! the header timeout: the two are timed apart here instead.) A request
//! being served is timed by its handler (`body_timeout` for its body).
//! [`Limit`] caps the connections open at once; past it, new ones wait in
//! the listen backlog.
//!
//! At shutdown every connection that is not serving a request (idle, or
//! with a request only partly received) is closed at once; the others
//! finish the request they serve and then close, and
//! [`Connections::shutdown`] waits for the last one. This module must never
//! drop a request that is being served, nor an answer not yet flushed.
//!
//! hyper-util's `GracefulShutdown` polls a watch channel (a mutex) each time
//! a connection is polled, about 2% of the CPU of a small `/inbox` request.
//! Here a connection checks one atomic flag per poll; the notification that
//! wakes it at shutdown is registered once, on its first poll. Its timer is
//! re-armed only when it fires, never per request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::futures::OwnedNotified;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Duration, Instant, Sleep};
use tokio_util::task::TaskTracker;
use tracing::warn;

use super::activity::{Activity, Io, Phase, Tracked};
use crate::project::HttpConfig;

/// The socket type every connection is served over.
pub type Socket = TokioIo<Io<TcpStream>>;

/// How long a connection may stay in each phase.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
}

impl Timeouts {
    pub fn of(http: &HttpConfig) -> Timeouts {
        Timeouts {
            header: http.header_timeout,
            idle: http.idle_timeout,
        }
    }

    /// The longest the timer sleeps: no phase that begins after the timer
    /// was armed can end before it rings, so a phase change never needs a
    /// re-arm.
    fn check_every(&self) -> Duration {
        self.header.min(self.idle)
    }
}

/// At most this many connections at once.
pub struct Limit {
    slots: Arc<Semaphore>,
    max: usize,
    /// When the last warning about the limit was logged, if ever.
    warned: Option<Instant>,
}

/// A limit that is reached is said at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

impl Limit {
    pub fn new(max: usize) -> Limit {
        Limit {
            slots: Arc::new(Semaphore::new(max)),
            max,
            warned: None,
        }
    }

    /// A slot for the next connection; waits while all are taken.
    pub async fn slot(&mut self) -> OwnedSemaphorePermit {
        if self.slots.available_permits() == 0
            && self.warned.is_none_or(|at| at.elapsed() >= WARN_EVERY)
        {
            self.warned = Some(Instant::now());
            warn!(
                max = self.max,
                "all connection slots are taken ([http] max_connections); new connections wait"
            );
        }
        self.slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }
}

/// The open connections, spawned through [`Connections::spawn`].
pub struct Connections {
    shared: Arc<Shared>,
    tracker: TaskTracker,
    timeouts: Timeouts,
}

#[derive(Default)]
struct Shared {
    begun: AtomicBool,
    wake: Arc<Notify>,
}

impl Connections {
    pub fn new(timeouts: Timeouts) -> Connections {
        Connections {
            shared: Arc::default(),
            tracker: TaskTracker::new(),
            timeouts,
        }
    }

    /// Serves `conn` on a task of its own until it ends, times out or
    /// shutdown closes it; `slot` is given back when it does.
    pub fn spawn<S, F>(
        &self,
        conn: http1::Connection<Socket, S>,
        activity: Arc<Activity>,
        slot: OwnedSemaphorePermit,
        done: F,
    ) where
        S: HttpService<Incoming, ResBody = Tracked> + Send + 'static,
        S::Future: Send,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        F: FnOnce(Ended) + Send + 'static,
    {
        let watched = Watch {
            conn,
            activity,
            shared: self.shared.clone(),
            wake: None,
            closing: false,
            timeouts: self.timeouts,
            timer: Box::pin(tokio::time::sleep(self.timeouts.check_every())),
            armed: false,
        };
        // Its own task: the waker registered on the first poll stays the one
        // that wakes this connection (see `Watch::poll`).
        self.tracker.spawn(async move {
            done(watched.await);
            drop(slot);
        });
    }

    /// Closes every connection not serving a request, asks the others to
    /// close after their current one; true when all ended within `grace`.
    pub async fn shutdown(self, grace: Duration) -> bool {
        self.shared.begun.store(true, Ordering::SeqCst);
        self.shared.wake.notify_waiters();
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }
}

/// How a connection ended.
#[derive(Debug)]
pub enum Ended {
    /// The client closed it, or it closed after its last answer.
    Done,
    Failed(hyper::Error),
    /// Its head did not arrive within `header_timeout` of its first byte.
    HeaderTimeout,
    /// No request came within `idle_timeout`.
    IdleTimeout,
    /// Shutdown closed it while it was serving nothing.
    Shutdown,
}

/// A connection under watch: timed out by phase, closed at shutdown.
struct Watch<S>
where
    S: HttpService<Incoming>,
{
    conn: http1::Connection<Socket, S>,
    activity: Arc<Activity>,
    shared: Arc<Shared>,
    /// Registered on the first poll; wakes this task when shutdown begins.
    wake: Option<Pin<Box<OwnedNotified>>>,
    closing: bool,
    timeouts: Timeouts,
    timer: Pin<Box<Sleep>>,
    /// The timer was polled since it was last reset, so it will wake us.
    armed: bool,
}

impl<S> Watch<S>
where
    S: HttpService<Incoming>,
{
    /// The phase's deadline, if it has one.
    fn deadline(&self) -> Option<(Instant, Ended)> {
        match self.activity.phase() {
            Phase::Serving => None,
            Phase::Idle(since) => Some((since + self.timeouts.idle, Ended::IdleTimeout)),
            Phase::Head(since) => Some((since + self.timeouts.header, Ended::HeaderTimeout)),
        }
    }

    /// Checks the phase's deadline when the timer rang (or was never
    /// polled); `Some` when the connection is to be closed.
    fn check_timer(&mut self, cx: &mut Context<'_>) -> Option<Ended> {
        if self.armed && !self.timer.is_elapsed() {
            return None;
        }
        let now = Instant::now();
        let mut next = now + self.timeouts.check_every();
        if let Some((deadline, why)) = self.deadline() {
            if deadline <= now {
                return Some(why);
            }
            next = next.min(deadline);
        }
        self.timer.as_mut().reset(next);
        // Polled once so that it wakes this task when it rings.
        let _ = self.timer.as_mut().poll(cx);
        self.armed = true;
        None
    }
}

impl<S> Future for Watch<S>
where
    S: HttpService<Incoming, ResBody = Tracked>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Output = Ended;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Ended> {
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
                // Closes an idle connection; one serving a request closes
                // after answering it.
                Pin::new(&mut this.conn).graceful_shutdown();
            }
        }
        if let Poll::Ready(ended) = Pin::new(&mut this.conn).poll(cx) {
            return Poll::Ready(match ended {
                Ok(()) => Ended::Done,
                Err(e) => Ended::Failed(e),
            });
        }
        // hyper keeps a connection whose request is half received open
        // through a graceful shutdown: it is dropped here instead.
        if this.closing && this.activity.quiet() {
            return Poll::Ready(Ended::Shutdown);
        }
        match this.check_timer(cx) {
            Some(why) => Poll::Ready(why),
            None => Poll::Pending,
        }
    }
}
