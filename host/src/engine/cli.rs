//! The `cli` engine mode: one run is one `@openfn/core execute` process, in
//! its own process group.
//!
//! The run gets a private temp dir (mode 0700, under `DATA_DIR/tmp`) holding
//! the expression, the initial state (which carries the credential) and the
//! output; the dir is removed when the run ends, however it ends. stdout and
//! stderr share one pipe so log lines arrive in the order they were printed.
//! A timeout, a shutdown or a dropped run kills the whole process group, so
//! no `node` outlives its run. This module knows nothing of triggers, flows
//! or storage, and never logs a state: the caller gets lines and decides.

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::{Instant, sleep_until};

use super::{
    Failure, FailureKind, GroupGuard, NEVER_SETTLED, PASSTHROUGH_ENV, RunOutcome, RunRequest,
    is_compile_error, parse_final_state,
};
use crate::packages::Packages;
use crate::project::AdaptorSpec;

/// Longest log line kept; longer ones are cut (a job printing a huge state
/// must not balloon the run record).
const MAX_LINE_BYTES: usize = 16 * 1024;
/// How long to keep reading after the process exited, in case something it
/// started still holds the pipe.
const DRAIN: Duration = Duration::from_secs(2);

/// The `cli` mode: one `core execute` process per run.
#[derive(Clone)]
pub struct CliEngine {
    node: String,
    core_cli: PathBuf,
    packages: Packages,
    tmp_root: PathBuf,
    /// Process groups of runs in progress, killed on shutdown.
    groups: Arc<Mutex<HashSet<i32>>>,
}

impl CliEngine {
    pub fn new(node: &str, packages: Packages, core: &AdaptorSpec, tmp_root: PathBuf) -> Self {
        CliEngine {
            node: node.to_string(),
            core_cli: packages.core_cli(core),
            packages,
            tmp_root,
            groups: Arc::default(),
        }
    }

    /// The `node` executable.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Runs the job; `on_line` hears each line of output as it is printed.
    pub async fn run(&self, req: RunRequest<'_>, mut on_line: impl FnMut(String)) -> RunOutcome {
        let mut compile_error = false;
        let mut watch = |line: String| {
            compile_error |= is_compile_error(&line);
            on_line(line)
        };
        match self.try_run(&req, &mut watch).await {
            Ok(RunOutcome {
                failure: Some(f),
                exit_code,
                final_state,
            }) if compile_error && f.kind == FailureKind::Job => RunOutcome {
                exit_code,
                final_state,
                failure: Some(Failure::new(
                    FailureKind::Compile,
                    format!(
                        "the expression did not compile (exit code {})",
                        exit_code.unwrap_or(1)
                    ),
                )),
            },
            Ok(outcome) => outcome,
            Err(why) => RunOutcome {
                exit_code: None,
                final_state: None,
                failure: Some(Failure::new(FailureKind::Setup, why)),
            },
        }
    }

