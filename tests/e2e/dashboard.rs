//! The dashboard: its page and assets (CSP, caching), the API it reads
//! (`/api/stats`, the extended `/api/jobs`), and the whole page driven in
//! real headless Chromium by `tests/browser/dashboard.mjs`, and its
//! Workflows tab by `tests/browser/workflows.mjs` (playwright-core with
//! Debian's `chromium`; `make setup` installs it). A missing Chromium
//! fails the test: it is never skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Launch, Service, scratch_dir, temp_dir, wait_for_runs};

const PROJECT: &str = include_str!("../projects/dashboard/project.toml");
const WORKFLOWS_PROJECT: &str = include_str!("../projects/workflows/project.toml");
/// The browser script's own waits are 90 s each; this bounds the whole run.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(600);

fn stats(svc: &Service) -> Value {
    svc.get_json("/api/stats")
}

fn job<'a>(jobs: &'a Value, name: &str) -> &'a Value {
    jobs.as_array()
        .and_then(|all| all.iter().find(|j| j["name"] == name))
        .unwrap_or_else(|| panic!("{name} missing from /api/jobs: {jobs}"))
}

#[test]
fn the_page_and_its_assets_are_served_with_a_strict_csp() {
    let svc = Launch::new(PROJECT).start();

    let page = svc.get("/");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{page:?}"
    );
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.starts_with("default-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(
        page.body.contains("/dashboard/app.js"),
        "the page loads its script"
    );
    assert_eq!(page.header("cache-control"), Some("no-cache"), "{page:?}");
    assert!(page.header("etag").is_some(), "{page:?}");

    for (file, kind) in [
        ("app.js", "text/javascript"),
        ("dom.js", "text/javascript"),
        ("charts.js", "text/javascript"),
        ("library.js", "text/javascript"),
        ("workflows.js", "text/javascript"),
        ("graph.js", "text/javascript"),
        ("style.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let reply = svc.get(&format!("/dashboard/{file}"));
        assert_eq!(reply.status, 200, "{file}: {reply:?}");
        assert!(
            reply
                .header("content-type")
                .is_some_and(|t| t.starts_with(kind)),
            "{file}: {reply:?}"
        );
        assert!(reply.header("content-security-policy").is_some(), "{file}");
    }
    let missing = svc.get("/dashboard/secrets.txt");
    assert_eq!(missing.status, 404, "{missing:?}");
    assert!(missing.json["errors"].is_array(), "{missing:?}");
    let posted = svc.post_json("/", "{}");
    assert_eq!(posted.status, 405, "{posted:?}");
}

