//! The HTTP server: accept loop, routing and JSON responses.
//!
//! Routes: `POST /inbox` ([`inbox`]), a webhook trigger's `POST /i/<path>`
//! ([`webhook`]), OpenRosa's `HEAD`/`POST /submission`
//! ([`openrosa`]), `GET /healthz` and `/readyz`
//! ([`health`]), `GET /metrics` ([`metrics`]), the JSON API under `/api`
//! ([`api`], [`stats`], [`library`]), the API's OpenAPI document
//! ([`openapi`]) and the dashboard's static page at `/`
//! ([`dashboard`]); [`auth`] checks API keys before any of them runs.
//! Every API answer is JSON, bad input is a 4xx with
//! `{"errors": [...]}`, and nothing a client sends can make this module
//! panic or answer 500 (only a failure of the service itself does).
//! [`connections`] bounds what a connection may take (the `[http]`
//! timeouts, `max_connections`) and closes connections at shutdown,
//! letting requests being served finish; `HEAD` is answered on every `GET`
//! route.

mod activity;
mod api;
mod auth;
mod connections;
mod dashboard;
mod health;
mod inbox;
mod library;
mod metrics;
mod minutes;
mod openapi;
mod openrosa;
pub mod stats;
mod webhook;

pub use auth::ApiKeys;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Either};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info_span, warn};

use crate::dispatch::Dispatcher;
use crate::plugins::PluginHost;
use crate::queue::Queue;
use crate::settings::EndpointStyle;

pub type Body = Full<Bytes>;

/// What every handler can reach.
pub struct App {
    pub dispatcher: Dispatcher,
    /// Where receipts go: decoded, matched, stored or run.
    pub door: crate::receipt::Door,
    pub endpoint_style: EndpointStyle,
    /// `None` in tests that run without a plugin host.
    pub plugins: Option<PluginHost>,
    /// The durable queue; `None` when `[inbox] durable = false`.
    pub queue: Option<Queue>,
    /// Cancelled when shutdown begins; `/readyz` then answers 503.
    pub stopping: CancellationToken,
    pub api_keys: ApiKeys,
    /// Per-minute figures for the dashboard's overview (`/api/stats`).
    pub activity: stats::Activity,
    /// The jobs library behind `/api/library`.
    pub library: Arc<crate::library::Catalog>,
}

/// The connection a request came on, as its receipts' arrival records
/// name it.
pub struct Peer {
    /// The peer's address, as `SocketAddr` displays it. Written out once
    /// per connection: formatting an address costs more than the rest of
    /// an arrival record.
    pub addr: Box<str>,
    /// The last arrival record written for this connection.
    pub written: crate::receipt::arrival::Written,
}

impl Peer {
    pub fn new(addr: std::net::SocketAddr) -> Peer {
        Peer {
            addr: addr.to_string().into_boxed_str(),
            written: Default::default(),
        }
    }
}

/// Serves until `stop` fires, then closes idle connections and waits up to
/// `grace` for requests being served.
pub async fn serve(listener: TcpListener, app: Arc<App>, stop: CancellationToken, grace: Duration) {
    let http = app.dispatcher.project().http.clone();
    let connections = connections::Connections::new(connections::Timeouts::of(&http));
    let mut limit = connections::Limit::new(http.max_connections);
    let mut builder = http1::Builder::new();
    // Timed by `connections` per phase instead (see there).
    builder.header_read_timeout(None);
    loop {
        let slot = tokio::select! {
            slot = limit.slot() => slot,
            _ = stop.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off, don't die.
                    warn!(cause = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let activity = activity::Activity::new();
        let app = app.clone();
        let peer_of_requests = Arc::new(Peer::new(peer));
        let served = activity.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let serving = served.begin();
            let span = info_span!("request", method = %req.method(), path = %req.uri().path());
            route(app.clone(), req, peer_of_requests.clone())
                .map(move |res| {
                    Ok::<_, Infallible>(res.map(|body| activity::Tracked::new(body, serving)))
                })
                .instrument(span)
        });
        let socket = TokioIo::new(activity::Io::new(stream, activity.clone()));
        let conn = builder.serve_connection(socket, service);
        connections.spawn(conn, activity, slot, move |ended| match ended {
            connections::Ended::Done => {}
            connections::Ended::Failed(e) => {
                debug!(%peer, cause = %e, "connection ended with an error")
            }
            why => debug!(%peer, ?why, "connection closed"),
        });
    }
    drop(listener);
    if !connections.shutdown(grace).await {
        warn!("open requests did not finish within the grace period");
    }
}

