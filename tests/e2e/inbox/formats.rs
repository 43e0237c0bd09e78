//! What real senders send is a receipt: JSON with a BOM, an empty body,
//! compressed bodies (gzip, deflate, br), forms (urlencoded, repeated keys
//! as arrays; multipart with JSON and XML files), XML (the original's
//! `open_rosa.xml` among them) and bodies in other charsets. Each is sent
//! in sync style, so the answer carries the final state its run saw.

use std::io::Write;

use serde_json::{Value, json};

use crate::harness::{Launch, Service};
use crate::raw::{Response, gzip, request};

const PROJECT: &str = r#"
[jobs.echo]
trigger = "e2e"
expression = "fn(state => state)"

[triggers.e2e]
criteria = { e2e = "yes" }

[jobs.form]
trigger = "form"
expression = "fn(state => state)"

[triggers.form]
criteria = { kind = "form" }

[jobs.xml-echo]
trigger = "xml"
expression = "fn(state => state)"

[triggers.xml]
criteria = { order = { e2e = "yes" } }

[jobs.odk]
trigger = "odk"
expression = "fn(state => state)"

[triggers.odk]
criteria = { event_cars_boats = { "@id" = "Events_Boats_Cars" } }
"#;

const OPEN_ROSA: &str = include_str!("../../projects/fixtures/openfn-microservice/open_rosa.xml");

fn start() -> Service {
    Launch::new(PROJECT).env("ENDPOINT_STYLE", "sync").start()
}

fn post(svc: &Service, headers: &[(&str, &str)], body: &[u8]) -> Response {
    request(svc.addr(), "POST", "/inbox", headers, body)
}

/// The one job that ran and the `data` its run started from.
fn ran(reply: &Response) -> (String, Value) {
    assert_eq!(reply.status(), 201, "{reply:?}");
    let v = reply.json();
    let jobs = v["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{v}");
    (
        jobs[0]["job"].as_str().unwrap().to_string(),
        jobs[0]["state"]["data"].clone(),
    )
}

#[test]
fn json_with_a_bom_empty_and_compressed_bodies_are_receipts() {
    let svc = start();
    let json_ct = ("content-type", "application/json");
    let body = br#"{"e2e":"yes","case":"bom"}"#;
    let with_bom = [b"\xEF\xBB\xBF".as_slice(), body].concat();
    let (job, data) = ran(&post(&svc, &[json_ct], &with_bom));
    assert_eq!(
        (job.as_str(), &data),
        ("echo", &json!({"e2e": "yes", "case": "bom"}))
    );

    let body = br#"{"e2e":"yes","case":"gzip"}"#;
    let reply = post(&svc, &[json_ct, ("content-encoding", "gzip")], &gzip(body));
    assert_eq!(ran(&reply).1["case"], "gzip");

    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(br#"{"e2e":"yes","case":"deflate"}"#).unwrap();
    let reply = post(
        &svc,
        &[json_ct, ("content-encoding", "deflate")],
        &z.finish().unwrap(),
    );
    assert_eq!(ran(&reply).1["case"], "deflate");

    let mut br = Vec::new();
    brotli::BrotliCompress(
        &mut &br#"{"e2e":"yes","case":"br"}"#[..],
        &mut br,
        &Default::default(),
    )
    .unwrap();
    let reply = post(&svc, &[json_ct, ("content-encoding", "br")], &br);
    assert_eq!(ran(&reply).1["case"], "br");

    let latin1 = b"{\"e2e\":\"yes\",\"case\":\"Jos\xE9\"}";
    let reply = post(
        &svc,
        &[("content-type", "application/json; charset=ISO-8859-1")],
        latin1,
    );
    assert_eq!(ran(&reply).1["case"], "José");

    // An empty JSON body is `{}`: nothing matches it, and it is stored as such.
    let reply = post(&svc, &[json_ct], b"");
    assert_eq!(reply.status(), 200, "{reply:?}");
    assert_eq!(reply.json()["match_count"], 0, "{reply:?}");
    let stored = svc.wait_until(
        "the empty receipt in the store",
        crate::harness::RUN_TIMEOUT,
        || {
            let messages = svc.get_json("/api/messages?status=done&limit=100");
            messages
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["body"] == json!({}))
                .cloned()
        },
    );
    assert_eq!(stored["source"], "inbox");
}

