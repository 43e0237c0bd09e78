//! `microservice run`: a job's final state on stdout, its log on stderr,
//! composed in a pipeline; a failing run; bad input.

use std::io::Write;
use std::process::Stdio;

use serde_json::Value;

use super::{CLI_TIMEOUT, Scratch, describe, text};
use crate::harness::{json, output_within, wait_exit};

pub const RUN_PROJECT: &str = r#"
[jobs.double]
trigger = "numbers"
credential = "api"
expression = """
fn(state => {
  console.log("doubling " + state.data.number + " with " + state.configuration.password);
  state.data.number = state.data.number * 2;
  return state;
})
"""

[jobs.then-triple]
trigger = "after-double"
expression = "fn(state => { state.data.number = state.data.number * 3; return state; })"

[jobs.doomed]
trigger = "numbers"
credential = "api"
expression = """
fn(state => {
  console.log("about to fail, holding " + JSON.stringify(state.configuration));
  throw new Error("no luck");
})
"""

[triggers.numbers]
criteria = { number = 2 }

[triggers.after-double]
success = "double"

[credentials.api]
password = "hunter2-very-secret"
"#;

#[test]
fn run_pipes_stdin_to_stdout_through_core() {
    let s = Scratch::new(Some(RUN_PROJECT));
    let out = s.run(&["run", "double", "--data", "-"], Some(r#"{"number": 21}"#));
    assert!(out.status.success(), "{}", describe(&out));
    let state: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", describe(&out)));
    assert_eq!(
        state,
        json(r#"{"data": {"number": 42}}"#),
        "{}",
        describe(&out)
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("doubling 21 with ***"),
        "{}",
        describe(&out)
    );
    assert!(!stderr.contains("hunter2"), "{}", describe(&out));

    // A shell pipeline: `run double --data - | run then-triple --state -`.
    let mut first = s.cmd(&["run", "double", "--data", "-"]);
    first.stdin(Stdio::piped());
    let mut first = first.spawn().unwrap();
    first
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"number": 2}"#)
        .unwrap();
    let mut second = s.cmd(&["run", "then-triple", "--state", "-"]);
    second.stdin(first.stdout.take().unwrap());
    let second = output_within(&mut second, None, CLI_TIMEOUT).unwrap_or_else(|e| {
        let _ = first.kill();
        panic!("the second command of the pipeline: {e}")
    });
    let first_status = wait_exit(&mut first, CLI_TIMEOUT).unwrap_or_else(|| {
        let _ = first.kill();
        panic!("the first command of the pipeline did not exit within {CLI_TIMEOUT:?}")
    });
    assert!(first_status.success(), "first: {first_status}");
    assert!(second.status.success(), "{}", describe(&second));
    let state: Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(
        state,
        json(r#"{"data": {"number": 12}}"#),
        "{}",
        describe(&second)
    );

    // --state and --data together: the state's other keys stay, data is replaced.
    let state_file = s.dir().join("state.json");
    std::fs::write(&state_file, r#"{"data": {"number": 1}, "cursor": "c-7", "configuration": {"password": "not-the-real-one"}}"#).unwrap();
    let out = s.run(
        &[
            "run",
            "double",
            "--state",
            state_file.to_str().unwrap(),
            "--data",
            "-",
        ],
        Some(r#"{"number": 5}"#),
    );
    assert!(out.status.success(), "{}", describe(&out));
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["data"]["number"], 10, "{}", describe(&out));
    assert_eq!(state["cursor"], "c-7", "{}", describe(&out));
    // The job ran with its own credential, not the one in --state.
    let stderr = text(&out.stderr);
    assert!(stderr.contains("doubling 5 with ***"), "{}", describe(&out));
    assert!(
        stderr.contains("`configuration` in --state is ignored"),
        "{}",
        describe(&out)
    );
    assert!(state.get("configuration").is_none(), "{}", describe(&out));

    // A dry run: no run record or job state was written.
    assert!(
        !s.data().join("microservice.db").exists(),
        "`run` must not open the service's store"
    );
}

#[test]
fn a_failing_run_exits_non_zero_without_configuration() {
    let s = Scratch::new(Some(RUN_PROJECT));
    let out = s.run(&["run", "doomed", "--data", "-"], Some(r#"{"number": 2}"#));
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        out.stdout.is_empty(),
        "a failed run prints no state: {}",
        describe(&out)
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no luck"), "{}", describe(&out));
    assert!(stderr.contains("failed"), "{}", describe(&out));
    assert!(!stderr.contains("hunter2"), "{}", describe(&out));

    // Bad input fails before anything runs, naming what is wrong.
    let out = s.run(&["run", "nope"], None);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("no job named `nope`; defined: doomed, double, then-triple"),
        "{}",
        describe(&out)
    );
    let out = s.run(&["run", "double", "--data", "-"], Some("{not json"));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("--data: stdin is not valid JSON"),
        "{}",
        describe(&out)
    );
}
