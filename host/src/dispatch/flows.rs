//! Flows: the runs that follow a finished run (success flows with its
//! final state, failure flows with its input state plus an `errors`
//! entry), and the pending flows a stopped process left.
//!
//! A flow is decided here, once, when its upstream run ends: it becomes a
//! [`PendingFlow`], kept with the upstream run's end in one transaction
//! (see [`crate::storage::Runs::finish_run`]), then started. This module
//! never starts a flow that was not kept first, unless keeping it failed
//! for good (then it starts anyway, as the best left to do).

use serde_json::{Value, json};
use tracing::{error, info, warn};

use super::{Dispatcher, RunReport};
use crate::clock::now_rfc3339;
use crate::project::TriggerKind;
use crate::storage::{PendingFlow, RunEnd, RunStart, RunStatus, patiently};

impl Dispatcher {
    /// Starts the pending flows that no running process is carrying out:
    /// once (what the last process left), then, on a store shared by
    /// replicas, every few seconds (what replicas seen gone left), until
    /// `stop`. A flow whose job the project no longer has is recorded as a
    /// failed run, so it is not adopted again and not lost without a trace.
    pub fn adopt_flows(&self, stop: tokio_util::sync::CancellationToken) {
        const EVERY: std::time::Duration = std::time::Duration::from_secs(2);
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let adopted = match this.inner.storage.runs.adopt_flows(64).await {
                    Ok(flows) => {
                        if !flows.is_empty() {
                            info!(flows = flows.len(), "starting flows a stopped process left");
                        }
                        let n = flows.len();
                        for flow in flows {
                            this.start_flow(flow, None);
                        }
                        n
                    }
                    Err(e) => {
                        warn!(cause = %e, "could not look for flows a stopped process left");
                        0
                    }
                };
                if adopted == 64 {
                    continue;
                }
                if !this.inner.storage.shared {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(EVERY) => {}
                    _ = stop.cancelled() => return,
                }
            }
        });
    }

    /// Starts a flow; `watch` hears it, and the flows after it, finish.
    pub(super) fn start_flow(&self, flow: PendingFlow, watch: Option<super::Watch>) {
        let this = self.clone();
        let Some(job) = self.inner.project.jobs.get(&flow.job).cloned() else {
            self.inner
                .tracker
                .spawn(async move { this.drop_flow(flow).await });
            return;
        };
        info!(next = %job.name, flow = %flow.trigger, "starting flow");
        self.inner.tracker.spawn(async move {
            let occasion = super::Occasion {
                attempt: None,
                settles: Some(flow.id),
                upstream: flow.upstream,
                watch,
            };
            this.run(job, flow.trigger, flow.input, occasion).await
        });
    }

    /// A pending flow whose job the project no longer has (it changed while
    /// the flow waited): recorded as a run that failed at once, which
    /// settles it.
    async fn drop_flow(&self, flow: PendingFlow) {
        let run_id = uuid::Uuid::now_v7().to_string();
        let reason = format!(
            "the flow's job `{}` is no longer in the project; the flow was not run",
            flow.job
        );
        warn!(job = %flow.job, flow = %flow.trigger, "{reason}");
        let (runs, patience) = (&self.inner.storage.runs, self.inner.storage.patience());
        let now = now_rfc3339();
        let given_up = Some(&self.inner.given_up);
        let started = patiently("the run's start", patience, given_up, || {
            runs.start_run(RunStart {
                id: &run_id,
                job: &flow.job,
                trigger: &flow.trigger,
                started_at: &now,
                input: &flow.input,
                upstream: flow.upstream.as_deref(),
            })
        });
        let end = RunEnd {
            id: &run_id,
            job: &flow.job,
            status: RunStatus::Failure,
            exit_code: None,
            reason: Some(&reason),
            finished_at: &now,
            duration_ms: 0,
            log: &[],
            state: None,
            flows: &[],
            settles: Some(&flow.id),
        };
        let result = match started.await {
            Ok(()) => {
                patiently("the run's end", patience, given_up, || {
                    runs.finish_run(end.clone())
                })
                .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            error!(cause = %e, "could not record the dropped flow");
        }
    }

    /// The runs that follow `upstream`: success flows with its final state,
    /// failure flows with its input state plus an `errors` entry, `always`
    /// flows with whichever of the two the run's outcome gives. This is the
    /// one place a flow is decided (a flow's `condition` is evaluated in
    /// [`Dispatcher::conditions_hold`], over the state decided here).
    pub(super) fn flows_due(&self, upstream: &RunReport, input: Value) -> Vec<PendingFlow> {
        let p = &self.inner.project;
        let mut due = Vec::new();
        let failure = upstream.failure.as_ref().map(|f| f.reason.as_str());
        let handed_on = match failure {
            None => upstream.state.clone(),
            Some(why) => Some(with_error(input, upstream, why)),
        };
        for trigger in p.triggers.values().filter(|t| t.enabled) {
            let follows = match (&trigger.kind, failure) {
                (TriggerKind::Success(up), None) => *up == upstream.job,
                (TriggerKind::Failure(up), Some(_)) => *up == upstream.job,
                (TriggerKind::Always(up), _) => *up == upstream.job,
                _ => false,
            };
            let Some(next_input) = handed_on.as_ref().filter(|_| follows) else {
                continue;
            };
            for job in p.jobs_of(&trigger.name) {
                due.push(PendingFlow {
                    id: uuid::Uuid::now_v7().to_string(),
                    job: job.name.clone(),
                    trigger: trigger.name.clone(),
                    input: next_input.clone(),
                    upstream: Some(upstream.run_id.clone()),
                });
            }
        }
        due
    }
}

impl Dispatcher {
    /// The flows among `due` whose trigger has no `condition` or one that
    /// holds over the state the flow is handed; evaluated by the engine,
    /// once per trigger. A condition that throws or overruns its deadline
    /// does not hold, and says so in the log (without the state).
    pub(super) async fn conditions_hold(&self, due: Vec<PendingFlow>) -> Vec<PendingFlow> {
        let p = &self.inner.project;
        let mut verdicts: std::collections::HashMap<String, bool> = Default::default();
        let mut kept = Vec::with_capacity(due.len());
        for flow in due {
            let Some(condition) = p
                .triggers
                .get(&flow.trigger)
                .and_then(|t| t.condition.as_ref())
            else {
                kept.push(flow);
                continue;
            };
            let holds = match verdicts.get(&flow.trigger) {
                Some(v) => *v,
                None => {
                    let v = match self.inner.engine.condition(condition, &flow.input).await {
                        Ok(v) => {
                            info!(flow = %flow.trigger, holds = v, "flow condition evaluated");
                            v
                        }
                        Err(why) => {
                            warn!(flow = %flow.trigger, reason = %self.inner.redactor.redact(&why), "flow condition failed; the flow does not follow");
                            false
                        }
                    };
                    verdicts.insert(flow.trigger.clone(), v);
                    v
                }
            };
            if holds {
                kept.push(flow);
            }
        }
        kept
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
