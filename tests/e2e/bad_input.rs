//! Bad requests to the inbox are answered with 4xx statuses and JSON error
//! bodies, never a 500: malformed JSON (400), an oversized body (413), a
//! content type it does not take (415); a request without Content-Type is
//! accepted. The decoding step keeps the rule: a truncated gzip body, a
//! gzip bomb, malformed XML, a multipart body without its closing boundary,
//! an unknown charset or encoding, and a file part that is neither JSON nor
//! XML each get a 4xx naming what is wrong. Also the health check and 404s
//! for unknown jobs and runs.

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

    let big = format!(r#"{{"padding":"{}"}}"#, "x".repeat(4096));
    error_reply(&svc.post_json("/inbox", &big), 413);

    // A declared length over the limit is refused from the head alone, at
    // once, with none of the body sent (it could be gigabytes).
    let mut conn = crate::raw::connect(svc.addr(), std::time::Duration::from_secs(5));
    crate::raw::send(
        &mut conn,
        b"POST /inbox HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000000000\r\n\r\n",
    );
    let m = raw_error(&crate::raw::read_response(&mut conn), 413);
    assert!(m.contains("max_body_bytes"), "{m}");

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

/// The first error of a raw answer with `status` and a JSON `errors` list.
fn raw_error(reply: &crate::raw::Response, status: u16) -> String {
    assert_eq!(reply.status(), status, "{reply:?}");
    let errors = reply.json()["errors"].clone();
    errors[0]
        .as_str()
        .unwrap_or_else(|| panic!("no error message: {reply:?}"))
        .to_string()
}

#[test]
fn undecodable_bodies_get_json_errors_naming_the_fault() {
    use crate::raw::{gzip, request};
    let svc = Service::start(PROJECT, &[]);
    let post = |headers: &[(&str, &str)], body: &[u8]| {
        request(svc.addr(), "POST", "/inbox", headers, body)
    };
    let json = ("content-type", "application/json");

    let whole = gzip(br#"{"kind":"truncated","pad":"aaaaaaaaaaaaaaaaaaaaaaaa"}"#);
    let cut = &whole[..whole.len() / 2];
    let m = raw_error(&post(&[json, ("content-encoding", "gzip")], cut), 400);
    assert!(m.contains("gzip") && m.contains("truncated"), "{m}");

    // 200 KB of spaces in a few hundred bytes, against a 1 KiB limit.
    let bomb = gzip(&vec![b' '; 200_000]);
    assert!(bomb.len() < 1024);
    let m = raw_error(&post(&[json, ("content-encoding", "gzip")], &bomb), 413);
    assert!(m.contains("decoded") && m.contains("max_body_bytes"), "{m}");

    let m = raw_error(&post(&[json, ("content-encoding", "compress")], b"{}"), 415);
    assert!(m.contains("`compress`"), "{m}");

    let m = raw_error(
        &post(
            &[("content-type", "application/xml")],
            b"<order><id>1</order>",
        ),
        400,
    );
    assert!(m.contains("not valid XML") && m.contains("1:"), "{m}");
    let m = raw_error(
        &post(
            &[("content-type", "text/xml")],
            b"<!DOCTYPE lol [<!ENTITY lol \"lol\">]><lol>&lol;</lol>",
        ),
        400,
    );
    assert!(m.contains("DOCTYPE"), "{m}");

    let unclosed = "--zz\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\nmulti\r\n";
    let m = raw_error(
        &post(
            &[("content-type", "multipart/form-data; boundary=zz")],
            unclosed.as_bytes(),
        ),
        400,
    );
    assert!(m.contains("closing boundary"), "{m}");
    let photo = "--zz\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"p.jpg\"\r\nContent-Type: image/jpeg\r\n\r\nJFIF\r\n--zz--\r\n";
    let m = raw_error(
        &post(
            &[("content-type", "multipart/form-data; boundary=zz")],
            photo.as_bytes(),
        ),
        415,
    );
    assert!(m.contains("`photo`") && m.contains("image/jpeg"), "{m}");

    let m = raw_error(
        &post(
            &[("content-type", "application/json; charset=klingon")],
            b"{}",
        ),
        415,
    );
    assert!(m.contains("`klingon`"), "{m}");
    let m = raw_error(
        &post(
            &[(
                "content-type",
                "application/x-www-form-urlencoded; charset=x-unknown",
            )],
            b"a=1",
        ),
        415,
    );
    assert!(m.contains("`x-unknown`"), "{m}");
    let m = raw_error(
        &post(
            &[("content-type", "text/xml")],
            b"<?xml version=\"1.0\" encoding=\"klingon\"?><a/>",
        ),
        415,
    );
    assert!(m.contains("`klingon`"), "{m}");

    // Still healthy, nothing panicked.
    assert_eq!(svc.get("/healthz").status, 200);
    assert!(!svc.logs().contains("panicked"), "{}", svc.logs());
}

fn assert_json_404(reply: &Reply) {
    assert_eq!(reply.status, 404, "{reply:?}");
    assert!(reply.is_json(), "404 body is not JSON: {reply:?}");
}
