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

/// Marks `res` as the answer to a re-sent receipt (its idempotency key
/// seen before): the `idempotent-replay: true` header for the client, and
/// a marker in its extensions that [`outcome`] reads, since looking a
/// header up by name costs more than the rest of counting the receipt.
pub fn replayed(res: &mut Response<Body>) {
    res.headers_mut()
        .insert("idempotent-replay", HeaderValue::from_static("true"));
    res.extensions_mut().insert(Replayed);
}

/// See [`replayed`].
#[derive(Clone, Copy)]
struct Replayed;

/// How an `/inbox` answer counts in `microservice_receipts_total`.
pub fn outcome(res: &Response<Body>) -> Outcome {
    match res.status().as_u16() {
        _ if res.extensions().get::<Replayed>().is_some() => Outcome::duplicate,
        200..=299 => Outcome::accepted,
        401 => Outcome::unauthorized,
        503 => Outcome::unavailable,
        400..=499 => Outcome::rejected,
        _ => Outcome::failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_counts_as_a_duplicate_whatever_its_status() {
        let answer = |status: u16| {
            let mut res = Response::new(Body::default());
            *res.status_mut() = StatusCode::from_u16(status).unwrap();
            res
        };
        let mut replay = answer(202);
        replayed(&mut replay);
        assert_eq!(replay.headers()["idempotent-replay"], "true");
        assert_eq!(outcome(&replay), Outcome::duplicate);
        let mut created = answer(201);
        replayed(&mut created);
        assert_eq!(outcome(&created), Outcome::duplicate);
        let cases = [
            (202, Outcome::accepted),
            (401, Outcome::unauthorized),
            (415, Outcome::rejected),
            (503, Outcome::unavailable),
            (500, Outcome::failed),
        ];
        for (status, expected) in cases {
            assert_eq!(outcome(&answer(status)), expected, "{status}");
        }
    }
}
