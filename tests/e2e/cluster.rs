//! What only the PostgreSQL store does: several replicas of the real binary
//! on one database share runs, job states, idempotency keys, cron ticks and
//! leases; the database going away gives 503s, and its return recovers the
//! service without a restart; `microservice migrate` runs the migrations
//! alone. Every test has a real PostgreSQL (see [`crate::postgres`]): the
//! shared throwaway cluster, or one of its own when it stops it.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::INBOX_PROJECT;
use crate::harness::{
    BIN, Launch, RECEIPT, RUN_TIMEOUT, Service, temp_dir, wait_for, wait_for_runs,
};
use crate::postgres::{self, Cluster, PASSWORD};

const CRON_PROJECT: &str = include_str!("../projects/cron/project.toml");

/// A replica: the project, on the database at `url`.
pub fn replica(toml: &str, url: &str, env: &[(&str, &str)]) -> Service {
    Launch::new(toml).env("DATABASE_URL", url).envs(env).start()
}

fn assert_no_password(svc: &Service) {
    assert!(
        !svc.logs().contains(PASSWORD),
        "the database password reached the service's output:\n{}",
        svc.log_tail()
    );
}

#[test]
fn two_replicas_share_runs_and_job_states() {
    let url = postgres::shared().fresh_database();
    let a = replica(INBOX_PROJECT, &url, &[]);
    let b = replica(INBOX_PROJECT, &url, &[]);

    let reply = a.post_json("/inbox", RECEIPT);
    assert_eq!(reply.status, 202, "{reply:?}");
    // The run went through `a`; `b` shows it, its flow and its state.
    let runs = wait_for_runs(&b, "job-1", "success", 1);
    let detail = b.run(&runs[0]);
    assert_eq!(detail["state"]["data"]["number"], 4, "{detail}");
    wait_for_runs(&b, "flow-job", "success", 1);
    let state = b
        .job_state("job-1")
        .unwrap_or_else(|| panic!("no job state on the other replica\n{}", b.log_tail()));
    assert_eq!(state, a.job_state("job-1").unwrap());
    assert_eq!(state["data"]["number"], 4, "{state}");
    // Receipts too: the stored one is listed by both.
    let messages = |svc: &Service| svc.get_json("/api/messages?status=done");
    let listed = wait_for(RUN_TIMEOUT, || {
        let m = messages(&b);
        (m.as_array().is_some_and(|a| a.len() == 1)).then_some(m)
    })
    .unwrap_or_else(|| panic!("the receipt was never listed as done\n{}", b.log_tail()));
    assert_eq!(listed, messages(&a));
    assert_no_password(&a);
    assert_no_password(&b);
}

#[test]
fn one_idempotency_key_on_two_replicas_gives_one_run() {
    let url = postgres::shared().fresh_database();
    let a = replica(INBOX_PROJECT, &url, &[]);
    let b = replica(INBOX_PROJECT, &url, &[]);
    let key = [("Idempotency-Key", "same-key-on-two-replicas")];

    let (first, second) = std::thread::scope(|s| {
        let first = s.spawn(|| a.post_json_with("/inbox", RECEIPT, &key));
        let second = s.spawn(|| b.post_json_with("/inbox", RECEIPT, &key));
        (first.join().unwrap(), second.join().unwrap())
    });
    assert_eq!(
        (first.status, second.status),
        (202, 202),
        "{first:?} {second:?}"
    );
    let replays = [&first, &second]
        .iter()
        .filter(|r| r.header("idempotent-replay") == Some("true"))
        .count();
    assert_eq!(
        replays, 1,
        "exactly one answer is a replay: {first:?} {second:?}"
    );
    // Both name the same stored receipt.
    let id = |r: &crate::harness::Reply| r.header("x-message-id").map(str::to_string);
    assert!(id(&first).is_some(), "{first:?}");
    assert_eq!(id(&first), id(&second), "{first:?} {second:?}");

    wait_for_runs(&a, "job-1", "success", 1);
    // A third send, later, to either replica: still nothing new.
    let third = b.post_json_with("/inbox", RECEIPT, &key);
    assert_eq!(third.header("idempotent-replay"), Some("true"), "{third:?}");
    // Give a second run every chance to show up.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        a.runs("job-1").len(),
        1,
        "one receipt, one run: {:?}\n{}",
        a.runs("job-1"),
        b.log_tail()
    );
}

