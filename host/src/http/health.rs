//! `GET /healthz` (the process answers) and `GET /readyz` (it can take work).
//!
//! The port only opens once the project is loaded, the packages installed and
//! the store open, so readiness is mostly about what can change afterwards:
//! shutdown has begun, the message store plugin is disabled after repeated
//! failures, or the database cannot be reached. Plugins still compiling
//! since start-up are named (`plugins_loading`) but do not make it unready. Both endpoints are open without an API key (orchestrator probes
//! carry none) and so must never say more than up or down and why.

use hyper::{Response, StatusCode};
use serde::Serialize;
use utoipa::ToSchema;

use super::{App, Body, json};

/// `GET /healthz`.
#[derive(Serialize, ToSchema)]
pub struct Live {
    /// Always `ok`.
    status: &'static str,
}

/// `GET /readyz`.
#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// `ready`, `stopping` or `not ready`.
    status: &'static str,
    checks: ReadyChecks,
}

#[derive(Serialize, ToSchema)]
pub struct ReadyChecks {
    /// Always `loaded`: the port opens only once it is.
    project: &'static str,
    /// Always `installed`.
    packages: &'static str,
    /// `open`, `unavailable` or `not used`.
    store: &'static str,
    /// Plugins still compiling since start-up (the service takes work
    /// meanwhile; each becomes active when compiled).
    plugins_loading: Vec<String>,
    shutting_down: bool,
}

#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process answers.", body = Live)))]
pub fn live() -> Response<Body> {
    json(StatusCode::OK, &Live { status: "ok" })
}

#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "It can take work.", body = Ready),
        (status = 503, description = "Shutting down, or the store is unavailable.", body = Ready),
    ))]
pub fn ready(app: &App) -> Response<Body> {
    let stopping = app.stopping.is_cancelled();
    let storage = app.dispatcher.storage();
    let store = match (&app.queue, &app.plugins) {
        // A database: what its probe last found.
        _ if !storage.reachable.get() => "unavailable",
        (Some(_), _) if storage.shared => "open",
        (None, _) => "not used",
        (Some(_), Some(plugins)) => {
            let name = &app.dispatcher.project().inbox.store;
            match plugins.get(name).map(|p| p.status().status) {
                Some("active") => "open",
                _ => "unavailable",
            }
        }
        (Some(_), None) => "open",
    };
    let ready = !stopping && store != "unavailable";
    // Plugins still compiling since start-up: the service takes work
    // meanwhile (they become active when compiled).
    let loading: Vec<String> = app
        .plugins
        .as_ref()
        .map(|p| p.loading().into_keys().collect())
        .unwrap_or_default();
    json(
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &Ready {
            status: if ready {
                "ready"
            } else if stopping {
                "stopping"
            } else {
                "not ready"
            },
            checks: ReadyChecks {
                project: "loaded",
                packages: "installed",
                store,
                plugins_loading: loading,
                shutting_down: stopping,
            },
        },
    )
}
