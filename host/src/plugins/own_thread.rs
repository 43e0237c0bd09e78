//! A single-threaded tokio runtime on an OS thread of its own, for a plugin
//! instance whose calls block on disk (the message store).
//!
//! The store's file writes and syncs run inline on this thread (its WASI
//! context allows blocking the current thread), so a group commit costs no
//! hop to tokio's blocking pool and back per write, and a commit cycle never
//! waits in the HTTP workers' run queue behind request tasks. This thread
//! must never run anything else: whatever waits here waits for the disk.

use std::future::Future;
use std::thread::ThreadId;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

use super::CallFailure;

pub struct OwnThread {
    name: String,
    handle: Handle,
    thread: ThreadId,
    /// Dropped with this: the thread's runtime stops and the thread ends.
    _stop: oneshot::Sender<()>,
}

impl OwnThread {
    pub fn start(name: &str) -> std::io::Result<OwnThread> {
        let runtime = Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                // Ends when the sender is dropped (or sends).
                let _ = runtime.block_on(stopped);
            })?;
        Ok(OwnThread {
            name: name.to_string(),
            handle,
            thread: thread.thread().id(),
            _stop: stop,
        })
    }

    /// Where to spawn the tasks that should live on this thread.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `work` on this thread and waits for it: directly when already
    /// here, else as a task of this thread's runtime.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, CallFailure>> + Send + 'static,
    ) -> Result<T, CallFailure> {
        if std::thread::current().id() == self.thread {
            return work.await;
        }
        self.handle.spawn(work).await.map_err(|e| {
            CallFailure::unavailable(if e.is_panic() {
                format!("a call on thread `{}` panicked", self.name)
            } else {
                format!("thread `{}` stopped", self.name)
            })
        })?
    }
}
