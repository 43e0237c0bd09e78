//! Bad requests to the inbox are answered with 4xx statuses and JSON error
//! bodies, never a 500: malformed JSON (400), an oversized body (413), a
//! non-JSON content type (415); a request without Content-Type is accepted.
//! Also the health check and 404s for unknown jobs and runs.

use crate::harness::{Reply, Service};

const PROJECT: &str = r#"
[inbox]
max_body_bytes = 1024

[jobs.never]
adaptor = "@openfn/language-common"
trigger = "never"
expression = "fn(state => state)"

[triggers.never]
criteria = { kind = "never-sent" }
"#;

/// Asserts `reply` has `status` and a JSON body `{"errors": [<string>, ..]}`;
/// returns the first error message.
fn error_reply(reply: &Reply, status: u16) -> String {
    assert_eq!(reply.status, status, "{reply:?}");
    assert!(reply.is_json(), "error body is not JSON: {reply:?}");
    let errors = reply.json["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array: {reply:?}"));
    assert!(!errors.is_empty(), "empty errors: {reply:?}");
    errors[0]
        .as_str()
        .unwrap_or_else(|| panic!("error is not a string: {reply:?}"))
        .to_string()
}

#[test]
fn bad_requests_get_json_errors() {
    let svc = Service::start(PROJECT, &[]);

    let message = error_reply(
        &svc.post_json(
            "/inbox",
            include_str!("../projects/fixtures/malformed.json"),
        ),
        400,
    );
    let lower = message.to_lowercase();
    assert!(
        lower.contains("line") && lower.contains("column"),
        "message should locate the error: {message}"
    );

    error_reply(
        &svc.post("/inbox", r#"{"kind":"text"}"#, Some("text/plain")),
        415,
    );
    error_reply(
        &svc.post(
            "/inbox",
            "kind=form",
            Some("application/x-www-form-urlencoded"),
        ),
        415,
    );

    let big = format!(r#"{{"padding":"{}"}}"#, "x".repeat(4096));
    error_reply(&svc.post_json("/inbox", &big), 413);

    // Valid JSON without a Content-Type header, and the trailing-slash path.
    let reply = svc.post("/inbox", r#"{"kind":"untyped"}"#, None);
    assert_eq!(reply.status, 202, "{reply:?}");
    assert_eq!(reply.json["data"], serde_json::json!([]), "{reply:?}");
    let reply = svc.post_json("/inbox/", r#"{"kind":"slash"}"#);
    assert_eq!(reply.status, 202, "{reply:?}");

    // Unknown jobs and runs are JSON 404s.
    assert_json_404(&svc.get("/api/jobs/no-such-job/state"));
    assert_json_404(&svc.get("/api/jobs/never/state"));
    assert_json_404(&svc.get("/api/runs/no-such-run"));

    // The service is still healthy.
    let health = svc.get("/healthz");
    assert_eq!(health.status, 200, "{health:?}");
    assert_eq!(health.json, serde_json::json!({"status": "ok"}));
    assert!(!svc.logs().contains("panicked"), "{}", svc.logs());
}

fn assert_json_404(reply: &Reply) {
    assert_eq!(reply.status, 404, "{reply:?}");
    assert!(reply.is_json(), "404 body is not JSON: {reply:?}");
}
