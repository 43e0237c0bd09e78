//! `POST /inbox`: a receipt in (JSON, a form, XML; compressed or not),
//! matched runs started.
//!
//! Checks come cheapest first: content type (415), declared length (413),
//! the body read under the limit (413) and within `[http] body_timeout`
//! (408); then [`crate::receipt::Door`] decodes it (400, 413, 415 with
//! what was wrong), matches it and stores it or starts its runs. In async
//! style the answer is the original's 202 at once; in sync style the
//! request waits for the matched runs (not for the flows after them).

use std::future::poll_fn;
use std::pin::Pin;
use std::task::Poll;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{
    CONNECTION, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
};
use hyper::{Response, StatusCode};
use serde::Serialize;
use serde_json::Value;
use tracing::error as log_error;
use utoipa::ToSchema;

use super::{App, Body, ErrorBody, Peer, error, json};
use crate::dispatch::RunReport;
use crate::receipt::{self, Arriving, Options, Outcome, Purpose, Refused, Taken};
use crate::settings::EndpointStyle;
use crate::storage::StorageError;

static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// `POST /inbox`. The key may be the inbox's or the admin's.
#[utoipa::path(post, path = "/inbox", tag = "inbox",
    request_body(description = "The receipt: JSON, a form, or XML, optionally compressed (`Content-Encoding` gzip, deflate or br).",
        content(
            (Object = "application/json"),
            (Object = "application/x-www-form-urlencoded"),
            (Object = "multipart/form-data"),
            (String = "application/xml"),
            (String = "text/xml"),
        )),
    params(
        ("idempotency-key" = Option<String>, Header, description = "The same key again is the same receipt (with the durable message store)."),
    ),
    responses(
        (status = 202, description = "Taken (async style, or a replay of an idempotency key); the matched jobs' runs have started or will.", body = Accepted,
            headers(("x-message-id" = String, description = "The stored receipt's id, when it is stored."))),
        (status = 200, description = "Sync style: nothing matched.", body = Finished),
        (status = 201, description = "Sync style: every matched run succeeded.", body = Finished),
        (status = 206, description = "Sync style: some matched run failed.", body = Finished),
        ReceiptRefused,
    ))]
pub async fn receive(
    app: &App,
    parts: &http::request::Parts,
    body: Incoming,
    peer: &Peer,
) -> Response<Body> {
    // Only the message store de-duplicates; without it the key means nothing.
    let idempotency_key = app
        .queue
        .as_ref()
        .and_then(|_| parts.headers.get(&IDEMPOTENCY_KEY))
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    let sync = app.endpoint_style == EndpointStyle::Sync;
    let options = Options {
        idempotency_key,
        wait: sync,
        watch: None,
    };
    let arrived = Entrance {
        source: "inbox",
        purpose: Purpose::Inbox,
        peer,
    };
    match take(app, parts, body, arrived, options).await {
        Err(refused) => refused,
        Ok(Taken { jobs, outcome }) => answer(&jobs, outcome, sync).await,
    }
}

/// The OpenAPI answers of a receipt [`take`] refuses, for `/inbox` and
/// `/i/{path}`: documentation only, never built.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum ReceiptRefused {
    /// The body could not be read or decoded.
    #[response(status = 400)]
    Undecodable(ErrorBody),
    /// The body did not arrive within `[http] body_timeout`.
    #[response(status = 408)]
    TooSlow(ErrorBody),
    /// The body is larger than `[inbox] max_body_bytes`.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// A content type or encoding the inbox does not read.
    #[response(status = 415)]
    Unsupported(ErrorBody),
    /// The receipt could not be stored; try again after `Retry-After`.
    #[response(status = 503)]
    NotStored(ErrorBody),
}

/// Where a request came in: its receipt's source, what the door expects
/// of it, and the connection it came on.
pub struct Entrance<'a> {
    pub source: &'a str,
    pub purpose: Purpose,
    pub peer: &'a Peer,
}