#[test]
fn forms_are_receipts_with_repeated_keys_as_arrays() {
    let svc = start();
    let form = ("content-type", "application/x-www-form-urlencoded");
    // As the issue sent it (a Twilio-style sender).
    let (job, data) = ran(&post(&svc, &[form], b"kind=form&n=2"));
    assert_eq!(
        (job.as_str(), data),
        ("form", json!({"kind": "form", "n": "2"}))
    );
    let (_, data) = ran(&post(&svc, &[form], b"e2e=yes&tag=a&tag=b&note=x+y%21"));
    assert_eq!(
        data,
        json!({"e2e": "yes", "tag": ["a", "b"], "note": "x y!"})
    );
    let latin1 = (
        "content-type",
        "application/x-www-form-urlencoded; charset=iso-8859-1",
    );
    let (_, data) = ran(&post(&svc, &[latin1], b"e2e=yes&name=Jos%E9"));
    assert_eq!(data["name"], "José");

    let multipart = concat!(
        "--b0undary\r\n",
        "Content-Disposition: form-data; name=\"e2e\"\r\n\r\n",
        "yes\r\n",
        "--b0undary\r\n",
        "Content-Disposition: form-data; name=\"tag\"\r\n\r\n",
        "a\r\n",
        "--b0undary\r\n",
        "Content-Disposition: form-data; name=\"tag\"\r\n\r\n",
        "b\r\n",
        "--b0undary\r\n",
        "Content-Disposition: form-data; name=\"order\"; filename=\"order.json\"\r\n",
        "Content-Type: application/json\r\n\r\n",
        "{\"sku\":\"x-1\",\"qty\":2}\r\n",
        "--b0undary\r\n",
        "Content-Disposition: form-data; name=\"note\"; filename=\"note.xml\"\r\n",
        "Content-Type: text/xml\r\n\r\n",
        "<note lang=\"en\">hi</note>\r\n",
        "--b0undary--\r\n",
    );
    let ct = ("content-type", "multipart/form-data; boundary=b0undary");
    let (_, data) = ran(&post(&svc, &[ct], multipart.as_bytes()));
    assert_eq!(
        data,
        json!({
            "e2e": "yes",
            "tag": ["a", "b"],
            "order": {"sku": "x-1", "qty": 2},
            "note": {"note": {"@lang": "en", "#text": "hi"}}
        })
    );
    // Compressed forms too.
    let (_, data) = ran(&post(
        &svc,
        &[ct, ("content-encoding", "gzip")],
        &gzip(multipart.as_bytes()),
    ));
    assert_eq!(data["order"]["qty"], 2);
}

#[test]
fn xml_is_a_receipt_by_one_convention() {
    let svc = start();
    let (job, data) = ran(&post(
        &svc,
        &[("content-type", "application/xml")],
        b"<order id=\"7\"><e2e>yes</e2e><line>a</line><line>b</line></order>",
    ));
    assert_eq!(job, "xml-echo");
    assert_eq!(
        data,
        json!({"order": {"@id": "7", "e2e": "yes", "line": ["a", "b"]}})
    );
    // The original's OpenRosa fixture, as text/xml, matched by its form id.
    let (job, data) = ran(&post(
        &svc,
        &[("content-type", "text/xml")],
        OPEN_ROSA.as_bytes(),
    ));
    assert_eq!(job, "odk");
    // All of it: the root's id and every namespace declaration, repeated
    // `boats` as an array in document order, single children as values.
    assert_eq!(
        data,
        json!({"event_cars_boats": {
            "@id": "Events_Boats_Cars",
            "@xmlns:h": "http://www.w3.org/1999/xhtml",
            "@xmlns:jr": "http://openrosa.org/javarosa",
            "@xmlns:xsd": "http://www.w3.org/2001/XMLSchema",
            "@xmlns:ev": "http://www.w3.org/2001/xml-events",
            "@xmlns:orx": "http://openrosa.org/xforms/",
            "event_name": "Test",
            "start_date": "2019-10-24",
            "boats": [{"boat_name": "Ferari"}, {"boat_name": "Johnny"}],
            "cars": {"car_name": "Big Boss"},
            "meta": {"instanceID": "uuid:b400c1e3-d6d7-428d-8b19-f7227bda8445"}
        }})
    );
    // gzip-compressed XML with a +xml type.
    let (job, _) = ran(&post(
        &svc,
        &[
            ("content-type", "application/vnd.odk+xml"),
            ("content-encoding", "gzip"),
        ],
        &gzip(OPEN_ROSA.as_bytes()),
    ));
    assert_eq!(job, "odk");
    // Latin-1 XML without a charset parameter: its declaration says so.
    let (_, data) = ran(&post(
        &svc,
        &[("content-type", "application/xml")],
        b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><order><e2e>yes</e2e><name>Jos\xE9</name></order>",
    ));
    assert_eq!(data["order"]["name"], "Jos\u{e9}");
}
