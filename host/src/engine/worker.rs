//! The `worker` engine mode: a pool of warm Node processes that run jobs
//! through `@openfn/core`'s JavaScript interface (`worker/worker.js`; one
//! process is [`WorkerProcess`]).
//!
//! A worker loads core once and keeps adaptors and compiled expressions, so
//! a run costs milliseconds instead of a Node start-up; every run still gets
//! a fresh vm2 sandbox, and the worker script makes sure nothing a run left
//! behind outlives it. Workers speak line-delimited JSON on stdin/stdout,
//! one run at a time, every message tagged with the run id. The pool hands
//! a run only to a worker that is alive and not spent, and only counts it
//! handed once the worker says it started it; otherwise it replaces the
//! worker and tries another. A worker that overruns a run's timeout, dies
//! during a run (out of memory, `process.exit`, a signal), left something
//! open, or has served `recycle_after` runs is killed with its process
//! group and replaced; a failure touches only the run it was running.
//! Nothing here reads or logs a state beyond handing it on.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::time::{Instant, sleep_until};
use tracing::{info, warn};

use super::worker_proc::{Event, WorkerProcess};
use super::{Failure, FailureKind, NEVER_SETTLED, RunOutcome, RunRequest, parse_final_state};
use crate::packages::Packages;
use crate::project::AdaptorSpec;

/// The worker script, shipped inside the binary so it always matches it.
const SCRIPT: &str = include_str!("../../worker/worker.js");
const MAX_LINE_CHARS: usize = 16 * 1024;
/// Workers tried for one run before it fails: each that does not take it
/// is replaced, so a second failure means workers cannot start at all.
const OFFERS: usize = 3;

#[derive(Clone)]
pub struct WorkerPool {
    inner: Arc<Inner>,
}

/// How the pool runs its workers.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub node: String,
    /// Workers started ahead of the first run.
    pub warm: usize,
    /// `--max-old-space-size` of each worker, in MiB.
    pub memory_mb: u32,
    /// A worker is replaced after this many runs.
    pub recycle_after: u32,
}

struct Inner {
    config: PoolConfig,
    script: PathBuf,
    core_dir: PathBuf,
    packages: Packages,
    idle: Mutex<Vec<WorkerProcess>>,
    groups: Arc<Mutex<HashSet<i32>>>,
}

