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
use crate::storage::{PendingFlow, RunEnd, RunStart, RunStatus, Runs, Storage, patiently};

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

/// Hears the report of every run of one workflow: the runs a receipt
/// starts and every flow after them, each as it finishes. Each run holds a
/// sender until the flows it starts hold theirs, so the receiver sees the
/// channel close when the workflow's last run has finished.
#[derive(Clone, Debug)]
pub struct Watch(mpsc::UnboundedSender<RunReport>);

impl Watch {
    pub fn new() -> (Watch, mpsc::UnboundedReceiver<RunReport>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Watch(tx), rx)
    }
}

/// What a run is for, besides its job, trigger and input.
#[derive(Default)]
struct Occasion {
    /// Set for receipts delivered from the message store (see `receive`).
    attempt: Option<u32>,
    /// The pending flow this run carries out.
    settles: Option<String>,
    /// The run whose end started this one (a flow run's), kept with it.
    upstream: Option<String>,
    watch: Option<Watch>,
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

/// The enabled criteria triggers of `job`, with their criteria.
fn criteria_of<'p>(
    project: &'p Project,
    job: &'p Job,
) -> impl Iterator<Item = (&'p str, &'p Value)> {
    project.triggers_of(job).filter_map(|t| match &t.kind {
        TriggerKind::Criteria(c) => Some((t.name.as_str(), c)),
        _ => None,
    })
}

/// An enabled webhook trigger, as its door needs it.
pub struct Webhook<'p> {
    pub trigger: &'p str,
    pub auth: &'p crate::project::WebhookAuth,
    pub reply: &'p crate::project::Reply,
}

/// The `source` of a receipt that arrived at a webhook trigger's path:
/// this prefix and the trigger's name (`webhook:orders-hook`).
pub const WEBHOOK_SOURCE: &str = "webhook:";

/// The trigger of `job` that a receipt from `source` starts it by, if any:
/// the one place a receipt is matched to a job. A webhook's receipt starts
/// the jobs of that (enabled) webhook trigger, without criteria; any other
/// receipt, the jobs with an enabled criteria trigger it meets (the first
/// such trigger names the run).
fn matched_trigger<'p>(
    project: &'p Project,
    job: &'p Job,
    message: &Value,
    source: &str,
) -> Option<&'p str> {
    match source.strip_prefix(WEBHOOK_SOURCE) {
        Some(hook) => project
            .triggers_of(job)
            .find(|t| t.name == hook && matches!(t.kind, TriggerKind::Webhook { .. }))
            .map(|t| t.name.as_str()),
        None => criteria_of(project, job)
            .find(|(_, c)| criteria::matches(c, message))
            .map(|(name, _)| name),
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
                .flat_map(|job| criteria_of(&project, job).map(|(_, c)| c)),
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

    /// The jobs a receipt from `source` starts (see [`matched_trigger`]).
    pub fn matching_jobs(&self, message: &Value, source: &str) -> Vec<Arc<Job>> {
        let p = &self.inner.project;
        p.jobs
            .values()
            .filter(|job| matched_trigger(p, job, message, source).is_some())
            .cloned()
            .collect()
    }

    /// The enabled webhook trigger served at `/i/<path>`.
    pub fn webhook(&self, path: &str) -> Option<Webhook<'_>> {
        self.inner
            .project
            .triggers
            .values()
            .find_map(|t| match &t.kind {
                TriggerKind::Webhook {
                    path: p,
                    auth,
                    reply,
                } if t.enabled && p == path => Some(Webhook {
                    trigger: &t.name,
                    auth,
                    reply,
                }),
                _ => None,
            })
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
        watch: Option<Watch>,
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
                let p = &self.inner.project;
                let source = receipt
                    .and_then(|r| r.get("source"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let trigger = matched_trigger(p, job, message, source)
                    .or_else(|| job.triggers.first().map(String::as_str))
                    .unwrap_or_default()
                    .to_string();
                let occasion = Occasion {
                    attempt,
                    watch: watch.clone(),
                    ..Occasion::default()
                };
                self.spawn_run(job.clone(), trigger, input, occasion)
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
            this.run_inner(id, job, trigger, input, Occasion::default())
                .instrument(span)
                .await
        });
        (run_id, handle)
    }

    /// A tick of cron trigger `trigger`: the job continues from its last
    /// successful state, or from the cursor job's when the trigger names one.
    pub fn tick(&self, job: Arc<Job>, trigger: String) -> JoinHandle<RunReport> {
        let this = self.clone();
        let from = match self.inner.project.triggers.get(&trigger).map(|t| &t.kind) {
            Some(TriggerKind::Cron {
                cursor: Some(cursor),
                ..
            }) => cursor.clone(),
            _ => job.name.clone(),
        };
        self.inner.tracker.spawn(async move {
            let input = match this.inner.storage.runs.job_state(&from).await {
                Ok(Some(state)) => state,
                Ok(None) => json!({ "data": {} }),
                Err(e) => {
                    error!(job = %job.name, cause = %e, "could not read the job's state; starting from an empty one");
                    json!({ "data": {} })
                }
            };
            this.run(job, trigger, input, Occasion::default()).await
        })
    }

    fn spawn_run(
        &self,
        job: Arc<Job>,
        trigger: String,
        input: Value,
        occasion: Occasion,
    ) -> JoinHandle<RunReport> {
        let this = self.clone();
        self.inner
            .tracker
            .spawn(async move { this.run(job, trigger, input, occasion).await })
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
        occasion: Occasion,
    ) -> RunReport {
        let run_id = uuid::Uuid::now_v7().to_string();
        let span = info_span!("run", run_id = %run_id, job = %job.name, trigger = %trigger);
        self.run_inner(run_id, job, trigger, input, occasion)
            .instrument(span)
            .await
    }

    async fn run_inner(
        &self,
        run_id: String,
        job: Arc<Job>,
        trigger: String,
        mut input: Value,
        occasion: Occasion,
    ) -> RunReport {
        let Occasion {
            attempt,
            settles,
            upstream,
            watch,
        } = occasion;
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
            runs.start_run(RunStart {
                id: &run_id,
                job: &job.name,
                trigger: &trigger,
                started_at: &started_at,
                input: &input,
                upstream: upstream.as_deref(),
            })
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
            let due = self.flows_due(&report, input);
            self.conditions_hold(due).await
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
            self.start_flow(flow, watch.clone());
        }
        // After the flows hold their senders: the watch closes only once
        // the last run of the workflow has reported.
        if let Some(watch) = watch {
            let _ = watch.0.send(report.clone());
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
