//! `GET /api/library?adaptor=&version=&helper=&q=&limit=`: the jobs
//! library's entries that match, best first (see [`crate::library`]).
//!
//! Bad parameters are a 400 naming each of them; the figures come from one
//! grouped read of the run records. Its answer holds expressions and
//! figures only: no state, receipt, log line or credential.

use hyper::{Response, StatusCode};
use serde_json::json;

use super::{App, Body, json};
use crate::library::{Query, WINDOW_DAYS};

pub async fn search(app: &App, query: Option<&str>) -> Response<Body> {
    let query = match Query::parse(query, &app.library) {
        Ok(q) => q,
        Err(errors) => return json(StatusCode::BAD_REQUEST, &json!({ "errors": errors })),
    };
    let window_ms = WINDOW_DAYS as u64 * 24 * 3600 * 1000;
    let since = crate::clock::rfc3339(crate::clock::now_ms().saturating_sub(window_ms));
    match app.dispatcher.runs().runs_by_job_since(&since).await {
        Ok(runs) => json(StatusCode::OK, &app.library.search(&query, &runs)),
        Err(e) => super::api::store_failed(e),
    }
}
