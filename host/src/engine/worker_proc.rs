//! One warm Node process of the `worker` engine mode (`worker/worker.js`):
//! starting it, hearing what it says, telling whether it may take a run,
//! and saying why it died.
//!
//! A reader task reads the worker's stdout from its start to its end, so
//! what it prints between runs never blocks it and is never taken for the
//! next run's: `late` events (trouble from a run that has ended) are logged
//! here with that run's id and mark the worker as spent; everything else
//! goes to whoever runs a job on it. This module never logs a state or a
//! line a job printed (a late event is logged by its error's name only).

use std::collections::{HashSet, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tracing::{debug, info, warn};

use super::{GroupGuard, PASSTHROUGH_ENV};

const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a worker may take to say whether it takes a run: it answers as
/// soon as it reads the request, so only a wedged worker takes longer.
const OFFER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for a worker's exit status once its output has ended.
const EXIT_WAIT: Duration = Duration::from_secs(5);
/// stderr lines kept per worker, to explain a crash.
const STDERR_TAIL: usize = 20;
/// Messages buffered between the reader and the run (the reader waits when
/// it is full, and so does the worker).
const EVENTS: usize = 256;

/// What a worker says, as the run hears it.
pub(super) enum Event {
    /// A message for a run: `started`, `refused`, `log`, a failed answer.
    Message(Value),
    /// A successful answer: its header and the final state's JSON text.
    Finished { header: Value, state: String },
    /// A line that is not JSON (an adaptor writing to stdout itself).
    Raw(String),
}

pub(super) struct WorkerProcess {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::Receiver<Event>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// Set by the reader when the worker reported trouble from an ended run
    /// (it refuses further runs) or its output ended.
    spent: Arc<AtomicBool>,
    /// Runs it has finished.
    pub(super) runs: u32,
    /// Kills the worker's process group when the worker is dropped.
    _group: GroupGuard,
}

impl WorkerProcess {
    /// Starts `node <script> <core_dir>` and waits for it to say it is ready.
    pub(super) async fn spawn(
        node: &str,
        memory_mb: u32,
        script: &Path,
        core_dir: &Path,
        groups: Arc<Mutex<HashSet<i32>>>,
    ) -> Result<WorkerProcess, String> {
        let mut cmd = tokio::process::Command::new(node);
        cmd.arg(format!("--max-old-space-size={memory_mb}"))
            .arg(script)
            .arg(core_dir)
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
            .map_err(|e| format!("could not start `{node}`: {e}"))?;
        let pgid = child
            .id()
            .map(|p| p as i32)
            .ok_or("the worker vanished at start")?;
        let group = GroupGuard::new(pgid, groups);
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
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
        let spent = Arc::new(AtomicBool::new(false));
        let (tx, events) = mpsc::channel(EVENTS);
        tokio::spawn(read_events(stdout, tx, spent.clone(), pgid));
        let mut worker = WorkerProcess {
            child,
            stdin,
            events,
            stderr_tail,
            spent,
            runs: 0,
            _group: group,
        };
        match timeout(START_TIMEOUT, worker.events.recv()).await {
            Ok(Some(Event::Message(m))) if m["ready"] == true => {
                debug!(pgid, "engine worker started");
                Ok(worker)
            }
            other => {
                let seen = match other {
                    Err(_) => "no answer within a minute".to_string(),
                    Ok(None) => "it exited".to_string(),
                    Ok(Some(_)) => "an unexpected first message".to_string(),
                };
                Err(format!(
                    "the worker did not start ({seen}): {}",
                    worker.stderr_tail().join(" | ")
                ))
            }
        }
    }

    /// Whether the worker may be given a run: alive, and not spent.
    pub(super) fn is_healthy(&mut self) -> bool {
        !self.spent.load(Ordering::SeqCst) && matches!(self.child.try_wait(), Ok(None))
    }

    /// Hands the run to the worker: `Ok` once it has said it started the
    /// run, `Err` (why) when it did not take it, so the job has not begun.
    pub(super) async fn offer(&mut self, request: &str, run_id: &str) -> Result<(), String> {
        self.stdin
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("it could not be written to: {e}"))?;
        let answer = timeout(OFFER_TIMEOUT, async {
            loop {
                match self.events.recv().await {
                    None => return Err("it exited before starting the run".to_string()),
                    Some(Event::Message(m)) if m["id"] == run_id => {
                        if m["started"] == true {
                            return Ok(());
                        }
                        if let Some(why) = m["refused"].as_str() {
                            return Err(format!("it refused the run: {why}"));
                        }
                    }
                    // What an earlier run left in the pipe.
                    Some(_) => {}
                }
            }
        })
        .await;
        answer.unwrap_or_else(|_| Err("it did not answer".to_string()))
    }

    /// The next thing the worker says; `None` once its output has ended.
    pub(super) async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// After the worker's output ended during a run: the exit code to
    /// report (as `core execute` would have exited) and why the run failed.
    pub(super) async fn death(&mut self, memory_mb: u32) -> (Option<i32>, String) {
        let status = timeout(EXIT_WAIT, self.child.wait()).await;
        let tail = self.stderr_tail();
        let oom = tail
            .iter()
            .any(|l| l.contains("heap out of memory") || l.contains("Reached heap limit"));
        let said = if tail.is_empty() {
            String::new()
        } else {
            format!(": {}", tail.join(" | "))
        };
        if oom {
            return (
                None,
                format!("the worker ran out of memory ({memory_mb} MiB) and was replaced"),
            );
        }
        match status {
            Ok(Ok(s)) if s.code().is_some() => {
                let code = s.code().unwrap_or_default();
                (
                    Some(code),
                    format!(
                        "the worker running the job exited with code {code} during the run (as `process.exit({code})` does) and was replaced{said}"
                    ),
                )
            }
            Ok(Ok(s)) if s.signal().is_some() => {
                let n = s.signal().unwrap_or_default();
                let name =
                    Signal::try_from(n).map_or_else(|_| format!("signal {n}"), |s| s.to_string());
                (
                    None,
                    format!(
                        "the worker running the job was killed by {name} during the run and was replaced{said}"
                    ),
                )
            }
            _ => (
                None,
                format!("the worker running the job died during the run and was replaced{said}"),
            ),
        }
    }

    fn stderr_tail(&self) -> Vec<String> {
        self.stderr_tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// Reads the worker's stdout to its end (see the module doc).
async fn read_events(
    stdout: tokio::process::ChildStdout,
    tx: mpsc::Sender<Event>,
    spent: Arc<AtomicBool>,
    pgid: i32,
) {
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let event = match serde_json::from_str::<Value>(&line) {
            Err(_) => Event::Raw(line),
            Ok(m) if m["late"].is_object() => {
                let late = &m["late"];
                spent.store(true, Ordering::SeqCst);
                warn!(
                    run_id = late["run"].as_str().unwrap_or("?"),
                    pgid,
                    error = late["name"].as_str().unwrap_or("?"),
                    "{} came from a run after it had ended; the worker that ran it is replaced",
                    late["what"].as_str().unwrap_or("trouble"),
                );
                continue;
            }
            Ok(m) if m["retiring"].is_string() => {
                spent.store(true, Ordering::SeqCst);
                info!(
                    pgid,
                    cause = m["retiring"].as_str().unwrap_or_default(),
                    "an engine worker retires between runs and is replaced"
                );
                continue;
            }
            // The final state is the line after its header.
            Ok(m) if m["ok"] == true => match lines.next_line().await {
                Ok(Some(state)) => Event::Finished { header: m, state },
                _ => break,
            },
            Ok(m) => Event::Message(m),
        };
        if tx.send(event).await.is_err() {
            break;
        }
    }
    // The worker is gone (or going): so is anything it started. Its pid is
    // not reused while the pool still holds its unreaped child.
    spent.store(true, Ordering::SeqCst);
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
}
