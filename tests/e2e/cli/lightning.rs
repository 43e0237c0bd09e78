//! An OpenFn Lightning project (`tests/projects/lightning/project.yaml`,
//! written for these tests in Lightning's export format) imported with
//! `microservice import`, checked, then served: its webhook paths, every
//! edge kind (the disabled one too), conditions, several incoming edges,
//! and the reply after completion. Then webhook keys and reply deadlines
//! on a project written by hand.

use std::path::{Path, PathBuf};

use super::import::launch;
use super::{Scratch, describe, output, text};
use crate::harness::{Launch, Service, wait_for_runs};

const CREDENTIAL_VAR: &str = "OPENFN_CREDENTIAL_RECORDS_API";
/// The credential's body, as the variable holds it; its token must never
/// show in a log.
const CREDENTIAL: &str = r#"{"token": "tok-5f2c9a81"}"#;

fn lightning_yaml() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/projects/lightning/project.yaml")
}

/// Finished runs of `job`, however they ended.
fn runs_of(svc: &Service, job: &str) -> usize {
    svc.runs(job).len()
}

#[test]
fn a_lightning_project_imports_checks_and_runs_its_workflows() {
    let s = Scratch::new(None);
    let yaml = s.dir().join("project.yaml");
    std::fs::copy(lightning_yaml(), &yaml).unwrap();
    let project = s.project();
    let out = s.run(
        &[
            "import",
            yaml.to_str().unwrap(),
            "--out",
            project.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!text(&out.stderr).contains("warning"), "{}", describe(&out));
    let stdout = text(&out.stdout);
    for expected in [
        "imported 8 jobs, 10 triggers and 1 credential",
        "credential `records@clinic.example-records-api`: set OPENFN_CREDENTIAL_RECORDS_API to its JSON body",
        "webhook `patient-intake-webhook`: POST /i/patient-intake",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected}: {}",
            describe(&out)
        );
    }

    // `check` wants the credential's variable, names it, and accepts the
    // project once it is set.
    let out = s.run(&["check"], None);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out.stderr)
            .contains("environment variable `OPENFN_CREDENTIAL_RECORDS_API` is not set"),
        "{}",
        describe(&out)
    );
    let mut check = s.cmd(&["check"]);
    check.env(CREDENTIAL_VAR, CREDENTIAL);
    let out = output(check, None);
    assert!(out.status.success(), "{}", describe(&out));

    let svc = launch(&project).env(CREDENTIAL_VAR, CREDENTIAL).start();
    // An urgent patient: register succeeds, then notify-ward (success edge)
    // and urgent-escalation (its js_expression holds), then audit after
    // notify-ward. The reply waits for all of them.
    let reply = svc.post_json(
        "/i/patient-intake",
        r#"{"name": "Ada", "priority": "urgent"}"#,
    );
    assert_eq!(reply.status, 201, "{reply:?}\n{}", svc.log_tail());
    assert_eq!(reply.json["data"]["registered"], true, "{reply:?}");
    assert!(reply.json.get("configuration").is_none(), "{reply:?}");
    let run_ids = reply
        .header("x-run-ids")
        .unwrap_or_default()
        .split(',')
        .count();
    assert_eq!(run_ids, 4, "{reply:?}");
    for (job, n) in [
        ("register", 1),
        ("notify-ward", 1),
        ("urgent-escalation", 1),
        ("audit", 1),
        ("log-failure", 0),
        // Its edge is disabled.
        ("legacy-export", 0),
    ] {
        assert_eq!(runs_of(&svc, job), n, "{job}\n{}", svc.log_tail());
    }
    let escalated = svc.job_state("urgent-escalation").unwrap();
    assert_eq!(escalated["data"]["escalated"], true, "{escalated}");
    assert_eq!(escalated["data"]["registered"], true, "{escalated}");
    // Its job is written in today's syntax (lazy state, `?.`, `??`).
    assert_eq!(escalated["data"]["escalated_to"], "on-call", "{escalated}");

    // A routine patient: the condition does not hold, the branch does not run.
    let reply = svc.post_json(
        "/i/patient-intake",
        r#"{"name": "Bo", "priority": "routine"}"#,
    );
    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(runs_of(&svc, "urgent-escalation"), 1);
    assert_eq!(runs_of(&svc, "notify-ward"), 2);

    // A rejected patient: register fails, the failure edge runs log-failure
    // (with the error), audit follows it (its second incoming edge), and
    // the reply carries the failure code with the failed step.
    let reply = svc.post_json("/i/patient-intake", r#"{"name": "Cy", "reject": true}"#);
    assert_eq!(reply.status, 422, "{reply:?}");
    assert_eq!(reply.json["errors"][0]["job"], "register", "{reply:?}");
    wait_for_runs(&svc, "register", "failure", 1);
    assert_eq!(runs_of(&svc, "log-failure"), 1);
    assert_eq!(
        svc.job_state("log-failure").unwrap()["data"]["failure_logged"],
        1
    );
    assert_eq!(runs_of(&svc, "audit"), 3);
    assert_eq!(runs_of(&svc, "notify-ward"), 2);
    assert_eq!(runs_of(&svc, "urgent-escalation"), 1);

    // The disabled webhook, an unknown path, and `/inbox`: none starts a job.
    let reply = svc.post_json("/i/nightly-visits", "{}");
    assert_eq!(reply.status, 404, "{reply:?}");
    assert!(
        reply.json["errors"][0]
            .as_str()
            .unwrap()
            .contains("/i/nightly-visits")
    );
    assert_eq!(svc.post_json("/i/nowhere", "{}").status, 404);
    let reply = svc.post_json("/inbox", r#"{"name": "Di", "priority": "urgent"}"#);
    assert_eq!(reply.status, 202);
    assert_eq!(reply.json["data"], serde_json::json!([]), "{reply:?}");
    assert_eq!(runs_of(&svc, "register"), 3);
    assert!(
        !svc.logs().contains("tok-5f2c9a81"),
        "the credential leaked into the log"
    );
}

/// Webhook keys (an API key, Basic auth) beside the service's own, and the
/// reply modes: 202 at once, after completion with its own code, and past
/// the reply deadline.
#[test]
fn webhooks_take_their_own_keys_and_reply_modes() {
    let svc = Launch::new(
        r#"
[jobs.echo]
adaptor = "@openfn/language-common@3.3.4"
expression = "fn(state => { state.data.seen = true; return state; })"
trigger = ["keyed", "basic", "open"]

[jobs.slow]
adaptor = "@openfn/language-common@3.3.4"
expression = "fn(state => new Promise(resolve => setTimeout(() => resolve(state), 4000)))"
trigger = "hurry"

[triggers.keyed]
webhook = "keyed"
api_key = { env = "KEYED_KEYS" }
reply = "after_completion"
success_code = 200

[triggers.basic]
webhook = "basic"
basic = { username = "clinic", password = { env = "BASIC_PASSWORD" } }

[triggers.open]
webhook = "open"

[triggers.hurry]
webhook = "hurry"
reply = "after_completion"
reply_timeout = "1s"
"#,
    )
    .env("KEYED_KEYS", "key-old-7d1e, key-new-93ab")
    .env("BASIC_PASSWORD", "pw-c41f0b")
    .env("API_KEY", "global-2e8f")
    .start();
    let post = |path: &str, headers: &[(&str, &str)]| svc.post_json_with(path, "{}", headers);

    // Its own keys (either of a rotation), the global key, nothing else.
    assert_eq!(post("/i/keyed", &[]).status, 401);
    assert_eq!(post("/i/keyed", &[("x-api-key", "key-wrong")]).status, 401);
    let reply = post("/i/keyed", &[("x-api-key", "key-new-93ab")]);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json["data"]["seen"], true, "{reply:?}");
    let bearer = post("/i/keyed", &[("authorization", "Bearer key-old-7d1e")]);
    assert_eq!(bearer.status, 200, "{bearer:?}");
    assert_eq!(
        post("/i/keyed", &[("x-api-key", "global-2e8f")]).status,
        200
    );

    // Basic auth: the user name and the password must both be right.
    let basic = |pair: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    };
    let ok = post("/i/basic", &[("authorization", &basic("clinic:pw-c41f0b"))]);
    assert_eq!(ok.status, 202, "{ok:?}");
    assert_eq!(ok.json["data"], serde_json::json!(["echo"]), "{ok:?}");
    assert_eq!(
        post("/i/basic", &[("authorization", &basic("other:pw-c41f0b"))]).status,
        401
    );
    assert_eq!(
        post("/i/basic", &[("authorization", &basic("clinic:nope"))]).status,
        401
    );

    // A webhook without keys of its own is guarded like /inbox.
    assert_eq!(post("/i/open", &[]).status, 401);
    assert_eq!(post("/i/open", &[("x-api-key", "global-2e8f")]).status, 202);

    // Past the reply deadline: the 202, and the run goes on to the end.
    let started = std::time::Instant::now();
    let late = post("/i/hurry", &[("x-api-key", "global-2e8f")]);
    assert_eq!(late.status, 202, "{late:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "{late:?}"
    );
    let message = late.json["meta"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("still running after 1s"), "{late:?}");
    assert_eq!(late.json["data"], serde_json::json!(["slow"]), "{late:?}");
    wait_for_runs(&svc, "slow", "success", 1);

    let logs = svc.logs();
    for secret in ["key-old-7d1e", "key-new-93ab", "pw-c41f0b", "global-2e8f"] {
        assert!(!logs.contains(secret), "{secret} leaked into the log");
    }
}

/// Without the durable inbox the reply after completion waits for the runs
/// started at once and the flows after them: the last step's state comes back.
#[test]
fn a_reply_after_completion_without_the_durable_inbox_waits_for_the_flows() {
    let svc = Launch::new(
        r#"
[inbox]
durable = false

[jobs.first]
adaptor = "@openfn/language-common@3.3.4"
expression = "fn(state => { state.data.steps = ['first']; return state; })"
trigger = "hook"

[jobs.second]
adaptor = "@openfn/language-common@3.3.4"
expression = "fn(state => { state.data.steps.push('second'); return state; })"
trigger = "after-first"

[triggers.hook]
webhook = "hook"
reply = "after_completion"

[triggers.after-first]
success = "first"
condition = "state.data.steps.length === 1"
"#,
    )
    .start();
    let reply = svc.post_json("/i/hook", "{}");
    assert_eq!(reply.status, 201, "{reply:?}\n{}", svc.log_tail());
    assert_eq!(
        reply.json["data"]["steps"],
        serde_json::json!(["first", "second"]),
        "{reply:?}"
    );
}