/// The ticks a service claimed, from its scheduler's debug lines.
fn claimed_ticks(svc: &Service) -> Vec<String> {
    svc.logs()
        .lines()
        .filter(|l| l.contains("cron tick claimed"))
        .filter_map(|l| l.split("tick=").nth(1))
        .map(|t| t.split_whitespace().next().unwrap_or_default().to_string())
        .collect()
}

/// Three replicas, one killed half-way: each tick runs on one replica only,
/// and the job's state is one chain through every run that finished.
#[test]
fn a_cron_job_on_three_replicas_runs_each_tick_once_through_a_kill() {
    let url = postgres::shared().fresh_database();
    let env = [("LOG_LEVEL", "info,microservice::cron=debug")];
    let mut a = replica(CRON_PROJECT, &url, &env);
    let mut b = replica(CRON_PROJECT, &url, &env);
    let mut c = replica(CRON_PROJECT, &url, &env);

    wait_for_runs(&b, "tick", "success", 4);
    a.kill();
    let from_a = claimed_ticks(&a);
    wait_for_runs(&b, "tick", "success", 10);
    // Stopped cleanly, so every tick they claimed ran and was stored.
    assert!(b.stop().success(), "{}", b.log_tail());
    assert!(c.stop().success(), "{}", c.log_tail());

    let (from_b, from_c) = (claimed_ticks(&b), claimed_ticks(&c));
    let mut by_tick: BTreeMap<&str, usize> = BTreeMap::new();
    for tick in from_a.iter().chain(&from_b).chain(&from_c) {
        *by_tick.entry(tick).or_default() += 1;
    }
    let twice: Vec<_> = by_tick.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "ticks run by more than one replica: {twice:?}\nA: {from_a:?}\nB: {from_b:?}\nC: {from_c:?}"
    );
    let ticks = by_tick.len() as u64;
    assert!(
        ticks >= 10,
        "{ticks} ticks: A {from_a:?} B {from_b:?} C {from_c:?}"
    );

    // The state is one chain: its count is the number of runs that
    // finished, which is only so if every run started from the one before,
    // wherever it ran. Only the killed replica may have left a tick unrun.
    let sql = |q: &str| postgres::shared().sql(&url, q);
    let succeeded: u64 = sql("SELECT count(*) FROM runs WHERE job = 'tick' AND status = 'success'")
        .parse()
        .unwrap();
    assert!(
        ticks - succeeded <= 1 && (from_b.len() + from_c.len()) as u64 <= succeeded,
        "{ticks} ticks claimed, {succeeded} runs finished: {}",
        sql("SELECT status, reason FROM runs WHERE job = 'tick'")
    );
    let newest = sql(
        "SELECT state FROM runs WHERE job = 'tick' AND status = 'success' ORDER BY finished_ms DESC LIMIT 1",
    );
    let count = serde_json::from_str::<Value>(&newest).unwrap()["count"].as_u64();
    assert_eq!(count, Some(succeeded), "{newest}");
    // Never overlapping: each run started after the one before it ended.
    let spans = sql(
        "SELECT started_at || ' ' || finished_at FROM runs WHERE job = 'tick' AND status = 'success' ORDER BY started_at",
    );
    let spans: Vec<(&str, &str)> = spans.lines().map(|l| l.split_once(' ').unwrap()).collect();
    for pair in spans.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "runs overlap: {pair:?}");
    }
}

