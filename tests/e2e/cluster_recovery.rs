//! Replicas that die, and what the others take over: a flow whose upstream
//! replica is killed before the flow finished, trigger plugins polled by
//! one replica at a time (and by another once it dies), thousands of
//! receipts spread over three replicas while one is killed and restarted
//! twice, and an embedded deployment copied into PostgreSQL
//! (`migrate --from-embedded`). Real binaries, a real PostgreSQL.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::cluster::replica;
use crate::flows::SLOW_FLOW_PROJECT;
use crate::harness::{BIN, Launch, RUN_TIMEOUT, Service, run_id, temp_dir, wait_for_runs};
use crate::plugins_support::{count, plugin, wait_plugin, wasm};
use crate::postgres;

/// A replica is judged gone 10 s after its last heartbeat, by a replica
/// connected for longer than that; then its pending flows, leases and runs
/// are handed on. Room for that on a busy machine.
const HAND_ON: Duration = Duration::from_secs(90);

#[test]
fn a_flow_left_by_a_killed_replica_runs_on_another() {
    let url = postgres::shared().fresh_database();
    let mut a = replica(SLOW_FLOW_PROJECT, &url, &[("FLOW_DELAY_MS", "60000")]);
    let b = replica(SLOW_FLOW_PROJECT, &url, &[("FLOW_DELAY_MS", "0")]);

    let reply = a.post_json("/inbox", r#"{"kind": "flow-kill", "n": 7}"#);
    assert_eq!(reply.status, 202, "{reply:?}");
    wait_for_runs(&b, "upstream", "success", 1);
    // The flow's run has started on `a` (recorded with the upstream run's
    // end, in one transaction): kill `a` mid-flow.
    b.wait_until("the flow's run on the first replica", RUN_TIMEOUT, || {
        (!b.runs("downstream").is_empty()).then_some(())
    });
    a.kill();

    let done = b.wait_until("the flow to run on the other replica", HAND_ON, || {
        let runs = b.runs_query("job=downstream&status=success");
        (!runs.is_empty()).then_some(runs)
    });
    let detail = b.run(&done[0]);
    assert_eq!(detail["state"]["downstream"], true, "{detail}");
    assert_eq!(
        detail["state"]["upstream"], true,
        "the upstream's final state: {detail}"
    );
    assert_eq!(detail["state"]["data"]["n"], 7, "{detail}");
    assert!(
        b.logs().contains("starting flows a stopped process left"),
        "adopted, not re-run from the receipt\n{}",
        b.log_tail()
    );
    // The run `a` was killed in is closed as interrupted, not left running.
    b.poll_until("the killed flow run closed", HAND_ON, || {
        let running = b.runs_query("job=downstream&status=running");
        if running.is_empty() {
            Ok(())
        } else {
            Err(format!("still running: {running:?}"))
        }
    });
    let postgres_rows = postgres::shared().sql(&url, "SELECT count(*) FROM pending_flows");
    assert_eq!(postgres_rows, "0", "the flow is settled once its run ended");
}

const COUNTER_PROJECT: &str = r#"
[jobs.never]
adaptor = "@openfn/language-common"
trigger = "never"
expression = "fn(state => state)"

[triggers.never]
criteria = { kind = "never" }

[plugins.counter-trigger]
interval = "1s"
"#;

fn counter_replica(url: &str) -> Service {
    Launch::new(COUNTER_PROJECT)
        .env("DATABASE_URL", url)
        .file_bytes(
            "plugins/counter-trigger.wasm",
            &wasm("counter_trigger.wasm"),
        )
        .start()
}

/// Polls made by `svc` of counter-trigger (0 until it is listed).
fn polls(svc: &Service) -> u64 {
    plugin(svc, "counter-trigger").map_or(0, |p| count(&p, "calls"))
}

#[test]
fn a_trigger_plugin_is_polled_by_one_replica_at_a_time() {
    let url = postgres::shared().fresh_database();
    let mut replicas = [counter_replica(&url), counter_replica(&url)];
    for svc in &replicas {
        wait_plugin(svc, "counter-trigger", "loaded", RUN_TIMEOUT, |p| {
            p["status"] == "active"
        });
    }
    let holder = replicas[0].wait_until("four polls by one replica", RUN_TIMEOUT, || {
        let counts = [polls(&replicas[0]), polls(&replicas[1])];
        counts.iter().position(|n| *n >= 4).map(|i| (i, counts))
    });
    let (holder, counts) = holder;
    let other = 1 - holder;
    assert_eq!(
        counts[other],
        0,
        "both replicas polled the plugin: {counts:?}\n{}",
        replicas[other].log_tail()
    );
    // The holder dies: the other takes the lease once it has lapsed (the
    // next poll's time plus a margin) and polls from then on.
    replicas[holder].kill();
    let taken_over = Instant::now();
    let survivor = &replicas[other];
    survivor.wait_until("the other replica to poll", HAND_ON, || {
        (polls(survivor) >= 2).then_some(())
    });
    assert!(
        taken_over.elapsed() < Duration::from_secs(60),
        "took over after {:?}",
        taken_over.elapsed()
    );
}

const LOAD_PROJECT: &str = r#"
[jobs.count]
adaptor = "@openfn/language-common"
trigger = "t"
expression = "fn(state => ({ data: { n: state.data.n } }))"

[triggers.t]
criteria = { kind = "load" }
"#;

/// Sends `{"kind": "load", "n": n}`; `true` for a 202.
fn send(svc: &Service, n: usize) -> bool {
    let reply = svc.post_json("/inbox", &format!(r#"{{"kind": "load", "n": {n}}}"#));
    match reply.status {
        202 => true,
        503 => false,
        other => panic!("unexpected {other}: {reply:?}"),
    }
}

#[test]
fn receipts_over_three_replicas_survive_kills_and_restarts() {
    const RECEIPTS: usize = 2000;
    let url = postgres::shared().fresh_database();
    let mut replicas: Vec<Service> = (0..3).map(|_| replica(LOAD_PROJECT, &url, &[])).collect();
    let mut accepted = Vec::new();
    let mut refused = 0;
    let mut kills = 0;
    for n in 0..RECEIPTS {
        // Replica 0 is killed at a third and at two thirds of the way, and
        // started again each time (a new process on the same database).
        if n > 0 && n % (RECEIPTS / 3) == 0 && kills < 2 {
            replicas[0].kill();
            kills += 1;
            replicas[0] = replica(LOAD_PROJECT, &url, &[]);
        }
        let svc = &replicas[n % replicas.len()];
        if send(svc, n) {
            accepted.push(n);
        } else {
            refused += 1;
        }
    }
    assert!(
        accepted.len() >= RECEIPTS - 10,
        "{refused} of {RECEIPTS} refused"
    );
    // Every 202 runs to completion at least once, wherever.
    let sql = |q: &str| postgres::shared().sql(&url, q);
    let deadline = Instant::now() + Duration::from_secs(300);
    let runs_of = || -> BTreeMap<usize, usize> {
        let mut seen = BTreeMap::new();
        for line in sql("SELECT state FROM runs WHERE job = 'count' AND status = 'success'").lines()
        {
            let state: serde_json::Value = serde_json::from_str(line).unwrap();
            let n = state["data"]["n"].as_u64().unwrap() as usize;
            *seen.entry(n).or_insert(0) += 1;
        }
        seen
    };
    let seen = loop {
        let seen = runs_of();
        let missing = accepted.iter().filter(|n| !seen.contains_key(n)).count();
        if missing == 0 {
            break seen;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} accepted receipts never ran to completion; receipts by status: {}",
            sql("SELECT status, count(*) FROM receipts GROUP BY status")
        );
        std::thread::sleep(Duration::from_secs(2));
    };
    // Duplicates come only from the killed replicas: a receipt that ran
    // twice ran once on a replica that is gone (one the database no longer
    // lists once its heartbeat stopped), whose lease lapsed or whose
    // acknowledgement died with it.
    replicas[0].wait_until(
        "the killed replicas to be forgotten",
        Duration::from_secs(90),
        || (sql("SELECT count(*) FROM replicas") == "3").then_some(()),
    );
    let mut ran_on: BTreeMap<usize, Vec<bool>> = BTreeMap::new();
    for line in sql(
        "SELECT replica IN (SELECT id FROM replicas), state FROM runs WHERE job = 'count' AND status = 'success'",
    )
    .lines()
    {
        let (live, state) = line.split_once('|').unwrap();
        let state: serde_json::Value = serde_json::from_str(state).unwrap();
        let n = state["data"]["n"].as_u64().unwrap() as usize;
        ran_on.entry(n).or_default().push(live == "t");
    }
    let duplicates: Vec<_> = ran_on.iter().filter(|(_, runs)| runs.len() > 1).collect();
    let interrupted: usize = sql(
        "SELECT count(*) FROM runs WHERE job = 'count' AND status = 'failure' AND reason LIKE 'interrupted%'",
    )
    .parse()
    .unwrap();
    eprintln!(
        "{} receipts accepted, {refused} refused, {} ran more than once, {interrupted} runs interrupted by the kills",
        accepted.len(),
        duplicates.len()
    );
    let unexplained: Vec<_> = duplicates
        .iter()
        .filter(|(_, runs)| runs.iter().all(|live| *live))
        .collect();
    assert!(
        unexplained.is_empty(),
        "receipts that ran twice on replicas that were never killed: {unexplained:?}"
    );
    assert_eq!(seen.len(), accepted.len());
}

/// An embedded deployment (journal + SQLite) copied into PostgreSQL: its
/// runs, its cron-style job state, a receipt still waiting for a retry and
/// a dead letter; running the copy twice changes nothing; a replica on the
/// database then shows and delivers them.
#[test]
fn migrate_from_embedded_copies_an_embedded_deployment() {
    let toml = r#"
[jobs.keep]
adaptor = "@openfn/language-common"
trigger = "keep"
expression = "fn(state => ({ data: state.data, kept: true }))"

[jobs.noted]
adaptor = "@openfn/language-common"
trigger = "after-keep"
expression = "fn(state => state)"

[jobs.later]
adaptor = "@openfn/language-common"
trigger = "later"
retry = { max_attempts = 2, backoff = "1h", max_backoff = "1h" }
expression = """
fn(state => { if (!state.attempt) throw new Error('not yet'); return { ...state, delivered: state.attempt }; })
"""

[triggers.keep]
criteria = { kind = "keep" }

[triggers.later]
criteria = { kind = "later" }

[triggers.after-keep]
success = "keep"
"#;
    let data = temp_dir("e2e-from-embedded-");
    let mut embedded = Launch::new(toml).embedded().data_dir(data.path()).start();
    for n in 0..3 {
        let reply = embedded.post_json_with(
            "/inbox",
            &format!(r#"{{"kind": "keep", "n": {n}}}"#),
            &[("idempotency-key", &format!("keep-{n}"))],
        );
        assert_eq!(reply.status, 202, "{reply:?}");
    }
    let reply = embedded.post_json("/inbox", r#"{"kind": "later"}"#);
    assert_eq!(reply.status, 202, "{reply:?}");
    wait_for_runs(&embedded, "keep", "success", 3);
    wait_for_runs(&embedded, "noted", "success", 3);
    wait_for_runs(&embedded, "later", "failure", 1);
    let upstreams = |svc: &Service| {
        let mut ids: Vec<String> = svc
            .runs("noted")
            .iter()
            .map(|r| r["upstream"].as_str().unwrap_or("none").to_string())
            .collect();
        ids.sort();
        ids
    };
    let noted_after = upstreams(&embedded);
    let state = embedded.job_state("keep").expect("a job state");
    embedded.stop();

    let url = postgres::shared().fresh_database();
    let migrate = || {
        let out = Command::new(BIN)
            .args(["migrate", "--from-embedded"])
            .env("DATABASE_URL", &url)
            .env("DATA_DIR", data.path())
            .env("PROJECT_DIR", embedded.project_dir())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        assert!(!text.contains(postgres::PASSWORD), "{text}");
        text
    };
    let first = migrate();
    assert!(first.contains("copied: 7 runs (0 already"), "{first}");
    assert!(first.contains("copied: 2 job states (0 already"), "{first}");
    assert!(first.contains("copied: 4 receipts (0 already"), "{first}");
    let second = migrate();
    assert!(second.contains("copied: 0 runs (7 already"), "{second}");
    assert!(second.contains("copied: 0 receipts (4 already"), "{second}");

    let svc = replica(toml, &url, &[]);
    assert_eq!(svc.runs("keep").len(), 3);
    assert_eq!(svc.job_state("keep"), Some(state));
    // Each flow run still names the run that started it.
    let mut keeps: Vec<String> = svc.runs("keep").iter().map(run_id).collect();
    keeps.sort();
    assert_eq!(upstreams(&svc), keeps);
    assert_eq!(noted_after, keeps);
    // An idempotency key the embedded deployment saw is still held.
    let again = svc.post_json_with(
        "/inbox",
        r#"{"kind": "keep", "n": 0}"#,
        &[("idempotency-key", "keep-0")],
    );
    assert_eq!(again.status, 202, "{again:?}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        svc.runs("keep").len(),
        3,
        "a re-send after the move is a no-op"
    );
    // The receipt waiting for its retry is in the database, pending.
    let pending = svc.get_json("/api/messages?status=pending");
    assert_eq!(pending.as_array().map(Vec::len), Some(1), "{pending}");
}
