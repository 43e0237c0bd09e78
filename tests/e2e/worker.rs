//! The `worker` engine mode's own promises: every run gets a fresh sandbox,
//! a worker that runs out of memory fails only its run and is replaced, and
//! workers are recycled after `recycle_after` runs. (The rest of the engine
//! suite runs against both modes: `ENGINE_MODE=cli` in `make test`.)

use crate::harness::{Launch, wait_for_runs};

const PROJECT: &str = r#"
[engine]
concurrency = 1
worker_memory_mb = 64
recycle_after = 2

[jobs.setter]
adaptor = "@openfn/language-common"
expression = """
fn(state => { globalThis.leaked = 42; leakedVar = 7; state.data.set = true; return state; });
"""
trigger = "set"

[jobs.checker]
adaptor = "@openfn/language-common"
expression = """
fn(state => { state.data.seen = typeof leaked + "/" + typeof leakedVar; return state; });
"""
trigger = "check"

[jobs.hog]
adaptor = "@openfn/language-common"
expression = """
fn(state => { const all = []; while (true) { all.push(new Array(1e6).fill(state)); } });
"""
trigger = "hog"

[triggers.set]
criteria = { kind = "set" }
[triggers.check]
criteria = { kind = "check" }
[triggers.hog]
criteria = { kind = "hog" }
"#;

#[test]
fn worker_runs_are_isolated_survive_oom_and_recycle() {
    let svc = Launch::new(PROJECT)
        .env("ENGINE_MODE", "worker")
        .env("ENDPOINT_STYLE", "sync")
        .start();

    // A global set by one run is not there for the next, on the same worker.
    let set = svc.post_json("/inbox", r#"{"kind":"set"}"#);
    assert_eq!(set.status, 201, "{set:?}");
    let check = svc.post_json("/inbox", r#"{"kind":"check"}"#);
    assert_eq!(check.status, 201, "{check:?}");
    assert_eq!(
        check.json["jobs"][0]["state"]["data"]["seen"], "undefined/undefined",
        "{check:?}"
    );

    // Running out of memory fails that run, with a reason that says so...
    let hog = svc.post_json("/inbox", r#"{"kind":"hog"}"#);
    assert_eq!(hog.status, 206, "{hog:?}");
    let runs = wait_for_runs(&svc, "hog", "failure", 1);
    let reason = runs[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("out of memory"), "{}", runs[0]);
    assert!(runs[0]["exit_code"].is_null(), "{}", runs[0]);

    // ...and the pool goes on: a replaced worker serves the next runs, past
    // the recycling point (recycle_after = 2).
    for _ in 0..3 {
        let again = svc.post_json("/inbox", r#"{"kind":"check"}"#);
        assert_eq!(again.status, 201, "{again:?}");
    }
    let ok = wait_for_runs(&svc, "checker", "success", 4);
    assert_eq!(ok.len(), 4);
}
