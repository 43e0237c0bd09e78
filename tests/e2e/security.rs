//! API keys: `API_KEY` on `/inbox`, `ADMIN_API_KEY` on `/api` and
//! `/metrics`; 401 with a JSON error otherwise; keys never in the log; and
//! without keys the service stays on the loopback interface.

use crate::INBOX_PROJECT;
use crate::harness::{Launch, RECEIPT, Reply, Service, wait_for_runs};

const INBOX_KEY: &str = "inbox-key-4d1c9a7e";
const ADMIN_KEY: &str = "admin-key-b83f20c5";
const WRONG_KEY: &str = "wrong-key-77aa01";

fn assert_401(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {reply:?}");
    assert!(
        reply.json["errors"][0]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{what}: a JSON error is expected: {reply:?}"
    );
    for key in [INBOX_KEY, ADMIN_KEY, WRONG_KEY] {
        assert!(!reply.body.contains(key), "{what}: the answer holds a key");
    }
}

#[test]
fn keys_guard_the_inbox_and_the_api() {
    let svc = Service::start(
        INBOX_PROJECT,
        &[("API_KEY", INBOX_KEY), ("ADMIN_API_KEY", ADMIN_KEY)],
    );

    // /inbox: nothing, a wrong key, then the right one in either header form.
    assert_401(&svc.post_json("/inbox", RECEIPT), "no key");
    assert_401(
        &svc.post_json_with("/inbox", RECEIPT, &[("x-api-key", WRONG_KEY)]),
        "wrong key",
    );
    assert_401(
        &svc.post_json_with(
            "/inbox",
            RECEIPT,
            &[("authorization", &format!("Bearer {WRONG_KEY}"))],
        ),
        "wrong bearer",
    );
    let ok = svc.post_json_with("/inbox", RECEIPT, &[("x-api-key", INBOX_KEY)]);
    assert_eq!(ok.status, 202, "{ok:?}");
    let ok = svc.post_json_with(
        "/inbox",
        RECEIPT,
        &[("authorization", &format!("Bearer {INBOX_KEY}"))],
    );
    assert_eq!(ok.status, 202, "{ok:?}");

    // /api and /metrics take the admin key only.
    assert_401(&svc.get("/api/jobs"), "api without a key");
    assert_401(
        &svc.get_with("/api/jobs", &[("x-api-key", INBOX_KEY)]),
        "api with the inbox key",
    );
    assert_401(&svc.get("/metrics"), "metrics without a key");
    let admin = [("x-api-key", ADMIN_KEY)];
    assert_eq!(svc.get_with("/api/jobs", &admin).status, 200);
    assert_eq!(svc.get_with("/metrics", &admin).status, 200);
    // The admin key opens the inbox too.
    assert_eq!(svc.post_json_with("/inbox", RECEIPT, &admin).status, 202);
    // Probes carry no key.
    assert_eq!(svc.get("/healthz").status, 200);
    assert_eq!(svc.get("/readyz").status, 200);

    // Let the runs finish, so their log lines are in the output too.
    let deadline = std::time::Instant::now() + crate::harness::RUN_TIMEOUT;
    loop {
        let runs = svc.get_with("/api/runs?job=job-1&status=success", &admin);
        if runs.json.as_array().is_some_and(|r| r.len() >= 3) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "runs did not finish: {runs:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let metrics = svc.get_with("/metrics", &admin).body;
    assert!(
        metrics.contains("microservice_receipts_total{outcome=\"unauthorized\"} 3"),
        "{metrics}"
    );
    let logs = svc.logs();
    for key in [INBOX_KEY, ADMIN_KEY, WRONG_KEY] {
        assert!(!logs.contains(key), "a key reached the log:\n{logs}");
    }
}

#[test]
fn without_keys_the_service_stays_on_loopback() {
    // An empty HOST_URL counts as unset: the default applies.
    let svc = Launch::new(INBOX_PROJECT).env("HOST_URL", "").start();
    assert!(svc.addr().starts_with("127.0.0.1:"), "{}", svc.addr());
    let logs = svc.logs();
    assert!(
        logs.contains("listens on this machine only") && logs.contains("API_KEY"),
        "the start-up log should say why:\n{logs}"
    );
    // And without keys nothing asks for one.
    assert_eq!(svc.post_json("/inbox", RECEIPT).status, 202);
    wait_for_runs(&svc, "job-1", "success", 1);
}

#[test]
fn a_key_only_for_the_inbox_leaves_the_api_open() {
    let svc: Service = Launch::new(INBOX_PROJECT).env("API_KEY", INBOX_KEY).start();
    assert_401(&svc.post_json("/inbox", RECEIPT), "no key");
    assert_eq!(svc.get("/api/jobs").status, 200);
}
