//! Notification plugins, with the first-party webhook-notify built from
//! source: a run summary is POSTed as JSON to a real local listener, for
//! failed runs only with `on = "failure"` and for every run with
//! `on = "all"`, and `/api/plugins` counts the calls.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{Launch, run_id, wait_for_runs};
use crate::plugins_support::{Listener, count, last_error, wait_plugin, wasm};

const PROJECT: &str = include_str!("../projects/plugins-webhook/project.toml");
/// Plugins are compiled before the service listens; this is slack for the
/// listing on a busy machine.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// Notifications are sent as runs end, one run at a time, each
/// a fresh plugin instance making an HTTP request: seconds apiece when the
/// machine is busy.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(90);

#[test]
fn webhook_notify_posts_run_summaries() {
    let hook = Listener::start();
    let webhook = wasm("webhook_notify.wasm");
    let svc = Launch::new(&PROJECT.replace("{hook}", &hook.origin()))
        .file_bytes("plugins/webhook_notify.wasm", &webhook)
        .file_bytes("plugins/webhook-all.wasm", &webhook)
        .start();

    for name in ["webhook-failure", "webhook-all"] {
        let entry = wait_plugin(&svc, name, "loaded", LOAD_TIMEOUT, |p| {
            p["status"] == "active"
        });
        assert_eq!(entry["kind"], "notification", "{entry}");
    }

    for body in [r#"{"kind":"ok"}"#, r#"{"kind":"bad"}"#] {
        let reply = svc.post_json("/inbox", body);
        assert_eq!(reply.status, 202, "{reply:?}");
    }
    let ok_run = wait_for_runs(&svc, "ok-job", "success", 1).remove(0);
    let bad_run = wait_for_runs(&svc, "bad-job", "failure", 1).remove(0);

    // Both plugins are called for both runs.
    for name in ["webhook-failure", "webhook-all"] {
        let entry = wait_plugin(&svc, name, "2 calls", NOTIFY_TIMEOUT, |p| {
            p["calls"].as_u64() >= Some(2)
        });
        assert_eq!(count(&entry, "calls"), 2, "{entry}");
        assert_eq!(
            count(&entry, "failures"),
            0,
            "last_error: {}; {entry}",
            last_error(&entry)
        );
    }

    // Every call has finished, so everything that will arrive has arrived.
    let check = |req: &crate::plugins_support::Received, run: &Value, job: &str, status: &str| {
        assert_eq!(req.method, "POST", "{req:?}");
        assert!(
            req.header("content-type")
                .is_some_and(|ct| ct.starts_with("application/json")),
            "{req:?}"
        );
        let body = req.json();
        assert_eq!(body["run_id"], run_id(run), "{body} vs run {run}");
        assert_eq!(body["job"], job, "{body}");
        assert_eq!(body["status"], status, "{body}");
    };

    let failures = hook.requests_to("/failure");
    assert_eq!(
        failures.len(),
        1,
        "on = \"failure\" must report the failed run only: {failures:?}"
    );
    check(&failures[0], &bad_run, "bad-job", "failure");
    let error = failures[0].json()["error"].clone();
    assert!(
        error.is_string(),
        "a failed run's summary has an error: {error}"
    );

    let mut all = hook.requests_to("/all");
    assert_eq!(all.len(), 2, "on = \"all\" must report both runs: {all:?}");
    all.sort_by_key(|r| r.json()["job"].as_str().unwrap_or_default().to_string());
    check(&all[0], &bad_run, "bad-job", "failure");
    check(&all[1], &ok_run, "ok-job", "success");

    let stray: Vec<_> = hook
        .requests()
        .into_iter()
        .filter(|r| r.path != "/failure" && r.path != "/all")
        .collect();
    assert!(stray.is_empty(), "unexpected requests: {stray:?}");
}