#[test]
fn stats_and_jobs_report_the_last_hour_and_runs_survive_a_restart() {
    let data = temp_dir("e2e-dashboard-data-");
    let mut svc = Launch::new(PROJECT).data_dir(data.path()).start();

    let empty = stats(&svc);
    assert_eq!(empty["minutes"], 60, "{empty}");
    assert_eq!(
        empty["buckets"].as_array().map(Vec::len),
        Some(60),
        "{empty}"
    );
    assert_eq!(empty["totals"]["runs"], 0, "{empty}");
    assert!(empty["totals"]["success_rate"].is_null(), "{empty}");
    assert_eq!(empty["queue"]["durable"], true, "{empty}");
    assert!(empty["queue"]["depth"].is_u64(), "{empty}");
    let jobs = svc.get_json("/api/jobs");
    assert!(job(&jobs, "double")["last_run"].is_null(), "{jobs}");
    assert!(job(&jobs, "double")["success_rate"].is_null(), "{jobs}");

    for n in 1..=3 {
        let reply = svc.post_json(
            "/inbox",
            &format!(r#"{{"kind":"double","number":{n},"marker":"s{n}"}}"#),
        );
        assert_eq!(reply.status, 202, "{reply:?}");
    }
    let reply = svc.post_json("/inbox", r#"{"kind":"doomed","note":"x"}"#);
    assert_eq!(reply.status, 202, "{reply:?}");
    let reply = svc.post_json("/inbox", r#"{"kind":"nothing"}"#);
    assert_eq!(reply.status, 202, "{reply:?}");
    let doubles = wait_for_runs(&svc, "double", "success", 3);
    wait_for_runs(&svc, "doomed", "failure", 1);

    let s = stats(&svc);
    let totals = &s["totals"];
    assert_eq!(totals["receipts"], 5, "every receipt is counted: {s}");
    assert_eq!(totals["runs"], 4, "{s}");
    assert_eq!(totals["succeeded"], 3, "{s}");
    assert_eq!(totals["failed"], 1, "{s}");
    assert_eq!(totals["success_rate"], 0.75, "{s}");
    let p50 = totals["p50_ms"].as_i64().expect("p50_ms");
    let p95 = totals["p95_ms"].as_i64().expect("p95_ms");
    assert!(0 <= p50 && p50 <= p95, "{s}");
    let buckets = s["buckets"].as_array().unwrap();
    let runs_in_buckets: u64 = buckets.iter().map(|b| b["runs"].as_u64().unwrap()).sum();
    assert_eq!(runs_in_buckets, 4, "{s}");
    let last = buckets.last().unwrap();
    assert!(
        last["start_ms"].as_u64().unwrap() <= s["now_ms"].as_u64().unwrap(),
        "the last bucket is the current minute: {s}"
    );

    let jobs = svc.get_json("/api/jobs");
    let double = job(&jobs, "double");
    assert_eq!(double["last_run"]["id"], doubles[0]["id"], "{double}");
    assert_eq!(double["last_run"]["status"], "success", "{double}");
    assert!(double["last_run"]["finished_at"].is_string(), "{double}");
    assert_eq!(double["success_rate"], 1.0, "{double}");
    assert_eq!(double["recent_runs"], 3, "{double}");
    assert_eq!(job(&jobs, "doomed")["success_rate"], 0.0, "{jobs}");
    // The fields the API had before are all still there.
    for key in [
        "name",
        "adaptor",
        "trigger",
        "trigger_kind",
        "trigger_detail",
        "has_credential",
        "timeout_ms",
    ] {
        assert!(!double[key].is_null(), "{key} missing: {double}");
    }

    for bad in ["minutes=0", "minutes=61", "minutes=abc", "window=5"] {
        let reply = svc.get(&format!("/api/stats?{bad}"));
        assert_eq!(reply.status, 400, "{bad}: {reply:?}");
        assert!(reply.json["errors"][0].is_string(), "{bad}: {reply:?}");
    }
    let short = svc.get_json("/api/stats?minutes=5");
    assert_eq!(
        short["buckets"].as_array().map(Vec::len),
        Some(5),
        "{short}"
    );

    // Run figures come from the run records; receipt counts were in memory.
    svc.stop();
    let svc = Launch::new(PROJECT).data_dir(data.path()).start();
    let s = stats(&svc);
    assert_eq!(s["totals"]["runs"], 4, "runs survive a restart: {s}");
    assert_eq!(s["totals"]["receipts"], 0, "{s}");
}

// ---------------------------------------------------------------------------
// The browser test
// ---------------------------------------------------------------------------

/// Debian's Chromium, or `CHROMIUM`. Missing is a failure, with the fix.
fn chromium() -> PathBuf {
    let path = PathBuf::from(std::env::var("CHROMIUM").unwrap_or("/usr/bin/chromium".into()));
    assert!(
        path.is_file(),
        "{} is missing: the dashboard test needs Debian's chromium. Run `make setup` \
         (it runs `apt-get install -y --no-install-recommends chromium`), or set CHROMIUM",
        path.display()
    );
    path
}

static NODE_MODULES: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// `tests/browser`, with its locked dependencies installed (`npm ci`, once,
/// when `node_modules` lacks playwright-core).
fn browser_dir() -> PathBuf {
    NODE_MODULES
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
            crate::harness::npm_ci(&dir, "playwright-core/package.json")
        })
        .clone()
        .unwrap_or_else(|e| panic!("installing the browser test's packages failed:\n{e}"))
}

/// Runs `tests/browser/<script>` against `svc`, with screenshots in
/// `$CARGO_TARGET_TMPDIR/<name>/`, and fails with everything it printed
/// or when one of `screenshots` was not saved.
fn run_browser_test(svc: &Service, script: &str, name: &str, extra: &[&str], screenshots: &[&str]) {
    let chromium = chromium();
    let dir = browser_dir();
    let out = scratch_dir().join(name);
    std::fs::create_dir_all(&out).unwrap();
    let log_path = out.join("browser.log");
    let log = std::fs::File::create(&log_path).unwrap();

    let mut child = Command::new("node")
        .arg(dir.join(script))
        .arg("--url")
        .arg(svc.url("/"))
        .arg("--out")
        .arg(&out)
        .args(extra)
        .env("CHROMIUM", &chromium)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawning node (Node.js 20 or newer is needed)");
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(200));
    };
    let printed = std::fs::read_to_string(&log_path).unwrap_or_default();
    println!("{printed}");
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!(
            "the browser test exited with {s}:\n{printed}\nservice log tail:\n{}",
            svc.log_tail()
        ),
        None => panic!("the browser test did not finish within {BROWSER_TIMEOUT:?}:\n{printed}"),
    }
    for name in screenshots {
        let shot = out.join(name);
        let bytes = std::fs::read(&shot)
            .unwrap_or_else(|e| panic!("screenshot {} missing: {e}", shot.display()));
        assert!(
            bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
            "{} is not a real screenshot ({} bytes)",
            shot.display(),
            bytes.len()
        );
        println!("screenshot: {}", shot.display());
    }
}

