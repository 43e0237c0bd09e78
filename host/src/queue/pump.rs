//! Delivery: lease stored receipts, run their jobs, then acknowledge, retry
//! later, or move them to the dead-letter list.
//!
//! A receipt is acknowledged only after its runs finished, so a crash in
//! between delivers it again (at least once). Jobs that failed with a
//! retryable failure are tried again after their policy's backoff; jobs
//! already settled are not re-run. When no attempt is left for a failed job,
//! the receipt goes to the dead-letter list (its failure flows fired once,
//! on that last attempt, in the dispatcher).

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use super::{KEY_RECEIPT, KEY_WAITER, Queue};
use crate::clock::now_ms;
use crate::dispatch::{RunReport, Watch};
use crate::storage::SettledJob;

/// How often the store is asked for due retries when nothing rang.
const POLL: Duration = Duration::from_millis(500);
/// Often enough that finished receipts never pile up in the store's memory.
const COMPACT_EVERY: Duration = Duration::from_secs(60);

/// A receipt on its way to its runs.
pub(super) struct Delivery {
    pub id: String,
    /// Counts from 1.
    pub attempt: u32,
    pub body: Body,
    /// How the receipt arrived, as JSON text: read into its runs' initial
    /// state only when a job matches.
    pub receipt: Option<String>,
    /// The sync-mode request waiting for this attempt's reports, if any.
    pub waiter: Option<String>,
    /// Jobs an earlier attempt settled, as the store kept them (an earlier
    /// attempt on another replica included).
    pub settled: Vec<SettledJob>,
}

pub(super) enum Body {
    /// Fresh from `/inbox` or a trigger plugin, parsed there.
    Parsed(Value),
    /// Leased back from the store.
    Stored(String),
}

/// How a stored receipt arrived, from its metadata.
fn receipt_of(metadata: &[(String, String)]) -> Option<String> {
    metadata
        .iter()
        .find(|(k, _)| k == KEY_RECEIPT)
        .map(|(_, json)| json.clone())
}

pub(super) fn waiter_of(metadata: &[(String, String)]) -> Option<String> {
    metadata
        .iter()
        .find(|(k, _)| k == KEY_WAITER)
        .map(|(_, token)| token.clone())
}

/// The watch a waiting webhook request handed this receipt, taken once (the
/// first attempt's runs carry it).
fn watch_of(inner: &super::Inner, token: &Option<String>) -> Option<Watch> {
    let token = token.as_ref()?;
    inner
        .waiters
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_mut(token)?
        .watch
        .take()
}

/// Delivers in its own task, holding a delivery slot until it is done.
pub(super) fn start(queue: &Queue, delivery: Delivery, slot: OwnedSemaphorePermit) {
    let span = info_span!("delivery", message_id = %delivery.id, attempt = delivery.attempt);
    let q = queue.clone();
    queue.inner.tracker.spawn_on(
        async move {
            deliver(&q, delivery).await;
            drop(slot);
            if q.inner.backlog.load(Ordering::Relaxed) {
                q.inner.wake.notify_one();
            }
        }
        .instrument(span),
        &queue.inner.main,
    );
}

/// Leases what the store holds pending (retries that came due, receipts
/// stored while every slot was busy, what a previous process left).
pub async fn run(queue: Queue) {
    let inner = &queue.inner;
    let stop = &inner.stop;
    // Another replica's receipts (a shared database) ring here.
    let elsewhere = inner.store.wakeups().unwrap_or_default();
    loop {
        tokio::select! {
            _ = inner.wake.notified() => {}
            _ = elsewhere.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.cancelled() => return,
        }
        while !stop.is_cancelled() {
            // Slots first, then as many messages as there are slots: a
            // leased message must never wait for one.
            let mut slots = Vec::new();
            while let Ok(slot) = inner.in_flight.clone().try_acquire_owned() {
                slots.push(slot);
            }
            if slots.is_empty() {
                inner.backlog.store(true, Ordering::Relaxed);
                break;
            }
            let leased = match inner
                .store
                .lease(slots.len() as u32, inner.lease_ms, now_ms())
                .await
            {
                Ok(leased) => leased,
                Err(e) => {
                    warn!(cause = %e, "could not lease receipts");
                    break;
                }
            };
            if leased.len() < slots.len() {
                // Nothing more was due when it asked.
                inner.backlog.store(false, Ordering::Relaxed);
            }
            if leased.is_empty() {
                break;
            }
            for (receipt, slot) in leased.into_iter().zip(slots) {
                let delivery = Delivery {
                    waiter: waiter_of(&receipt.metadata),
                    receipt: receipt_of(&receipt.metadata),
                    attempt: receipt.attempts.max(1),
                    id: receipt.id,
                    body: Body::Stored(receipt.body),
                    settled: receipt.settled,
                };
                start(&queue, delivery, slot);
            }
        }
    }
}

/// Tells a receipt's waiter, if any, that it starts no runs.
pub(super) fn no_runs(queue: &Queue, waiter: Option<String>) {
    let Some(token) = waiter else { return };
    let removed = queue
        .inner
        .waiters
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&token);
    // Dropping its watch tells a webhook's reply that nothing runs.
    if let Some(tx) = removed.and_then(|w| w.reports) {
        let _ = tx.send(Vec::new());
    }
}

