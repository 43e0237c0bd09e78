//! The read-only JSON API: jobs, job states and runs.
//!
//! States come from the store, which only ever holds them without
//! `configuration`; this module adds nothing secret on its way out.

use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use super::{App, Body, error, json};
use crate::project::TriggerKind;
use crate::store::{RunFilter, RunStatus, StoreError};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

pub fn jobs(app: &App) -> Response<Body> {
    let p = app.dispatcher.project();
    let jobs: Vec<Value> = p
        .jobs
        .values()
        .map(|job| {
            let kind = &p.triggers[&job.trigger].kind;
            let detail = match kind {
                TriggerKind::Criteria(c) => json!({ "criteria": c }),
                TriggerKind::Cron { expression, .. } => json!({ "cron": expression }),
                TriggerKind::Success(up) => json!({ "success": up }),
                TriggerKind::Failure(up) => json!({ "failure": up }),
            };
            json!({
                "name": job.name,
                "adaptor": job.adaptor.to_string(),
                "trigger": job.trigger,
                "trigger_kind": kind.label(),
                "trigger_detail": detail,
                "has_credential": job.credential.is_some(),
                "timeout_ms": p.timeout_of(job).as_millis() as u64,
            })
        })
        .collect();
    json(StatusCode::OK, &jobs)
}

pub async fn job_state(app: &App, name: &str) -> Response<Body> {
    if !app.dispatcher.project().jobs.contains_key(name) {
        return error(StatusCode::NOT_FOUND, format!("no job named `{name}`"));
    }
    match app.dispatcher.store().job_state(name).await {
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
            "limit" if !value.is_empty() => match value.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => filter.limit = n,
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("limit `{value}` must be a number from 1 to {MAX_LIMIT}"),
                    );
                }
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
    match app.dispatcher.store().list_runs(filter).await {
        Ok(runs) => json(StatusCode::OK, &runs),
        Err(e) => store_failed(e),
    }
}

pub async fn run(app: &App, id: &str) -> Response<Body> {
    match app.dispatcher.store().run(id).await {
        Ok(Some(run)) => json(StatusCode::OK, &run),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no run with id `{id}`")),
        Err(e) => store_failed(e),
    }
}

fn store_failed(e: StoreError) -> Response<Body> {
    tracing::error!(cause = %e, "store read failed");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the run store could not be read; see the service log",
    )
}
