//! The JSON API: jobs, job states, runs, stored receipts and plugins.
//!
//! States come from the store, which only ever holds them without
//! `configuration`; this module adds nothing secret on its way out.

use hyper::{Response, StatusCode};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{App, Body, ErrorBody, RunStoreFailed, error, json};
use crate::plugins::Report as PluginReport;
use crate::project::TriggerKind;
use crate::queue::{MessageView, RetryError};
use crate::storage::{
    LastRun, ReceiptStatus, RunDetail, RunFilter, RunStatus, RunSummary, StorageError,
};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

/// How many of a job's latest finished runs its `success_rate` counts.
const RECENT_RUNS: u32 = 100;

/// One job of `GET /api/jobs`: its configuration (no credential value),
/// newest run and recent success rate.
#[derive(Serialize, ToSchema)]
pub struct JobView<'a> {
    name: &'a str,
    /// The adaptor's package spec, e.g. `@openfn/language-common@3.3.4`.
    adaptor: String,
    /// The first of its triggers.
    trigger: &'a str,
    /// The first trigger's kind: `criteria`, `cron`, `webhook`, `success`,
    /// `failure` or `always`.
    trigger_kind: &'static str,
    trigger_detail: TriggerDetail<'a>,
    /// Every trigger that starts it (a job may name several).
    triggers: Vec<TriggerDetail<'a>>,
    has_credential: bool,
    timeout_ms: u64,
    last_run: Option<LastRun>,
    /// Of the last 100 finished runs; `null` before the first.
    success_rate: Option<f64>,
    recent_runs: u64,
}

/// What fires a job: one key named after the trigger's kind, its name,
/// whether it is enabled, and what its kind adds.
#[derive(Serialize, ToSchema)]
pub struct TriggerDetail<'a> {
    name: &'a str,
    enabled: bool,
    #[serde(flatten)]
    kind: KindDetail<'a>,
    /// A cron trigger's cursor job, whose last successful final state
    /// starts each tick.
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
    /// A webhook with keys of its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    own_auth: Option<bool>,
    /// A webhook's reply mode: `before_start` or `after_completion`.
    #[serde(skip_serializing_if = "Option::is_none")]
    reply: Option<&'static str>,
    /// A flow's JavaScript condition over the state handed on.
    #[serde(skip_serializing_if = "Option::is_none")]
    condition: Option<&'a str>,
}

/// The trigger's kind, as its one key.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum KindDetail<'a> {
    /// The JSON a receipt must contain.
    Criteria(Value),
    /// The cron expression.
    Cron(&'a str),
    /// The path under `/i/`.
    Webhook(&'a str),
    /// The upstream job whose success fires it.
    Success(&'a str),
    /// The upstream job whose failure fires it.
    Failure(&'a str),
    /// The upstream job any of whose runs fires it.
    Always(&'a str),
}

/// What a trigger is, for `GET /api/jobs`.
fn trigger_detail(trigger: &crate::project::Trigger) -> TriggerDetail<'_> {
    let (mut cursor, mut own_auth, mut reply) = (None, None, None);
    let kind = match &trigger.kind {
        TriggerKind::Criteria(c) => KindDetail::Criteria(c.clone()),
        TriggerKind::Cron {
            expression,
            cursor: c,
            ..
        } => {
            cursor = c.as_deref();
            KindDetail::Cron(expression)
        }
        TriggerKind::Webhook {
            path,
            auth,
            reply: r,
        } => {
            own_auth = Some(!auth.is_empty());
            reply = Some(match r {
                crate::project::Reply::BeforeStart => "before_start",
                crate::project::Reply::AfterCompletion { .. } => "after_completion",
            });
            KindDetail::Webhook(path)
        }
        TriggerKind::Success(up) => KindDetail::Success(up),
        TriggerKind::Failure(up) => KindDetail::Failure(up),
        TriggerKind::Always(up) => KindDetail::Always(up),
    };
    TriggerDetail {
        name: &trigger.name,
        enabled: trigger.enabled,
        kind,
        cursor,
        own_auth,
        reply,
        condition: trigger.condition.as_deref(),
    }
}

/// `POST /api/runs/{id}/retry`: the new run.
#[derive(Serialize, ToSchema)]
pub struct RetriedRun<'a> {
    retry_of: &'a str,
    run_id: String,
}

/// `POST /api/messages/{id}/retry`: the receipt, pending again.
#[derive(Serialize, ToSchema)]
pub struct RetriedMessage<'a> {
    id: &'a str,
    /// Always `pending`.
    status: &'static str,
}

/// `GET /api/jobs`: each job's configuration, newest run and recent success rate.
#[utoipa::path(get, path = "/api/jobs", tag = "api",
    responses(
        (status = 200, description = "Every job of the project.", body = [JobView]),
        RunStoreFailed,
    ))]
