//! The threads plugin calls run on: a tokio runtime of their own, with a
//! fixed number of workers, at a lower CPU priority than the threads that
//! serve HTTP.
//!
//! A plugin call is CPU work the host does not control: wasm that loops
//! until its deadline holds the thread it runs on. On the HTTP runtime's
//! workers that stalled requests (two spinning notification plugins held
//! `/inbox` for up to 2 s on a 2-core machine). Here such a call holds a
//! plugin thread only; it hands that thread back at every epoch tick (see
//! `runtime::yield_each_tick`), so the other plugin calls on it go on; and,
//! the threads being niced, the kernel gives the CPU to HTTP and the job
//! engine first. The trigger, notification and logging loops live here, so
//! their calls need no hop between threads.
//!
//! Must never run request handling, job runs or the message store: whatever
//! runs here waits behind plugins.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;
use tracing::{error, info, warn};

use super::{CallFailure, MessageSink};

/// How much lower than the service's own threads plugin threads run: their
/// nice value (the service's are at 0). The kernel weighs nice 10 at 110
/// against 1024 for nice 0: a spinning plugin gets about a tenth of a core
/// that a busy HTTP worker also wants, and all of an idle one. Not lower:
/// at 19 (weight 15) a well-behaved plugin's call, a few milliseconds of
/// CPU in many short turns, missed its 1 s deadline on a busy machine.
const NICE: i32 = 10;
/// Threads for the blocking work of plugin calls (file I/O of granted
/// folders): bounded, so plugins cannot make the process spawn without end.
const BLOCKING_THREADS: usize = 16;
/// How long a stopping pool waits for its threads.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

thread_local! {
    static ON_POOL: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current thread is one of the plugin threads.
pub fn here() -> bool {
    ON_POOL.get()
}

pub struct CallPool {
    handle: Handle,
    threads: usize,
    /// Dropped with this: the runtime is shut down on its keeper thread
    /// (a runtime may not be dropped from inside another one).
    _stop: oneshot::Sender<()>,
}

impl CallPool {
    /// `threads` workers (at least one).
    pub fn start(threads: usize) -> std::io::Result<CallPool> {
        let threads = threads.max(1);
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads)
            .max_blocking_threads(BLOCKING_THREADS)
            .thread_name("plugin-call")
            .on_thread_start(|| {
                ON_POOL.set(true);
                lower_priority();
            })
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("plugin-pool".into())
            .spawn(move || {
                // Ends when the sender is dropped (or sends).
                let _ = runtime.block_on(stopped);
                runtime.shutdown_timeout(SHUTDOWN_WAIT);
            })?;
        info!(threads, nice = NICE, "plugin call threads started");
        Ok(CallPool {
            handle,
            threads,
            _stop: stop,
        })
    }

    /// Where the plugin loops are spawned.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `work` on a plugin thread and waits for it: directly when
    /// already on one, else as a task there, aborted if this future is
    /// dropped.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, CallFailure>> + Send + 'static,
    ) -> Result<T, CallFailure> {
        if here() {
            return work.await;
        }
        let mut task = AbortOnDrop(self.handle.spawn(work));
        match (&mut task.0).await {
            Ok(outcome) => outcome,
            Err(e) if e.is_panic() => Err(CallFailure::unavailable(
                "a plugin call panicked in the host".into(),
            )),
            Err(_) => Err(CallFailure::unavailable(
                "the plugin threads stopped".into(),
            )),
        }
    }
}

/// `sink`, its futures moved to the runtime this is called on (the
/// service's): a trigger plugin's message goes on to the inbox's path
/// (storage, matching, runs), which must not run on the plugin threads.
pub fn on_callers_runtime(sink: MessageSink) -> MessageSink {
    let Ok(caller) = tokio::runtime::Handle::try_current() else {
        return sink;
    };
    Arc::new(move |message| {
        let task = caller.spawn(sink(message));
        Box::pin(async move {
            if let Err(e) = task.await {
                error!(cause = %e, "a trigger plugin's message could not be handed on");
            }
        })
    })
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Raises the calling thread's nice value (Linux schedules threads one by
/// one, so this touches no other thread). Raising it needs no privilege.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let tid = nix::unistd::gettid().as_raw() as libc::id_t;
        // SAFETY: setpriority only reads its integer arguments.
        let failed = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, NICE) } != 0;
        if failed {
            warn!(cause = %std::io::Error::last_os_error(), "could not lower a plugin thread's priority; plugins compete with HTTP for the CPU");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_a_niced_plugin_thread() {
        let pool = CallPool::start(1).unwrap();
        assert!(!here());
        let (on_pool, nice) = pool
            .run(async {
                // SAFETY: getpriority only reads its integer arguments.
                let nice = unsafe {
                    libc::getpriority(
                        libc::PRIO_PROCESS,
                        nix::unistd::gettid().as_raw() as libc::id_t,
                    )
                };
                Ok((here(), nice))
            })
            .await
            .unwrap();
        assert!(on_pool);
        assert_eq!(nice, NICE);
    }
}