#[test]
fn a_receipt_leased_by_a_killed_replica_is_delivered_by_another() {
    // The lease outlasts the hand-on (10 s after the last heartbeat), and a
    // second attempt's run on a loaded machine: an 8 s lease lapsed under
    // the surviving replica's own slow run and gave a third attempt.
    // The first attempt hangs (until it is killed with its replica); the
    // second, wherever it runs, succeeds at once.
    let toml = r#"
[cluster]
lease = "30s"

[jobs.slow-first]
adaptor = "@openfn/language-common"
trigger = "t"
timeout = "120s"
expression = """
fn(state => state.attempt ? { ...state, delivered: state.attempt } : new Promise(() => {}))
"""

[triggers.t]
criteria = { kind = "lease-test" }
"#;
    let url = postgres::shared().fresh_database();
    let mut a = replica(toml, &url, &[]);
    let b = replica(toml, &url, &[]);

    let reply = a.post_json("/inbox", r#"{"kind": "lease-test"}"#);
    assert_eq!(reply.status, 202, "{reply:?}");
    // Kill `a` as soon as its run is recorded: its lease has seconds left.
    b.wait_until("the first attempt's run", RUN_TIMEOUT, || {
        (!b.runs("slow-first").is_empty()).then_some(())
    });
    a.kill();
    let killed_at = Instant::now();

    let done = wait_for_runs(&b, "slow-first", "success", 1);
    assert!(
        killed_at.elapsed() < RUN_TIMEOUT,
        "delivered only after {:?}",
        killed_at.elapsed()
    );
    let detail = b.run(&done[0]);
    assert_eq!(
        detail["state"]["delivered"], 2,
        "the second attempt: {detail}"
    );
    let run_id = done[0]["id"].as_str().unwrap();
    assert!(
        b.logs().contains(run_id),
        "the surviving replica ran it\n{}",
        b.log_tail()
    );
    let messages = wait_for(RUN_TIMEOUT, || {
        let m = b.get_json("/api/messages?status=done");
        m.as_array().is_some_and(|a| a.len() == 1).then_some(m)
    })
    .unwrap_or_else(|| panic!("the receipt was never acknowledged\n{}", b.log_tail()));
    assert_eq!(messages[0]["attempts"], 2, "{messages}");
}

#[test]
fn the_database_stopping_gives_503s_and_the_service_recovers() {
    let cluster = Cluster::start();
    let url = cluster.fresh_database();
    let svc = replica(INBOX_PROJECT, &url, &[]);
    let mut accepted = 0;
    let reply = svc.post_json("/inbox", RECEIPT);
    assert_eq!(reply.status, 202, "{reply:?}");
    accepted += 1;
    assert_eq!(svc.get("/readyz").status, 200);

    cluster.stop();
    // Every answer while it is down is a 503 with Retry-After, never a 202
    // for a receipt that was not stored.
    let refused = svc.wait_until("a 503 from /inbox", Duration::from_secs(30), || {
        let reply = svc.post_json("/inbox", RECEIPT);
        match reply.status {
            202 => {
                accepted += 1;
                None
            }
            503 => Some(reply),
            other => panic!("unexpected {other}: {reply:?}"),
        }
    });
    assert!(refused.header("retry-after").is_some(), "{refused:?}");
    assert!(
        refused.json["errors"].is_array(),
        "a JSON errors list: {refused:?}"
    );
    svc.wait_until("/readyz to answer 503", Duration::from_secs(30), || {
        (svc.get("/readyz").status == 503).then_some(())
    });
    for _ in 0..5 {
        let reply = svc.post_json("/inbox", RECEIPT);
        assert_eq!(reply.status, 503, "while the database is down: {reply:?}");
        std::thread::sleep(Duration::from_millis(300));
    }

    cluster.resume();
    svc.wait_until(
        "/readyz to answer 200 again",
        Duration::from_secs(60),
        || (svc.get("/readyz").status == 200).then_some(()),
    );
    let back = svc.wait_until("a 202 from /inbox again", Duration::from_secs(60), || {
        let reply = svc.post_json("/inbox", RECEIPT);
        match reply.status {
            202 => Some(reply),
            503 => None,
            other => panic!("unexpected {other}: {reply:?}"),
        }
    });
    assert_eq!(back.status, 202);
    accepted += 1;
    // Every 202 ran, and nothing else did.
    let runs = wait_for_runs(&svc, "job-1", "success", accepted);
    assert_eq!(runs.len(), accepted, "{runs:?}");
    assert_no_password(&svc);
}

#[test]
fn migrate_runs_the_migrations_alone() {
    let url = postgres::shared().fresh_database();
    let dir = temp_dir("e2e-migrate-");
    let migrate = |url: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.arg("migrate")
            .current_dir(dir.path())
            .env("PROJECT_DIR", dir.path())
            .env_remove("DATABASE_URL");
        if let Some(url) = url {
            cmd.env("DATABASE_URL", url);
        }
        let out = cmd.output().expect("run microservice migrate");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains(PASSWORD), "the password was printed: {text}");
        (out.status.code(), text)
    };
    let (code, text) = migrate(Some(&url));
    assert_eq!(code, Some(0), "{text}");
    let migrated = format!("migrated to version {}", postgres::schema_version());
    assert!(text.contains(&migrated), "{text}");
    let (code, text) = migrate(Some(&url));
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("up to date"), "{text}");
    let tables = postgres::shared().sql(
        &url,
        "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'",
    );
    assert_eq!(
        tables,
        "cron_ticks,job_states,pending_flows,receipts,refinery_schema_history,replicas,runs,trigger_leases",
        "{tables}"
    );
    let (code, text) = migrate(None);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("DATABASE_URL"), "{text}");
}

