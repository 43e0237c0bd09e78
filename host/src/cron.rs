//! The scheduler for cron triggers: one loop per cron job.
//!
//! Each loop sleeps until the schedule's next time (local time zone, `TZ`),
//! starts a run and waits for it before computing the next time, so runs of
//! one cron job never overlap and each starts from the state the previous one
//! left; ticks that fall during a long run are skipped, not queued. The loops
//! stop on shutdown. This module decides only *when*; the dispatcher runs.

use std::sync::Arc;

use chrono::Local;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::dispatch::Dispatcher;
use crate::project::{Job, TriggerKind};

/// Starts a loop for every job with a cron trigger.
pub fn start(dispatcher: &Dispatcher, stop: &CancellationToken, tracker: &TaskTracker) {
    let project = dispatcher.project().clone();
    for job in project.jobs.values() {
        let TriggerKind::Cron {
            schedule,
            expression,
        } = &project.triggers[&job.trigger].kind
        else {
            continue;
        };
        info!(job = %job.name, cron = %expression, "scheduled");
        tracker.spawn(run_loop(
            dispatcher.clone(),
            job.clone(),
            (**schedule).clone(),
            stop.clone(),
        ));
    }
}

async fn run_loop(
    dispatcher: Dispatcher,
    job: Arc<Job>,
    schedule: croner::Cron,
    stop: CancellationToken,
) {
    loop {
        let now = Local::now();
        let next = match schedule.find_next_occurrence(&now, false) {
            Ok(next) => next,
            Err(e) => {
                warn!(job = %job.name, cause = %e, "the schedule has no next time; this cron job stops");
                return;
            }
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
        let run = dispatcher.tick(job.clone());
        tokio::select! {
            _ = run => {}
            // The run itself is tracked by the dispatcher and finishes (or is
            // killed) under the shutdown's grace period.
            _ = stop.cancelled() => return,
        }
    }
}
