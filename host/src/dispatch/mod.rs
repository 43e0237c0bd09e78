//! From a reason to run (a receipt, a cron tick, a finished upstream run) to
//! runs: which jobs, with what initial state, and what happens after.
//!
//! Every run goes through [`Dispatcher::spawn_run`]: it waits for a slot
//! under the concurrency limit, records the run, executes it with the engine,
//! stores the result (stripped of `configuration`, log lines redacted)
//! together with the flows that follow it, then starts those ([`flows`]:
//! kept with the run's end, so none is lost with the process). A failure
//! flow fires once per failed run,
//! with that run's own input state; a success flow gets that run's own final
//! state. This module never blocks a request on a run unless asked to (sync
//! mode awaits the handles it returns).

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, error, info, info_span, warn};

use crate::clock::{now_ms, now_rfc3339};
use crate::criteria;
use crate::engine::{Engine, Failure, FailureKind, RunRequest};
use crate::project::{Job, Project, RetryPolicy, TriggerKind};
use crate::redact::{Redactor, strip_configuration};
use crate::storage::{PendingFlow, RunEnd, RunStatus, Runs, Storage, patiently};

mod flows;

/// Log lines kept in a run's record; the rest are counted, not kept.
const MAX_LOG_LINES: usize = 10_000;

/// What a finished run reports to whoever waited for it.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub run_id: String,
    pub job: String,
    pub exit_code: Option<i32>,
    pub success: bool,
    pub log: Vec<String>,
    /// Final state without `configuration`.
    pub state: Option<Value>,
    pub failure: Option<Failure>,
    /// The run failed and its retry policy gives the receipt another attempt.
    pub will_retry: bool,
}

/// What observers (notification plugins) hear when a run finishes.
#[derive(Debug, Clone)]
pub struct RunFinished {
    pub run_id: String,
    pub job: String,
    pub trigger: String,
    pub success: bool,
    pub exit_code: Option<i32>,
    pub started_at_ms: u64,
    pub finished_at_ms: u64,
    pub duration_ms: u64,
    /// Why it failed, redacted.
    pub error: Option<String>,
}

#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    project: Arc<Project>,
    engine: Engine,
    storage: Storage,
    redactor: Redactor,
    /// The criteria triggers' keys, for a look at a receipt before parsing it.
    prefilter: criteria::Prefilter,
    slots: Semaphore,
    /// Every run in flight, so a shutdown can wait for them.
    tracker: TaskTracker,
    /// Told about each finished run; full means dropped, never waited on.
    finished: Option<mpsc::Sender<RunFinished>>,
    /// Cancelled when a shutdown's grace period is over: a run's record
    /// that waits for an unavailable store is given up then, not waited
    /// for until the store's patience runs out.
    given_up: tokio_util::sync::CancellationToken,
}

/// The criteria of `job`'s trigger, when it is a criteria trigger.
fn criteria_of<'p>(project: &'p Project, job: &Job) -> Option<&'p Value> {
    match &project.triggers[&job.trigger].kind {
        TriggerKind::Criteria(c) => Some(c),
        _ => None,
    }
}

impl Dispatcher {
    pub fn new(
        project: Arc<Project>,
        engine: Engine,
        storage: Storage,
        finished: Option<mpsc::Sender<RunFinished>>,
    ) -> Self {
        let redactor = Redactor::new(project.credentials.values());
        let slots = Semaphore::new(project.engine.concurrency);
        let prefilter = criteria::Prefilter::new(
            project
                .jobs
                .values()
                .filter_map(|job| criteria_of(&project, job)),
        );
        Dispatcher {
            inner: Arc::new(Inner {
                project,
                engine,
                storage,
                redactor,
                prefilter,
                slots,
                tracker: TaskTracker::new(),
                finished,
                given_up: tokio_util::sync::CancellationToken::new(),
            }),
        }
    }

    pub fn project(&self) -> &Arc<Project> {
        &self.inner.project
    }

    /// Warm workers waiting for a run; `None` for the cli engine.
    pub fn idle_workers(&self) -> Option<usize> {
        self.inner.engine.idle_workers()
    }