#[test]
fn the_dashboard_works_in_headless_chromium() {
    let svc = Launch::new(PROJECT).start();
    run_browser_test(&svc, "dashboard.mjs", "dashboard", &[], SCREENSHOTS);
}

const SCREENSHOTS: &[&str] = &["dashboard-overview.png", "dashboard-run.png"];

/// The Workflows tab on a project with two workflows (see its header):
/// every trigger, job and edge drawn with its label, disabled ones dashed,
/// each job's last status, and the path of an opened run marked, from the
/// graph and from the Runs tab (the runs' `upstream` links).
#[test]
fn the_workflows_tab_draws_each_workflow_and_an_opened_runs_path() {
    let svc = Launch::new(WORKFLOWS_PROJECT).start();
    run_browser_test(
        &svc,
        "workflows.mjs",
        "dashboard-workflows",
        &[],
        &[
            "dashboard-workflows.png",
            "dashboard-workflows-path.png",
            "dashboard-run-path.png",
        ],
    );
    // Nothing ran down the disabled edge.
    assert!(svc.runs("archive").is_empty(), "{}", svc.log_tail());
}

/// With `ADMIN_API_KEY`, the page (open, it holds no data) asks for the key
/// on its first refused API call, refuses a wrong one, and works with the
/// right one, which it sends with every call. Needs the API keys of
/// `http::auth` (issue 6's other half).
#[test]
fn the_dashboard_asks_for_the_admin_key_and_sends_it() {
    const KEY: &str = "dashboard-admin-key-5521";
    let svc = Launch::new(PROJECT).env("ADMIN_API_KEY", KEY).start();
    assert_eq!(svc.get("/").status, 200, "the page itself needs no key");
    assert_eq!(svc.get("/api/stats").status, 401, "its data does");
    run_browser_test(
        &svc,
        "dashboard.mjs",
        "dashboard-admin-key",
        &["--admin-key", KEY],
        SCREENSHOTS,
    );
    assert!(!svc.logs().contains(KEY), "the key reached the service log");
}
