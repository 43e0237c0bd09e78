//! `GET /api/stats`: the dashboard's overview, per minute over the last hour.
//!
//! Run figures (runs, successes, failures, p50/p95 duration) come from the
//! run records in SQLite, so they survive a restart; a minute that can no
//! longer change is read once and kept here, so a dashboard polling every
//! few seconds costs one small query for the current minute. Receipts are
//! counted in memory by `/inbox` ([`Activity::receipt`], one atomic
//! operation) and the queue depth is sampled every few seconds: both start
//! from zero after a restart. This module reads run records and store
//! counts only; it must never expose a message body or a state.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::{Response, StatusCode};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use super::minutes::PerMinute;
use super::{App, Body, ErrorBody, error, json};
use crate::clock::{now_ms, rfc3339};
use crate::storage::FinishedRun;

/// Minutes in the window (the current one included).
const WINDOW: u64 = 60;
/// A run's `finished_at` is stamped just before its record is written: a
/// minute is only cached once this long has passed after its end.
const SETTLE_MS: u64 = 10_000;
/// How often the queue depth is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// What the service remembers for the overview; one per process, in [`App`].
#[derive(Default)]
pub struct Activity {
    receipts: PerMinute,
    /// The highest queue depth sampled in each minute.
    queue_depth: PerMinute,
    /// Run figures of finished minutes, by Unix minute.
    settled: Mutex<BTreeMap<u64, RunMinute>>,
}

impl Activity {
    /// Counts one receipt taken by `/inbox`. Cheap enough for every request.
    pub fn receipt(&self) {
        self.receipts.count(crate::clock::unix_minute());
    }
}

/// The runs that finished in one minute.
#[derive(Clone, Default)]
struct RunMinute {
    succeeded: u64,
    failed: u64,
    /// Sorted, for percentiles.
    durations: Vec<i64>,
}

/// One minute of `GET /api/stats`.
#[derive(Serialize, ToSchema)]
pub struct Bucket {
    start_ms: u64,
    minute: String,
    receipts: u64,
    runs: u64,
    succeeded: u64,
    failed: u64,
    p50_ms: Option<i64>,
    p95_ms: Option<i64>,
    /// The peak sampled in the minute; `null` without a durable queue.
    queue_depth: Option<u64>,
}

/// `GET /api/stats`.
#[derive(Serialize, ToSchema)]
pub struct Stats {
    now_ms: u64,
    minutes: u64,
    /// Oldest first; the last is the current minute.
    buckets: Vec<Bucket>,
    totals: Totals,
    queue: QueueNow,
}

/// The buckets' figures added up.
#[derive(Serialize, ToSchema)]
pub struct Totals {
    receipts: u64,
    runs: u64,
    succeeded: u64,
    failed: u64,
    /// `null` when no run finished.
    success_rate: Option<f64>,
    p50_ms: Option<i64>,
    p95_ms: Option<i64>,
}

/// The queue's counts now; `depth` is what is still to be delivered
/// (pending and leased), `null` without a durable queue or when its store
/// did not answer (`error` then says why).
#[derive(Serialize, ToSchema)]
pub struct QueueNow {
    durable: bool,
    depth: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    leased: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dead: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `GET /api/stats?minutes=N` (1 to 60, default 60).
#[utoipa::path(get, path = "/api/stats", tag = "api",
    params(("minutes" = Option<u64>, Query, minimum = 1, maximum = 60, description = "Minutes back, the current one included (default 60).")),
    responses(
        (status = 200, description = "Receipts, runs and queue depth per minute.", body = Stats),
        (status = 400, description = "A bad or unknown parameter.", body = ErrorBody),
        (status = 500, description = "The run store could not be read.", body = ErrorBody),
    ))]
