//! The JSON API: jobs, job states, runs, stored receipts and plugins.
//!
//! States come from the store, which only ever holds them without
//! `configuration`; this module adds nothing secret on its way out.

use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use super::{App, Body, error, json};
use crate::project::TriggerKind;
use crate::queue::RetryError;
use crate::storage::{ReceiptStatus, RunFilter, RunStatus, StorageError};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

/// How many of a job's latest finished runs its `success_rate` counts.
const RECENT_RUNS: u32 = 100;

/// `GET /api/jobs`: each job's configuration, newest run and recent success rate.
pub async fn jobs(app: &App) -> Response<Body> {
    let p = app.dispatcher.project();
    let names: Vec<String> = p.jobs.keys().cloned().collect();
    let health = match app.dispatcher.runs().job_health(names, RECENT_RUNS).await {
        Ok(h) => h,
        Err(e) => return store_failed(e),
    };
    let jobs: Vec<Value> = p
        .jobs
        .values()
        .zip(health)
        .map(|(job, health)| {
            let first = &job.triggers[0];
            let kind = &p.triggers[first].kind;
            let detail = trigger_detail(&p.triggers[first]);
            let rate =
                (health.finished > 0).then(|| health.succeeded as f64 / health.finished as f64);
            json!({
                "name": job.name,
                "adaptor": job.adaptor.to_string(),
                "trigger": first,
                "triggers": job.triggers.iter().map(|t| trigger_detail(&p.triggers[t])).collect::<Vec<_>>(),
                "trigger_kind": kind.label(),
                "trigger_detail": detail,
                "has_credential": job.credential.is_some(),
                "timeout_ms": p.timeout_of(job).as_millis() as u64,
                "last_run": health.last_run,
                "success_rate": rate,
                "recent_runs": health.finished,
            })
        })
        .collect();
    json(StatusCode::OK, &jobs)
}

/// What a trigger is, for `GET /api/jobs`: its kind's key and value, plus
/// `name`, `enabled` and a flow's `condition`.
fn trigger_detail(trigger: &crate::project::Trigger) -> Value {
    let mut detail = match &trigger.kind {
        TriggerKind::Criteria(c) => json!({ "criteria": c }),
        TriggerKind::Cron {
            expression, cursor, ..
        } => json!({ "cron": expression, "cursor": cursor }),
        TriggerKind::Webhook { path, auth, reply } => json!({
            "webhook": path,
            "own_auth": !auth.is_empty(),
            "reply": match reply {
                crate::project::Reply::BeforeStart => "before_start",
                crate::project::Reply::AfterCompletion { .. } => "after_completion",
            },
        }),
        TriggerKind::Success(up) => json!({ "success": up }),
        TriggerKind::Failure(up) => json!({ "failure": up }),
        TriggerKind::Always(up) => json!({ "always": up }),
    };
    detail["name"] = json!(trigger.name);
    detail["enabled"] = json!(trigger.enabled);
    if let Some(c) = &trigger.condition {
        detail["condition"] = json!(c);
    }
    detail
}

pub async fn job_state(app: &App, name: &str) -> Response<Body> {
    if !app.dispatcher.project().jobs.contains_key(name) {
        return error(StatusCode::NOT_FOUND, format!("no job named `{name}`"));
    }
    match app.dispatcher.runs().job_state(name).await {
        Ok(Some(state)) => json(StatusCode::OK, &state),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("job `{name}` has no successful run yet"),
        ),
        Err(e) => store_failed(e),
    }
}

pub async fn runs(app: &App, query: Option<&str>) -> Response<Body> {
    let mut filter = RunFilter {
        limit: DEFAULT_LIMIT,
        ..Default::default()
    };
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "job" if !value.is_empty() => filter.job = Some(value.into_owned()),
            "status" if !value.is_empty() => match RunStatus::parse(&value) {
                Some(s) => filter.status = Some(s),
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("status `{value}` is not one of running, success, failure"),
                    );
                }
            },
            "limit" if !value.is_empty() => match parse_limit(&value) {
                Ok(n) => filter.limit = n,
                Err(why) => return error(StatusCode::BAD_REQUEST, why),
            },
            "job" | "status" | "limit" => {}
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query parameter `{other}`; use job, status, limit"),
                );
            }
        }
    }
    match app.dispatcher.runs().list_runs(filter).await {
        Ok(runs) => json(StatusCode::OK, &runs),
        Err(e) => store_failed(e),
    }
}