/// Several replicas migrating one empty database at once: the advisory lock
/// lets one migrate and the others find the schema ready.
#[test]
fn replicas_starting_together_migrate_once() {
    let url = postgres::shared().fresh_database();
    let services: Vec<Service> = std::thread::scope(|s| {
        let starting: Vec<_> = (0..3)
            .map(|_| s.spawn(|| replica(INBOX_PROJECT, &url, &[])))
            .collect();
        starting.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let migrated = services
        .iter()
        .filter(|s| s.logs().contains("database schema migrated"))
        .count();
    assert_eq!(migrated, 1, "exactly one replica applied the migrations");
    let versions = postgres::shared().sql(&url, "SELECT count(*) FROM refinery_schema_history");
    assert_eq!(versions, postgres::schema_version().to_string());
    let _: Vec<Value> = services.iter().map(|s| s.get_json("/api/jobs")).collect();
}

/// `[cluster] database_url = { env = "..." }` selects PostgreSQL for
/// `check` (which says the message-store plugin `[inbox] store` names is
/// not used) and `migrate`; the password is printed by neither.
#[test]
fn check_and_migrate_read_the_cluster_table() {
    let url = postgres::shared().fresh_database();
    let dir = temp_dir("e2e-cluster-table-");
    std::fs::write(
        dir.path().join("project.toml"),
        r#"
[cluster]
database_url = { env = "E2E_CLUSTER_DB" }

[inbox]
store = "my-store"

[jobs.a]
expression = "fn(state => state)"
trigger = "t"

[triggers.t]
criteria = {}
"#,
    )
    .unwrap();
    let run = |command: &str| {
        let out = Command::new(BIN)
            .arg(command)
            .env("PROJECT_DIR", dir.path())
            .env("DATA_DIR", dir.path().join("data"))
            .env("PACKAGES_DIR", dir.path().join("packages"))
            .env("E2E_CLUSTER_DB", &url)
            .env_remove("DATABASE_URL")
            .output()
            .expect("run the binary");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains(PASSWORD), "the password was printed: {text}");
        (out.status.code(), text)
    };
    let (code, text) = run("check");
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("storage: PostgreSQL at postgres@127.0.0.1:")
            && text.contains("(from [cluster] database_url)"),
        "{text}"
    );
    assert!(
        text.contains("[inbox] store = \"my-store\" is not used"),
        "{text}"
    );
    let (code, text) = run("migrate");
    assert_eq!(code, Some(0), "{text}");
    let migrated = format!("migrated to version {}", postgres::schema_version());
    assert!(text.contains(&migrated), "{text}");
}