    /// Run records and job states, for the API.
    pub fn runs(&self) -> &dyn Runs {
        self.inner.storage.runs.as_ref()
    }

    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }

    pub fn redactor(&self) -> &Redactor {
        &self.inner.redactor
    }

    /// Checks a receipt's JSON without building it: `Ok(false)` when it is
    /// valid and no job's criteria can match it (see [`criteria::Prefilter`]).
    pub fn may_match(&self, json: &[u8]) -> serde_json::Result<bool> {
        self.inner.prefilter.may_match(json)
    }

    /// The jobs whose criteria the message meets, with their trigger.
    pub fn matching_jobs(&self, message: &Value) -> Vec<Arc<Job>> {
        let p = &self.inner.project;
        p.jobs
            .values()
            .filter(|job| criteria_of(p, job).is_some_and(|c| criteria::matches(c, message)))
            .cloned()
            .collect()
    }

    /// Starts a run of each job for a receipt. `receipt` says how it
    /// arrived (see [`crate::receipt::arrival`]) and goes into the initial
    /// state beside `data`. `attempt` is set for receipts delivered from the
    /// message store (1 for the first delivery); only those are retried, and
    /// from the second attempt on the state carries `attempt`.
    pub fn receive(
        &self,
        message: &Value,
        receipt: Option<&Value>,
        jobs: &[Arc<Job>],
        attempt: Option<u32>,
    ) -> Vec<JoinHandle<RunReport>> {
        jobs.iter()
            .map(|job| {
                let mut input = json!({ "data": message });
                if let Some(receipt) = receipt {
                    input[crate::receipt::arrival::STATE_KEY] = receipt.clone();
                }
                if let Some(n) = attempt.filter(|n| *n > 1) {
                    input["attempt"] = json!(n);
                }
                self.spawn_run(job.clone(), job.trigger.clone(), input, attempt)
            })
            .collect()
    }

    /// Runs a job again from a recorded input state (`POST /api/runs/{id}/retry`);
    /// returns the new run's id at once.
    pub fn rerun(
        &self,
        job: Arc<Job>,
        trigger: String,
        input: Value,
    ) -> (String, JoinHandle<RunReport>) {
        let run_id = uuid::Uuid::now_v7().to_string();
        let this = self.clone();
        let id = run_id.clone();
        let handle = self.inner.tracker.spawn(async move {
            let span = info_span!("run", run_id = %id, job = %job.name, trigger = %trigger);
            this.run_inner(id, job, trigger, input, None, None)
                .instrument(span)
                .await
        });
        (run_id, handle)
    }

    /// A cron tick: the job continues from its last successful state.
    pub fn tick(&self, job: Arc<Job>) -> JoinHandle<RunReport> {
        let this = self.clone();
        let trigger = job.trigger.clone();
        self.inner.tracker.spawn(async move {
            let input = match this.inner.storage.runs.job_state(&job.name).await {
                Ok(Some(state)) => state,
                Ok(None) => json!({ "data": {} }),
                Err(e) => {
                    error!(job = %job.name, cause = %e, "could not read the job's state; starting from an empty one");
                    json!({ "data": {} })
                }
            };
            this.run(job, trigger, input, None, None).await
        })
    }

    fn spawn_run(
        &self,
        job: Arc<Job>,
        trigger: String,
        input: Value,
        attempt: Option<u32>,
    ) -> JoinHandle<RunReport> {
        let this = self.clone();
        self.inner
            .tracker
            .spawn(async move { this.run(job, trigger, input, attempt, None).await })
    }

    /// Waits up to `grace` for runs in flight and their records, then kills
    /// what is left and gives up on records still waiting for a store that
    /// is unavailable (they are lost; the runs' receipts are delivered again).
    pub async fn shutdown(&self, grace: std::time::Duration) {
        self.inner.tracker.close();
        if tokio::time::timeout(grace, self.inner.tracker.wait())
            .await
            .is_err()
        {
            warn!(grace = %humantime::format_duration(grace), "runs still going after the grace period; killing them");
            self.inner.given_up.cancel();
            self.inner.engine.kill_all();
            self.inner.tracker.wait().await;
        }
    }

    async fn run(
        &self,
        job: Arc<Job>,
        trigger: String,
        input: Value,
        attempt: Option<u32>,
        settles: Option<String>,
    ) -> RunReport {
        let run_id = uuid::Uuid::now_v7().to_string();
        let span = info_span!("run", run_id = %run_id, job = %job.name, trigger = %trigger);
        self.run_inner(run_id, job, trigger, input, attempt, settles)
            .instrument(span)
            .await
    }

    async fn run_inner(
        &self,
        run_id: String,
        job: Arc<Job>,
        trigger: String,
        mut input: Value,
        attempt: Option<u32>,
        settles: Option<String>,
    ) -> RunReport {
        let inner = &self.inner;
        let _slot = inner
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        strip_configuration(&mut input);
        if !input.is_object() {
            input = json!({ "data": input });
        }
        let mut state = input.clone();
        if let Some(configuration) = inner.project.configuration_of(&job) {
            state["configuration"] = configuration.clone();
        }
        let started_at = now_rfc3339();
        let started_ms = now_ms();
        let (runs, patience) = (&inner.storage.runs, inner.storage.patience());
        if let Err(e) = patiently("the run's start", patience, Some(&inner.given_up), || {
            runs.start_run(&run_id, &job.name, &trigger, &started_at, &input)
        })
        .await
        {
            error!(cause = %e, "could not record the run's start");
        }
        info!("run started");
        let in_flight = crate::metrics::get().run_started();
        let clock = Instant::now();
        let mut log = Vec::new();
        let mut dropped = 0usize;
        let request = RunRequest {
            run_id: &run_id,
            job: &job,
            state: &state,
            timeout: inner.project.timeout_of(&job),
        };
        let outcome = inner
            .engine
            .run(request, |line| {
                let line = inner.redactor.redact(&line).into_owned();
                info!(target: "job", "{line}");
                if log.len() < MAX_LOG_LINES {
                    log.push(line);
                } else {
                    dropped += 1;
                }
            })
            .await;
        if dropped > 0 {
            log.push(format!("… {dropped} more lines were printed and not kept"));
        }
        let took = clock.elapsed();
        drop(in_flight);
        let duration_ms = took.as_millis() as i64;
        crate::metrics::get().run_finished(&job.name, outcome.failure.is_none(), took);
        let mut final_state = outcome.final_state;
        if let Some(s) = final_state.as_mut() {
            strip_configuration(s);
        }
        let failure = outcome.failure.map(|f| Failure {
            reason: inner.redactor.redact(&f.reason).into_owned(),
            ..f
        });
        let will_retry = match (&failure, attempt) {
            (Some(f), Some(n)) => n < job.retry.max_attempts && retryable(&job.retry, f.kind),
            _ => false,
        };
        let reason = failure.as_ref().map(|f| f.reason.as_str());
        match reason {
            None => info!(duration_ms, "run succeeded"),
            Some(why) => {
                warn!(duration_ms, exit_code = ?outcome.exit_code, reason = %why, will_retry, "run failed")
            }
        }
        let report = RunReport {
            run_id,
            job: job.name.clone(),
            exit_code: outcome.exit_code,
            success: failure.is_none(),
            log,
            state: final_state,
            failure,
            will_retry,
        };
        // A failure that will be retried is not final: its failure flows wait
        // for the last attempt.
        let flows = if will_retry {
            Vec::new()
        } else {
            self.flows_due(&report, input)
        };
        self.record(
            &report,
            &trigger,
            started_ms,
            duration_ms,
            &flows,
            settles.as_deref(),
        )
        .await;
        for flow in flows {
            self.start_flow(flow);
        }
        report
    }

    /// Stores the run's end, with the flows it makes due and the pending
    /// flow it settles, and tells the observers.
    async fn record(
        &self,
        report: &RunReport,
        trigger: &str,
        started_ms: u64,
        duration_ms: i64,
        flows: &[PendingFlow],
        settles: Option<&str>,
    ) {
        let inner = &self.inner;
        let reason = report.failure.as_ref().map(|f| f.reason.as_str());
        if let Some(tx) = &inner.finished {
            let event = RunFinished {
                run_id: report.run_id.clone(),
                job: report.job.clone(),
                trigger: trigger.to_string(),
                success: report.success,
                exit_code: report.exit_code,
                started_at_ms: started_ms,
                finished_at_ms: started_ms + duration_ms as u64,
                duration_ms: duration_ms as u64,
                error: reason.map(str::to_string),
            };
            if tx.try_send(event).is_err() {
                warn!("the notification queue is full; this run's notification is dropped");
            }
        }
        let end = RunEnd {
            id: &report.run_id,
            job: &report.job,
            status: if report.success {
                RunStatus::Success
            } else {
                RunStatus::Failure
            },
            exit_code: report.exit_code,
            reason,
            finished_at: &now_rfc3339(),
            duration_ms,
            log: &report.log,
            state: report.state.as_ref(),
            flows,
            settles,
        };
        let (runs, patience) = (&inner.storage.runs, inner.storage.patience());
        if let Err(e) = patiently("the run's end", patience, Some(&inner.given_up), || {
            runs.finish_run(end.clone())
        })
        .await
        {
            error!(cause = %e, "could not record the run's end");
        }
    }
}

/// Whether a failure of this kind is worth another attempt under `policy`.
fn retryable(policy: &RetryPolicy, kind: FailureKind) -> bool {
    match kind {
        FailureKind::Job => policy.on_failure,
        FailureKind::Timeout => policy.on_timeout,
        FailureKind::Compile | FailureKind::Setup => false,
    }
}
