//! Nothing a run leaves behind harms a later run: timers and timer loops,
//! rejections left unhandled, `process.exit()`, changed globals, a promise
//! nothing can settle, a connection left open. Every test runs one job and
//! then an unrelated one on the same engine (concurrency 1, so in worker
//! mode on the same warm worker), in the mode `ENGINE_MODE` names.
//!
//! Where the modes differ, core's CLI forces it: `core execute` keeps
//! running while anything the job started is pending (and dies of an error
//! thrown there), while the worker ends a run when the job's promise
//! settles and cancels or closes what it left (README, "The engine").

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Mode, mode};
use crate::harness::{Launch, Service, log_lines};

/// A job and a trigger for it (`{"kind": "<name>"}`), in TOML.
fn job(name: &str, timeout: &str, expression: &str) -> String {
    format!(
        r#"
[jobs.{name}]
adaptor = "@openfn/language-common"
trigger = "{name}"
timeout = "{timeout}"
expression = '''
{expression}
'''

[triggers.{name}]
criteria = {{ kind = "{name}" }}
"#
    )
}

/// The unrelated job of the issue's report, run after each job under test.
const UNRELATED: &str = "fn(state => state)";

/// Runs `source` with `ESCAPE(code)` defined: code run on the host, outside
/// vm2, as a job can do with vm2 3.9.19 (the version core 1.5.1 pins; this
/// is its public CVE-2023-37466 escape). Only the tests use it, to stand for
/// what no sandbox check can stop.
fn escaping(body: &str) -> String {
    format!(
        r#"fn(state => {{
  const ESCAPE = code => {{
    async function f() {{ (function stack() {{ new Error().stack; stack(); }})(); }}
    const p = f();
    p.constructor = {{ [Symbol.species]: class FakePromise {{
      constructor(executor) {{ executor(x => x, err => err.constructor.constructor(code)()); }}
    }} }};
    p.then();
  }};
  {body}
}})"#
    )
}

/// A service with `jobs` (name, timeout, expression) and the unrelated job,
/// one run at a time, answering the inbox once the runs are done.
fn service(jobs: &[(&str, &str, &str)]) -> Service {
    let mut toml = String::from("[engine]\nconcurrency = 1\n");
    for (name, timeout, expression) in jobs {
        toml.push_str(&job(name, timeout, expression));
    }
    toml.push_str(&job("unrelated", "30s", UNRELATED));
    Launch::new(&toml).env("ENDPOINT_STYLE", "sync").start()
}