/// What every HTTP door for receipts (`/inbox`, `/i/{path}`,
/// `/submission`) does before its own answer: the content type checked
/// before the body is read (415), the body read ([`read_body`]), then
/// decoded, matched and stored or run by [`crate::receipt::Door`], and the
/// receipt counted in the dashboard's activity. `Err` is the answer to give
/// (4xx, or 503 when it could not be stored).
pub async fn take(
    app: &App,
    parts: &http::request::Parts,
    body: Incoming,
    arrival: Entrance<'_>,
    options: Options,
) -> Result<Taken, Response<Body>> {
    let headers = &parts.headers;
    let content_type = text_header(headers, &CONTENT_TYPE);
    if let Err(e) = receipt::decode::kind_of(content_type) {
        return Err(error(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string()));
    }
    let bytes = read_body(app, body).await?;
    let arriving = Arriving {
        body: bytes,
        content_type,
        content_encoding: text_header(headers, &CONTENT_ENCODING),
        purpose: arrival.purpose,
        source: arrival.source,
        path: parts.uri.path(),
        remote_addr: Some(&arrival.peer.addr),
        written: Some(&arrival.peer.written),
    };
    let taken = match app.door.take_at_once(&arriving, options) {
        Ok(taken) => taken,
        // Boxed: decoding, matching and storing make the largest state of
        // this future, which would otherwise be copied whole each time the
        // request's future is moved (hyper boxes it, tracing wraps it): one
        // allocation costs less than those copies.
        Err(options) => Box::pin(app.door.take(arriving, options)).await,
    };
    if !matches!(taken, Err(Refused::Decode(_))) {
        app.activity.receipt();
    }
    match taken {
        Err(Refused::Decode(e)) => Err(error(status_of(e.status()), e.to_string())),
        Err(Refused::Store(f)) => Err(unavailable(&f)),
        Ok(taken) => Ok(taken),
    }
}

/// A header's value as text; one that is not visible ASCII counts as empty.
pub fn text_header<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    headers.get(name).map(|v| v.to_str().unwrap_or(""))
}

pub fn status_of(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST)
}

/// Reads the whole body under `[inbox] max_body_bytes` and within
/// `[http] body_timeout`, or says why not.
pub async fn read_body(app: &App, body: Incoming) -> Result<Bytes, Response<Body>> {
    let limit = app.dispatcher.project().inbox.max_body_bytes;
    // hyper has parsed `Content-Length` already (and refused a malformed
    // one): the body knows its declared length.
    let declared = hyper::body::Body::size_hint(&body).exact();
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large(limit));
    }
    let mut read = Limited::new(body, limit).collect();
    // A small body usually came in with its head: it is taken at once, and
    // only a body still on its way gets a timer (making one, with its clock
    // read, was 0.8% of a small receipt's CPU in a profile), in a future
    // boxed apart, since the timer would make this one twice as large.
    if let Poll::Ready(read) = poll_fn(|cx| Poll::Ready(Pin::new(&mut read).poll(cx))).await {
        return collected(read, limit);
    }
    Box::pin(read_slowly(app, read, limit)).await
}

type Collecting = http_body_util::combinators::Collect<Limited<Incoming>>;
type Read = Result<http_body_util::Collected<Bytes>, Box<dyn std::error::Error + Send + Sync>>;

/// The rest of a body that did not come with its head, within `[http]
/// body_timeout`.
async fn read_slowly(app: &App, read: Collecting, limit: usize) -> Result<Bytes, Response<Body>> {
    let body_timeout = app.dispatcher.project().http.body_timeout;
    match tokio::time::timeout(body_timeout, read).await {
        Ok(read) => collected(read, limit),
        Err(_) => Err(too_slow(body_timeout)),
    }
}

/// The body read, or the answer to give when it could not be.
#[expect(
    clippy::result_large_err,
    reason = "the error is the answer itself, as in `read_body`; boxing it would not make the common case cheaper"
)]
fn collected(read: Read, limit: usize) -> Result<Bytes, Response<Body>> {
    match read {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(limit)),
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("could not read the request body: {e}"),
        )),
    }
}

/// The answer for a receipt taken.
pub(super) async fn answer(jobs: &[String], outcome: Outcome, sync: bool) -> Response<Body> {
    match outcome {
        Outcome::Started(runs) if !sync => {
            drop(runs);
            accepted(jobs, None)
        }
        Outcome::Started(runs) => {
            let mut reports = Vec::with_capacity(runs.len());
            for run in runs {
                match run.await {
                    Ok(report) => reports.push(report),
                    Err(e) => {
                        log_error!(cause = %e, "a run's task failed");
                        return error(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "a run failed inside the service; see its log",
                        );
                    }
                }
            }
            finished(reports)
        }
        Outcome::Duplicate(id) => {
            let mut res = accepted(jobs, Some(&id));
            super::metrics::replayed(&mut res);
            res
        }
        Outcome::Stored {
            id,
            first_attempt: None,
        } => accepted(jobs, Some(&id)),
        Outcome::Stored {
            id,
            first_attempt: Some(first),
        } => match first.await {
            Ok(reports) => finished(reports),
            // Stored but not run before the service stopped: it will run later.
            Err(_) => accepted(jobs, Some(&id)),
        },
    }
}

