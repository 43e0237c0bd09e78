//! The engine, in whichever mode `ENGINE_MODE` names (`make test` runs this
//! suite once per mode): per-run timeouts kill the whole run (no node
//! process left behind), syntax errors fail with exit code 1, per-run
//! temporary directories under `DATA_DIR/tmp` are removed once runs finish;
//! nothing a run leaves behind harms a later run ([`isolation`]), and final
//! states are the same JSON in both modes ([`final_state`]).

mod final_state;
mod isolation;
mod lightning_syntax;

use std::time::{Duration, Instant};

use crate::INBOX_PROJECT;
use crate::harness::{
    RUN_TIMEOUT, Service, log_lines, poll_for, process_is_gone, wait_for_finished_run,
    wait_for_runs,
};

/// How long killed processes and removed folders may take to be gone: the
/// service reaps and cleans up after it records the run's end, and on a
/// busy machine that can lag by seconds.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);

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
        svc.wait_until("the engine workers", Duration::from_secs(120), || {
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
    // The run's process lives at least its 2 s timeout, so polling every
    // 200 ms sees it however long node takes to start.
    let run_pids = svc.wait_until("the run's node process", RUN_TIMEOUT, || {
        let pids = descendants(svc.pid());
        (!pids.is_empty()).then_some(pids)
    });

    let run = wait_for_finished_run(&svc, "hang");
    let elapsed = posted.elapsed();
    // The job would otherwise hang for 10 minutes, and the only other limit
    // is `[engine] timeout = "5m"`: ending within 30 s proves its own 2 s
    // timeout killed it. The slack (15x) is for a busy two-core machine,
    // where starting node, noticing the deadline, killing the process group
    // and recording the run can each take seconds.
    assert!(
        elapsed < Duration::from_secs(30),
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
    let survivors = poll_for(CLEANUP_TIMEOUT, || {
        let new_alive: Vec<u32> = run_pids
            .iter()
            .copied()
            .filter(|p| !before_run.contains(p) && !process_is_gone(*p))
            .collect();
        let some_gone = run_pids.iter().any(|&p| process_is_gone(p));
        if new_alive.is_empty() && some_gone {
            Ok(())
        } else {
            Err(new_alive)
        }
    });
    if let Err(alive) = survivors {
        panic!(
            "{CLEANUP_TIMEOUT:?} after the run ended, processes of the timed-out run are still alive: \
             last seen alive {alive:?} (new since the run) of {run_pids:?}, before the run: {before_run:?}\n{}",
            svc.log_tail()
        );
    }
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
    svc.poll_until("no run in progress", RUN_TIMEOUT, || {
        let running = svc.runs_query("status=running");
        if running.is_empty() {
            Ok(())
        } else {
            Err(format!("still running: {running:?}"))
        }
    });

    let tmp = svc.data_dir().join("tmp");
    let leftovers = poll_for(CLEANUP_TIMEOUT, || {
        let entries: Vec<String> = std::fs::read_dir(&tmp)
            .map_err(|e| vec![format!("reading {}: {e}", tmp.display())])?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if entries.is_empty() {
            Ok(())
        } else {
            Err(entries)
        }
    });
    assert!(tmp.is_dir(), "{} should exist", tmp.display());
    if let Err(entries) = leftovers {
        panic!(
            "per-run temp dirs left behind {CLEANUP_TIMEOUT:?} after the last run: last seen {entries:?}"
        );
    }
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
