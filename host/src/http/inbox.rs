//! `POST /inbox`: a JSON receipt in, matched runs started.
//!
//! Checks come cheapest first: content type (415), declared length (413),
//! the body read under the limit (413), JSON syntax (400 with line and
//! column). Only then is the receipt matched. In async style the answer is the
//! original's 202 at once; in sync style the request waits for the matched
//! runs (not for the flows after them).

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};
use tracing::{error as log_error, info};

use super::{App, Body, error, json};
use crate::dispatch::RunReport;
use crate::queue::Submitted;
use crate::settings::EndpointStyle;

static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

pub async fn receive(app: &App, req: Request<Incoming>) -> Response<Body> {
    if let Some(ct) = req.headers().get(CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("");
        if !is_json(ct) {
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type `{ct}` is not JSON; send the receipt as application/json"),
            );
        }
    }
    // Only the message store de-duplicates; without it the key means nothing.
    let req_key = app
        .queue
        .as_ref()
        .and_then(|_| req.headers().get(&IDEMPOTENCY_KEY))
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    let limit = app.dispatcher.project().inbox.max_body_bytes;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return too_large(limit);
    }
    let bytes = match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(limit),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("could not read the request body: {e}"),
            );
        }
    };
    // Without the message store, a receipt no trigger can match is checked
    // but never built into a `Value`: building it is most of its cost.
    let needed = match &app.queue {
        Some(_) => Ok(true),
        None => app.dispatcher.may_match(&bytes),
    };
    let parsed = needed.and_then(|needed| {
        needed
            .then(|| serde_json::from_slice::<Value>(&bytes))
            .transpose()
    });
    let (message, jobs) = match parsed {
        Ok(Some(message)) => {
            let jobs = app.dispatcher.matching_jobs(&message);
            (message, jobs)
        }
        // Not parsed: the store is off and no job can match.
        Ok(None) => (Value::Null, Vec::new()),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("the body is not valid JSON: {e}"),
            );
        }
    };
    let names: Vec<String> = jobs.iter().map(|j| j.name.clone()).collect();
    info!(matched = ?names, bytes = bytes.len(), "receipt");
    app.activity.receipt();
    let sync = app.endpoint_style == EndpointStyle::Sync;
    let Some(queue) = &app.queue else {
        // Not durable: run straight away.
        let runs = app.dispatcher.receive(&message, &jobs, None);
        if !sync {
            return accepted(&names, None);
        }
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
        return finished(reports);
    };
    let idempotency_key = req_key.or_else(|| body_key(app, &message));
    let text = String::from_utf8_lossy(&bytes).into_owned();
    // Boxed, so that a receipt that is not stored does not carry its space.
    match Box::pin(queue.submit(text, message, "inbox", idempotency_key, sync)).await {
        Err(f) => {
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
        Ok((Submitted::Duplicate(id), _)) => {
            let mut res = accepted(&names, Some(&id));
            res.headers_mut()
                .insert("idempotent-replay", HeaderValue::from_static("true"));
            res
        }
        Ok((Submitted::New(id), None)) => accepted(&names, Some(&id)),
        Ok((Submitted::New(id), Some(first_attempt))) => match first_attempt.await {
            Ok(reports) => finished(reports),
            // Stored but not run before the service stopped: it will run later.
            Err(_) => accepted(&names, Some(&id)),
        },
    }
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

fn accepted_jobs(names: &[String]) -> Response<Body> {
    // A typed body: no JSON map is built.
    #[derive(Serialize)]
    struct Meta {
        message: &'static str,
    }
    #[derive(Serialize)]
    struct Accepted<'a> {
        meta: Meta,
        data: &'a [String],
        errors: [(); 0],
    }
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
    let jobs: Vec<Value> = reports
        .into_iter()
        .map(|r| json!({ "job": r.job, "run_id": r.run_id, "exit_code": r.exit_code, "log": r.log, "state": r.state }))
        .collect();
    json(
        status,
        &json!({ "success": success, "match_count": jobs.len(), "jobs": jobs }),
    )
}

/// The configured body field's value, as text, when the project names one.
fn body_key(app: &App, message: &Value) -> Option<String> {
    let field = app.dispatcher.project().inbox.idempotency_field.as_ref()?;
    match message.get(field)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn too_large(limit: usize) -> Response<Body> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than the limit of {limit} bytes ([inbox] max_body_bytes)"),
    )
}

/// `application/json`, `text/json` or any `+json` type, parameters ignored.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    // Compared in place: this runs on every receipt.
    let ends_with_json = essence.len() >= 5
        && essence.is_char_boundary(essence.len() - 5)
        && essence[essence.len() - 5..].eq_ignore_ascii_case("+json");
    essence.eq_ignore_ascii_case("application/json")
        || essence.eq_ignore_ascii_case("text/json")
        || ends_with_json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/vnd.api+json",
            "APPLICATION/LD+JSON ; charset=utf-8",
            "text/json",
        ] {
            assert!(super::is_json(ok), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/xml",
            "json",
            "+jsonx",
            "été+jso",
            "",
        ] {
            assert!(!super::is_json(bad), "{bad}");
        }
    }

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
