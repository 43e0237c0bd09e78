//! The durable receipt queue (`[inbox] durable = true`, the default): retries
//! with backoff and the dead-letter list, `POST /api/messages/{id}/retry`,
//! a journal whose tail was torn or garbled, a message store that refuses
//! receipts (503 with `Retry-After`), idempotency keys, and
//! `POST /api/runs/{id}/retry`. The crash test is in `queue_crash.rs`.

use std::collections::HashMap;
use std::path::Path;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Launch, Reply, Service, json, log_lines, run_id, temp_dir, wait_for_runs};
use crate::plugins_support::{plugin, wasm};

const PROJECT: &str = include_str!("../projects/queue/project.toml");
/// How long a receipt may take to reach the status a test waits for: runs
/// cost about a second each on an idle machine and several on a loaded
/// one, and a retried receipt takes three of them plus their backoffs.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------
// Helpers, shared with queue_crash.rs
// ---------------------------------------------------------------------------

/// `GET /api/messages?status=<status>&limit=1000`.
pub fn messages(svc: &Service, status: &str) -> Vec<Value> {
    let path = format!("/api/messages?status={status}&limit=1000");
    match svc.get_json(&path) {
        Value::Array(list) => list,
        other => panic!("GET {path}: expected an array, got {other}"),
    }
}

/// The stored message `id`, looked up in every status list.
pub fn find_message(svc: &Service, id: &str) -> Option<Value> {
    ["pending", "leased", "done", "dead"]
        .into_iter()
        .flat_map(|status| messages(svc, status))
        .find(|m| m["id"] == id)
}

/// Waits until message `id` has `status`, and returns its row.
pub fn wait_message(svc: &Service, id: &str, status: &str) -> Value {
    svc.poll_until(
        &format!("message {id} to be {status}"),
        QUEUE_TIMEOUT,
        || {
            messages(svc, status)
                .into_iter()
                .find(|m| m["id"] == id)
                .ok_or_else(|| match find_message(svc, id) {
                    Some(m) => m.to_string(),
                    None => "in no status list".to_string(),
                })
        },
    )
}

/// Waits until no receipt is pending or leased (everything settled).
pub fn wait_idle(svc: &Service, timeout: Duration) {
    svc.poll_until("no pending or leased receipts", timeout, || {
        // Pending twice around leased: a receipt moving leased -> pending
        // between two reads is still seen.
        let pending = messages(svc, "pending");
        let leased = messages(svc, "leased");
        let pending_again = messages(svc, "pending");
        if pending.is_empty() && leased.is_empty() && pending_again.is_empty() {
            Ok(())
        } else {
            let ids = |list: &[Value]| -> Vec<String> {
                list.iter().take(10).map(|m| m["id"].to_string()).collect()
            };
            Err(format!(
                "{} pending {:?}, {} leased {:?}",
                pending_again.len(),
                ids(&pending_again),
                leased.len(),
                ids(&leased)
            ))
        }
    });
}

/// The `x-message-id` header of a 202 from `/inbox`.
pub fn message_id(reply: &Reply) -> String {
    assert_eq!(reply.status, 202, "{reply:?}");
    reply
        .header("x-message-id")
        .unwrap_or_else(|| panic!("a durable 202 without x-message-id: {reply:?}"))
        .to_string()
}

fn count_status(runs: &[Value], status: &str) -> usize {
    runs.iter().filter(|r| r["status"] == status).count()
}

// ---------------------------------------------------------------------------
// Retries and the dead-letter list
// ---------------------------------------------------------------------------

