//! `GET /api/library?adaptor=&version=&helper=&q=&limit=`: the jobs
//! library's entries that match, best first (see [`crate::library`]).
//!
//! Bad parameters are a 400 naming each of them; the figures come from one
//! grouped read of the run records. Its answer holds expressions and
//! figures only: no state, receipt, log line or credential.

use hyper::{Response, StatusCode};
use serde_json::json;

use super::{App, Body, ErrorBody, RunStoreFailed, json};
use crate::library::{Facet, Found, Query, WINDOW_DAYS};

/// `GET /api/library/helpers`: what the dashboard offers to choose from.
#[utoipa::path(get, path = "/api/library/helpers", tag = "library",
    responses((status = 200, description = "Each adaptor in the library, with how many of its expressions call each helper.", body = [Facet])))]
pub fn helpers(app: &App) -> Response<Body> {
    json(StatusCode::OK, &app.library.facets())
}

/// `GET /api/library`: readable without the admin key only with
/// `[library] public = true`.
#[utoipa::path(get, path = "/api/library", tag = "library",
    params(
        ("adaptor" = Option<String>, Query, description = "An adaptor's package name; `common` and `language-common` mean `@openfn/language-common`."),
        ("version" = Option<String>, Query, description = "A semver range the adaptor's version must match, e.g. `^3` or `>=3.1 <4`."),
        ("helper" = Option<String>, Query, description = "Only expressions that call this helper of the adaptor."),
        ("q" = Option<String>, Query, description = "Text the expression contains (case-insensitive)."),
        ("origin" = Option<String>, Query, description = "Only entries from there: `self` (this deployment) or a remote's URL."),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 100, description = "At most this many (default 10)."),
    ),
    responses(
        (status = 200, description = "The matching expressions, best first.", body = [Found]),
        (status = 400, description = "Bad parameters, each named (an unknown helper with the nearest real ones).", body = ErrorBody),
        RunStoreFailed,
    ))]
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
