//! The `worker` engine mode's own promises: every run gets a fresh sandbox,
//! a worker that runs out of memory or is killed fails only its run and is
//! replaced, a dead idle worker is never handed a run, trouble from an ended
//! run is logged with that run's id and fails no other, and workers are
//! recycled after `recycle_after` runs. (The rest of the engine suite runs
//! against both modes: `ENGINE_MODE=cli` in `make test`.)

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::engine::descendants;
use crate::harness::{Launch, process_is_gone, wait_for_finished_run, wait_for_runs};

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

/// One warm worker (concurrency 1), answering the inbox once runs are done.
const ONE_WORKER: &str = r#"
[engine]
concurrency = 1

[jobs.slow]
adaptor = "@openfn/language-common"
trigger = "slow"
expression = "fn(state => new Promise(resolve => setTimeout(() => resolve(state), 20000)))"

[jobs.quick]
adaptor = "@openfn/language-common"
trigger = "quick"
expression = "fn(state => { state.data.done = true; return state; })"

[jobs.escaper]
adaptor = "@openfn/language-common"
trigger = "escaper"
expression = '''
fn(state => new Promise(resolve => {
  // vm2 3.9.19's public escape (CVE-2023-37466): the host's own setTimeout.
  let hostSetTimeout;
  async function f() { (function stack() { new Error().stack; stack(); })(); }
  const p = f();
  p.constructor = { [Symbol.species]: class FakePromise {
    constructor(executor) { executor(x => x, err => { hostSetTimeout = err.constructor.constructor('return setTimeout')(); }); }
  } };
  p.then();
  setTimeout(() => {
    // Unref'd, it holds nothing open, so the run ends with it pending.
    hostSetTimeout(() => { throw new Error('thrown after the run'); }, 1500).unref();
    resolve(state);
  }, 10);
}))
'''

[jobs.waits]
adaptor = "@openfn/language-common"
trigger = "waits"
expression = "fn(state => new Promise(resolve => setTimeout(() => resolve(state), 3000)))"

[triggers.slow]
criteria = { kind = "slow" }
[triggers.quick]
criteria = { kind = "quick" }
[triggers.escaper]
criteria = { kind = "escaper" }
[triggers.waits]
criteria = { kind = "waits" }
"#;

fn one_worker() -> crate::harness::Service {
    let svc = Launch::new(ONE_WORKER)
        .env("ENGINE_MODE", "worker")
        .env("ENDPOINT_STYLE", "sync")
        .start();
    svc.wait_until("the warm worker", Duration::from_secs(60), || {
        svc.logs().contains("engine workers ready").then_some(())
    });
    svc
}

