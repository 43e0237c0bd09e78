//! Credentials: a job's credential reaches the expression as
//! `state.configuration`, is never stored or returned, and its values are
//! redacted from run logs and from the service's own output.

use crate::INBOX_PROJECT;
use crate::harness::{Service, log_lines, wait_for_runs};

const SECRETS: [&str; 2] = ["shhh", "user@example.com"];

#[test]
fn credential_is_given_to_the_job_but_never_stored_or_logged() {
    let svc = Service::start(INBOX_PROJECT, &[]);

    let reply = svc.post_json("/inbox", r#"{"kind":"cred"}"#);
    assert_eq!(reply.status, 202, "{reply:?}");
    assert_eq!(
        reply.json["data"],
        serde_json::json!(["cred-job"]),
        "body: {}",
        reply.body
    );

    let runs = wait_for_runs(&svc, "cred-job", "success", 1);

    let state = svc.job_state("cred-job").expect("cred-job state");
    assert_eq!(
        state["data"]["saw"], true,
        "the expression did not see the password: {state}"
    );
    assert!(
        state.get("configuration").is_none(),
        "configuration was stored: {state}"
    );

    let detail = svc.run(&runs[0]);
    assert!(
        detail["state"].get("configuration").is_none(),
        "configuration returned: {detail}"
    );
    let log = log_lines(&detail);
    let cfg_line = log.iter().find(|l| l.contains("cfg ")).unwrap_or_else(|| {
        panic!("the job's console.log line is missing from the run log: {log:?}")
    });
    assert!(
        cfg_line.contains("***"),
        "credential values should be replaced by ***: {cfg_line}"
    );

    let service_output = svc.logs();
    for secret in SECRETS {
        assert!(
            !detail.to_string().contains(secret),
            "{secret:?} leaked into the run record: {detail}"
        );
        assert!(
            !service_output.contains(secret),
            "{secret:?} leaked into the service output:\n{service_output}"
        );
    }
}

/// A job that prints its credential's values the ways HTTP clients encode
/// them, with the jsonl-logger plugin loaded.
const ENCODED_PROJECT: &str = r#"
[jobs.printer]
adaptor = "@openfn/language-common"
trigger = "print"
credential = "api"
expression = """
fn(state => {
  const c = state.configuration;
  const b64 = s => Buffer.from(s).toString('base64');
  const forms = {
    literal: c.password,
    json: JSON.stringify(c),
    basic: 'Authorization: Basic ' + b64(c.username + ':' + c.password),
    basic_client: 'Basic ' + b64(c.client_id + ':' + c.client_secret),
    base64: b64(c.password),
    base64url: Buffer.from(c.password).toString('base64url'),
    base64_embedded: b64('api:' + c.api_key),
    bearer: 'Authorization: Bearer ' + c.token,
    headers: JSON.stringify({ headers: { Authorization: 'Bearer ' + c.token } }),
    component: 'https://example.org/login?password=' + encodeURIComponent(c.password),
    form: 'password=' + encodeURIComponent(c.password).replace(/%20/g, '+'),
    uri: encodeURI('https://example.org/?u=' + c.username + '&p=' + c.password),
    userinfo: 'https://' + encodeURIComponent(c.username) + ':' + encodeURIComponent(c.password) + '@example.org/',
  };
  for (const name of Object.keys(forms)) { console.log('form ' + name + ' ' + forms[name]); }
  return state;
})
"""

[triggers.print]
criteria = { kind = "print" }

[credentials.api]
username = "user@example.com"
password = "p@ss word/+&=é!"
token = "tok_9f8e7d6c5b4a3210"
api_key = "key-3f2e1d0c9b8a7654"
client_id = "client-7781"
client_secret = "cs_Zx9Yw8Vu7Ts6"

[plugins.jsonl-logger]
config = { file = "service.jsonl" }
dirs = [{ data = "logs", guest = "/logs" }]
"#;

/// What the job prints, in every form, as Rust's own encoders spell it.
fn encoded_secrets() -> Vec<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

    const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'!')
        .remove(b'~')
        .remove(b'*')
        .remove(b'\'')
        .remove(b'(')
        .remove(b')');
    let user = "user@example.com";
    let password = "p@ss word/+&=é!";
    let component = utf8_percent_encode(password, COMPONENT).to_string();
    let mut forms = vec![
        user.to_string(),
        password.to_string(),
        "tok_9f8e7d6c5b4a3210".to_string(),
        "key-3f2e1d0c9b8a7654".to_string(),
        "client-7781".to_string(),
        "cs_Zx9Yw8Vu7Ts6".to_string(),
        STANDARD.encode(format!("{user}:{password}")),
        STANDARD.encode("client-7781:cs_Zx9Yw8Vu7Ts6"),
        STANDARD.encode(password),
        URL_SAFE_NO_PAD.encode(password),
        STANDARD.encode("api:key-3f2e1d0c9b8a7654"),
        component.replace("%20", "+"),
        "p@ss%20word/+&=%C3%A9!".to_string(), // encodeURI
        component,
    ];
    // Nothing shorter than the shortest secret: the checks below would
    // pass by accident on a mangled text.
    assert!(forms.iter().all(|f| f.len() >= 11), "{forms:?}");
    forms.sort();
    forms.dedup();
    forms
}

/// Every form a job prints a credential in is masked, in the run's log, the
/// service's own output and a logging plugin's file. Runs in both engine
/// modes (the Makefile runs `credentials::` again with ENGINE_MODE=cli).
#[test]
fn encoded_credentials_are_masked_in_every_log() {
    let logger = crate::plugins_support::wasm("jsonl_logger.wasm");
    let svc = crate::harness::Launch::new(ENCODED_PROJECT)
        .file_bytes("plugins/jsonl-logger.wasm", &logger)
        .start();
    crate::plugins_support::wait_plugin(
        &svc,
        "jsonl-logger",
        "loaded",
        std::time::Duration::from_secs(20),
        |p| p["status"] == "active",
    );

    let reply = svc.post_json("/inbox", r#"{"kind":"print"}"#);
    assert_eq!(reply.status, 202, "{reply:?}");
    let run = wait_for_runs(&svc, "printer", "success", 1).remove(0);
    let detail = svc.run(&run);
    let log = log_lines(&detail);

    // The job printed every form, and each line was masked.
    let names = [
        "literal",
        "json",
        "basic",
        "basic_client",
        "base64",
        "base64url",
        "base64_embedded",
        "bearer",
        "headers",
        "component",
        "form",
        "uri",
        "userinfo",
    ];
    for name in names {
        let prefix = format!("form {name} ");
        let line = log
            .iter()
            .find(|l| l.contains(&prefix))
            .unwrap_or_else(|| panic!("the job did not print `{prefix}`: {log:?}"));
        assert!(line.contains("***"), "not masked: {line}");
    }

    // The jsonl-logger has the job's lines once it has had them.
    let file = svc.data_dir().join("logs").join("service.jsonl");
    let plugin_log = svc.wait_until(
        &format!("the job's last line in {}", file.display()),
        std::time::Duration::from_secs(30),
        || {
            std::fs::read_to_string(&file)
                .ok()
                .filter(|text| text.contains("form userinfo "))
        },
    );

    let run_log = detail.to_string();
    let service_log = svc.logs();
    for secret in encoded_secrets() {
        for (what, text) in [
            ("the run's record", &run_log),
            ("the service's output", &service_log),
            ("the jsonl-logger's file", &plugin_log),
        ] {
            assert!(
                !text.contains(&secret),
                "{secret:?} leaked into {what}:\n{text}"
            );
        }
    }
}