#[test]
fn a_flaky_job_succeeds_on_its_third_attempt_and_compile_errors_never_retry() {
    let svc = Launch::new(PROJECT).start();

    let reply = svc.post_json("/inbox", r#"{"kind":"flaky","n":7}"#);
    assert_eq!(reply.json["data"], json(r#"["flaky"]"#), "{reply:?}");
    let flaky = message_id(&reply);
    let broken = message_id(&svc.post_json("/inbox", r#"{"kind":"broken"}"#));

    let done = wait_message(&svc, &flaky, "done");
    assert_eq!(done["attempts"], 3, "leased three times: {done}");
    assert_eq!(done["body"], json(r#"{"kind":"flaky","n":7}"#), "{done}");
    assert_eq!(done["source"], "inbox", "{done}");

    // Runs are recorded before the receipt is acknowledged.
    let runs = svc.runs("flaky");
    assert_eq!(runs.len(), 3, "three attempts, one run each: {runs:?}");
    assert_eq!(count_status(&runs, "failure"), 2, "{runs:?}");
    assert_eq!(
        runs[0]["status"], "success",
        "the last attempt succeeds: {runs:?}"
    );
    let last = svc.run(&runs[0]);
    assert_eq!(
        last["state"]["attempt"], 3,
        "the state of attempt 3: {last}"
    );
    assert_eq!(last["state"]["data"]["n"], 7, "{last}");
    for failed in &runs[1..] {
        let detail = svc.run(failed);
        assert!(
            log_lines(&detail).iter().any(|l| l.contains("not yet")),
            "a failed attempt's log should hold its error: {detail}"
        );
    }

    // A compile error is final on the first attempt, whatever the policy.
    let dead = wait_message(&svc, &broken, "dead");
    assert_eq!(dead["attempts"], 1, "{dead}");
    assert!(
        dead["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("broken")),
        "the dead-letter reason should name the job: {dead}"
    );
    let broken_runs = svc.runs("broken");
    assert_eq!(broken_runs.len(), 1, "never retried: {broken_runs:?}");
    assert_eq!(broken_runs[0]["status"], "failure");
}

#[test]
fn an_always_failing_job_is_dead_lettered_after_three_runs_and_can_be_retried() {
    let svc = Launch::new(PROJECT).start();

    let id = message_id(&svc.post_json("/inbox", r#"{"kind":"doomed","n":1}"#));
    let dead = wait_message(&svc, &id, "dead");
    assert_eq!(dead["attempts"], 3, "{dead}");
    let why = dead["last_error"].as_str().unwrap_or_default();
    assert!(
        why.contains("doomed"),
        "last_error should name the job: {dead}"
    );

    let runs = svc.runs("doomed");
    assert_eq!(runs.len(), 3, "max_attempts = 3: {runs:?}");
    assert_eq!(count_status(&runs, "failure"), 3, "{runs:?}");

    // The failure flow fires once, after the final attempt, with that
    // attempt's run in its errors.
    let catches = wait_for_runs(&svc, "doomed-catch", "success", 1);
    thread::sleep(Duration::from_secs(2));
    let catches_now = svc.runs("doomed-catch");
    assert_eq!(
        catches_now.len(),
        1,
        "one failure flow run per final failure: {catches_now:?}"
    );
    let caught = svc.run(&catches[0]);
    let errors = caught["state"]["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("the failure flow's state has no errors: {caught}"));
    assert_eq!(errors.len(), 1, "{caught}");
    assert_eq!(
        errors[0]["run_id"], runs[0]["id"],
        "the failure flow should follow the last attempt ({}), not an earlier one: {caught}",
        runs[0]["id"]
    );
    assert_eq!(caught["state"]["attempt"], 3, "{caught}");

    // Retrying: unknown ids are 404; a dead receipt goes back to pending.
    let unknown = svc.post("/api/messages/no-such-message/retry", "", None);
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert!(unknown.json["errors"].is_array(), "{unknown:?}");

    let retry = svc.post(&format!("/api/messages/{id}/retry"), "", None);
    assert_eq!(retry.status, 202, "{retry:?}");
    assert_eq!(retry.json["id"], id.as_str(), "{retry:?}");
    // It is pending or leased now (its next run takes about a second): 409.
    let again = svc.post(&format!("/api/messages/{id}/retry"), "", None);
    assert_eq!(
        again.status, 409,
        "a receipt in the queue cannot be retried: {again:?}"
    );

    let runs = wait_for_runs(&svc, "doomed", "failure", 4);
    assert!(runs.len() >= 4, "{runs:?}");

    // The retry starts a fresh round (attempts reset), so it ends dead again
    // after three more runs, with one more failure flow run.
    let dead = wait_message(&svc, &id, "dead");
    assert_eq!(dead["attempts"], 3, "a new round of attempts: {dead}");
    let runs = svc.runs("doomed");
    assert_eq!(
        runs.len(),
        6,
        "3 runs, then 3 more after the retry: {runs:?}"
    );
    wait_for_runs(&svc, "doomed-catch", "success", 2);
    thread::sleep(Duration::from_secs(2));
    let catches = svc.runs("doomed-catch");
    assert_eq!(
        catches.len(),
        2,
        "one failure flow run per round: {catches:?}"
    );

    // A done receipt can be retried too.
    let ok = message_id(&svc.post_json("/inbox", r#"{"kind":"echo","n":5}"#));
    wait_message(&svc, &ok, "done");
    let retry = svc.post(&format!("/api/messages/{ok}/retry"), "", None);
    assert_eq!(retry.status, 202, "{retry:?}");
    wait_for_runs(&svc, "echo", "success", 2);
    wait_message(&svc, &ok, "done");
}

// ---------------------------------------------------------------------------
// A torn or garbled journal
// ---------------------------------------------------------------------------

const JOURNAL_MAGIC: &[u8; 8] = b"OFNJRNL2";

/// One framed record of the journal: where it starts, its payload length and
/// what it is (the payload's first byte, its tag in plugins/journal/src/codec.rs).
#[derive(Debug)]
struct Record {
    start: usize,
    len: usize,
    op: &'static str,
}

fn op_name(tag: u8) -> &'static str {
    match tag {
        1 => "put",
        2 => "lease",
        3 => "ack",
        4 => "nack",
        5 => "dead",
        6 => "requeue",
        _ => "unknown",
    }
}

/// CRC-32 (IEEE), as the journal frames its records.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Parses a whole journal file, asserting that it is well formed: the magic,
/// then `[u32 LE len][u32 LE crc32][payload]` records up to the very end.
fn parse_journal(path: &Path) -> Vec<Record> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(
        bytes.starts_with(JOURNAL_MAGIC),
        "{} does not start with the journal magic",
        path.display()
    );
    let mut records = Vec::new();
    let mut at = JOURNAL_MAGIC.len();
    while at < bytes.len() {
        assert!(
            bytes.len() - at >= 8,
            "a torn header at {at} after a clean stop"
        );
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
        let payload = bytes
            .get(at + 8..at + 8 + len)
            .unwrap_or_else(|| panic!("a torn record at {at} after a clean stop"));
        assert_eq!(crc32(payload), crc, "CRC mismatch in the record at {at}");
        let op = op_name(payload.first().copied().unwrap_or(0));
        assert_ne!(op, "unknown", "the record at {at} has no known tag");
        records.push(Record { start: at, len, op });
        at += 8 + len;
    }
    records
}

/// Posts an `echo` receipt with `n`; returns its message id.
fn post_echo(svc: &Service, n: u64) -> String {
    message_id(&svc.post_json("/inbox", &format!(r#"{{"kind":"echo","n":{n}}}"#)))
}

/// `n` of each successful `echo` run, with how many runs had it.
fn echo_counts(svc: &Service) -> HashMap<u64, usize> {
    let mut counts = HashMap::new();
    for run in svc.runs_query("job=echo&status=success&limit=1000") {
        let detail = svc.run(&run);
        let n = detail["state"]["data"]["n"]
            .as_u64()
            .unwrap_or_else(|| panic!("an echo run without data.n: {detail}"));
        *counts.entry(n).or_default() += 1;
    }
    counts
}

/// The service's log lines containing `needle`.
fn log_matching(svc: &Service, needle: &str) -> Vec<String> {
    svc.logs()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

#[test]
fn finished_receipts_beyond_max_done_are_forgotten_oldest_first_with_a_warning() {
    // The README's way of configuring the built-in journal: only the key
    // that changes, the rest (its folder grant among them) built in.
    let project = r#"
[jobs.never]
adaptor = "@openfn/language-common@3.3.4"
expression = "fn(state => state);"
trigger = "never"
[triggers.never]
criteria = { never = true }

[plugins.journal]
config = { max_done = 3 }
"#;
    let svc = Launch::new(project).embedded().start();
    for n in 0..8 {
        message_id(&svc.post_json("/inbox", &format!(r#"{{"n":{n}}}"#)));
        wait_idle(&svc, QUEUE_TIMEOUT);
    }
    let done: Vec<Value> = messages(&svc, "done")
        .into_iter()
        .map(|m| m["body"]["n"].clone())
        .collect();
    assert_eq!(
        done,
        [json("5"), json("6"), json("7")],
        "the newest three are kept"
    );
    // The journal reports the trimming through the service's log; the test
    // reads that output through reader threads, which may lag.
    let warned = svc.log_lines_with("forgotten before their retention ran out");
    assert_eq!(warned.len(), 1, "one warning a minute at most: {warned:?}");
    assert!(warned[0].contains("max_done (3)"), "{warned:?}");
}

#[test]
fn a_garbled_or_torn_journal_tail_is_dropped_and_everything_before_it_survives() {
    let data = temp_dir("e2e-journal-");
    let journal = data.path().join("journal").join("messages.journal");

    // 1. Three receipts, delivered; a clean stop.
    let mut svc = Launch::new(PROJECT)
        .data_dir(data.path())
        .embedded()
        .start();
    let first: Vec<String> = (1..=3).map(|n| post_echo(&svc, n)).collect();
    for id in &first {
        wait_message(&svc, id, "done");
    }
    assert!(svc.stop().success(), "{}", svc.log_tail());
    drop(svc);
    let records = parse_journal(&journal);
    assert!(!records.is_empty(), "an empty journal after three receipts");

    // 2. Garbage appended: a plausible header with a bad CRC, then noise.
    let mut garbage = Vec::new();
    garbage.extend_from_slice(&9u32.to_le_bytes());
    garbage.extend_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
    garbage.extend_from_slice(b"{\"op\":\"ack\",\"id\":\"x\0\xff\xfe garbage garbage");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&journal)
            .unwrap();
        f.write_all(&garbage).unwrap();
        f.sync_all().unwrap();
    }

    let mut svc = Launch::new(PROJECT)
        .data_dir(data.path())
        .embedded()
        .start();
    let warned = log_matching(&svc, "torn or corrupt");
    assert!(
        warned.iter().any(|l| l.contains("1 torn or corrupt record")
            && l.contains(&format!("({} bytes cut)", garbage.len()))),
        "a warning naming the one garbled record and the {} bytes cut; got {warned:?}\n{}",
        garbage.len(),
        svc.log_tail()
    );
    wait_idle(&svc, QUEUE_TIMEOUT);
    for id in &first {
        let m = find_message(&svc, id).unwrap_or_else(|| panic!("receipt {id} lost"));
        assert_eq!(m["status"], "done", "{m}");
    }
    let counts = echo_counts(&svc);
    assert_eq!(
        counts,
        HashMap::from([(1, 1), (2, 1), (3, 1)]),
        "acknowledged receipts are not run again"
    );
    // New receipts are stored behind the cut, and run.
    let second: Vec<String> = (4..=5).map(|n| post_echo(&svc, n)).collect();
    for id in &second {
        wait_message(&svc, id, "done");
    }
    assert!(svc.stop().success(), "{}", svc.log_tail());
    drop(svc);

    // 3. The last record cut in half, as by a crash in the middle of a write.
    let records = parse_journal(&journal);
    let last = records.last().expect("records");
    let cut_at = last.start + 8 + last.len / 2;
    let full_len = std::fs::metadata(&journal).unwrap().len() as usize;
    println!(
        "cutting the last record in half: {} ({} bytes kept of {full_len})",
        last.op, cut_at
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap()
        .set_len(cut_at as u64)
        .unwrap();

    let svc = Launch::new(PROJECT)
        .data_dir(data.path())
        .embedded()
        .start();
    // What is cut is what is left of the torn record.
    let torn_bytes = cut_at - last.start;
    let warned = log_matching(&svc, "torn or corrupt");
    assert!(
        warned.iter().any(|l| l.contains("1 torn or corrupt record")
            && l.contains(&format!("({torn_bytes} bytes cut)"))),
        "a warning naming exactly the one torn record (the garbage is long gone) and the {torn_bytes} bytes cut; got {warned:?}\n{}",
        svc.log_tail()
    );
    wait_idle(&svc, QUEUE_TIMEOUT);
    for id in first.iter().chain(&second) {
        let m = find_message(&svc, id).unwrap_or_else(|| panic!("receipt {id} lost"));
        assert_eq!(m["status"], "done", "{m}");
    }
    let counts = echo_counts(&svc);
    for n in 1..=5 {
        assert!(
            counts.contains_key(&n),
            "receipt n={n} never ran: {counts:?}"
        );
    }
    // If the torn record was an acknowledgement, that receipt ran again
    // (at least once); nothing else did.
    let rerun: Vec<u64> = counts
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(n, _)| *n)
        .collect();
    if last.op == "ack" {
        assert_eq!(
            rerun.len(),
            1,
            "exactly the receipt whose ack was torn runs again: {counts:?}"
        );
    } else {
        assert!(rerun.is_empty(), "{counts:?}");
    }
    let third = post_echo(&svc, 6);
    wait_message(&svc, &third, "done");
    assert!(echo_counts(&svc).contains_key(&6));
}

// ---------------------------------------------------------------------------
// A store that refuses receipts
// ---------------------------------------------------------------------------

const REFUSING_PROJECT: &str = r#"
[inbox]
store = "refusing-store"

[jobs.echo]
adaptor = "@openfn/language-common"
trigger = "echo"
expression = "fn(state => state)"

[triggers.echo]
criteria = { kind = "echo" }
"#;

/// Starts a service whose `[inbox] store` is the refusing-store test plugin.
fn refusing_service() -> Service {
    let svc = Launch::new(REFUSING_PROJECT)
        .embedded()
        .file_bytes("plugins/refusing-store.wasm", &wasm("refusing_store.wasm"))
        .start();
    let entry = plugin(&svc, "refusing-store").expect("refusing-store is listed");
    assert_eq!(entry["kind"], "persistence", "{entry}");
    svc
}

/// Asserts a refusal: 503, a `Retry-After`, a JSON errors body, no message id.
fn assert_refused(reply: &Reply) {
    assert_eq!(
        reply.status, 503,
        "never 202 for a receipt not stored: {reply:?}"
    );
    let secs = reply
        .header("retry-after")
        .unwrap_or_else(|| panic!("a 503 without Retry-After: {reply:?}"));
    assert!(
        secs.parse::<u64>().is_ok_and(|s| s >= 1),
        "Retry-After should be whole seconds: {reply:?}"
    );
    let errors = reply.json["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("a JSON errors body: {reply:?}"));
    assert!(
        !errors.is_empty() && errors.iter().all(Value::is_string),
        "{reply:?}"
    );
    assert!(reply.header("x-message-id").is_none(), "{reply:?}");
    assert!(reply.header("idempotent-replay").is_none(), "{reply:?}");
}

#[test]
fn inbox_answers_503_with_retry_after_when_the_store_refuses() {
    let svc = refusing_service();

    let reply = svc.post_json("/inbox", r#"{"kind":"echo","n":1}"#);
    assert_refused(&reply);
    assert_eq!(
        reply.header("retry-after"),
        Some("3"),
        "the store asked for 3000 ms: {reply:?}"
    );
    // With a key too; and a refused key is not remembered as seen.
    for _ in 0..2 {
        let keyed = svc.post_json_with(
            "/inbox",
            r#"{"kind":"echo","n":2}"#,
            &[("Idempotency-Key", "k-1")],
        );
        assert_refused(&keyed);
    }
    // Whatever happens to the plugin after repeated refusals, a receipt is
    // never answered 202 unless stored.
    for _ in 0..6 {
        assert_refused(&svc.post_json("/inbox", r#"{"kind":"echo","n":3}"#));
    }
    thread::sleep(Duration::from_millis(1500));
    assert!(
        svc.runs("echo").is_empty(),
        "nothing runs for a refused receipt"
    );
}

/// `retry-after` means busy, not broken (wit/types.wit: only `unavailable`
/// "counts against the plugin's failure budget"): a store that keeps asking
/// to wait must keep being asked, and its own delay passed on.
#[test]
fn a_store_asking_to_wait_is_not_disabled_as_failing() {
    let svc = refusing_service();
    let mut seen = Vec::new();
    for i in 0..8 {
        let reply = svc.post_json("/inbox", r#"{"kind":"echo","n":1}"#);
        assert_refused(&reply);
        seen.push(reply.header("retry-after").unwrap_or_default().to_string());
        assert_eq!(
            reply.header("retry-after"),
            Some("3"),
            "receipt {}: the store asked for 3000 ms each time; Retry-After so far {seen:?}; body {}\n{}",
            i + 1,
            reply.body,
            svc.log_tail()
        );
    }
    let entry = plugin(&svc, "refusing-store").expect("listed");
    assert_eq!(entry["status"], "active", "{entry}");
    assert_eq!(svc.get_json("/api/messages?status=pending"), json("[]"));
}

#[test]
fn a_missing_store_plugin_stops_the_start_naming_inbox_store() {
    let output = Launch::new(REFUSING_PROJECT)
        .embedded()
        .expect_failure()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        output.contains("[inbox] store") && output.contains("refusing-store"),
        "the error should name [inbox] store and the plugin:\n{output}"
    );
    assert!(!output.contains("listening on"), "{output}");
}

// ---------------------------------------------------------------------------
// Idempotency keys
// ---------------------------------------------------------------------------

#[test]
fn a_resent_receipt_with_a_known_idempotency_key_runs_once() {
    let data = temp_dir("e2e-idempotency-");
    let mut svc = Launch::new(PROJECT).data_dir(data.path()).start();

    let body = r#"{"kind":"echo","n":1}"#;
    let first = svc.post_json_with("/inbox", body, &[("Idempotency-Key", "key-1")]);
    let id = message_id(&first);
    assert!(first.header("idempotent-replay").is_none(), "{first:?}");
    let second = svc.post_json_with("/inbox", body, &[("Idempotency-Key", "key-1")]);
    assert_eq!(second.status, 202, "{second:?}");
    assert_eq!(
        second.header("idempotent-replay"),
        Some("true"),
        "{second:?}"
    );
    assert_eq!(
        second.header("x-message-id"),
        Some(id.as_str()),
        "{second:?}"
    );
    assert_eq!(second.json["data"], json(r#"["echo"]"#), "{second:?}");

    // [inbox] idempotency_field = "id": the body's own id is the key.
    let by_field = message_id(&svc.post_json("/inbox", r#"{"kind":"echo","id":"order-9","n":2}"#));
    let resent = svc.post_json("/inbox", r#"{"kind":"echo","id":"order-9","n":3}"#);
    assert_eq!(resent.status, 202, "{resent:?}");
    assert_eq!(
        resent.header("idempotent-replay"),
        Some("true"),
        "{resent:?}"
    );
    assert_eq!(
        resent.header("x-message-id"),
        Some(by_field.as_str()),
        "{resent:?}"
    );

    wait_message(&svc, &id, "done");
    wait_message(&svc, &by_field, "done");
    wait_idle(&svc, QUEUE_TIMEOUT);
    thread::sleep(Duration::from_secs(1));
    assert_eq!(
        echo_counts(&svc),
        HashMap::from([(1, 1), (2, 1)]),
        "each key ran once"
    );
    assert_eq!(messages(&svc, "done").len(), 2, "two receipts stored");

    // The keys are remembered across a restart.
    assert!(svc.stop().success(), "{}", svc.log_tail());
    drop(svc);
    let svc = Launch::new(PROJECT).data_dir(data.path()).start();
    let third = svc.post_json_with("/inbox", body, &[("Idempotency-Key", "key-1")]);
    assert_eq!(
        third.header("idempotent-replay"),
        Some("true"),
        "after a restart: {third:?}"
    );
    assert_eq!(third.header("x-message-id"), Some(id.as_str()), "{third:?}");
    let fourth = svc.post_json("/inbox", r#"{"kind":"echo","id":"order-9","n":4}"#);
    assert_eq!(
        fourth.header("idempotent-replay"),
        Some("true"),
        "after a restart: {fourth:?}"
    );
    thread::sleep(Duration::from_millis(1500));
    wait_idle(&svc, QUEUE_TIMEOUT);
    assert_eq!(
        echo_counts(&svc),
        HashMap::from([(1, 1), (2, 1)]),
        "nothing new ran"
    );
    // Both answers since the restart were replays, and counted as such.
    let metrics = svc.get("/metrics").body;
    for counted in [
        "microservice_receipts_total{outcome=\"duplicate\"} 2",
        "microservice_receipts_total{outcome=\"accepted\"} 0",
    ] {
        assert!(metrics.contains(counted), "{counted}:\n{metrics}");
    }
}

/// A receipt no job matches has nothing to deliver: it is kept, listed and
/// recognised when re-sent, and done without a delivery. PostgreSQL stores
/// it done in the same write as its 202 (no attempt, no lease); the journal
/// stores it and acknowledges it with its next batch of acknowledgements.
#[test]
fn a_receipt_no_job_matches_is_stored_done_at_once_and_never_delivered() {
    let svc = Launch::new(PROJECT).start();
    let body = r#"{"kind":"nothing-matches-this"}"#;
    let first = svc.post_json_with("/inbox", body, &[("Idempotency-Key", "no-job-1")]);
    let id = message_id(&first);
    assert_eq!(first.json["data"], json("[]"), "{first:?}");
    let stored = if crate::postgres::enabled() {
        // Done already: no wait, no lease, no attempt.
        let done = messages(&svc, "done");
        let stored = done
            .iter()
            .find(|m| m["id"] == id.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("{id} is not done at once: {:?}", find_message(&svc, &id)));
        assert_eq!(stored["attempts"], 0, "{stored}");
        stored
    } else {
        wait_message(&svc, &id, "done")
    };
    assert_eq!(stored["body"], json(body), "{stored}");
    let again = svc.post_json_with("/inbox", body, &[("Idempotency-Key", "no-job-1")]);
    assert_eq!(again.header("idempotent-replay"), Some("true"), "{again:?}");
    assert_eq!(again.header("x-message-id"), Some(id.as_str()), "{again:?}");
    // A receipt that matches is delivered as before, beside it.
    let echoed = message_id(&svc.post_json("/inbox", r#"{"kind":"echo","n":7}"#));
    wait_message(&svc, &echoed, "done");
    assert_eq!(echo_counts(&svc), HashMap::from([(7, 1)]));
    wait_idle(&svc, QUEUE_TIMEOUT);
}

/// The same key sent by several clients at once (a retrying load balancer,
/// say) is still one receipt.
#[test]
fn concurrent_receipts_with_one_idempotency_key_run_once() {
    const CLIENTS: usize = 8;
    let svc = Launch::new(PROJECT).start();
    let barrier = std::sync::Barrier::new(CLIENTS);
    let replies: Vec<Reply> = thread::scope(|scope| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    svc.post_json_with(
                        "/inbox",
                        r#"{"kind":"echo","n":1}"#,
                        &[("Idempotency-Key", "same-key")],
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ids: std::collections::BTreeSet<String> = replies.iter().map(message_id).collect();
    let fresh = replies
        .iter()
        .filter(|r| r.header("idempotent-replay").is_none())
        .count();
    wait_idle(&svc, QUEUE_TIMEOUT);
    thread::sleep(Duration::from_secs(1));
    let runs = svc.runs("echo");
    assert!(
        ids.len() == 1 && fresh == 1 && runs.len() == 1,
        "{CLIENTS} concurrent receipts with one Idempotency-Key: {} message ids {ids:?}, {fresh} answered without idempotent-replay, {} runs",
        ids.len(),
        runs.len()
    );
}

// ---------------------------------------------------------------------------
// POST /api/runs/{id}/retry
// ---------------------------------------------------------------------------

#[test]
fn retrying_a_run_runs_the_same_job_again_with_the_same_input() {
    let svc = Launch::new(PROJECT).start();
    let receipt = r#"{"kind":"echo","n":42,"nested":{"list":[1,2]}}"#;
    message_id(&svc.post_json("/inbox", receipt));
    let original = wait_for_runs(&svc, "echo", "success", 1).remove(0);
    let original_id = run_id(&original);

    let reply = svc.post(&format!("/api/runs/{original_id}/retry"), "", None);
    assert_eq!(reply.status, 202, "{reply:?}");
    assert_eq!(reply.json["retry_of"], original_id.as_str(), "{reply:?}");
    let new_id = reply.json["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no run_id: {reply:?}"))
        .to_string();
    assert_ne!(new_id, original_id);

    // The 202 comes before the new run is recorded (it is recorded once it
    // has an engine slot): a 404 at first only means "not yet".
    let detail = svc.poll_until(&format!("run {new_id} to succeed"), QUEUE_TIMEOUT, || {
        let reply = svc.get(&format!("/api/runs/{new_id}"));
        match reply.status {
            200 if reply.json["status"] == "success" => Ok(reply.json),
            200 => Err(format!("status {}", reply.json["status"])),
            404 => Err("not recorded yet (404)".to_string()),
            _ => panic!("GET /api/runs/{new_id}: {reply:?}\n{}", svc.log_tail()),
        }
    });
    let before = svc.run(&original);
    assert_eq!(detail["job"], "echo", "{detail}");
    assert_eq!(detail["trigger"], before["trigger"], "{detail}");
    assert_eq!(
        detail["state"]["data"],
        json(receipt),
        "the same input: {detail}"
    );
    assert_eq!(detail["state"]["data"], before["state"]["data"]);
    assert_eq!(svc.runs("echo").len(), 2);

    let unknown = svc.post("/api/runs/no-such-run/retry", "", None);
    assert_eq!(unknown.status, 404, "{unknown:?}");
}