pub async fn run(app: &App, id: &str) -> Response<Body> {
    match app.dispatcher.runs().run(id).await {
        Ok(Some(run)) => json(StatusCode::OK, &run),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no run with id `{id}`")),
        Err(e) => store_failed(e),
    }
}

/// `POST /api/runs/{id}/retry`: the same job, trigger and input, as a new run.
pub async fn retry_run(app: &App, id: &str) -> Response<Body> {
    let found = match app.dispatcher.runs().run_input(id).await {
        Ok(found) => found,
        Err(e) => return store_failed(e),
    };
    let Some((job, trigger, input)) = found else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no run with id `{id}` (or it was recorded before inputs were kept)"),
        );
    };
    let Some(job) = app.dispatcher.project().jobs.get(&job).cloned() else {
        return error(
            StatusCode::CONFLICT,
            format!("job `{job}` of run `{id}` is no longer in the project"),
        );
    };
    let (run_id, _) = app.dispatcher.rerun(job, trigger, input);
    json(
        StatusCode::ACCEPTED,
        &json!({ "retry_of": id, "run_id": run_id }),
    )
}

/// `GET /api/messages?status=pending|leased|done|dead&limit=`
pub async fn messages(app: &App, query: Option<&str>) -> Response<Body> {
    let Some(queue) = &app.queue else {
        return error(
            StatusCode::NOT_FOUND,
            "receipts are not stored: [inbox] durable = false",
        );
    };
    let (mut status, mut limit) = (ReceiptStatus::Pending, DEFAULT_LIMIT);
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "status" => match ReceiptStatus::parse(&value) {
                Some(s) => status = s,
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("status `{value}` is not one of pending, leased, done, dead"),
                    );
                }
            },
            "limit" => match parse_limit(&value) {
                Ok(n) => limit = n,
                Err(why) => return error(StatusCode::BAD_REQUEST, why),
            },
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query parameter `{other}`; use status, limit"),
                );
            }
        }
    }
    match queue.list(status, limit as u32).await {
        Ok(messages) => json(StatusCode::OK, &messages),
        Err(e) => unavailable(&e.to_string()),
    }
}

/// `POST /api/messages/{id}/retry`: a done or dead receipt, delivered again.
pub async fn retry_message(app: &App, id: &str) -> Response<Body> {
    let Some(queue) = &app.queue else {
        return error(
            StatusCode::NOT_FOUND,
            "receipts are not stored: [inbox] durable = false",
        );
    };
    match queue.retry(id).await {
        Ok(()) => json(
            StatusCode::ACCEPTED,
            &json!({ "id": id, "status": "pending" }),
        ),
        Err(e @ RetryError::NotFound(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ RetryError::NotFinished(..)) => error(StatusCode::CONFLICT, e.to_string()),
        Err(RetryError::Store(m)) => unavailable(&m),
    }
}

fn unavailable(why: &str) -> Response<Body> {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the receipt store is unavailable: {why}"),
    )
}

pub fn plugins(app: &App) -> Response<Body> {
    let reports = app
        .plugins
        .as_ref()
        .map(|p| p.reports())
        .unwrap_or_default();
    json(StatusCode::OK, &reports)
}

/// A `limit` query value: 1 to [`MAX_LIMIT`], or why it is not.
fn parse_limit(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(format!(
            "limit `{value}` must be a number from 1 to {MAX_LIMIT}"
        )),
    }
}

pub(super) fn store_failed(e: StorageError) -> Response<Body> {
    tracing::error!(cause = %e, "run store read failed");
    match e {
        // A database gone for a moment is the client's to wait out.
        StorageError::Unavailable { .. } => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the run store is unavailable; try again later",
        ),
        StorageError::Failed(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the run store could not be read; see the service log",
        ),
    }
}
