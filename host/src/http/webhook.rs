//! `POST /i/<path>`: a webhook trigger's own door (Lightning's URL shape).
//!
//! The path names one enabled `webhook` trigger; every receipt there starts
//! that trigger's jobs, without criteria. The body goes through the same
//! checks and the same [`crate::receipt::Door`] as `/inbox` (limits,
//! decoding, the durable store), with `webhook:<trigger>` as its source, so
//! the dispatcher, not this module, decides which jobs run. This module
//! finds the trigger, checks its own keys ([`super::auth`]), and answers
//! in its reply mode: at once (202), or after the whole workflow (its runs
//! and every flow after them) with the last step's final state, under a
//! deadline. It never answers with `configuration`, which runs never keep.

use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};

use super::inbox::{Entrance, answer, status_of, take};
use super::{App, Body, ErrorBody, Peer, error, json};
use crate::dispatch::{RunReport, WEBHOOK_SOURCE, Watch};
use crate::project::Reply;
use crate::receipt::{Options, Outcome, Purpose, Taken};

/// `POST /i/{path}`: a webhook trigger's receipts.
#[utoipa::path(post, path = "/i/{path}", tag = "inbox",
    params(("path" = String, Path, description = "The webhook trigger's `webhook` path.")),
    request_body(description = "The receipt, in any format `/inbox` reads.",
        content(
            (Object = "application/json"),
            (Object = "application/x-www-form-urlencoded"),
            (Object = "multipart/form-data"),
            (String = "application/xml"),
            (String = "text/xml"),
        )),
    responses(
        (status = 202, description = "Taken (`reply = \"before_start\"`, or past `reply_timeout`); the trigger's runs have started or will.", body = super::inbox::Accepted),
        (status = 201, description = "`reply = \"after_completion\"`: every run of the workflow succeeded; the last step's final state (the status is the trigger's `success_code`, 201 unless set).", body = Object),
        (status = 422, description = "`reply = \"after_completion\"`: a run of the workflow failed (the trigger's `failure_code`, 422 unless set).", body = Object),
        (status = 401, description = "The webhook's own keys, `API_KEY` or `ADMIN_API_KEY` were needed and none was valid.", body = ErrorBody),
        (status = 404, description = "No enabled webhook trigger is served at this path.", body = ErrorBody),
        super::inbox::ReceiptRefused,
    ))]
pub async fn receive(app: &App, req: Request<Incoming>, peer: &Peer, path: &str) -> Response<Body> {
    let Some(hook) = app.dispatcher.webhook(path) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no enabled webhook trigger is served at /i/{path}"),
        );
    };
    if let Some(refused) = app.api_keys.webhook_refusal(hook.auth, req.headers()) {
        return refused;
    }
    let (parts, body) = req.into_parts();
    let source = format!("{WEBHOOK_SOURCE}{}", hook.trigger);
    let arrival = Entrance {
        source: &source,
        purpose: Purpose::Inbox,
        peer,
    };
    let (watch, reports) = match hook.reply {
        Reply::BeforeStart => (None, None),
        Reply::AfterCompletion { .. } => {
            let (watch, reports) = Watch::new();
            (Some(watch), Some(reports))
        }
    };
    let options = Options {
        watch,
        ..Options::default()
    };
    match (
        take(app, &parts, body, arrival, options).await,
        hook.reply,
        reports,
    ) {
        (Err(refused), ..) => refused,
        (
            Ok(Taken {
                jobs,
                outcome: outcome @ (Outcome::Started(_) | Outcome::Stored { .. }),
            }),
            Reply::AfterCompletion {
                success_code,
                failure_code,
                timeout,
            },
            Some(reports),
        ) if !jobs.is_empty() => {
            let id = match &outcome {
                Outcome::Stored { id, .. } => Some(id.clone()),
                _ => None,
            };
            // The runs go on whatever happens to this request.
            drop(outcome);
            let codes = (*success_code, *failure_code);
            after_completion(&jobs, id, reports, codes, *timeout).await
        }
        (Ok(Taken { jobs, outcome }), ..) => answer(&jobs, outcome, false).await,
    }
}

/// Waits for the workflow's last run, up to `timeout`: then the final state
/// of the step that finished last, with `success_code` when every run of
/// the workflow succeeded and `failure_code` otherwise. Past the deadline,
/// or when the service stops first, the `/inbox` 202 with a note: the runs
/// go on, and their outcome is in `/api/runs`.
async fn after_completion(
    jobs: &[String],
    id: Option<String>,
    mut reports: tokio::sync::mpsc::UnboundedReceiver<RunReport>,
    (success_code, failure_code): (u16, u16),
    timeout: Duration,
) -> Response<Body> {
    let mut all: Vec<RunReport> = Vec::new();
    let finished = tokio::time::timeout(timeout, async {
        while let Some(report) = reports.recv().await {
            all.push(report);
        }
    })
    .await
    .is_ok();
    let Some(last) = all.last().filter(|_| finished) else {
        let message = if finished {
            "Data accepted; the workflow had not run when the service began to stop.".to_string()
        } else {
            format!(
                "Data accepted; the workflow is still running after {} (reply_timeout): its runs go on, see /api/runs.",
                humantime::format_duration(timeout)
            )
        };
        let mut res = json(
            StatusCode::ACCEPTED,
            &serde_json::json!({ "meta": { "message": message }, "data": jobs, "errors": [] }),
        );
        if let Some(id) = id.and_then(|i| HeaderValue::from_str(&i).ok()) {
            res.headers_mut().insert("x-message-id", id);
        }
        return res;
    };
    let success = all.iter().all(|r| r.success);
    let code = if success { success_code } else { failure_code };
    let body = match &last.state {
        Some(state) if last.success => state.clone(),
        _ => serde_json::json!({
            "errors": all
                .iter()
                .filter(|r| !r.success)
                .map(|r| serde_json::json!({
                    "job": r.job,
                    "run_id": r.run_id,
                    "reason": r.failure.as_ref().map(|f| f.reason.as_str()),
                }))
                .collect::<Vec<_>>(),
        }),
    };
    let mut res = json(status_of(code), &body);
    let runs: Vec<&str> = all.iter().map(|r| r.run_id.as_str()).collect();
    if let Ok(v) = HeaderValue::from_str(&runs.join(",")) {
        res.headers_mut().insert("x-run-ids", v);
    }
    res
}
