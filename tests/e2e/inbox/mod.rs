//! `POST /inbox` in the default (async) style: matching receipts start runs
//! and are answered with 202 and the matched job names; criteria are deep
//! containment; receipts that match nothing start no run.
//!
//! What real senders send and how they connect, in the submodules:
//! [`formats`] (every accepted body), [`openrosa`] (`/submission`),
//! [`arrival`] (`state.receipt`) and [`connections`] (timeouts, the
//! connection limit, `HEAD`).

mod arrival;
mod connections;
mod formats;
mod openrosa;

use serde_json::Value;

use crate::INBOX_PROJECT;
use crate::harness::{RECEIPT, Service, json, log_lines, wait_for_runs};

/// The exact 202 body for a receipt that matched `jobs`.
fn accepted(jobs: &[&str]) -> Value {
    serde_json::json!({
        "meta": { "message": "Data accepted and processing has begun." },
        "data": jobs,
        "errors": [],
    })
}

#[test]
fn matching_receipt_is_accepted_and_job_state_is_saved() {
    let svc = Service::start(INBOX_PROJECT, &[]);

    let reply = svc.post_json("/inbox", RECEIPT);
    assert_eq!(reply.status, 202, "{reply:?}");
    assert_eq!(reply.json, accepted(&["job-1"]), "body: {}", reply.body);

    let state = svc.poll_until(
        "job-1 state with data.number == 4",
        crate::harness::RUN_TIMEOUT,
        || match svc.job_state("job-1") {
            Some(s) if s["data"]["number"] == 4 => Ok(s),
            other => Err(format!("state {other:?}; runs {:?}", svc.runs("job-1"))),
        },
    );
    // The rest of the receipt is carried through untouched.
    let mut expected_data = json(RECEIPT);
    expected_data["number"] = 4.into();
    assert_eq!(state["data"], expected_data);
    assert!(state.get("configuration").is_none(), "state: {state}");

    let runs = wait_for_runs(&svc, "job-1", "success", 1);
    assert_eq!(runs.len(), 1, "runs: {runs:?}");
    let run = &runs[0];
    assert_eq!(run["job"], "job-1");
    assert_eq!(run["trigger"], "trigger-1");
    assert_eq!(run["exit_code"], 0);
    assert!(
        !run["started_at"].is_null() && !run["finished_at"].is_null(),
        "run: {run}"
    );
    assert!(run["duration_ms"].is_u64(), "run: {run}");

    let detail = svc.run(run);
    assert_eq!(detail["id"], run["id"]);
    assert_eq!(detail["status"], "success");
    assert_eq!(detail["state"]["data"]["number"], 4);
    log_lines(&detail);

    let jobs = svc.get_json("/api/jobs");
    let job1 = jobs
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["name"] == "job-1"))
        .unwrap_or_else(|| panic!("job-1 missing from /api/jobs: {jobs}"));
    assert_eq!(job1["trigger"], "trigger-1");
    assert!(
        job1["adaptor"]
            .as_str()
            .is_some_and(|a| a.starts_with("@openfn/language-common")),
        "{job1}"
    );
    assert!(job1["trigger_kind"].is_string(), "{job1}");
}