pub async fn stats(app: &App, query: Option<&str>) -> Response<Body> {
    let mut minutes = WINDOW;
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "minutes" => match value.parse::<u64>() {
                Ok(n) if (1..=WINDOW).contains(&n) => minutes = n,
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("minutes `{value}` must be a number from 1 to {WINDOW}"),
                    );
                }
            },
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query parameter `{other}`; use minutes"),
                );
            }
        }
    }
    let now = now_ms();
    let current = now / 60_000;
    let runs = match run_minutes(app, current, now).await {
        Ok(runs) => runs,
        Err(e) => {
            tracing::error!(cause = %e, "store read failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the run store could not be read; see the service log",
            );
        }
    };
    let queue = queue_now(app).await;
    if let Some(depth) = queue.depth {
        app.activity.queue_depth.peak(current, depth);
    }
    let durable = app.queue.is_some();
    let empty = RunMinute::default();
    let first = current + 1 - minutes;
    let buckets: Vec<Bucket> = (first..=current)
        .map(|m| {
            let r = runs.get(&m).unwrap_or(&empty);
            Bucket {
                start_ms: m * 60_000,
                minute: rfc3339(m * 60_000),
                receipts: app.activity.receipts.get(m),
                runs: r.succeeded + r.failed,
                succeeded: r.succeeded,
                failed: r.failed,
                p50_ms: percentile(&r.durations, 50),
                p95_ms: percentile(&r.durations, 95),
                queue_depth: durable.then(|| app.activity.queue_depth.get(m)),
            }
        })
        .collect();
    let mut all: Vec<i64> = runs
        .range(first..=current)
        .flat_map(|(_, r)| r.durations.iter().copied())
        .collect();
    all.sort_unstable();
    let succeeded: u64 = buckets.iter().map(|b| b.succeeded).sum();
    let failed: u64 = buckets.iter().map(|b| b.failed).sum();
    let finished = succeeded + failed;
    let totals = Totals {
        receipts: buckets.iter().map(|b| b.receipts).sum::<u64>(),
        runs: finished,
        succeeded,
        failed,
        success_rate: (finished > 0).then(|| succeeded as f64 / finished as f64),
        p50_ms: percentile(&all, 50),
        p95_ms: percentile(&all, 95),
    };
    json(
        StatusCode::OK,
        &Stats {
            now_ms: now,
            minutes,
            buckets,
            totals,
            queue,
        },
    )
}

/// Run figures for every minute of the window that had runs: settled
/// minutes from the cache, the rest from one query.
async fn run_minutes(
    app: &App,
    current: u64,
    now: u64,
) -> Result<BTreeMap<u64, RunMinute>, crate::storage::StorageError> {
    let first = current + 1 - WINDOW;
    let from = {
        let mut settled = app
            .activity
            .settled
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        settled.retain(|m, _| *m >= first);
        (first..=current)
            .find(|m| !settled.contains_key(m))
            .unwrap_or(current)
    };
    let rows = app
        .dispatcher
        .runs()
        .finished_since(&rfc3339(from * 60_000))
        .await?;
    let mut fresh: BTreeMap<u64, RunMinute> = (from..=current)
        .map(|m| (m, RunMinute::default()))
        .collect();
    for FinishedRun {
        minute,
        success,
        duration_ms,
    } in rows
    {
        // A clock set back can leave records "in the future": not counted.
        let Some(bucket) = u64::try_from(minute).ok().and_then(|m| fresh.get_mut(&m)) else {
            continue;
        };
        if success {
            bucket.succeeded += 1;
        } else {
            bucket.failed += 1;
        }
        bucket.durations.push(duration_ms);
    }
    fresh.values_mut().for_each(|b| b.durations.sort_unstable());
    let mut settled = app
        .activity
        .settled
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    for (m, bucket) in &fresh {
        if (m + 1) * 60_000 + SETTLE_MS <= now {
            settled.insert(*m, bucket.clone());
        }
    }
    let mut out: BTreeMap<u64, RunMinute> = settled
        .range(first..from)
        .map(|(m, b)| (*m, b.clone()))
        .collect();
    out.extend(fresh);
    Ok(out)
}

/// The queue's counts now.
async fn queue_now(app: &App) -> QueueNow {
    let mut now = QueueNow {
        durable: app.queue.is_some(),
        depth: None,
        pending: None,
        leased: None,
        dead: None,
        error: None,
    };
    let Some(queue) = &app.queue else {
        return now;
    };
    match queue.stats().await {
        Ok(s) => {
            now.depth = Some(s.pending + s.leased);
            now.pending = Some(s.pending);
            now.leased = Some(s.leased);
            now.dead = Some(s.dead);
        }
        Err(e) => now.error = Some(e.to_string()),
    }
    now
}

/// Samples the queue depth every few seconds until `stop`, so the chart has
/// a value for minutes when nobody was watching.
pub async fn sample_queue(app: Arc<App>, stop: CancellationToken) {
    let Some(queue) = app.queue.clone() else {
        return;
    };
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = stop.cancelled() => return,
        }
        if let Ok(s) = queue.stats().await {
            app.activity
                .queue_depth
                .peak(now_ms() / 60_000, s.pending + s.leased);
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    Some(sorted[rank - 1])
}

#[cfg(test)]
mod tests {
    use super::percentile;
    use crate::clock::rfc3339;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), Some(50));
        assert_eq!(percentile(&v, 95), Some(95));
        assert_eq!(percentile(&[7], 95), Some(7));
        assert_eq!(percentile(&[1, 2], 50), Some(1));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn times_match_the_run_records() {
        assert_eq!(rfc3339(60_000), "1970-01-01T00:01:00.000Z");
    }
}
