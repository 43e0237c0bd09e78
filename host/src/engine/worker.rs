//! The `worker` engine mode: warm Node processes that run jobs through
//! `@openfn/core`'s JavaScript interface (`worker/worker.js`).
//!
//! A worker loads core once and keeps adaptors and compiled expressions, so
//! a run costs milliseconds instead of a Node start-up; every run still gets
//! a fresh vm2 sandbox. Workers speak line-delimited JSON on stdin/stdout,
//! one run at a time, every message tagged with the run id. A worker that
//! overruns a run's timeout, crashes (out of memory included) or has served
//! `recycle_after` runs is killed with its process group and replaced; a
//! failure touches only the run it was running. Nothing here reads or logs a
//! state beyond handing it to the worker.

use std::collections::{HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::time::{Instant, sleep_until, timeout};
use tracing::{debug, info, warn};

use super::{Failure, FailureKind, GroupGuard, PASSTHROUGH_ENV, RunOutcome, RunRequest};
use crate::packages::Packages;
use crate::project::AdaptorSpec;

/// The worker script, shipped inside the binary so it always matches it.
const SCRIPT: &str = include_str!("../../worker/worker.js");
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// stderr lines kept per worker, to explain a crash.
const STDERR_TAIL: usize = 20;
const MAX_LINE_CHARS: usize = 16 * 1024;

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
    idle: Mutex<Vec<Worker>>,
    groups: Arc<Mutex<HashSet<i32>>>,
}

struct Worker {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    runs: u32,
    /// Kills the worker's process group when the worker is dropped.
    _group: GroupGuard,
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

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Worker>> {
        self.inner.idle.lock().unwrap_or_else(|p| p.into_inner())
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

    async fn spawn(&self) -> Result<Worker, String> {
        let c = &self.inner.config;
        let mut cmd = tokio::process::Command::new(&c.node);
        cmd.arg(format!("--max-old-space-size={}", c.memory_mb))
            .arg(&self.inner.script)
            .arg(&self.inner.core_dir)
            .env_clear()
            .envs(
                PASSTHROUGH_ENV
                    .iter()
                    .filter_map(|k| std::env::var_os(k).map(|v| (k, v))),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("could not start `{}`: {e}", c.node))?;
        let pgid = child
            .id()
            .map(|p| p as i32)
            .ok_or("the worker vanished at start")?;
        let group = GroupGuard::new(pgid, self.inner.groups.clone());
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let stderr = child.stderr.take().ok_or("no stderr")?;
        // Worker stderr is kept only to explain a crash (it may echo what a
        // job printed, so it is not logged as such).
        let stderr_tail: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let tail = stderr_tail.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                if t.len() == STDERR_TAIL {
                    t.pop_front();
                }
                t.push_back(line.chars().take(500).collect());
            }
        });
        let ready = timeout(START_TIMEOUT, stdout.next_line()).await;
        match ready {
            Ok(Ok(Some(line))) if line.contains("\"ready\"") => {}
            other => {
                let tail: Vec<String> = stderr_tail
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .cloned()
                    .collect();
                return Err(format!(
                    "the worker did not start ({other:?}): {}",
                    tail.join(" | ")
                ));
            }
        }
        debug!(pgid, "engine worker started");
        Ok(Worker {
            _child: child,
            stdin,
            stdout,
            stderr_tail,
            runs: 0,
            _group: group,
        })
    }

    /// Runs the job on a warm worker; `on_line` hears each line it prints.
    pub async fn run(&self, req: RunRequest<'_>, mut on_line: impl FnMut(String)) -> RunOutcome {
        let worker = self.idle().pop();
        let mut worker = match worker {
            Some(w) => w,
            None => match self.spawn().await {
                Ok(w) => w,
                Err(why) => {
                    return outcome(None, None, Some(Failure::new(FailureKind::Setup, why)));
                }
            },
        };
        let request = json!({
            "id": req.run_id,
            "adaptor": self.inner.packages.package_dir(&req.job.adaptor),
            "expression": req.job.expression,
            "key": expression_key(&req.job.expression),
            "state": req.state,
        });
        let mut line = request.to_string();
        line.push('\n');
        if let Err(e) = worker.stdin.write_all(line.as_bytes()).await {
            return outcome(
                None,
                None,
                Some(Failure::new(
                    FailureKind::Setup,
                    format!("the worker could not take the run: {e}"),
                )),
            );
        }
        let deadline = Instant::now() + req.timeout;
        loop {
            let next = tokio::select! {
                next = worker.stdout.next_line() => next,
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
            let Ok(Some(text)) = next else {
                let tail: Vec<String> = worker
                    .stderr_tail
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .cloned()
                    .collect();
                let oom = tail
                    .iter()
                    .any(|l| l.contains("heap out of memory") || l.contains("Reached heap limit"));
                let reason = if oom {
                    format!(
                        "the worker ran out of memory ({} MiB) and was replaced",
                        self.inner.config.memory_mb
                    )
                } else {
                    format!(
                        "the worker died during the run and was replaced: {}",
                        tail.join(" | ")
                    )
                };
                return outcome(None, None, Some(Failure::new(FailureKind::Job, reason)));
            };
            let Ok(message) = serde_json::from_str::<Value>(&text) else {
                on_line(text.chars().take(MAX_LINE_CHARS).collect());
                continue;
            };
            if message["id"] != req.run_id {
                continue;
            }
            if let Some(log) = message["log"].as_str() {
                on_line(log.chars().take(MAX_LINE_CHARS).collect());
                continue;
            }
            let result = finish(&message, &mut on_line);
            worker.runs += 1;
            if worker.runs < self.inner.config.recycle_after {
                self.idle().push(worker);
            }
            return result;
        }
    }
}

/// Turns the worker's answer into the outcome `core execute` would have had.
fn finish(message: &Value, on_line: &mut impl FnMut(String)) -> RunOutcome {
    if message["ok"] == true {
        return outcome(Some(0), Some(message["state"].clone()), None);
    }
    let error = message["error"].as_str().unwrap_or("the job failed");
    for line in error.lines() {
        on_line(line.chars().take(MAX_LINE_CHARS).collect());
    }
    match message["kind"].as_str() {
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
