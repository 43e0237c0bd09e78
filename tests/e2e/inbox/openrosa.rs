//! The OpenRosa Form Submission API at `/submission`, driven the way ODK
//! Collect drives it: `HEAD` (expecting 204 and the OpenRosa headers), then
//! a chunked `POST` of `multipart/form-data` whose `xml_submission_file`
//! part is the form instance (the original's `open_rosa.xml`) beside a
//! photo attachment; `201` with an `<OpenRosaResponse>`, and the instance
//! matches criteria like any receipt. The same instance sent again is one
//! receipt; with `API_KEY` set, Basic auth carries the key.

use base64::Engine;

use crate::harness::{Launch, RUN_TIMEOUT, wait_for_runs};
use crate::raw::{connect, read_response, read_response_after, send};

const PROJECT: &str = r#"
[jobs.odk]
trigger = "odk"
expression = "fn(state => state)"

[triggers.odk]
criteria = { event_cars_boats = { "@id" = "Events_Boats_Cars" } }
"#;

const OPEN_ROSA: &str = include_str!("../../projects/fixtures/openfn-microservice/open_rosa.xml");
const BOUNDARY: &str = "----ODKBoundary7d4a6d158c9";
const DATE: &str = "Date: Thu, 24 Oct 2019 10:12:43 GMT\r\n";

/// The multipart body ODK Collect sends: the instance, then a photo.
fn submission(instance: &str) -> Vec<u8> {
    submission_with(instance, "1571911963123.jpg")
}

/// The instance, then the photo `photo`: one POST of a submission, which
/// a client may split over several, each with the instance and some of
/// its attachments (the API's "Extended Transmission Considerations").
fn submission_with(instance: &str, photo: &str) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"xml_submission_file\"; filename=\"Events_Boats_Cars_2019-10-24.xml\"\r\nContent-Type: text/xml\r\n\r\n{instance}\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{photo}\"; filename=\"{photo}\"\r\nContent-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&[
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0xFF, 0xD9,
    ]);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// POSTs `body` to `/submission` with chunked transfer encoding (which the
/// API requires servers to take), in 1 KiB chunks.
fn post_chunked(addr: &str, body: &[u8], auth: Option<&str>) -> crate::raw::Response {
    let mut conn = connect(addr, RUN_TIMEOUT);
    let mut head = format!(
        "POST /submission HTTP/1.1\r\nHost: t\r\nX-OpenRosa-Version: 1.0\r\n{DATE}Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nTransfer-Encoding: chunked\r\n"
    );
    if let Some(a) = auth {
        head += &format!("Authorization: {a}\r\n");
    }
    head += "\r\n";
    send(&mut conn, head.as_bytes());
    for chunk in body.chunks(1024) {
        send(&mut conn, format!("{:x}\r\n", chunk.len()).as_bytes());
        send(&mut conn, chunk);
        send(&mut conn, b"\r\n");
    }
    send(&mut conn, b"0\r\n\r\n");
    read_response(&mut conn)
}

fn head(addr: &str, auth: Option<&str>) -> crate::raw::Response {
    let mut conn = connect(addr, RUN_TIMEOUT);
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    send(
        &mut conn,
        format!(
            "HEAD /submission HTTP/1.1\r\nHost: t\r\nX-OpenRosa-Version: 1.0\r\n{DATE}{auth}\r\n"
        )
        .as_bytes(),
    );
    read_response_after(&mut conn, Vec::new(), true).0
}

fn assert_openrosa_headers(reply: &crate::raw::Response) {
    assert_eq!(reply.header("x-openrosa-version"), Some("1.0"), "{reply:?}");
    assert_eq!(
        reply.header("x-openrosa-accept-content-length"),
        Some("10485760"),
        "{reply:?}"
    );
    assert!(reply.header("date").is_some(), "{reply:?}");
}