    async fn try_run(
        &self,
        req: &RunRequest<'_>,
        on_line: &mut impl FnMut(String),
    ) -> Result<RunOutcome, String> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("run-{}-", req.run_id))
            .tempdir_in(&self.tmp_root)
            .map_err(|e| {
                format!(
                    "could not create the run's temp dir in {}: {e}",
                    self.tmp_root.display()
                )
            })?;
        let (expression, state, output) = (
            dir.path().join("expression.js"),
            dir.path().join("state.json"),
            dir.path().join("output.json"),
        );
        let write = |path: &PathBuf, bytes: &[u8]| {
            std::fs::write(path, bytes)
                .map_err(|e| format!("could not write {}: {e}", path.display()))
        };
        let code = req.job.code().unwrap_or(&req.job.expression);
        write(&expression, code.as_bytes())?;
        write(
            &state,
            &serde_json::to_vec(req.state).map_err(|e| e.to_string())?,
        )?;

        let (reader, writer) =
            std::io::pipe().map_err(|e| format!("could not create a pipe: {e}"))?;
        let writer2 = writer
            .try_clone()
            .map_err(|e| format!("could not create a pipe: {e}"))?;
        let mut cmd = tokio::process::Command::new(&self.node);
        cmd.arg(&self.core_cli)
            .arg("execute")
            .arg("-l")
            .arg(self.packages.package_dir(&req.job.adaptor))
            .arg("-e")
            .arg(&expression)
            .arg("-s")
            .arg(&state)
            .arg("-o")
            .arg(&output)
            .current_dir(dir.path())
            .env_clear()
            .envs(
                PASSTHROUGH_ENV
                    .iter()
                    .filter_map(|k| std::env::var_os(k).map(|v| (k, v))),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(writer))
            .stderr(Stdio::from(writer2))
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("could not start `{}`: {e}", self.node))?;
        // Our copies of the pipe's write end must go, or the read never ends.
        drop(cmd);
        let pgid = child
            .id()
            .map(|p| p as i32)
            .ok_or("the run's process vanished at start")?;
        let _group = GroupGuard::new(pgid, self.groups.clone());

        let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(OwnedFd::from(reader))
            .map_err(|e| format!("could not read the run's output: {e}"))?;
        let mut lines = BufReader::new(pipe);
        let mut buf = Vec::new();
        let deadline = Instant::now() + req.timeout;
        let (mut status, mut eof, mut timed_out) = (None, false, false);
        let mut drain_until = None;
        while status.is_none() || !eof {
            tokio::select! {
                read = lines.read_until(b'\n', &mut buf), if !eof => {
                    match read {
                        Ok(0) | Err(_) => { eof = true; flush(&mut buf, on_line); }
                        Ok(_) => flush(&mut buf, on_line),
                    }
                }
                exited = child.wait(), if status.is_none() => {
                    status = Some(exited.map_err(|e| format!("could not wait for the run: {e}"))?);
                    drain_until = Some(Instant::now() + DRAIN);
                }
                _ = sleep_until(deadline), if status.is_none() && !timed_out => {
                    timed_out = true;
                    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
                }
                _ = sleep_until(drain_until.unwrap_or(deadline)), if drain_until.is_some() => break,
            }
        }
        let status = status.expect("loop ends only after exit");
        let exit_code = status.code();
        let failure = match exit_code {
            _ if timed_out => Some(Failure::new(
                FailureKind::Timeout,
                format!(
                    "timed out after {}; the run's process group was killed",
                    humantime::format_duration(req.timeout)
                ),
            )),
            Some(0) => None,
            Some(10) => Some(Failure::new(
                FailureKind::Setup,
                "core could not set up the run (exit code 10), e.g. the adaptor could not be loaded",
            )),
            Some(code) => Some(Failure::new(
                FailureKind::Job,
                format!("the job failed (exit code {code})"),
            )),
            None => Some(Failure::new(
                FailureKind::Job,
                format!("the run was killed ({status})"),
            )),
        };
        if failure.is_some() {
            return Ok(RunOutcome {
                exit_code: if timed_out { None } else { exit_code },
                final_state: None,
                failure,
            });
        }
        let final_state = match std::fs::read(&output) {
            // core exits 0 without an output file when the job's promise
            // never settled and nothing was left to keep node running.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(RunOutcome {
                    exit_code,
                    final_state: None,
                    failure: Some(Failure::new(FailureKind::Job, NEVER_SETTLED)),
                });
            }
            Err(e) => Err(format!(
                "core exited 0 but its output could not be read: {e}"
            )),
            Ok(bytes) => parse_final_state(&bytes),
        };
        Ok(match final_state {
            Ok(state) => RunOutcome {
                exit_code,
                final_state: Some(state),
                failure: None,
            },
            Err(why) => RunOutcome {
                exit_code,
                final_state: None,
                failure: Some(Failure::new(FailureKind::Setup, why)),
            },
        })
    }

    /// Kills every run still in progress (the end of a shutdown's grace period).
    pub fn kill_all(&self) {
        for pgid in self.groups.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = killpg(Pid::from_raw(*pgid), Signal::SIGKILL);
        }
    }
}

fn flush(buf: &mut Vec<u8>, on_line: &mut impl FnMut(String)) {
    if buf.is_empty() {
        return;
    }
    let end = buf.len().min(MAX_LINE_BYTES);
    let mut line = String::from_utf8_lossy(&buf[..end])
        .trim_end_matches(['\n', '\r'])
        .to_string();
    if buf.len() > MAX_LINE_BYTES {
        line.push_str(" …[line cut]");
    }
    buf.clear();
    on_line(line);
}
