//! Cron triggers: reading schedules (`parse`), computing their ticks in a
//! time zone (`ticks`), and the scheduler, one loop per cron job (here).
//!
//! Each loop sleeps until the schedule's next tick, starts a run and waits
//! for it, so runs of one cron job never overlap and each starts from the
//! state the previous one left. The next tick always comes from the
//! schedule, never from when the previous run ended: a tick that fell while
//! the previous run was still going is skipped and counted (a warning and
//! the `cron_ticks_missed` metric), not run late. The loops stop on
//! shutdown. This module decides only *when*; the dispatcher runs.

mod parse;
mod ticks;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

pub use parse::parse;
pub use ticks::{Schedule, Zone};

use crate::dispatch::Dispatcher;
use crate::project::{Job, TriggerKind};

/// Missed ticks counted one by one at most; past this (a schedule firing
/// every second across a day-long stall) the rest are skipped uncounted.
const MAX_COUNTED: u64 = 100_000;

/// Starts a loop for every job with a cron trigger.
pub fn start(dispatcher: &Dispatcher, stop: &CancellationToken, tracker: &TaskTracker) {
    let project = dispatcher.project().clone();
    for job in project.jobs.values() {
        let crons: Vec<_> = project
            .triggers_of(job)
            .filter_map(|t| match &t.kind {
                TriggerKind::Cron {
                    schedule,
                    expression,
                    ..
                } => Some((t.name.clone(), schedule, expression)),
                _ => None,
            })
            .collect();
        let several = crons.len() > 1;
        for (trigger, schedule, expression) in crons {
            info!(job = %job.name, cron = %expression, timezone = %schedule.zone(), "scheduled");
            crate::metrics::get().declare_cron(&job.name);
            // A job's only cron trigger claims ticks under the job's name (as
            // before several were allowed); each of several under its own.
            let claim_key = if several {
                format!("{}@{trigger}", job.name)
            } else {
                job.name.clone()
            };
            tracker.spawn(run_loop(
                dispatcher.clone(),
                job.clone(),
                Ticking { trigger, claim_key },
                (**schedule).clone(),
                stop.clone(),
            ));
        }
    }
}

/// Which trigger ticks, and the name its ticks are claimed under.
struct Ticking {
    trigger: String,
    claim_key: String,
}

async fn run_loop(
    dispatcher: Dispatcher,
    job: Arc<Job>,
    ticking: Ticking,
    schedule: Schedule,
    stop: CancellationToken,
) {
    let mut after = Utc::now();
    loop {
        let Some(mut tick) = schedule.next_after(after) else {
            warn!(job = %job.name, "the schedule has no next time; this cron job stops");
            return;
        };
        if !sleep_until(tick, &stop).await {
            return;
        }
        // Woken later than the tick after this one (the machine was
        // suspended or starved): run once, for the latest tick that is due.
        let (late, latest) = schedule.ticks_between(tick, Utc::now(), MAX_COUNTED);
        if let Some(latest) = latest {
            missed(&job, late, "the scheduler woke too late for them");
            tick = latest;
        }
        // The tests read these lines for the instants ticks were scheduled at.
        debug!(job = %job.name, tick = %tick.to_rfc3339_opts(SecondsFormat::Millis, true), late_ms = (Utc::now() - tick).num_milliseconds(), "cron tick");
        // Every replica wakes for every tick; the storage says which one
        // runs it (the embedded store: always this one).
        let claim = match dispatcher
            .storage()
            .cron
            .claim(&ticking.claim_key, tick.timestamp_millis())
            .await
        {
            Ok(Some(claim)) => {
                // The tests count these lines: one per tick across replicas.
                debug!(job = %job.name, tick = %tick.to_rfc3339_opts(SecondsFormat::Millis, true), "cron tick claimed");
                claim
            }
            Ok(None) => {
                debug!(job = %job.name, "another replica runs this tick");
                after = tick;
                continue;
            }
            Err(e) => {
                warn!(job = %job.name, cause = %e, "could not claim the cron tick; it is skipped");
                missed(&job, 1, "the storage could not be reached");
                after = tick;
                continue;
            }
        };
        let mut run = dispatcher.tick(job.clone(), ticking.trigger.clone());
        tokio::select! {
            _ = &mut run => drop(claim),
            // The run itself is tracked by the dispatcher and finishes (or is
            // killed) under the shutdown's grace period; the claim is held
            // until then, so no other replica starts the next tick early.
            _ = stop.cancelled() => {
                tokio::spawn(async move {
                    let _ = run.await;
                    drop(claim);
                });
                return;
            }
        }
        let now = Utc::now();
        let (overran, _) = schedule.ticks_between(tick, now, MAX_COUNTED);
        missed(&job, overran, "the previous run was still going");
        after = now.max(tick);
    }
}

fn missed(job: &Job, ticks: u64, why: &str) {
    if ticks == 0 {
        return;
    }
    warn!(job = %job.name, missed = ticks, "skipped {ticks} cron tick{}: {why}", if ticks == 1 { "" } else { "s" });
    crate::metrics::get().cron_ticks_missed(&job.name, ticks);
}

/// Sleeps until the wall clock reaches `tick`; false when stopped first.
/// Timers run on the monotonic clock, so a wall clock set back while
/// sleeping would wake us early: check and sleep again.
async fn sleep_until(tick: DateTime<Utc>, stop: &CancellationToken) -> bool {
    loop {
        let wait = (tick - Utc::now()).to_std().unwrap_or_default();
        if wait.is_zero() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return false,
        }
    }
}
