//! Notification plugins, with the first-party webhook-notify built from
//! source: a run summary is POSTed as JSON to a real local listener, for
//! failed runs only with `on = "failure"` and for every run with
//! `on = "all"`, and `/api/plugins` counts the calls. A notification
//! plugin's instance is kept from one call to the next, and a trap or a
//! reload gives the next call a fresh one (counting-notify).

use std::time::Duration;

use serde_json::Value;

use crate::harness::{Launch, Service, run_id, wait_for_runs};
use crate::plugins_support::{
    Listener, count, last_error, plugin, replace_file, wait_plugin, wasm,
};

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

const COUNTING: &str = r#"
[jobs.echo]
adaptor = "@openfn/language-common"
trigger = "echo"
expression = "fn(state => state)"

[triggers.echo]
criteria = { kind = "echo" }

[jobs.trap]
adaptor = "@openfn/language-common"
trigger = "trap"
expression = "fn(state => state)"

[triggers.trap]
criteria = { kind = "trap" }

[plugins.counting]
file = "counting_notify.wasm"
dirs = [{ data = "out", guest = "/out" }]
"#;

/// The counting plugin's lines, oldest first.
fn counted(svc: &Service) -> Vec<Value> {
    std::fs::read_to_string(svc.data_dir().join("out/calls.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Starts a run of the job that `kind` matches, waits until the counting
/// plugin has written it down (runs are notified one at a time, so its line
/// is the next one), and returns the count its instance gave the call.
fn counted_run(svc: &Service, kind: &str) -> u64 {
    let lines = counted(svc).len();
    let runs = svc.runs(kind).len();
    let reply = svc.post_json("/inbox", &format!(r#"{{"kind":"{kind}"}}"#));
    assert_eq!(reply.status, 202, "{reply:?}");
    let run = wait_for_runs(svc, kind, "success", runs + 1);
    let ids: Vec<String> = run.iter().map(run_id).collect();
    svc.poll_until("the run in out/calls.jsonl", NOTIFY_TIMEOUT, || {
        let all = counted(svc);
        match all.get(lines) {
            Some(line) => {
                assert_eq!(all.len(), lines + 1, "one line per call: {all:?}");
                assert_eq!(line["job"], kind, "{line}");
                assert!(ids.iter().any(|id| line["run_id"] == id.as_str()), "{line}");
                Ok(line["call"].as_u64().expect("a call count"))
            }
            None => Err(format!("lines: {all:?}")),
        }
    })
}

#[test]
fn a_notification_plugin_keeps_its_instance_until_a_trap_or_a_reload() {
    let counting = wasm("counting_notify.wasm");
    let svc = Launch::new(COUNTING)
        .file_bytes("plugins/counting_notify.wasm", &counting)
        .start();
    wait_plugin(&svc, "counting", "loaded", LOAD_TIMEOUT, |p| {
        p["status"] == "active"
    });

    // One instance answers call after call: its count goes on.
    let counts: Vec<u64> = (0..3).map(|_| counted_run(&svc, "echo")).collect();
    assert_eq!(counts, [1, 2, 3], "the instance was not kept between calls");

    // A call that traps takes its instance with it...
    assert_eq!(counted_run(&svc, "trap"), 4);
    let trapped = wait_plugin(&svc, "counting", "the trap counted", NOTIFY_TIMEOUT, |p| {
        count(p, "failures") == 1
    });
    assert!(
        last_error(&trapped).contains("asked to trap on call 4"),
        "{trapped}"
    );
    // ...and the next call gets a fresh one, which goes on from there.
    assert_eq!(
        counted_run(&svc, "echo"),
        1,
        "the trapped instance was used again"
    );
    assert_eq!(counted_run(&svc, "echo"), 2);

    // A new version of its table: the old version's instance is not used.
    let project = svc.project_dir().join("project.toml");
    let reloads = count(&plugin(&svc, "counting").unwrap(), "reloads");
    let text = std::fs::read_to_string(&project).unwrap();
    replace_file(
        &project,
        text.replace(
            "guest = \"/out\" }]",
            "guest = \"/out\" }]\nconfig = { dir = \"/out\" }",
        )
        .as_bytes(),
    );
    wait_plugin(&svc, "counting", "reloaded", LOAD_TIMEOUT, |p| {
        count(p, "reloads") > reloads
    });
    assert_eq!(
        counted_run(&svc, "echo"),
        1,
        "an instance of the old version was used"
    );
    let entry = plugin(&svc, "counting").unwrap();
    assert_eq!(count(&entry, "calls"), 7, "{entry}");
    assert_eq!(count(&entry, "failures"), 1, "{entry}");
}
