//! `GET /api/openapi.json` through the real binary: an OpenAPI 3.1 document
//! of the whole HTTP API, open without a key, whose security says what this
//! deployment's keys guard; and the running service tested against it with
//! schemathesis (from PyPI, pinned, installed into a venv under cargo's
//! scratch dir the first time): no 5xx, and every status, content type,
//! header and body as the document says.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::harness::{Launch, output_within, scratch_dir, temp_dir, wait_for};

/// Pinned: a new release may check more, and a test must not change by itself.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// The whole schemathesis run; it takes well under a minute.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);
const ADMIN_KEY: &str = "openapi-admin-key-3318";
const INBOX_KEY: &str = "openapi-inbox-key-5120";

/// A job with a run behind it, so the run and state answers hold data; the
/// receipts schemathesis makes up match no job (their criteria is a key
/// and value it does not invent), so no run is left running.
const PROJECT: &str = r#"
[inbox]
durable = true

[jobs.probe]
trigger = "probe"
library = true
expression = "each('$.data.items[*]', fn(state => state));"

[triggers.probe]
criteria = { openapi-probe = "yes-4417" }
"#;

static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The venv's `schemathesis`, installed once per test process (and kept in
/// the target dir for the next).
fn schemathesis() -> PathBuf {
    VENV.get_or_init(install)
        .clone()
        .unwrap_or_else(|e| panic!("installing {SCHEMATHESIS} failed:\n{e}"))
}

fn install() -> Result<PathBuf, String> {
    let venv = scratch_dir().join("schemathesis-venv");
    let bin = venv.join("bin/schemathesis");
    let wanted = SCHEMATHESIS.rsplit('=').next().unwrap_or_default();
    let installed = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(wanted));
    if installed {
        return Ok(bin);
    }
    let run = |cmd: &mut Command, what: &str| -> Result<(), String> {
        let out = output_within(cmd.stdin(Stdio::null()), None, INSTALL_TIMEOUT)
            .map_err(|e| format!("{what}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what} exited with {}:\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    run(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
        "python3 -m venv",
    )?;
    run(
        Command::new(venv.join("bin/pip")).args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            SCHEMATHESIS,
        ]),
        "pip install schemathesis",
    )?;
    Ok(bin)
}

#[test]
fn the_openapi_document_describes_the_whole_api_and_the_service_keeps_to_it() {
    let schemathesis = schemathesis();
    let svc = Launch::new(PROJECT)
        .env("ADMIN_API_KEY", ADMIN_KEY)
        .env("API_KEY", INBOX_KEY)
        .start();
    let key = [("x-api-key", ADMIN_KEY)];
    let sent = svc.post_json_with(
        "/inbox",
        r#"{"openapi-probe": "yes-4417", "items": [1, 2]}"#,
        &key,
    );
    assert_eq!(sent.status, 202, "{sent:?}");
    let ran = wait_for(Duration::from_secs(110), || {
        let runs = svc.get_with("/api/runs?job=probe&status=success", &key);
        runs.json
            .as_array()
            .is_some_and(|r| !r.is_empty())
            .then_some(())
    });
    assert!(
        ran.is_some(),
        "the probe job did not run:\n{}",
        svc.log_tail()
    );

    // Open without a key, and holding no key.
    let doc = svc.get("/api/openapi.json");
    assert_eq!(doc.status, 200, "{doc:?}");
    assert!(!doc.body.contains(ADMIN_KEY) && !doc.body.contains(INBOX_KEY));
    let doc = doc.json;
    assert_eq!(doc["openapi"], "3.1.0", "{doc:#}");
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/inbox", "post"),
        ("/i/{path}", "post"),
        ("/submission", "head"),
        ("/submission", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/api/stats", "get"),
        ("/api/jobs", "get"),
        ("/api/jobs/{name}/state", "get"),
        ("/api/runs", "get"),
        ("/api/runs/{id}", "get"),
        ("/api/runs/{id}/retry", "post"),
        ("/api/messages", "get"),
        ("/api/messages/{id}/retry", "post"),
        ("/api/plugins", "get"),
        ("/api/library", "get"),
        ("/api/library/helpers", "get"),
        ("/api/openapi.json", "get"),
    ] {
        assert!(paths[path][method].is_object(), "{method} {path} missing");
    }
    // Security as this deployment has it: the probes and the document
    // are open, the rest takes a key (with a 401 said).
    assert!(paths["/healthz"]["get"]["security"].is_null());
    assert!(paths["/api/openapi.json"]["get"]["security"].is_null());
    for (path, method) in [
        ("/inbox", "post"),
        ("/api/library", "get"),
        ("/metrics", "get"),
    ] {
        let op = &paths[path][method];
        assert_eq!(
            op["security"][0]["api_key"],
            serde_json::json!([]),
            "{path}"
        );
        assert!(op["responses"]["401"].is_object(), "{path}");
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["api_key"]["name"], "x-api-key", "{schemes}");

    let work = temp_dir("e2e-schemathesis-");
    let url = svc.url("/api/openapi.json");
    let header = format!("x-api-key: {ADMIN_KEY}");
    let mut cmd = Command::new(&schemathesis);
    cmd.args(["run", &url, "--header", &header])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "25", "--seed", "4417", "--workers", "1"])
        .args(["--request-timeout", "20", "--no-color"])
        .current_dir(work.path())
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_DISABLE_TELEMETRY", "1")
        .stdin(Stdio::null());
    let out =
        output_within(&mut cmd, None, RUN_TIMEOUT).unwrap_or_else(|e| panic!("schemathesis: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems ({}):\n{stdout}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        svc.log_tail()
    );
    // It really tested every operation (schemathesis leaves HEAD out).
    let operations = paths
        .values()
        .flat_map(|item| item.as_object().unwrap().keys())
        .filter(|method| *method != "head")
        .count();
    let tested = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Tested:"))
        .map(str::trim);
    assert_eq!(tested, Some(operations.to_string().as_str()), "{stdout}");
    assert!(!svc.logs().contains("panicked"), "{}", svc.log_tail());
}