/// A receipt's retry leased by another replica runs only the jobs an earlier
/// attempt did not settle: which ones did is kept with the receipt.
#[test]
fn a_retry_on_another_replica_runs_only_the_unsettled_jobs() {
    let toml = r#"
[jobs.steady]
adaptor = "@openfn/language-common"
trigger = "t"
expression = "fn(state => state)"

[jobs.flaky]
adaptor = "@openfn/language-common"
trigger = "t"
retry = { max_attempts = 3, backoff = "6s" }
expression = """
fn(state => { if (!state.attempt) { throw new Error("the first attempt fails"); } return state; })
"""

[triggers.t]
criteria = { kind = "settle-test" }
"#;
    let url = postgres::shared().fresh_database();
    let mut a = replica(toml, &url, &[]);
    let b = replica(toml, &url, &[]);

    let reply = a.post_json("/inbox", r#"{"kind": "settle-test"}"#);
    assert_eq!(reply.status, 202, "{reply:?}");
    // The first attempt settled `steady` and scheduled a retry for `flaky`:
    // kill `a` before the retry is due, so `b` delivers it.
    b.wait_until("the retry to be scheduled", RUN_TIMEOUT, || {
        let pending = b.get_json("/api/messages?status=pending");
        pending
            .as_array()
            .is_some_and(|m| m.len() == 1 && m[0]["attempts"] == 1)
            .then_some(())
    });
    a.kill();
    wait_for_runs(&b, "flaky", "success", 1);
    let messages = wait_for(RUN_TIMEOUT, || {
        let m = b.get_json("/api/messages?status=done");
        m.as_array().is_some_and(|a| a.len() == 1).then_some(m)
    })
    .unwrap_or_else(|| panic!("the receipt was never acknowledged\n{}", b.log_tail()));
    assert_eq!(messages[0]["attempts"], 2, "{messages}");
    let steady = b.runs("steady");
    assert_eq!(steady.len(), 1, "steady ran again on the retry: {steady:?}");
    assert_eq!(b.runs("flaky").len(), 2, "{:?}", b.runs("flaky"));
}

/// Runs `openssl` with `args` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// TLS to the database: with `sslmode=require` the server's certificate is
/// checked, against the CA that `PGSSLROOTCERT` names; without that CA the
/// service refuses to start rather than talk to a server it cannot trust.
#[test]
fn tls_to_the_database_checks_the_servers_certificate() {
    let certs = temp_dir("e2e-pg-tls-");
    let dir = certs.path();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=e2e test CA",
            "-days",
            "1",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-extfile",
            "server.ext",
        ],
    );
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let (crt, key) = (read("server.crt"), read("server.key"));
    let cluster = Cluster::start_with(
        &[
            "ssl=on",
            "ssl_cert_file={dir}/server.crt",
            "ssl_key_file={dir}/server.key",
        ],
        &[("server.crt", &crt), ("server.key", &key)],
    );
    let url = format!("{}?sslmode=require", cluster.fresh_database());
    let ca = dir.join("ca.crt").display().to_string();

    let svc = replica(INBOX_PROJECT, &url, &[("PGSSLROOTCERT", &ca)]);
    assert_eq!(svc.post_json("/inbox", RECEIPT).status, 202);
    wait_for_runs(&svc, "job-1", "success", 1);
    let encrypted = cluster.sql(
        &cluster.url("postgres"),
        "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
         WHERE a.application_name = 'microservice' AND s.ssl",
    );
    assert_ne!(encrypted, "0", "the service's connections use TLS");
    assert_no_password(&svc);

    // The webpki roots do not know this CA: no connection, no start.
    let refused = Launch::new(INBOX_PROJECT)
        .env("DATABASE_URL", &url)
        .expect_failure()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        refused.to_lowercase().contains("certificate"),
        "the refusal names the certificate: {refused}"
    );
    assert!(!refused.contains(PASSWORD), "{refused}");
}
