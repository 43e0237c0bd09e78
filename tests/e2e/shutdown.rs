//! Graceful shutdown: SIGTERM while a run is in progress lets the run finish,
//! the service exits 0, and the finished run and its state are there after a
//! restart on the same data directory.

use crate::harness::{Launch, RUN_TIMEOUT, temp_dir};

const SLOW_PROJECT: &str = include_str!("../projects/slow/project.toml");

#[test]
fn sigterm_lets_running_runs_finish() {
    let data = temp_dir("e2e-shutdown-");

    let mut svc = Launch::new(SLOW_PROJECT).data_dir(data.path()).start();
    let reply = svc.post_json("/inbox", r#"{"kind":"slow","n":1}"#);
    assert_eq!(reply.json["data"], serde_json::json!(["slow"]), "{reply:?}");
    svc.wait_until("the slow run to start", RUN_TIMEOUT, || {
        svc.runs("slow")
            .into_iter()
            .find(|r| r["status"] == "running")
    });

    let status = svc.stop();
    assert!(
        status.success(),
        "SIGTERM should give a clean exit, got {status}\n{}",
        svc.log_tail()
    );
    drop(svc);

    let svc = Launch::new(SLOW_PROJECT).data_dir(data.path()).start();
    let runs = svc.runs("slow");
    assert_eq!(runs.len(), 1, "runs after restart: {runs:?}");
    assert_eq!(
        runs[0]["status"], "success",
        "the interrupted run: {}",
        runs[0]
    );
    assert_eq!(runs[0]["exit_code"], 0);
    let state = svc
        .job_state("slow")
        .expect("state of the run that finished during shutdown");
    assert_eq!(state["data"]["n"], 1, "{state}");
}