#[test]
fn receipt_matching_nothing_is_accepted_without_runs() {
    let svc = Service::start(INBOX_PROJECT, &[]);

    let reply = svc.post_json("/inbox", r#"{"number": 3, "kind": "nothing"}"#);
    assert_eq!(reply.status, 202, "{reply:?}");
    assert_eq!(reply.json, accepted(&[]), "body: {}", reply.body);

    // A matching receipt sent afterwards acts as a barrier: once its run has
    // finished, any run for the first receipt would have been recorded too.
    let reply = svc.post_json("/inbox", RECEIPT);
    assert_eq!(reply.json, accepted(&["job-1"]), "body: {}", reply.body);
    wait_for_runs(&svc, "job-1", "success", 1);

    let runs = svc.runs_query("limit=1000");
    let unexpected: Vec<&Value> = runs
        .iter()
        .filter(|r| r["job"] != "job-1" && r["job"] != "flow-job")
        .collect();
    assert!(
        unexpected.is_empty(),
        "runs for a non-matching receipt: {unexpected:?}"
    );
    assert_eq!(svc.runs("job-1").len(), 1, "all runs: {runs:?}");
    assert!(svc.job_state("bad-job").is_none());
}

#[test]
fn criteria_match_by_deep_containment() {
    let svc = Service::start(include_str!("../../projects/criteria/project.toml"), &[]);

    let matched = |body: &str| -> Vec<String> {
        let reply = svc.post_json("/inbox", body);
        assert_eq!(reply.status, 202, "{body}: {reply:?}");
        let mut names: Vec<String> = reply.json["data"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}: no data array: {}", reply.body))
            .iter()
            .map(|n| n.as_str().expect("job name").to_string())
            .collect();
        names.sort();
        names
    };

    // The fixture has the nested object, the array elements 1 and 3 and the
    // number 2 (== 2.0).
    assert_eq!(
        matched(RECEIPT),
        ["everything", "float", "nested", "subset"]
    );
    // `{}` matches anything; the others fail on one nested detail each.
    assert_eq!(
        matched(r#"{"object":{"a":2},"string":"here","array":[1,4],"number":2.5}"#),
        ["everything"]
    );

    // Every matched job runs.
    for (job, n) in [
        ("everything", 2),
        ("float", 1),
        ("nested", 1),
        ("subset", 1),
    ] {
        wait_for_runs(&svc, job, "success", n);
    }
}

/// Criteria compare numbers as exact decimals, as Postgres compares
/// `numeric`s: past 2^53 and 2^64, in long decimals and in exponent form,
/// with `2` still equal to `2.0`. The receipt is matched twice (for the 202,
/// then when the message store delivers it), and both must agree; the stored
/// body and the run's recorded input keep every digit.
#[test]
fn criteria_compare_numbers_exactly() {
    let svc = Service::start(include_str!("../../projects/numbers/project.toml"), &[]);

    // (receipt, the jobs it must match)
    let cases: &[(&str, &[&str])] = &[
        (r#"{"id": 18446744073709551617}"#, &["past-2-64"]),
        (r#"{"id": 18446744073709551617.000}"#, &["past-2-64"]),
        (r#"{"id": 1.8446744073709551617e19}"#, &["past-2-64"]),
        // 2^64 and 2^64 + 2: the same double as 2^64 + 1.
        (r#"{"id": 18446744073709551616}"#, &[]),
        (r#"{"id": 18446744073709551618}"#, &[]),
        (r#"{"id": -18446744073709551617}"#, &["negative-past-2-64"]),
        (r#"{"id": -18446744073709551616}"#, &[]),
        (r#"{"id": 9007199254740993.0}"#, &["past-2-53"]),
        // 2^53: the double nearest to 2^53 + 1.
        (r#"{"id": 9007199254740992.0}"#, &[]),
        (r#"{"amount": 0.1000000000000000000001}"#, &["long-decimal"]),
        (r#"{"amount": 0.1}"#, &[]),
        (r#"{"qty": 100}"#, &["exponent", "toml-integer"]),
        (r#"{"qty": 1E+2}"#, &["exponent", "toml-integer"]),
        (r#"{"qty": 10000e-2}"#, &["exponent", "toml-integer"]),
        (r#"{"qty": 100.00000000000000000001}"#, &[]),
    ];
    let mut ids = Vec::new();
    for (body, jobs) in cases {
        let reply = svc.post_json("/inbox", body);
        assert_eq!(reply.status, 202, "{body}: {reply:?}");
        let mut names: Vec<&str> = reply.json["data"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}: no data array: {}", reply.body))
            .iter()
            .map(|n| n.as_str().expect("job name"))
            .collect();
        names.sort();
        assert_eq!(names, *jobs, "{body} matched {names:?}");
        let id = reply
            .header("x-message-id")
            .unwrap_or_else(|| panic!("{body}: no x-message-id: {reply:?}"));
        ids.push(id.to_string());
    }

    // Every receipt delivered, so every run it started is recorded.
    for id in &ids {
        crate::queue::wait_message(&svc, id, "done");
    }
    let mut expected_runs = std::collections::BTreeMap::<&str, usize>::new();
    for job in cases.iter().flat_map(|(_, jobs)| jobs.iter()) {
        *expected_runs.entry(job).or_default() += 1;
    }
    for (job, n) in &expected_runs {
        let runs = wait_for_runs(&svc, job, "success", *n);
        assert_eq!(runs.len(), *n, "{job}: {runs:?}");
    }

    // The stored bodies, as the API gives them back: every digit.
    let stored = svc.get("/api/messages?status=done&limit=1000").body;
    for number in [
        "18446744073709551617",
        "18446744073709551616",
        "-18446744073709551617",
        "9007199254740993.0",
        "0.1000000000000000000001",
        "100.00000000000000000001",
    ] {
        assert!(
            stored.contains(&format!(":{number}}}")),
            "{number} is not in the stored bodies: {stored}"
        );
    }

    // The runs' recorded inputs (what a retry of the run starts from).
    // As the store keeps them: the SQLite file, or the database.
    let inputs = stored_inputs(&svc, "past-2-64");
    // Each is `{"data":...,"receipt":{...}}`: the data as sent, then how it
    // arrived (see inbox::arrival).
    let mut data: Vec<&str> = inputs
        .iter()
        .map(|input| {
            let (data, receipt) = input
                .split_once(r#","receipt":"#)
                .unwrap_or_else(|| panic!("no receipt after the data: {input}"));
            assert!(receipt.contains(r#""source":"inbox""#), "{input}");
            data
        })
        .collect();
    data.sort();
    assert_eq!(
        data,
        [
            r#"{"data":{"id":1.8446744073709551617e+19}"#,
            r#"{"data":{"id":18446744073709551617.000}"#,
            r#"{"data":{"id":18446744073709551617}"#,
        ]
    );
}

/// The recorded input states of `job`'s runs, read from the store itself:
/// the SQLite file, or the database with `STORAGE=postgres`.
fn stored_inputs(svc: &Service, job: &str) -> Vec<String> {
    if crate::postgres::enabled() {
        let url = crate::postgres::database_url_for(svc.data_dir());
        let out = crate::postgres::shared()
            .sql(&url, &format!("SELECT input FROM runs WHERE job = '{job}'"));
        return out.lines().map(str::to_string).collect();
    }
    let db = rusqlite::Connection::open_with_flags(
        svc.data_dir().join("microservice.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open microservice.db");
    db.prepare("SELECT input FROM runs WHERE job = ?1")
        .and_then(|mut q| q.query_map([job], |row| row.get(0))?.collect())
        .expect("read the runs' inputs")
}
