//! From a reason to run (a receipt, a cron tick, a finished upstream run) to
//! runs: which jobs, with what initial state, and what happens after.
//!
//! Every run goes through [`Dispatcher::spawn_run`]: it waits for a slot
//! under the concurrency limit, records the run, executes it with the engine,
//! stores the result (stripped of `configuration`, log lines redacted) and
//! fires the flows that follow it. A failure flow fires once per failed run,
//! with that run's own input state; a success flow gets that run's own final
//! state. This module never blocks a request on a run unless asked to (sync
//! mode awaits the handles it returns).

use std::sync::Arc;
use std::time::Instant;

use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, error, info, info_span, warn};

use crate::criteria;
use crate::engine::{Engine, RunRequest};
use crate::project::{Job, Project, TriggerKind};
use crate::redact::{Redactor, strip_configuration};
use crate::store::{RunEnd, RunStatus, Store};

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
}

#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    project: Arc<Project>,
    engine: Engine,
    store: Store,
    redactor: Redactor,
    slots: Semaphore,
    /// Every run in flight, so a shutdown can wait for them.
    tracker: TaskTracker,
}

impl Dispatcher {
    pub fn new(project: Arc<Project>, engine: Engine, store: Store) -> Self {
        let redactor = Redactor::new(project.credentials.values());
        let slots = Semaphore::new(project.engine.concurrency);
        Dispatcher {
            inner: Arc::new(Inner {
                project,
                engine,
                store,
                redactor,
                slots,
                tracker: TaskTracker::new(),
            }),
        }
    }

    pub fn project(&self) -> &Arc<Project> {
        &self.inner.project
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn redactor(&self) -> &Redactor {
        &self.inner.redactor
    }

    /// The jobs whose criteria the message meets, with their trigger.
    pub fn matching_jobs(&self, message: &Value) -> Vec<Arc<Job>> {
        let p = &self.inner.project;
        p.jobs
            .values()
            .filter(|job| match &p.triggers[&job.trigger].kind {
                TriggerKind::Criteria(c) => criteria::matches(c, message),
                _ => false,
            })
            .cloned()
            .collect()
    }

    /// Starts a run of each job for a receipt.
    pub fn receive(&self, message: &Value, jobs: &[Arc<Job>]) -> Vec<JoinHandle<RunReport>> {
        jobs.iter()
            .map(|job| {
                let input = json!({ "data": message });
                self.spawn_run(job.clone(), job.trigger.clone(), input)
            })
            .collect()
    }

    /// A cron tick: the job continues from its last successful state.
    pub fn tick(&self, job: Arc<Job>) -> JoinHandle<RunReport> {
        let this = self.clone();
        let trigger = job.trigger.clone();
        self.inner.tracker.spawn(async move {
            let input = match this.inner.store.job_state(&job.name).await {
                Ok(Some(state)) => state,
                Ok(None) => json!({ "data": {} }),
                Err(e) => {
                    error!(job = %job.name, cause = %e, "could not read the job's state; starting from an empty one");
                    json!({ "data": {} })
                }
            };
            this.run(job, trigger, input).await
        })
    }

    fn spawn_run(&self, job: Arc<Job>, trigger: String, input: Value) -> JoinHandle<RunReport> {
        let this = self.clone();
        self.inner
            .tracker
            .spawn(async move { this.run(job, trigger, input).await })
    }

    /// Waits up to `grace` for runs in flight, then kills what is left.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        self.inner.tracker.close();
        if tokio::time::timeout(grace, self.inner.tracker.wait())
            .await
            .is_err()
        {
            warn!(grace = %humantime::format_duration(grace), "runs still going after the grace period; killing them");
            self.inner.engine.kill_all();
            self.inner.tracker.wait().await;
        }
    }

    async fn run(&self, job: Arc<Job>, trigger: String, input: Value) -> RunReport {
        let run_id = uuid::Uuid::now_v7().to_string();
        let span = info_span!("run", run_id = %run_id, job = %job.name, trigger = %trigger);
        self.run_inner(run_id, job, trigger, input)
            .instrument(span)
            .await
    }

    async fn run_inner(
        &self,
        run_id: String,
        job: Arc<Job>,
        trigger: String,
        mut input: Value,
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
        let started_at = now();
        if let Err(e) = inner
            .store
            .start_run(&run_id, &job.name, &trigger, &started_at)
            .await
        {
            error!(cause = %e, "could not record the run's start");
        }
        info!("run started");
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
        let duration_ms = clock.elapsed().as_millis() as i64;
        let mut final_state = outcome.final_state;
        if let Some(s) = final_state.as_mut() {
            strip_configuration(s);
        }
        let failure = outcome
            .failure
            .map(|f| inner.redactor.redact(&f).into_owned());
        let status = if failure.is_none() {
            RunStatus::Success
        } else {
            RunStatus::Failure
        };
        match &failure {
            None => info!(duration_ms, "run succeeded"),
            Some(why) => {
                warn!(duration_ms, exit_code = ?outcome.exit_code, reason = %why, "run failed")
            }
        }
        let end = RunEnd {
            id: &run_id,
            job: &job.name,
            status,
            exit_code: outcome.exit_code,
            reason: failure.as_deref(),
            finished_at: &now(),
            duration_ms,
            log: &log,
            state: final_state.as_ref(),
        };
        if let Err(e) = inner.store.finish_run(end).await {
            error!(cause = %e, "could not record the run's end");
        }
        let report = RunReport {
            run_id,
            job: job.name.clone(),
            exit_code: outcome.exit_code,
            success: failure.is_none(),
            log,
            state: final_state,
        };
        self.fire_flows(&report, input, failure.as_deref());
        report
    }

    /// Starts the jobs that follow `upstream`: success flows with its final
    /// state, failure flows with its input state plus an `errors` entry.
    fn fire_flows(&self, upstream: &RunReport, input: Value, failure: Option<&str>) {
        let p = &self.inner.project;
        for trigger in p.triggers.values() {
            let next_input = match (&trigger.kind, failure) {
                (TriggerKind::Success(up), None) if *up == upstream.job => match &upstream.state {
                    Some(state) => state.clone(),
                    None => continue,
                },
                (TriggerKind::Failure(up), Some(why)) if *up == upstream.job => {
                    with_error(input.clone(), upstream, why)
                }
                _ => continue,
            };
            for job in p.jobs_of(&trigger.name) {
                info!(next = %job.name, flow = %trigger.name, "starting flow");
                self.spawn_run(job.clone(), trigger.name.clone(), next_input.clone());
            }
        }
    }
}

/// The upstream input state with a description of how the run failed.
fn with_error(mut state: Value, upstream: &RunReport, why: &str) -> Value {
    let message = upstream
        .log
        .iter()
        .find(|l| l.contains("Error"))
        .cloned()
        .unwrap_or_else(|| why.to_string());
    let entry = json!({
        "job": upstream.job,
        "run_id": upstream.run_id,
        "exit_code": upstream.exit_code,
        "reason": why,
        "message": message,
    });
    match state.get_mut("errors") {
        Some(Value::Array(errors)) => errors.push(entry),
        _ => state["errors"] = json!([entry]),
    }
    state
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}