/// Posts `{"kind": kind}` and returns the run's record (reason included).
fn run(svc: &Service, kind: &str) -> Value {
    let reply = svc.post_json("/inbox", &format!(r#"{{"kind":"{kind}","id":1}}"#));
    let jobs = reply.json["jobs"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        jobs.len(),
        1,
        "POST for {kind}: {reply:?}\n{}",
        svc.log_tail()
    );
    let record = svc.get_json(&format!(
        "/api/runs/{}",
        jobs[0]["run_id"].as_str().unwrap_or_default()
    ));
    assert!(
        record["status"] == "success" || record["status"] == "failure",
        "{record}"
    );
    record
}

/// The unrelated job succeeds, with its input as its final state.
fn unrelated_succeeds(svc: &Service, after: &str) {
    let b = run(svc, "unrelated");
    assert_eq!(
        b["status"],
        "success",
        "the run after `{after}` failed: {b}\n{}",
        svc.log_tail()
    );
    assert_eq!(b["exit_code"], 0, "{b}");
}

fn log_of(record: &Value) -> String {
    log_lines(record).join("\n")
}

/// No worker reported trouble from a run that had ended: what the jobs
/// left behind never ran after their runs.
fn no_late_trouble(svc: &Service) {
    assert!(
        !svc.logs().contains("came from a run after it had ended"),
        "{}",
        svc.log_tail()
    );
}

/// The issue's report: A leaves a timer that throws a second later; B,
/// 2.5 s after A, used to fail with "the worker could not take the run:
/// Broken pipe". Likewise for a timer loop and for a rejection left to
/// happen after the run.
#[test]
fn timers_a_job_leaves_behind_never_harm_a_later_run() {
    let svc = service(&[
        (
            "late-throw",
            "30s",
            "fn(state => { setTimeout(() => { throw new Error('late') }, 1000); return state; })",
        ),
        (
            "interval",
            "30s",
            "fn(state => { let n = 0; function tick() { setTimeout(tick, 100); if (++n > 10) throw new Error('still ticking: ' + n); } tick(); return state; })",
        ),
        (
            "ticker",
            "8s",
            "fn(state => { function tick() { setTimeout(tick, 50); } tick(); return state; })",
        ),
        (
            "late-rejection",
            "30s",
            "fn(state => { setTimeout(() => Promise.reject(new Error('late rejection')), 500); return state; })",
        ),
    ]);
    let mode = mode(&svc);

    let a = run(&svc, "late-throw");
    let finished = Instant::now();
    match mode {
        // The run is over when the job's promise settles; its timer with it.
        Mode::Worker => assert_eq!(a["status"], "success", "{a}"),
        // `core execute` waits for the timer, and dies of its error.
        Mode::Cli => {
            assert_eq!(a["status"], "failure", "{a}");
            assert_eq!(a["exit_code"], 1, "{a}");
            assert!(log_of(&a).contains("Error: late"), "{a}");
        }
    }
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(finished.elapsed()));
    unrelated_succeeds(&svc, "late-throw");

    // A timer loop that would throw after a second.
    let a = run(&svc, "interval");
    match mode {
        Mode::Worker => assert_eq!(a["status"], "success", "{a}"),
        Mode::Cli => {
            assert_eq!(a["status"], "failure", "{a}");
            assert!(log_of(&a).contains("still ticking"), "{a}");
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    unrelated_succeeds(&svc, "interval");

    // A timer loop that never ends keeps `core execute` to its timeout.
    let a = run(&svc, "ticker");
    match mode {
        Mode::Worker => assert_eq!(a["status"], "success", "{a}"),
        Mode::Cli => {
            assert_eq!(a["status"], "failure", "{a}");
            assert!(
                a["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("timed out"),
                "{a}"
            );
        }
    }
    unrelated_succeeds(&svc, "ticker");

    // A rejection left to happen after the job returned.
    let a = run(&svc, "late-rejection");
    match mode {
        Mode::Worker => assert_eq!(a["status"], "success", "{a}"),
        Mode::Cli => {
            assert_eq!(a["status"], "failure", "{a}");
            assert_eq!(a["exit_code"], 1, "{a}");
            assert!(log_of(&a).contains("late rejection"), "{a}");
        }
    }
    std::thread::sleep(Duration::from_millis(1000));
    unrelated_succeeds(&svc, "late-rejection");
    no_late_trouble(&svc);
}

/// An unhandled rejection during the run and `process.exit()` (the plain
/// call core's compiler refuses, and one from a job that escaped vm2) fail
/// their own run, the same way in both modes, and no other.
#[test]
fn rejections_and_process_exit_fail_only_their_own_run() {
    // The escape runs its code in a microtask: before the state is written
    // in the first case, while the job waits on a timer in the second.
    let exit = escaping("ESCAPE('process.exit(3)'); return state;");
    let exit_later = escaping(
        "return new Promise(resolve => setTimeout(() => { ESCAPE('process.exit(3)'); setTimeout(() => resolve(state), 3000); }, 100));",
    );
    let svc = service(&[
        (
            "rejection",
            "30s",
            "fn(state => { Promise.reject(new Error('nobody handles this')); return state; })",
        ),
        (
            "exit-plain",
            "30s",
            "fn(state => { process.exit(3); return state; })",
        ),
        ("exit-escaped", "30s", &exit),
        ("exit-escaped-later", "30s", &exit_later),
    ]);

    let a = run(&svc, "rejection");
    assert_eq!(a["status"], "failure", "{a}");
    assert_eq!(a["exit_code"], 1, "{a}");
    assert!(log_of(&a).contains("nobody handles this"), "{a}");
    unrelated_succeeds(&svc, "rejection");

    let a = run(&svc, "exit-plain");
    assert_eq!(a["status"], "failure", "{a}");
    assert_eq!(a["exit_code"], 1, "{a}");
    assert!(log_of(&a).contains("Function not available"), "{a}");
    unrelated_succeeds(&svc, "exit-plain");

    for name in ["exit-escaped", "exit-escaped-later"] {
        let a = run(&svc, name);
        assert_eq!(a["status"], "failure", "{a}");
        assert_eq!(a["exit_code"], 3, "{a}");
        let reason = a["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("exit code 3") || reason.contains("code 3"),
            "{a}"
        );
        unrelated_succeeds(&svc, name);
    }
}

/// What a job sets on its globals, on the values the engine hands it (the
/// adaptor's exports, `setTimeout`, `console`) and on builtins' prototypes
/// is not there for the next run.
#[test]
fn globals_a_job_sets_do_not_survive_it() {
    let svc = service(&[
        (
            "mutate",
            "30s",
            r#"fn(state => {
  globalThis.leaked = 1;
  leakedVar = 1;
  Object.prototype.polluted = 1;
  Array.prototype.polluted = 1;
  Object.getPrototypeOf(state).pollutedHost = 1;
  JSON.parse = () => 'hijacked';
  Math.random = () => 4;
  fn.hacked = 1;
  http.hacked = 1;
  dateFns.hacked = 1;
  setTimeout.hacked = 1;
  console.hacked = 1;
  state.data.inRun = [typeof globalThis.leaked, typeof ({}).polluted, JSON.parse('{}'), typeof setTimeout.hacked];
  return state;
})"#,
        ),
        (
            "check",
            "30s",
            r#"fn(state => {
  state.data.seen = [typeof leaked, typeof globalThis.leakedVar, typeof ({}).polluted, typeof [].polluted,
    typeof state.pollutedHost, typeof JSON.parse('{}'), Math.random() === 4, typeof fn.hacked,
    typeof http.hacked, typeof dateFns.hacked, typeof setTimeout.hacked, typeof console.hacked];
  return state;
})"#,
        ),
    ]);
    let a = run(&svc, "mutate");
    assert_eq!(a["status"], "success", "{a}");
    // Within its own run, a job sees what it set on what is its own.
    assert_eq!(
        a["state"]["data"]["inRun"],
        serde_json::json!(["number", "number", "hijacked", "number"]),
        "{a}"
    );
    let b = run(&svc, "check");
    assert_eq!(b["status"], "success", "{b}");
    assert_eq!(
        b["state"]["data"]["seen"],
        serde_json::json!([
            "undefined",
            "undefined",
            "undefined",
            "undefined",
            "undefined",
            "object",
            false,
            "undefined",
            "undefined",
            "undefined",
            "undefined",
            "undefined"
        ]),
        "{b}"
    );
    // The check ran where the mutation did: no worker was replaced between.
    assert!(!svc.logs().contains("replac"), "{}", svc.log_tail());
}