async fn deliver(queue: &Queue, delivery: Delivery) {
    let inner = &queue.inner;
    let store = &inner.store;
    let Delivery {
        id,
        attempt,
        body,
        receipt,
        waiter,
        settled,
    } = delivery;
    let body: Value = match body {
        Body::Parsed(v) => v,
        Body::Stored(text) => match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                let _ = store
                    .dead_letter(&id, &format!("the stored body is not JSON: {e}"), now_ms())
                    .await;
                return;
            }
        },
    };
    let settled_jobs = {
        let mut known = inner.settled.lock().unwrap_or_else(|p| p.into_inner());
        if settled.is_empty() {
            known.get(&id).map(|s| s.jobs.clone()).unwrap_or_default()
        } else {
            let entry = known.entry(id.clone()).or_default();
            for job in settled {
                entry.add(job);
            }
            entry.jobs.clone()
        }
    };
    let receipt: Option<Value> = receipt.and_then(|json| serde_json::from_str(&json).ok());
    let source = receipt
        .as_ref()
        .and_then(|r| r.get("source"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let jobs: Vec<_> = inner
        .dispatcher
        .matching_jobs(&body, &source)
        .into_iter()
        .filter(|j| !settled_jobs.contains(&j.name))
        .collect();
    let receipt = receipt.filter(|_| !jobs.is_empty());
    let mut reports = Vec::with_capacity(jobs.len());
    let runs = inner.dispatcher.receive(
        &body,
        receipt.as_ref(),
        &jobs,
        Some(attempt),
        watch_of(inner, &waiter),
    );
    for handle in runs {
        match handle.await {
            Ok(report) => reports.push(report),
            Err(e) => {
                error!(cause = %e, "a run's task failed; the receipt will be delivered again")
            }
        }
    }
    if reports.len() < jobs.len() {
        // A run panicked or was cancelled: leave the lease to run out.
        return;
    }
    if let Some(token) = &waiter
        && let Some(waiter) = inner
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token)
        && let Some(tx) = waiter.reports
    {
        let _ = tx.send(reports.clone());
    }
    settle(queue, id, attempt, &reports).await;
}

/// Acknowledges, schedules a retry, or dead-letters after an attempt.
async fn settle(queue: &Queue, id: String, attempt: u32, reports: &[RunReport]) {
    let inner = &queue.inner;
    let retry: Vec<&RunReport> = reports.iter().filter(|r| r.will_retry).collect();
    if retry.is_empty() && reports.iter().all(|r| r.success) {
        // The common case, kept cheap: everything ran (now or in an earlier
        // attempt) and nothing failed for good.
        let mut settled = inner.settled.lock().unwrap_or_else(|p| p.into_inner());
        let failed_before = settled
            .get(&id)
            .is_some_and(|s| !s.failed_for_good.is_empty());
        if !failed_before {
            settled.remove(&id);
            drop(settled);
            queue.acknowledge(id);
            return;
        }
    }
    let id = id.as_str();
    let (failed_for_good, stored) = {
        let mut settled = inner.settled.lock().unwrap_or_else(|p| p.into_inner());
        let entry = settled.entry(id.to_string()).or_default();
        for r in reports.iter().filter(|r| !r.will_retry) {
            let failure = (!r.success).then(|| {
                r.failure
                    .as_ref()
                    .map(|f| f.reason.clone())
                    .unwrap_or_else(|| "failed".into())
            });
            entry.add(SettledJob {
                job: r.job.clone(),
                failure,
            });
        }
        (entry.failed_for_good.clone(), entry.stored.clone())
    };
    let outcome = if !retry.is_empty() {
        let project = inner.dispatcher.project();
        let delay = retry
            .iter()
            .filter_map(|r| project.jobs.get(&r.job))
            .map(|job| job.retry.delay(attempt, id))
            .max()
            .unwrap_or_default();
        let why: Vec<String> = retry
            .iter()
            .map(|r| {
                format!(
                    "{}: {}",
                    r.job,
                    r.failure
                        .as_ref()
                        .map(|f| f.reason.as_str())
                        .unwrap_or("failed")
                )
            })
            .collect();
        info!(
            attempt,
            retry_in_ms = delay.as_millis() as u64,
            "receipt will be retried"
        );
        let why = why.join("; ");
        crate::storage::patiently(
            "a retry's schedule",
            inner.store.patience(),
            Some(&inner.stop),
            || {
                inner
                    .store
                    .nack(id, delay.as_millis() as u64, &why, &stored, now_ms())
            },
        )
        .await
    } else {
        inner
            .settled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        if failed_for_good.is_empty() {
            queue.acknowledge(id.to_string());
            Ok(())
        } else {
            warn!(attempt, "receipt moved to the dead-letter list");
            let why = failed_for_good.join("; ");
            crate::storage::patiently(
                "a dead letter",
                inner.store.patience(),
                Some(&inner.stop),
                || inner.store.dead_letter(id, &why, now_ms()),
            )
            .await
        }
    };
    if let Err(e) = outcome {
        warn!(cause = %e, "could not settle the receipt; it will be delivered again when its lease runs out");
    }
}

/// Forgets acknowledged receipts older than `retention`, now and then.
pub async fn compact(queue: Queue, retention: Duration, stop: CancellationToken) {
    loop {
        let before = now_ms().saturating_sub(retention.as_millis() as u64);
        match queue.inner.store.compact(before).await {
            Ok(0) => {}
            Ok(n) => info!(removed = n, "receipt store compacted"),
            Err(e) => warn!(cause = %e, "receipt store compaction failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(COMPACT_EVERY) => {}
            _ = stop.cancelled() => return,
        }
    }
}
