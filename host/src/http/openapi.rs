//! `GET /api/openapi.json`: the OpenAPI 3.1 document of the whole HTTP
//! API (inbox, OpenRosa submission, health, metrics, the JSON API and the
//! jobs library), generated with utoipa from the handlers' own
//! `#[utoipa::path]` annotations and the types their answers serialize.
//!
//! Which routes need a key is not written in the annotations: it is taken
//! from the same function the router asks ([`super::scope`]) and from the
//! keys this deployment has, so the document says what this deployment
//! does (a route whose key is not configured is open). The document is
//! built once per process and served to anyone: it describes the API and
//! must never hold a key, a state, a receipt or anything else of the
//! deployment's data.

use std::sync::OnceLock;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder};
use utoipa::openapi::security::{SecurityRequirement, SecurityScheme};
use utoipa::openapi::{PathItem, RefOr, ResponseBuilder};

use super::{App, Body, ErrorBody, auth};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "OpenFn microservice",
        description = "Receives receipts over HTTP, matches them against triggers and runs OpenFn jobs; its runs, stored receipts, plugins and jobs library through a JSON API.",
    ),
    paths(
        super::inbox::receive,
        super::webhook::receive,
        super::openrosa::head,
        super::openrosa::submit,
        super::health::live,
        super::health::ready,
        super::metrics::scrape,
        super::stats::stats,
        super::api::jobs,
        super::api::job_state,
        super::api::runs,
        super::api::run,
        super::api::retry_run,
        super::api::messages,
        super::api::retry_message,
        super::api::plugins,
        super::library::search,
        super::library::helpers,
        document,
    ),
    components(schemas(ErrorBody)),
    tags(
        (name = "inbox", description = "Receipts in: the inbox key (`API_KEY`) or the admin key."),
        (name = "openrosa", description = "The OpenRosa Form Submission API (ODK Collect and the like); the inbox key."),
        (name = "health", description = "Probes; open."),
        (name = "metrics", description = "Prometheus metrics; the admin key (`ADMIN_API_KEY`)."),
        (name = "api", description = "Runs, job states, stored receipts, plugins; the admin key."),
        (name = "library", description = "The jobs library; the admin key unless `[library] public = true`."),
    )
)]
struct Doc;

/// `GET /api/openapi.json`.
#[utoipa::path(get, path = "/api/openapi.json", tag = "api",
    responses((status = 200, description = "This document.", body = Object)))]
pub fn document(app: &App) -> Response<Body> {
    static DOC: OnceLock<Bytes> = OnceLock::new();
    let bytes = DOC.get_or_init(|| Bytes::from(build(app).to_json().unwrap_or_default()));
    let mut res = Response::new(Full::new(bytes.clone()));
    *res.status_mut() = StatusCode::OK;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// The three ways a key may be presented (see [`auth`]).
const SCHEMES: [&str; 3] = ["api_key", "bearer", "basic"];

/// The document, with each operation's security as this deployment has it.
fn build(app: &App) -> utoipa::openapi::OpenApi {
    let mut doc = Doc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        SCHEMES[0],
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
    );
    components.add_security_scheme(
        SCHEMES[1],
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    components.add_security_scheme(
        SCHEMES[2],
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let guarded = match super::scope(app, &segs) {
            auth::Scope::Open => false,
            auth::Scope::Inbox => app.api_keys.inbox_configured(),
            auth::Scope::Admin => app.api_keys.admin_configured(),
        };
        for op in operations(item) {
            if guarded {
                op.security = Some(
                    SCHEMES
                        .iter()
                        .map(|s| SecurityRequirement::new(*s, Vec::<String>::new()))
                        .collect(),
                );
                op.responses.responses.insert(
                    "401".to_string(),
                    RefOr::T(
                        ResponseBuilder::new()
                            .description("No key, or not a valid one.")
                            .content(
                                "application/json",
                                utoipa::openapi::ContentBuilder::new()
                                    .schema(Some(utoipa::openapi::Ref::from_schema_name(
                                        "ErrorBody",
                                    )))
                                    .build(),
                            )
                            .build(),
                    ),
                );
            } else {
                op.security = None;
            }
        }
    }
    doc
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        item.get.as_mut(),
        item.head.as_mut(),
        item.post.as_mut(),
        item.put.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}
