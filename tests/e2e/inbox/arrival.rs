//! A receipt keeps how it arrived: its runs' initial state has `receipt`
//! (source, path, content type and encoding, the sender's address) beside
//! `data`, criteria never see it, and it survives the message store (a
//! retried delivery, leased back from the journal, still has it). Trigger
//! plugins' messages take the same door and carry their source.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Launch, RUN_TIMEOUT, Service, wait_for_runs};
use crate::raw::{connect, gzip, read_response, request, send};

const PROJECT: &str = r#"
[jobs.echo]
trigger = "echo"
expression = "fn(state => state)"

[triggers.echo]
criteria = { kind = "echo" }

[jobs.flaky]
trigger = "flaky"
expression = "fn(state => { if (!state.attempt) throw new Error('first attempt fails'); return state; })"
retry = { max_attempts = 2, backoff = "200ms" }

[triggers.flaky]
criteria = { kind = "flaky" }

[jobs.never]
trigger = "by-arrival"
expression = "fn(state => state)"

[triggers.by-arrival]
criteria = { receipt = { source = "inbox" } }
"#;

/// The `receipt` of the final state of `job`'s first successful run.
fn receipt_of_run(svc: &Service, job: &str) -> Value {
    let runs = wait_for_runs(svc, job, "success", 1);
    let detail = svc.run(&runs[0]);
    detail["state"]["receipt"].clone()
}

fn check_inbox_receipt(receipt: &Value, path: &str, content_type: &str, encoding: Option<&str>) {
    assert_eq!(receipt["source"], "inbox", "{receipt}");
    assert_eq!(receipt["path"], path, "{receipt}");
    assert_eq!(receipt["content_type"], content_type, "{receipt}");
    assert_eq!(
        receipt.get("content_encoding").and_then(Value::as_str),
        encoding,
        "{receipt}"
    );
    let addr = receipt["remote_addr"].as_str().unwrap_or_default();
    assert!(addr.starts_with("127.0.0.1:"), "{receipt}");
}

#[test]
fn runs_see_how_their_receipt_arrived_and_criteria_do_not() {
    for durable in [true, false] {
        let project = format!("[inbox]\ndurable = {durable}\n{PROJECT}");
        let svc = Launch::new(&project).start();
        let form = "application/x-www-form-urlencoded";
        let reply = request(
            svc.addr(),
            "POST",
            "/inbox",
            &[("content-type", form), ("content-encoding", "gzip")],
            &gzip(b"kind=echo&n=1"),
        );
        assert_eq!(reply.status(), 202, "{reply:?}");
        assert_eq!(reply.json()["data"], json!(["echo"]), "{reply:?}");
        let receipt = receipt_of_run(&svc, "echo");
        check_inbox_receipt(&receipt, "/inbox", form, Some("gzip"));
        // `data` is the receipt alone.
        let runs = wait_for_runs(&svc, "echo", "success", 1);
        assert_eq!(
            svc.run(&runs[0])["state"]["data"],
            json!({"kind": "echo", "n": "1"})
        );
        // Criteria look at `data` only: `receipt.source` matched nothing.
        let reply = svc.post_json("/inbox", r#"{"x": 1}"#);
        assert_eq!(
            reply.json["data"],
            json!([]),
            "durable = {durable}: {reply:?}"
        );
    }
}

/// A connection's receipts each keep their own arrival record, though the
/// service writes a record once per connection while the request's fields
/// stay the same (see `receipt::arrival::Written`).
#[test]
fn receipts_on_one_connection_each_keep_how_they_arrived() {
    let svc = Launch::new(PROJECT).start();
    let mut conn = connect(svc.addr(), Duration::from_secs(120));
    let form = "application/x-www-form-urlencoded";
    let sent: [(&str, &str, Option<&str>, Vec<u8>); 5] = [
        (
            "/inbox",
            "application/json",
            None,
            br#"{"kind":"echo","i":"1"}"#.to_vec(),
        ),
        (
            "/inbox",
            "application/json",
            None,
            br#"{"kind":"echo","i":"2"}"#.to_vec(),
        ),
        ("/inbox", form, Some("gzip"), gzip(b"kind=echo&i=3")),
        ("/inbox/", form, Some("gzip"), gzip(b"kind=echo&i=4")),
        (
            "/inbox",
            "application/json",
            None,
            br#"{"kind":"echo","i":"5"}"#.to_vec(),
        ),
    ];
    for (path, content_type, encoding, body) in &sent {
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(encoding) = encoding {
            head += &format!("Content-Encoding: {encoding}\r\n");
        }
        let mut bytes = (head + "\r\n").into_bytes();
        bytes.extend_from_slice(body);
        send(&mut conn, &bytes);
        let reply = read_response(&mut conn);
        assert_eq!(reply.status(), 202, "{reply:?}");
    }
    let runs = wait_for_runs(&svc, "echo", "success", sent.len());
    let mut peers = Vec::new();
    for run in runs {
        let state = svc.run(&run)["state"].clone();
        let i: usize = state["data"]["i"].as_str().unwrap().parse().unwrap();
        let (path, content_type, encoding, _) = &sent[i - 1];
        check_inbox_receipt(&state["receipt"], path, content_type, *encoding);
        peers.push(state["receipt"]["remote_addr"].clone());
    }
    peers.dedup();
    assert_eq!(
        peers.len(),
        1,
        "one connection, one sender address: {peers:?}"
    );
}

#[test]
fn a_retried_delivery_from_the_store_still_knows_how_it_arrived() {
    let svc = Launch::new(PROJECT).start();
    let reply = svc.post_json("/inbox/", r#"{"kind": "flaky"}"#);
    assert_eq!(reply.status, 202, "{reply:?}");
    // The second attempt is leased back from the journal.
    let runs = wait_for_runs(&svc, "flaky", "success", 1);
    let state = svc.run(&runs[0])["state"].clone();
    assert_eq!(state["attempt"], 2, "{state}");
    check_inbox_receipt(&state["receipt"], "/inbox/", "application/json", None);
}

#[test]
fn a_trigger_plugin_message_carries_its_source_and_metadata() {
    let svc = Launch::new(include_str!("../../projects/plugins-triggers/project.toml"))
        .file_bytes(
            "plugins/file-drop.wasm",
            &crate::plugins_support::wasm("file_drop.wasm"),
        )
        .start();
    let inbox = svc.project_dir().join("inbox");
    svc.wait_until("the file-drop folder", Duration::from_secs(30), || {
        inbox.is_dir().then_some(())
    });
    crate::plugins_support::replace_file(&inbox.join("a.json"), br#"{"number":2}"#);
    let state = svc.wait_until("double's state", RUN_TIMEOUT, || svc.job_state("double"));
    // The plugin's message metadata is kept beside the source.
    assert_eq!(
        state["receipt"],
        json!({"source": "plugin:file-drop", "metadata": {"file": "a.json"}}),
        "{state}"
    );
    assert_eq!(state["data"], json!({"number": 4}), "{state}");
}