/// A promise nothing can settle: `core execute` exits 0 without a state as
/// soon as node has nothing left to wait for; the worker fails the run as
/// soon as it sees the same, with the same exit code and reason.
#[test]
fn a_job_waiting_on_nothing_fails_at_once() {
    let svc = service(&[("never", "60s", "fn(state => new Promise(() => {}))")]);
    let posted = Instant::now();
    let a = run(&svc, "never");
    assert!(
        posted.elapsed() < Duration::from_secs(20),
        "took {:?}",
        posted.elapsed()
    );
    assert_eq!(a["status"], "failure", "{a}");
    assert_eq!(a["exit_code"], 0, "{a}");
    assert!(
        a["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("the job never finished"),
        "{a}"
    );
    unrelated_succeeds(&svc, "never");
}

/// A request the job started and did not wait for, to a server that never
/// answers: the connection is closed when the run ends (with its worker in
/// worker mode; at the run's timeout in cli mode, where `core execute`
/// waits for it), and the next run is not affected. So that the connection
/// surely exists before the job returns, the job then waits for a second
/// request, which the server answers only once the first has arrived.
#[test]
fn a_connection_a_job_leaves_open_is_closed_when_its_run_ends() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let expression = format!(
        "fn(state => {{ http.get('http://127.0.0.1:{port}/hang')(state).catch(() => {{}}); return http.get('http://127.0.0.1:{port}/ready')(state).then(() => state); }})"
    );
    // cli mode waits for this timeout; worker mode must not come near it.
    let svc = service(&[("open", "10s", &expression)]);
    let mode = mode(&svc);
    let server = std::thread::spawn(move || serve_hang_then_ready(listener));
    let a = run(&svc, "open");
    let closed_after = server
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}\n{a}\n{}", svc.log_tail()));
    match mode {
        Mode::Worker => {
            assert_eq!(a["status"], "success", "{a}");
            assert!(
                closed_after < Duration::from_secs(3),
                "closed {closed_after:?} after the job's last request"
            );
            svc.wait_until("the worker's retirement", Duration::from_secs(10), || {
                svc.logs().contains("left TCPSocketWrap open").then_some(())
            });
        }
        Mode::Cli => {
            assert_eq!(a["status"], "failure", "{a}");
            assert!(
                a["reason"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("timed out"),
                "{a}"
            );
        }
    }
    unrelated_succeeds(&svc, "open");
}

/// Holds `GET /hang` open, answers `GET /ready` once `/hang` has arrived,
/// and returns how long after that answer the `/hang` connection closed.
fn serve_hang_then_ready(listener: TcpListener) -> Result<Duration, String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let (mut hang, mut ready) = (None, Vec::new());
    let answered = loop {
        if Instant::now() > deadline {
            return Err(format!(
                "no /hang and /ready within a minute (hang: {}, ready: {})",
                hang.is_some(),
                ready.len()
            ));
        }
        match listener.accept() {
            Ok((mut conn, _)) => {
                conn.set_nonblocking(false).map_err(|e| e.to_string())?;
                conn.set_read_timeout(Some(Duration::from_secs(60)))
                    .map_err(|e| e.to_string())?;
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        other => return Err(format!("reading a request: {other:?}")),
                    }
                }
                if head.starts_with(b"GET /hang") {
                    hang = Some(conn);
                } else {
                    ready.push(conn);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
        if hang.is_some() && !ready.is_empty() {
            for mut conn in ready.drain(..) {
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                );
            }
            break Instant::now();
        }
    };
    let mut conn = hang.expect("set above");
    let mut buf = [0u8; 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return Ok(answered.elapsed()),
            Ok(_) => continue,
            Err(e) => {
                return Err(format!(
                    "the /hang connection stayed open: {e} after {:?}",
                    answered.elapsed()
                ));
            }
        }
    }
}