pub async fn jobs(app: &App) -> Response<Body> {
    let p = app.dispatcher.project();
    let names: Vec<String> = p.jobs.keys().cloned().collect();
    let health = match app.dispatcher.runs().job_health(names, RECENT_RUNS).await {
        Ok(h) => h,
        Err(e) => return store_failed(e),
    };
    let jobs: Vec<JobView> = p
        .jobs
        .values()
        .zip(health)
        .map(|(job, health)| {
            let first = &job.triggers[0];
            JobView {
                name: &job.name,
                adaptor: job.adaptor.to_string(),
                trigger: first,
                trigger_kind: p.triggers[first].kind.label(),
                trigger_detail: trigger_detail(&p.triggers[first]),
                triggers: job
                    .triggers
                    .iter()
                    .map(|t| trigger_detail(&p.triggers[t]))
                    .collect(),
                has_credential: job.credential.is_some(),
                timeout_ms: p.timeout_of(job).as_millis() as u64,
                last_run: health.last_run,
                success_rate: (health.finished > 0)
                    .then(|| health.succeeded as f64 / health.finished as f64),
                recent_runs: health.finished,
            }
        })
        .collect();
    json(StatusCode::OK, &jobs)
}

/// `GET /api/jobs/{name}/state`: the state the job's last successful run
/// left (without `configuration`).
#[utoipa::path(get, path = "/api/jobs/{name}/state", tag = "api",
    params(("name" = String, Path, description = "The job's name.")),
    responses(
        (status = 200, description = "The job's state.", body = Object),
        (status = 404, description = "No such job, or no successful run yet.", body = ErrorBody),
        RunStoreFailed,
    ))]
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

/// `GET /api/runs?job=&status=&upstream=&limit=`: the newest runs first.
#[utoipa::path(get, path = "/api/runs", tag = "api",
    params(
        ("job" = Option<String>, Query, description = "Only this job's runs."),
        ("status" = Option<RunStatus>, Query, description = "Only runs in this status."),
        ("upstream" = Option<String>, Query, description = "Only the runs this run's end started (its flow runs)."),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "At most this many (default 50)."),
    ),
    responses(
        (status = 200, description = "The runs, newest first.", body = [RunSummary]),
        (status = 400, description = "A bad or unknown parameter.", body = ErrorBody),
        RunStoreFailed,
    ))]
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
            "upstream" if !value.is_empty() => filter.upstream = Some(value.into_owned()),
            "limit" if !value.is_empty() => match parse_limit(&value) {
                Ok(n) => filter.limit = n,
                Err(why) => return error(StatusCode::BAD_REQUEST, why),
            },
            "job" | "status" | "upstream" | "limit" => {}
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query parameter `{other}`; use job, status, upstream, limit"),
                );
            }
        }
    }
    match app.dispatcher.runs().list_runs(filter).await {
        Ok(runs) => json(StatusCode::OK, &runs),
        Err(e) => store_failed(e),
    }
}

/// `GET /api/runs/{id}`: one run with its log and final state.
#[utoipa::path(get, path = "/api/runs/{id}", tag = "api",
    params(("id" = String, Path, description = "The run's id.")),
    responses(
        (status = 200, description = "The run.", body = RunDetail),
        (status = 404, description = "No run with that id.", body = ErrorBody),
        RunStoreFailed,
    ))]
pub async fn run(app: &App, id: &str) -> Response<Body> {
    match app.dispatcher.runs().run(id).await {
        Ok(Some(run)) => json(StatusCode::OK, &run),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no run with id `{id}`")),
        Err(e) => store_failed(e),
    }
}

/// `POST /api/runs/{id}/retry`: the same job, trigger and input, as a new run.
#[utoipa::path(post, path = "/api/runs/{id}/retry", tag = "api",
    params(("id" = String, Path, description = "The run to run again.")),
    responses(
        (status = 202, description = "The new run has started.", body = RetriedRun),
        (status = 404, description = "No run with that id (or no input kept).", body = ErrorBody),
        (status = 409, description = "Its job is no longer in the project.", body = ErrorBody),
        RunStoreFailed,
    ))]
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
        &RetriedRun {
            retry_of: id,
            run_id,
        },
    )
}

/// `GET /api/messages?status=pending|leased|done|dead&limit=`
#[utoipa::path(get, path = "/api/messages", tag = "api",
    params(
        ("status" = Option<String>, Query, description = "`pending` (the default), `leased`, `done` or `dead`."),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 1000, description = "At most this many (default 50)."),
    ),
    responses(
        (status = 200, description = "The stored receipts in that status.", body = [MessageView]),
        (status = 400, description = "A bad or unknown parameter.", body = ErrorBody),
        (status = 404, description = "Receipts are not stored (`[inbox] durable = false`).", body = ErrorBody),
        (status = 503, description = "The receipt store is unavailable.", body = ErrorBody),
    ))]
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
#[utoipa::path(post, path = "/api/messages/{id}/retry", tag = "api",
    params(("id" = String, Path, description = "The stored receipt's id.")),
    responses(
        (status = 202, description = "It is pending again.", body = RetriedMessage),
        (status = 404, description = "No such receipt, or receipts are not stored.", body = ErrorBody),
        (status = 409, description = "It is not done or dead yet.", body = ErrorBody),
        (status = 503, description = "The receipt store is unavailable.", body = ErrorBody),
    ))]
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
            &RetriedMessage {
                id,
                status: "pending",
            },
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

/// `GET /api/plugins`: each plugin's status and figures.
#[utoipa::path(get, path = "/api/plugins", tag = "api",
    responses((status = 200, description = "Every plugin, loaded or failed.", body = [PluginReport])))]
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