/// A request's answer, as a future. `POST /inbox`, the hottest route, is
/// told apart before the path is copied and split, and its future is the
/// request's own; any other route's is boxed, so that the largest of them
/// does not set the size of every request's future (hyper moves that whole
/// into a box of its own). Nothing here is an `async fn` taking the
/// request: each such layer would keep a copy of it in its future.
fn route(
    app: Arc<App>,
    req: Request<Incoming>,
    peer: Arc<Peer>,
) -> Either<impl Future<Output = Response<Body>> + Send, BoxFuture<'static, Response<Body>>> {
    if req.method() == Method::POST && req.uri().path() == "/inbox" {
        if let Some(refused) = refusal(&app, auth::Scope::Inbox, req.headers()) {
            return Either::Right(Box::pin(std::future::ready(refused)));
        }
        let (parts, body) = req.into_parts();
        return Either::Left(async move { post_inbox(&app, &parts, body, &peer).await });
    }
    Either::Right(Box::pin(async move { route_other(&app, req, &peer).await }))
}

async fn route_other(app: &App, req: Request<Incoming>, peer: &Peer) -> Response<Body> {
    let path = req.uri().path().to_string();
    // Borrowed unless a segment holds an escape: `/inbox` allocates nothing here.
    let segments: Vec<std::borrow::Cow<str>> = path
        .trim_matches('/')
        .split('/')
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy())
        .collect();
    let segs: Vec<&str> = segments.iter().map(|s| s.as_ref()).collect();
    let method = req.method().clone();
    let scope = scope(app, &segs);
    let refused = refusal(app, scope, req.headers());
    if let ["submission"] = segs.as_slice() {
        let res = match (refused, &method) {
            (Some(refused), _) => refused,
            (None, &Method::HEAD) => openrosa::head(),
            (None, &Method::POST) => {
                let res = openrosa::submit(app, req, peer).await;
                crate::metrics::get().receipt(metrics::outcome(&res));
                res
            }
            (None, _) => not_allowed(&method, &path, "HEAD, POST"),
        };
        // Every answer of an OpenRosa server, a 401 or 405 too.
        return openrosa::with_headers(app, res);
    }
    if let Some(refused) = refused {
        return refused;
    }
    // HEAD is answered as GET; hyper sends the headers (the length
    // included) and leaves the body out.
    let as_method = if method == Method::HEAD {
        Method::GET
    } else {
        method.clone()
    };
    match (&as_method, segs.as_slice()) {
        (&Method::POST, ["inbox"]) => {
            let (parts, body) = req.into_parts();
            post_inbox(app, &parts, body, peer).await
        }
        (&Method::POST, ["i", hook]) => {
            let res = webhook::receive(app, req, peer, hook).await;
            crate::metrics::get().receipt(metrics::outcome(&res));
            res
        }
        (&Method::GET, ["metrics"]) => metrics::scrape(app).await,
        (&Method::GET, ["healthz"]) => health::live(),
        (&Method::GET, ["readyz"]) => health::ready(app),
        (&Method::GET, [""]) => dashboard::page(&req),
        (&Method::GET, ["dashboard", file]) => dashboard::asset(&req, file),
        (&Method::GET, ["api", "stats"]) => stats::stats(app, req.uri().query()).await,
        (&Method::GET, ["api", "jobs"]) => api::jobs(app).await,
        (&Method::GET, ["api", "jobs", name, "state"]) => api::job_state(app, name).await,
        (&Method::GET, ["api", "runs"]) => api::runs(app, req.uri().query()).await,
        (&Method::GET, ["api", "runs", id]) => api::run(app, id).await,
        (&Method::GET, ["api", "plugins"]) => api::plugins(app),
        (&Method::GET, ["api", "library"]) => library::search(app, req.uri().query()).await,
        (&Method::GET, ["api", "library", "helpers"]) => library::helpers(app),
        (&Method::GET, ["api", "openapi.json"]) => openapi::document(app),
        (&Method::POST, ["api", "runs", id, "retry"]) => api::retry_run(app, id).await,
        (&Method::GET, ["api", "messages"]) => api::messages(app, req.uri().query()).await,
        (&Method::POST, ["api", "messages", id, "retry"]) => api::retry_message(app, id).await,
        (
            _,
            ["inbox"] | ["i", _] | ["api", "runs", _, "retry"] | ["api", "messages", _, "retry"],
        ) => not_allowed(&method, &path, "POST"),
        (
            _,
            [""]
            | ["dashboard", _]
            | ["api", "stats"]
            | ["healthz"]
            | ["readyz"]
            | ["metrics"]
            | ["api", "jobs"]
            | ["api", "jobs", _, "state"]
            | ["api", "runs"]
            | ["api", "runs", _]
            | ["api", "plugins"]
            | ["api", "library"]
            | ["api", "library", "helpers"]
            | ["api", "openapi.json"]
            | ["api", "messages"],
        ) => not_allowed(&method, &path, "GET, HEAD"),
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no route for {method} {path}"),
        ),
    }
}