fn kill_workers(svc: &crate::harness::Service) -> Vec<u32> {
    let workers = descendants(svc.pid());
    assert!(!workers.is_empty(), "no worker process\n{}", svc.log_tail());
    for &pid in &workers {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    workers
}

fn quick_run_succeeds(svc: &crate::harness::Service) {
    let reply = svc.post_json("/inbox", r#"{"kind":"quick"}"#);
    assert_eq!(reply.status, 201, "{reply:?}\n{}", svc.log_tail());
    assert_eq!(
        reply.json["jobs"][0]["state"]["data"]["done"], true,
        "{reply:?}"
    );
}

/// A worker that dies during a run fails that run, with a reason that says
/// how it died; the next run gets a new worker.
#[test]
fn a_worker_killed_during_a_run_fails_only_that_run() {
    let svc = one_worker();
    let slow = {
        let url = svc.url("/inbox");
        std::thread::spawn(move || {
            ureq::post(&url)
                .content_type("application/json")
                .send(r#"{"kind":"slow"}"#)
                .map(|r| r.status().as_u16())
        })
    };
    svc.wait_until("the slow run to start", Duration::from_secs(30), || {
        (!svc.runs_query("status=running").is_empty()).then_some(())
    });
    kill_workers(&svc);
    let _ = slow.join();
    let run = wait_for_finished_run(&svc, "slow");
    assert_eq!(run["status"], "failure", "{run}");
    assert!(run["exit_code"].is_null(), "{run}");
    let reason = run["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("killed by SIGKILL during the run"),
        "{run}\n{}",
        svc.log_tail()
    );
    quick_run_succeeds(&svc);
}

/// A worker whose service died (SIGKILL: no shutdown, nobody kills the
/// workers) exits by itself, even in the middle of a run: the service that
/// would take the result is gone, and an orphan would hold its memory and
/// the run's connections until the job gave up.
#[test]
fn workers_exit_when_their_service_dies_mid_run() {
    let mut svc = one_worker();
    let url = svc.url("/inbox");
    std::thread::spawn(move || {
        let _ = ureq::post(&url)
            .content_type("application/json")
            .send(r#"{"kind":"slow"}"#);
    });
    svc.wait_until("the slow run to start", Duration::from_secs(30), || {
        (!svc.runs_query("status=running").is_empty()).then_some(())
    });
    let workers = descendants(svc.pid());
    assert!(!workers.is_empty(), "no worker process\n{}", svc.log_tail());
    svc.kill();
    // Well before the slow job's 20 s would have let an orphan go.
    let gone = crate::harness::wait_for(Duration::from_secs(10), || {
        workers.iter().all(|&p| process_is_gone(p)).then_some(())
    });
    let left: Vec<u32> = workers
        .into_iter()
        .filter(|&p| !process_is_gone(p))
        .collect();
    for &pid in &left {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    assert!(
        gone.is_some(),
        "workers {left:?} outlived their service by 10 s"
    );
}

/// A worker that died while idle is never handed a run: the pool sees it,
/// replaces it, and the run succeeds on a new one.
#[test]
fn a_worker_that_died_idle_is_not_handed_a_run() {
    let svc = one_worker();
    let killed = kill_workers(&svc);
    svc.wait_until(
        "the killed worker to be gone",
        Duration::from_secs(10),
        || killed.iter().all(|&p| process_is_gone(p)).then_some(()),
    );
    quick_run_succeeds(&svc);
    // Seen at checkout, or (a killed node can look dead in /proc while its
    // last threads still hold its pipes) when it did not take the run.
    let logs = svc.logs();
    assert!(
        logs.contains("had died or was spent; replacing it")
            || logs.contains("did not take the run; it is replaced"),
        "{}",
        svc.log_tail()
    );
}

/// An error thrown by something a run left behind (here through a sandbox
/// escape, as nothing else is left behind) while the next run is going is
/// logged with the run it came from, fails no run, and the worker that
/// held it is replaced.
#[test]
fn trouble_from_an_ended_run_is_logged_with_its_id_and_fails_no_other_run() {
    let svc = one_worker();
    let escaper = svc.post_json("/inbox", r#"{"kind":"escaper"}"#);
    assert_eq!(escaper.status, 201, "{escaper:?}\n{}", svc.log_tail());
    let escaper_id = escaper.json["jobs"][0]["run_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // The left-behind timer fires 1.5 s later, during this 3 s run.
    let waits = svc.post_json("/inbox", r#"{"kind":"waits"}"#);
    assert_eq!(waits.status, 201, "{waits:?}\n{}", svc.log_tail());
    let line = svc.wait_until(
        "the late trouble's log line",
        Duration::from_secs(10),
        || {
            svc.logs()
                .lines()
                .find(|l| l.contains("came from a run after it had ended"))
                .map(str::to_string)
        },
    );
    assert!(line.contains(&escaper_id), "{line}");
    assert!(line.contains("an uncaught exception"), "{line}");
    // The message itself may hold a credential: only the error's name.
    assert!(!line.contains("thrown after the run"), "{line}");
    quick_run_succeeds(&svc);
    // Replaced after the run it fired in (or, on a slow machine, at once if
    // it fired between runs).
    let logs = svc.logs();
    assert!(
        logs.contains("replacing an engine worker")
            || logs.contains("retires between runs and is replaced"),
        "{}",
        svc.log_tail()
    );
}
