//! The engine, in whichever mode `ENGINE_MODE` names (`make test` runs this
//! suite once per mode): per-run timeouts kill the whole run (no node
//! process left behind), syntax errors fail with exit code 1, per-run
//! temporary directories under `DATA_DIR/tmp` are removed once runs finish;
//! nothing a run leaves behind harms a later run ([`isolation`]), and final
//! states are the same JSON in both modes ([`final_state`]).

mod final_state;
mod isolation;

use std::time::{Duration, Instant};

use crate::INBOX_PROJECT;
use crate::harness::{
    RUN_TIMEOUT, Service, log_lines, process_is_gone, wait_for, wait_for_finished_run,
    wait_for_runs,
};

/// Pids of all descendants of process `root` (children, their children, ..).
pub fn descendants(root: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    // (pid, parent pid) of every process; the parent is the second field
    // after the parenthesised command name in /proc/PID/stat.
    let parents: Vec<(u32, u32)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// The engine mode the service runs in, as it logged it at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Cli,
    Worker,
}

pub fn mode(svc: &Service) -> Mode {
    let logs = svc.logs();
    if logs.contains("mode=Cli") {
        Mode::Cli
    } else if logs.contains("mode=Worker") {
        Mode::Worker
    } else {
        panic!(
            "the service did not log its engine mode\n{}",
            svc.log_tail()
        )
    }
}

#[test]
fn run_exceeding_its_timeout_is_killed() {
    let svc = Service::start(include_str!("../../projects/timeout/project.toml"), &[]);
    // In worker mode, warm workers are the service's children before any
    // run: wait until they are all up, and note them.
    if !svc.logs().contains("mode=Cli") {
        svc.wait_until("the engine workers", Duration::from_secs(60), || {
            svc.logs().contains("engine workers ready").then_some(())
        });
    }
    let before_run = descendants(svc.pid());
    let posted = Instant::now();

    let reply = svc.post_json("/inbox", r#"{"kind":"hang"}"#);
    assert_eq!(reply.json["data"], serde_json::json!(["hang"]), "{reply:?}");

    // Note the processes of the run while it is running (the service's
    // descendants; it has no other run), to check later that the timeout
    // killed all of them.
    let run_pids = svc.wait_until("the run's node process", Duration::from_secs(10), || {
        let pids = descendants(svc.pid());
        (!pids.is_empty()).then_some(pids)
    });

    let run = wait_for_finished_run(&svc, "hang");
    let elapsed = posted.elapsed();
    assert!(
        elapsed < Duration::from_secs(15),
        "a 2 s timeout took {elapsed:?}"
    );
    assert_eq!(run["status"], "failure", "{run}");
    assert!(
        run["exit_code"].is_null(),
        "a killed run has no exit code: {run}"
    );
    let reason = run["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("timed out"),
        "reason should say the run timed out: {run}"
    );

    // Every process that appeared for the run is gone, and so is the one
    // that ran it (in worker mode, a warm worker that was there before).
    let survivors = wait_for(Duration::from_secs(10), || {
        let new_alive = run_pids
            .iter()
            .filter(|p| !before_run.contains(p))
            .any(|&p| !process_is_gone(p));
        let some_gone = run_pids.iter().any(|&p| process_is_gone(p));
        (!new_alive && some_gone).then_some(())
    });
    assert!(
        survivors.is_some(),
        "processes of the timed-out run are still alive: {run_pids:?} (before the run: {before_run:?})"
    );
    assert!(
        svc.job_state("hang").is_none(),
        "a timed-out run must not save state"
    );
}

#[test]
fn syntax_error_fails_with_exit_code_1() {
    let svc = Service::start(INBOX_PROJECT, &[]);

    let reply = svc.post_json("/inbox", r#"{"kind":"syntax"}"#);
    assert_eq!(
        reply.json["data"],
        serde_json::json!(["syntax-job"]),
        "{reply:?}"
    );

    let run = wait_for_finished_run(&svc, "syntax-job");
    assert_eq!(run["status"], "failure", "{run}");
    assert_eq!(run["exit_code"], 1, "{run}");
    let log = log_lines(&svc.run(&run)).join("\n");
    assert!(
        log.contains("SyntaxError"),
        "log should show the SyntaxError:\n{log}"
    );
}

#[test]
fn temp_dirs_are_removed_after_runs() {
    let svc = Service::start(INBOX_PROJECT, &[]);

    // Five runs, partly concurrent: job-1 → flow-job, bad-job → catch-job,
    // and cred-job.
    for body in [
        crate::harness::RECEIPT,
        r#"{"kind":"bad"}"#,
        r#"{"kind":"cred"}"#,
    ] {
        let reply = svc.post_json("/inbox", body);
        assert_eq!(reply.status, 202, "{reply:?}");
    }
    for (job, status) in [
        ("job-1", "success"),
        ("flow-job", "success"),
        ("bad-job", "failure"),
        ("catch-job", "success"),
        ("cred-job", "success"),
    ] {
        wait_for_runs(&svc, job, status, 1);
    }
    svc.wait_until("no run in progress", RUN_TIMEOUT, || {
        svc.runs_query("status=running").is_empty().then_some(())
    });

    let tmp = svc.data_dir().join("tmp");
    let leftovers = wait_for(Duration::from_secs(10), || {
        let entries: Vec<String> = std::fs::read_dir(&tmp)
            .ok()?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        entries.is_empty().then_some(())
    });
    assert!(tmp.is_dir(), "{} should exist", tmp.display());
    let entries: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        leftovers.is_some(),
        "per-run temp dirs left behind: {entries:?}"
    );
}

/// `PROJECT_DIR=./project` (the original's default) and a relative
/// `PACKAGES_DIR`: node resolves a relative `require` against the worker
/// script, so the service must hand it absolute paths.
#[test]
fn relative_folders_in_the_environment_still_run_jobs() {
    let svc = crate::harness::Launch::new(crate::INBOX_PROJECT)
        .in_root()
        .env("PROJECT_DIR", "./project")
        .env("DATA_DIR", "./project/.microservice")
        // Both live in the scratch dir: the packages are one level up.
        .env("PACKAGES_DIR", "../e2e-packages")
        .start();
    assert_eq!(svc.post_json("/inbox", crate::harness::RECEIPT).status, 202);
    let runs = crate::harness::wait_for_runs(&svc, "job-1", "success", 1);
    assert_eq!(runs.len(), 1, "{runs:?}\n{}", svc.log_tail());
}
