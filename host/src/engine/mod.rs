//! Running one job: the engine modes behind one interface.
//!
//! `cli` ([`cli`]) starts `@openfn/core execute` for every run, as the
//! original did; `worker` ([`worker`]) keeps a pool of warm Node processes
//! that run jobs through core's JavaScript interface, each run in a fresh
//! sandbox. Both report the same [`RunOutcome`] and stream log lines the
//! same way; neither knows of triggers, flows or storage, and neither logs a
//! state: the caller gets lines and decides.

pub mod cli;
pub mod condition;
pub mod worker;
mod worker_proc;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;

use crate::project::Job;

pub use cli::CliEngine;
pub use worker::WorkerPool;

/// Environment passed through to `node`; everything else (API keys among it)
/// stays out of the job's reach.
const PASSTHROUGH_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "NODE_OPTIONS",
    "NODE_EXTRA_CA_CERTS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// The configured engine.
#[derive(Clone)]
pub enum Engine {
    Cli(CliEngine),
    Worker(WorkerPool),
}

impl Engine {
    /// Warm workers waiting for a run; `None` for the cli engine.
    pub fn idle_workers(&self) -> Option<usize> {
        match self {
            Engine::Cli(_) => None,
            Engine::Worker(pool) => Some(pool.idle_count()),
        }
    }

    /// Runs the job; `on_line` hears each line of output as it is printed.
    pub async fn run(&self, req: RunRequest<'_>, on_line: impl FnMut(String)) -> RunOutcome {
        // Refused by the compile step: the same code would fail every time,
        // so no process is started for it.
        if let Err(reason) = req.job.code() {
            return RunOutcome {
                exit_code: None,
                final_state: None,
                failure: Some(Failure::new(FailureKind::Compile, reason)),
            };
        }
        match self {
            Engine::Cli(e) => e.run(req, on_line).await,
            Engine::Worker(w) => w.run(req, on_line).await,
        }
    }

    /// Whether a flow's `condition` holds over `state` (see [`condition`]).
    pub async fn condition(&self, expression: &str, state: &Value) -> Result<bool, String> {
        let node = match self {
            Engine::Cli(e) => e.node(),
            Engine::Worker(w) => w.node(),
        };
        condition::evaluate(node, expression, state).await
    }

    /// Kills every run still in progress (the end of a shutdown's grace period).
    pub fn kill_all(&self) {
        match self {
            Engine::Cli(e) => e.kill_all(),
            Engine::Worker(w) => w.kill_all(),
        }
    }
}

/// What a run needs to know.
pub struct RunRequest<'a> {
    pub run_id: &'a str,
    pub job: &'a Job,
    /// The initial state, `configuration` included.
    pub state: &'a Value,
    pub timeout: Duration,
}

#[derive(Debug)]
pub struct RunOutcome {
    /// `None` when the process was killed (timeout, shutdown) or never started.
    pub exit_code: Option<i32>,
    /// The final state as core wrote it (still with `configuration`).
    pub final_state: Option<Value>,
    /// Why the run failed; `None` means success.
    pub failure: Option<Failure>,
}

#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: FailureKind,
    pub reason: String,
}

/// What sort of failure, so a retry policy can tell what is worth retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The job ran and failed (non-zero exit code).
    Job,
    /// Killed at its timeout.
    Timeout,
    /// The expression did not compile: the same code will fail again.
    Compile,
    /// The run could not be set up (adaptor missing, node missing, disk).
    Setup,
}

impl Failure {
    pub(crate) fn new(kind: FailureKind, reason: impl Into<String>) -> Self {
        Failure {
            kind,
            reason: reason.into(),
        }
    }
}

/// Why a run fails whose job returned a promise that nothing could settle
/// any more: `core execute` exits 0 then, without writing a final state.
pub(crate) const NEVER_SETTLED: &str = "the job never finished: its promise did not settle, and nothing it started was left to settle it (core exited without writing a final state)";

/// Reads the final state core wrote (`cli`) or the worker sent (`worker`):
/// one parser for both modes, so they agree on every state.
pub(crate) fn parse_final_state(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("core's output is not JSON: {e}"))
}

/// Lines by which core's output shows that the expression did not compile:
/// its own message, or a syntax error thrown from its parser.
pub(crate) fn is_compile_error(line: &str) -> bool {
    line.contains("Compilation failed.") || line.contains("/node_modules/acorn/")
}

/// Kills the run's process group when the run ends for any reason (also when
/// its future is dropped), so nothing it started lives on.
pub(crate) struct GroupGuard {
    pgid: i32,
    groups: Arc<Mutex<HashSet<i32>>>,
}

impl GroupGuard {
    pub(crate) fn new(pgid: i32, groups: Arc<Mutex<HashSet<i32>>>) -> Self {
        groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(pgid);
        GroupGuard { pgid, groups }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.pgid);
    }
}
