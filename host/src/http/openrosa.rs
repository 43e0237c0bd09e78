//! `/submission`: the OpenRosa Form Submission API, so that ODK Collect,
//! KoboCollect and other OpenRosa clients can be pointed at the service.
//!
//! A client first sends `HEAD /submission` and expects `204` with
//! `X-OpenRosa-Version: 1.0` and `X-OpenRosa-Accept-Content-Length` (the
//! most it should POST at once). It then POSTs `multipart/form-data` whose
//! `xml_submission_file` part is the form instance; the other parts are
//! attachments. The instance (as JSON, see [`crate::receipt::xml`]) is the
//! receipt, matched like any other; `201` with an `<OpenRosaResponse>`
//! tells the client it is kept. A submission is never held for its runs
//! (a phone must not re-send a form because a job failed), and the same
//! instance sent again (its `meta/instanceID`) is one receipt. Errors keep
//! the service's rule: a 4xx with a JSON `errors` list. Every answer
//! carries the OpenRosa headers.

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::inbox::{Entrance, take};
use super::{App, Body, Peer};
use crate::receipt::{Options, Outcome, Purpose, Taken};

/// The answer to `HEAD /submission` (the OpenRosa headers added by the
/// caller, as to every answer here).
#[utoipa::path(head, path = "/submission", tag = "openrosa",
    responses((status = 204, description = "An OpenRosa server is here.",
        headers(
            ("x-openrosa-version" = String, description = "`1.0`"),
            ("x-openrosa-accept-content-length" = u64, description = "The most a submission may be, in bytes."),
        ))))]
pub fn head() -> Response<Body> {
    let mut res = Response::new(Body::default());
    *res.status_mut() = StatusCode::NO_CONTENT;
    res
}

/// An OpenRosa submission: the form instance and its attachments.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct Submission {
    /// The form instance (XML).
    #[schema(value_type = String, format = Binary)]
    xml_submission_file: Vec<u8>,
}

/// `POST /submission` (the OpenRosa headers added by the caller).
#[utoipa::path(post, path = "/submission", tag = "openrosa",
    request_body(content = Submission, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "Kept (an instance sent again is the same receipt).", body = String, content_type = "text/xml"),
        (status = 400, description = "Not a submission, or its instance is not well-formed.", body = super::ErrorBody),
        (status = 408, description = "The body did not arrive within `[http] body_timeout`.", body = super::ErrorBody),
        (status = 413, description = "Larger than `[inbox] max_body_bytes`.", body = super::ErrorBody),
        (status = 415, description = "Not `multipart/form-data`.", body = super::ErrorBody),
        (status = 503, description = "The receipt could not be stored; try again after `Retry-After`.", body = super::ErrorBody),
    ))]
pub async fn submit(app: &App, req: Request<Incoming>, peer: &Peer) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let arrival = Entrance {
        source: "submission",
        purpose: Purpose::OpenRosa,
        peer,
    };
    match take(app, &parts, body, arrival, Options::default()).await {
        Err(refused) => refused,
        Ok(Taken { jobs, outcome }) => {
            let (id, replay) = match outcome {
                Outcome::Started(_) => (None, false),
                Outcome::Stored { id, .. } => (Some(id), false),
                Outcome::Duplicate(id) => (Some(id), true),
            };
            let mut res = received(&jobs, replay);
            if let Some(id) = id.and_then(|i| HeaderValue::from_str(&i).ok()) {
                res.headers_mut().insert("x-message-id", id);
            }
            if replay {
                super::metrics::replayed(&mut res);
            }
            res
        }
    }
}

/// `201` with the `<OpenRosaResponse>` the client shows its user.
fn received(jobs: &[String], replay: bool) -> Response<Body> {
    let message = match (replay, jobs.len()) {
        (true, _) => "Form received (already received before).",
        (false, 0) => "Form received.",
        (false, _) => "Form received and processing has begun.",
    };
    let body = format!(
        "<OpenRosaResponse xmlns=\"http://openrosa.org/http/response\"><message nature=\"submit_success\">{message}</message></OpenRosaResponse>"
    );
    let mut res = Response::new(Body::new(Bytes::from(body)));
    *res.status_mut() = StatusCode::CREATED;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    res
}

/// The headers the OpenRosa API asks of every answer (hyper adds `Date`).
pub fn with_headers(app: &App, mut res: Response<Body>) -> Response<Body> {
    let limit = app.dispatcher.project().inbox.max_body_bytes;
    let headers = res.headers_mut();
    headers.insert("x-openrosa-version", HeaderValue::from_static("1.0"));
    headers.insert("x-openrosa-accept-content-length", HeaderValue::from(limit));
    res
}
