//! `GET /metrics`: the registry in [`crate::metrics`], plus the values read
//! at scrape time (queue depth, idle workers).
//!
//! A scrape must stay cheap and must not fail because a part is down: a
//! message store that does not answer in time leaves the queue gauges at
//! their last value rather than failing the scrape.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

use super::{App, Body};
use crate::metrics::{Outcome, QueueCounts, Snapshot};

const STORE_DEADLINE: Duration = Duration::from_millis(500);

#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses((status = 200, description = "The service's metrics in the OpenMetrics text format.",
        body = String, content_type = "application/openmetrics-text")))]
pub async fn scrape(app: &App) -> Response<Body> {
    let mut snapshot = Snapshot {
        workers_idle: app.dispatcher.idle_workers(),
        ..Default::default()
    };
    if let Some(queue) = &app.queue
        && let Ok(Ok(s)) = tokio::time::timeout(STORE_DEADLINE, queue.stats()).await
    {
        snapshot.queue = Some(QueueCounts {
            pending: s.pending,
            leased: s.leased,
            done: s.done,
            dead: s.dead,
        });
    }
    let text = crate::metrics::get().render(snapshot);
    let mut res = Response::new(Full::new(Bytes::from(text)));
    *res.status_mut() = StatusCode::OK;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    res
}

/// How an `/inbox` answer counts in `microservice_receipts_total`.
pub fn outcome(res: &Response<Body>) -> Outcome {
    match res.status().as_u16() {
        _ if res.headers().contains_key("idempotent-replay") => Outcome::duplicate,
        200..=299 => Outcome::accepted,
        401 => Outcome::unauthorized,
        503 => Outcome::unavailable,
        400..=499 => Outcome::rejected,
        _ => Outcome::failed,
    }
}