/// 503 with `Retry-After` for a receipt the store could not keep.
pub fn unavailable(f: &StorageError) -> Response<Body> {
    let secs = f
        .retry_after_ms()
        .map(|ms| ms.div_ceil(1000).max(1))
        .unwrap_or(5);
    let mut res = error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the receipt could not be stored ({f}); try again later"),
    );
    res.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(secs));
    res
}

/// The original's 202, plus the stored message's id in a header.
fn accepted(names: &[String], id: Option<&str>) -> Response<Body> {
    let mut res = if names.is_empty() {
        // The hottest answer of the service, a constant.
        let mut res = Response::new(Body::new(Bytes::from_static(ACCEPTED_NOTHING)));
        *res.status_mut() = StatusCode::ACCEPTED;
        res.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        res
    } else {
        accepted_jobs(names)
    };
    if let Some(id) = id.and_then(|i| HeaderValue::from_str(i).ok()) {
        res.headers_mut().insert("x-message-id", id);
    }
    res
}

/// The 202 for a receipt that matched no job.
const ACCEPTED_NOTHING: &[u8] =
    br#"{"meta":{"message":"Data accepted and processing has begun."},"data":[],"errors":[]}"#;

/// The original's 202 (async style): the names of the jobs the receipt
/// matched, whose runs have started or will start.
#[derive(Serialize, ToSchema)]
pub struct Accepted<'a> {
    meta: Meta,
    data: &'a [String],
    /// Always empty.
    #[schema(value_type = Vec<String>, max_items = 0)]
    errors: [(); 0],
}

#[derive(Serialize, ToSchema)]
#[schema(as = AcceptedMeta)]
pub struct Meta {
    /// `Data accepted and processing has begun.`
    message: &'static str,
}

/// Sync style: how each matched run ended.
#[derive(Serialize, ToSchema)]
pub struct Finished {
    /// Every matched run succeeded (true when none matched).
    success: bool,
    match_count: usize,
    jobs: Vec<FinishedRun>,
}

#[derive(Serialize, ToSchema)]
pub struct FinishedRun {
    job: String,
    run_id: String,
    exit_code: Option<i32>,
    log: Vec<String>,
    /// The final state, without `configuration`.
    state: Option<Value>,
}

fn accepted_jobs(names: &[String]) -> Response<Body> {
    // A typed body: no JSON map is built.
    let body = Accepted {
        meta: Meta {
            message: "Data accepted and processing has begun.",
        },
        data: names,
        errors: [],
    };
    json(StatusCode::ACCEPTED, &body)
}

/// Sync style: 201 when every matched run succeeded, 206 when any failed,
/// 200 when nothing matched.
fn finished(reports: Vec<RunReport>) -> Response<Body> {
    let success = reports.iter().all(|r| r.success);
    let status = match (reports.is_empty(), success) {
        (true, _) => StatusCode::OK,
        (false, true) => StatusCode::CREATED,
        (false, false) => StatusCode::PARTIAL_CONTENT,
    };
    let jobs: Vec<FinishedRun> = reports
        .into_iter()
        .map(|r| FinishedRun {
            job: r.job,
            run_id: r.run_id,
            exit_code: r.exit_code,
            log: r.log,
            state: r.state,
        })
        .collect();
    json(
        status,
        &Finished {
            success,
            match_count: jobs.len(),
            jobs,
        },
    )
}

/// 408 for a body that did not arrive in time; the connection is closed,
/// since the rest of the body may still be on its way.
pub fn too_slow(limit: std::time::Duration) -> Response<Body> {
    let mut res = error(
        StatusCode::REQUEST_TIMEOUT,
        format!(
            "the body did not arrive within {} ([http] body_timeout)",
            humantime::format_duration(limit)
        ),
    );
    res.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    res
}

fn too_large(limit: usize) -> Response<Body> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than the limit of {limit} bytes ([inbox] max_body_bytes)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    async fn body_of(res: Response<Body>) -> Bytes {
        res.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn the_constant_202_is_what_the_typed_body_would_say() {
        let constant = accepted(&[], Some("m-1"));
        assert_eq!(constant.status(), StatusCode::ACCEPTED);
        assert_eq!(constant.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(constant.headers()["x-message-id"], "m-1");
        assert_eq!(body_of(constant).await, body_of(accepted_jobs(&[])).await);
        let matched = body_of(accepted(&["job-1".to_string()], None)).await;
        let v: Value = serde_json::from_slice(&matched).unwrap();
        assert_eq!(v["data"], json!(["job-1"]));
    }
}