/// Which key a route needs, from its path's segments.
fn scope(app: &App, segs: &[&str]) -> auth::Scope {
    match segs {
        // `[library] public = true`: the library is an open API.
        ["api", "library", ..] if app.library.public => auth::Scope::Open,
        // The API's description holds no data.
        ["api", "openapi.json"] => auth::Scope::Open,
        _ => auth::scope_of(segs[0]),
    }
}

/// The answer when the request lacks the key its scope needs; a refused
/// receipt is counted.
fn refusal(app: &App, scope: auth::Scope, headers: &HeaderMap) -> Option<Response<Body>> {
    let refused = app.api_keys.refusal(scope, headers)?;
    if scope == auth::Scope::Inbox {
        crate::metrics::get().receipt(crate::metrics::Outcome::unauthorized);
    }
    Some(refused)
}

/// `POST /inbox` (also spelled `//inbox/` and the like), its key checked:
/// the receipt and its metric.
async fn post_inbox(
    app: &App,
    parts: &http::request::Parts,
    body: Incoming,
    peer: &Peer,
) -> Response<Body> {
    let res = inbox::receive(app, parts, body, peer).await;
    crate::metrics::get().receipt(metrics::outcome(&res));
    res
}

fn not_allowed(method: &Method, path: &str, allow: &'static str) -> Response<Body> {
    let mut res = error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {path}"),
    );
    res.headers_mut()
        .insert("allow", HeaderValue::from_static(allow));
    res
}

pub fn json(status: StatusCode, body: &impl Serialize) -> Response<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut res = Response::new(Full::new(Bytes::from(bytes)));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
}

/// Every 4xx and 5xx answer of the JSON API: what was wrong, one line each.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub errors: Vec<String>,
}

/// The OpenAPI answers of a route that reads the run store, when it cannot
/// (see `api::store_failed`): documentation only, never built.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum RunStoreFailed {
    /// The run store could not be read.
    #[response(status = 500)]
    Failed(ErrorBody),
    /// The run store is unavailable; try again later.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

pub fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json(
        status,
        &ErrorBody {
            errors: vec![message.into()],
        },
    )
}