#[test]
fn a_phone_submits_a_form_with_head_then_multipart_post() {
    let svc = Launch::new(PROJECT).start();
    let probe = head(svc.addr(), None);
    assert_eq!(probe.status(), 204, "{probe:?}");
    assert_openrosa_headers(&probe);

    let reply = post_chunked(svc.addr(), &submission(OPEN_ROSA), None);
    assert_eq!(reply.status(), 201, "{reply:?}");
    assert_openrosa_headers(&reply);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("text/xml"),
        "{reply:?}"
    );
    let text = String::from_utf8_lossy(&reply.body).to_string();
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let root = doc.root_element();
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://openrosa.org/http/response")
    );
    assert_eq!(root.tag_name().name(), "OpenRosaResponse");
    let message = root.first_element_child().expect("a <message>");
    assert_eq!(message.attribute("nature"), Some("submit_success"));

    // The instance is the receipt: its form id matched, its fields arrived.
    let runs = wait_for_runs(&svc, "odk", "success", 1);
    let state = svc.run(&runs[0])["state"].clone();
    let form = &state["data"]["event_cars_boats"];
    assert_eq!(form["event_name"], "Test", "{state}");
    assert_eq!(form["boats"][0]["boat_name"], "Ferari", "{state}");
    assert_eq!(
        form["meta"]["instanceID"],
        "uuid:b400c1e3-d6d7-428d-8b19-f7227bda8445"
    );

    // The phone sends the same instance again (it missed the 201): one receipt.
    let again = post_chunked(svc.addr(), &submission(OPEN_ROSA), None);
    assert_eq!(again.status(), 201, "{again:?}");
    assert_eq!(again.header("idempotent-replay"), Some("true"), "{again:?}");
    assert_eq!(again.header("x-message-id"), reply.header("x-message-id"));

    // A submission without its instance, or not multipart: JSON errors.
    let no_instance = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"a.jpg\"; filename=\"a.jpg\"\r\nContent-Type: image/jpeg\r\n\r\nxx\r\n--{BOUNDARY}--\r\n"
    );
    let refused = post_chunked(svc.addr(), no_instance.as_bytes(), None);
    assert_eq!(refused.status(), 400, "{refused:?}");
    assert!(
        refused.json()["errors"][0]
            .as_str()
            .unwrap()
            .contains("xml_submission_file"),
        "{refused:?}"
    );
    assert_openrosa_headers(&refused);
    let plain = crate::raw::request(
        svc.addr(),
        "POST",
        "/submission",
        &[("content-type", "text/xml")],
        OPEN_ROSA.as_bytes(),
    );
    assert_eq!(plain.status(), 415, "{plain:?}");
    assert!(plain.json()["errors"].is_array());
    let get = crate::raw::request(svc.addr(), "GET", "/submission", &[], b"");
    assert_eq!(get.status(), 405, "{get:?}");
}

#[test]
fn with_an_api_key_a_phone_authenticates_with_basic_auth() {
    let svc = Launch::new(PROJECT).env("API_KEY", "field-key").start();
    let probe = head(svc.addr(), None);
    assert_eq!(probe.status(), 401, "{probe:?}");
    assert_openrosa_headers(&probe);
    let challenges: Vec<&str> = probe
        .headers
        .iter()
        .filter(|(k, _)| k == "www-authenticate")
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(
        challenges.iter().any(|c| c.starts_with("Basic ")),
        "{challenges:?}"
    );
    let basic = |pass: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("enumerator:{pass}"))
        )
    };
    assert_eq!(head(svc.addr(), Some(&basic("wrong"))).status(), 401);
    assert_eq!(head(svc.addr(), Some(&basic("field-key"))).status(), 204);
    let reply = post_chunked(
        svc.addr(),
        &submission(OPEN_ROSA),
        Some(&basic("field-key")),
    );
    assert_eq!(reply.status(), 201, "{reply:?}");
    wait_for_runs(&svc, "odk", "success", 1);
}

#[test]
fn a_submission_split_over_two_posts_is_one_receipt() {
    let svc = Launch::new(PROJECT).start();
    assert_eq!(head(svc.addr(), None).status(), 204);
    // Each POST carries the instance and one of the two photos.
    let first = post_chunked(svc.addr(), &submission_with(OPEN_ROSA, "a.jpg"), None);
    assert_eq!(first.status(), 201, "{first:?}");
    let second = post_chunked(svc.addr(), &submission_with(OPEN_ROSA, "b.jpg"), None);
    assert_eq!(second.status(), 201, "{second:?}");
    assert_openrosa_headers(&second);
    assert_eq!(
        second.header("idempotent-replay"),
        Some("true"),
        "{second:?}"
    );
    let runs = wait_for_runs(&svc, "odk", "success", 1);
    let state = svc.run(&runs[0])["state"].clone();
    assert_eq!(
        state["receipt"]["attachments"][0]["name"], "a.jpg",
        "{state}"
    );
    // Still one run a while later.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(svc.runs("odk").len(), 1, "{:?}", svc.runs("odk"));
}