impl WorkerPool {
    /// Writes the worker script into `dir` and starts `config.warm` workers
    /// in the background.
    pub fn new(
        config: PoolConfig,
        packages: Packages,
        core: &AdaptorSpec,
        dir: &Path,
    ) -> std::io::Result<WorkerPool> {
        std::fs::create_dir_all(dir)?;
        let script = dir.join("worker.js");
        std::fs::write(&script, SCRIPT)?;
        let pool = WorkerPool {
            inner: Arc::new(Inner {
                core_dir: packages.package_dir(core),
                config,
                script,
                packages,
                idle: Mutex::default(),
                groups: Arc::default(),
            }),
        };
        let warm = pool.clone();
        tokio::spawn(async move {
            for _ in 0..warm.inner.config.warm {
                match warm.spawn().await {
                    Ok(w) => warm.idle().push(w),
                    Err(e) => {
                        warn!(cause = %e, "could not start a warm worker");
                        return;
                    }
                }
            }
            info!(workers = warm.inner.config.warm, "engine workers ready");
        });
        Ok(pool)
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<WorkerProcess>> {
        self.inner.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `node` executable the workers run on.
    pub fn node(&self) -> &str {
        &self.inner.config.node
    }

    pub fn idle_count(&self) -> usize {
        self.idle().len()
    }

    pub fn kill_all(&self) {
        for pgid in self
            .inner
            .groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = killpg(Pid::from_raw(*pgid), Signal::SIGKILL);
        }
    }

    async fn spawn(&self) -> Result<WorkerProcess, String> {
        let i = &self.inner;
        WorkerProcess::spawn(
            &i.config.node,
            i.config.memory_mb,
            &i.script,
            &i.core_dir,
            i.groups.clone(),
        )
        .await
    }

    /// An idle worker that is alive and not spent, or a new one. Dead and
    /// spent ones are dropped (which kills what is left of them).
    async fn checkout(&self) -> Result<WorkerProcess, String> {
        loop {
            let popped = self.idle().pop();
            let Some(mut worker) = popped else {
                return self.spawn().await;
            };
            if worker.is_healthy() {
                return Ok(worker);
            }
            info!("an idle engine worker had died or was spent; replacing it");
        }
    }

    /// A worker that has started the run described by `request`.
    async fn start(&self, request: &str, run_id: &str) -> Result<WorkerProcess, String> {
        let mut last = String::new();
        for _ in 0..OFFERS {
            let mut worker = self.checkout().await?;
            match worker.offer(request, run_id).await {
                Ok(()) => return Ok(worker),
                Err(why) => {
                    info!(cause = %why, "an engine worker did not take the run; it is replaced");
                    last = why;
                }
            }
        }
        Err(format!(
            "no engine worker could take the run ({OFFERS} tried); the last: {last}"
        ))
    }

    /// Runs the job on a warm worker; `on_line` hears each line it prints.
    pub async fn run(&self, req: RunRequest<'_>, mut on_line: impl FnMut(String)) -> RunOutcome {
        let code = req.job.code().unwrap_or(&req.job.expression);
        let mut request = json!({
            "id": req.run_id,
            "adaptor": self.inner.packages.package_dir(&req.job.adaptor),
            "expression": code,
            "key": expression_key(code),
            "state": req.state,
        })
        .to_string();
        request.push('\n');
        let mut worker = match self.start(&request, req.run_id).await {
            Ok(w) => w,
            Err(why) => return outcome(None, None, Some(Failure::new(FailureKind::Setup, why))),
        };
        let deadline = Instant::now() + req.timeout;
        loop {
            let event = tokio::select! {
                event = worker.next() => event,
                _ = sleep_until(deadline) => {
                    // Dropping the worker kills its process group.
                    drop(worker);
                    let reason = format!(
                        "timed out after {}; the worker running it was killed and will be replaced",
                        humantime::format_duration(req.timeout)
                    );
                    return outcome(None, None, Some(Failure::new(FailureKind::Timeout, reason)));
                }
            };
            let (header, state) = match event {
                None => {
                    let (code, reason) = worker.death(self.inner.config.memory_mb).await;
                    return outcome(code, None, Some(Failure::new(FailureKind::Job, reason)));
                }
                Some(Event::Raw(text)) => {
                    on_line(text.chars().take(MAX_LINE_CHARS).collect());
                    continue;
                }
                Some(Event::Message(m)) if m["id"] == req.run_id && m["ok"] == false => (m, None),
                Some(Event::Message(m)) => {
                    if m["id"] == req.run_id
                        && let Some(log) = m["log"].as_str()
                    {
                        on_line(log.chars().take(MAX_LINE_CHARS).collect());
                    }
                    continue;
                }
                Some(Event::Finished { header, state }) if header["id"] == req.run_id => {
                    (header, Some(state))
                }
                Some(Event::Finished { .. }) => continue,
            };
            let result = finish(&header, state.as_deref(), &mut on_line);
            worker.runs += 1;
            if let Some(why) = header["retire"].as_str() {
                info!(cause = why, "replacing an engine worker");
            } else if worker.runs < self.inner.config.recycle_after {
                self.idle().push(worker);
            }
            return result;
        }
    }
}

/// Turns the worker's answer (and, on success, the final state's JSON text)
/// into the outcome `core execute` would have had.
fn finish(header: &Value, state: Option<&str>, on_line: &mut impl FnMut(String)) -> RunOutcome {
    if let Some(text) = state {
        return match parse_final_state(text.as_bytes()) {
            Ok(state) => outcome(Some(0), Some(state), None),
            Err(why) => outcome(Some(0), None, Some(Failure::new(FailureKind::Setup, why))),
        };
    }
    let kind = header["kind"].as_str();
    if kind == Some("stalled") {
        // `core execute` prints nothing here either: it just exits 0.
        return outcome(
            Some(0),
            None,
            Some(Failure::new(FailureKind::Job, NEVER_SETTLED)),
        );
    }
    let error = header["error"].as_str().unwrap_or("the job failed");
    for line in error.lines() {
        on_line(line.chars().take(MAX_LINE_CHARS).collect());
    }
    match kind {
        Some("compile") => outcome(
            Some(1),
            None,
            Some(Failure::new(
                FailureKind::Compile,
                "the expression did not compile (exit code 1)",
            )),
        ),
        Some("setup") => outcome(
            Some(10),
            None,
            Some(Failure::new(
                FailureKind::Setup,
                "core could not set up the run (exit code 10), e.g. the adaptor could not be loaded",
            )),
        ),
        _ => outcome(
            Some(1),
            None,
            Some(Failure::new(
                FailureKind::Job,
                "the job failed (exit code 1)",
            )),
        ),
    }
}

fn outcome(
    exit_code: Option<i32>,
    final_state: Option<Value>,
    failure: Option<Failure>,
) -> RunOutcome {
    RunOutcome {
        exit_code,
        final_state,
        failure,
    }
}

/// Compiled expressions are cached under this key: a changed expression
/// (a reloaded project) compiles afresh.
fn expression_key(expression: &str) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    expression.hash(&mut h);
    format!("{:016x}-{}", h.finish(), expression.len())
}
