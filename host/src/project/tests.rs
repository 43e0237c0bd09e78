//! Project validation: good projects load, and each bad one is refused with
//! the exact message a user would see.

use super::*;

const GOOD: &str = r#"
[engine]
timeout = "30s"
concurrency = 3

[jobs.job-1]
adaptor = "@openfn/language-common@3.3.4"
expression = "fn(state => state)"
trigger = "trigger-1"
credential = "cred"

[jobs.flow-job]
expression = "fn(state => state)"
trigger = "after-j1"
timeout = 10

[jobs.ticker]
expression = "fn(state => state)"
trigger = "tick"

[triggers.trigger-1]
criteria = '{"number":2}'
[triggers.after-j1]
success = "job-1"
[triggers.tick]
cron = "*/5 * * * * *"

[credentials.cred]
username = "u"
password = "p"
"#;

fn load(source: &str) -> Result<Project, ProjectError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("jobs")).unwrap();
    std::fs::write(dir.path().join("jobs/ok.js"), "fn(state => state)").unwrap();
    Project::parse(dir.path(), Path::new("project.toml"), source)
}

#[test]
fn a_good_project_loads() {
    let p = load(GOOD).unwrap();
    assert_eq!(p.jobs.len(), 3);
    assert_eq!(p.engine.concurrency, 3);
    assert_eq!(p.timeout_of(&p.jobs["job-1"]).as_secs(), 30);
    assert_eq!(p.timeout_of(&p.jobs["flow-job"]).as_secs(), 10);
    assert_eq!(p.jobs["flow-job"].adaptor.name, "@openfn/language-common");
    assert_eq!(p.jobs["job-1"].adaptor.version.as_deref(), Some("3.3.4"));
    assert!(matches!(&p.triggers["trigger-1"].kind, TriggerKind::Criteria(c) if c["number"] == 2));
    assert_eq!(
        p.configuration_of(&p.jobs["job-1"]).unwrap()["password"],
        "p"
    );
    assert_eq!(p.engine.core.to_string(), "@openfn/core@1.5.1");
}

#[test]
fn expression_files_load_from_inside_the_project() {
    let p = load("[jobs.a]\nexpression_file = \"jobs/ok.js\"\ntrigger = \"t\"\n[triggers.t]\ncriteria = {}\n").unwrap();
    assert_eq!(p.jobs["a"].expression, "fn(state => state)");
}

// Invalid projects and the exact output of `check` for each are fixture
// files in tests/projects/invalid/, walked by tests/e2e/cli/check.rs.

#[test]
fn every_problem_is_reported_in_one_pass() {
    let source = r#"[engine]
mode = "fast"
timeout = "soon"

[jobs.a]
expression = "fn(state => state)"
trigger = "nope"
colour = "red"

[jobs.b]
expression = "fn(state => state)"
trigger = "tick"
credential = "missing"

[triggers.tick]
cron = "61 * * * *"
timezone = "Mars/Olympus"

[triggers.after]
success = "ghost"
"#;
    let err = load(source).unwrap_err();
    let lines: Vec<String> = err.problems().iter().map(|p| p.to_string()).collect();
    assert_eq!(
        lines,
        [
            "project.toml: [engine] mode (line 2): `fast` is not an engine mode; use \"worker\" or \"cli\"",
            "project.toml: [engine] timeout (line 3): `soon` is not a duration (expected number at 0); write e.g. \"30s\" or \"5m\"",
            "project.toml: [jobs.a] trigger (line 7): no trigger named `nope`; defined: after, tick",
            "project.toml: [jobs.a] colour (line 8): unknown key; expected one of adaptor, expression, expression_file, trigger, credential, timeout, retry, library",
            "project.toml: [jobs.b] credential (line 13): no credential named `missing`; defined: none",
            "project.toml: [triggers.tick] cron (line 16): `61 * * * *`: minute field: 61 is out of range 0-59",
            "project.toml: [triggers.tick] timezone (line 17): `Mars/Olympus` is not an IANA time zone name such as \"Africa/Nairobi\", \"America/New_York\" or \"UTC\"",
            "project.toml: [triggers.after] success (line 20): no job named `ghost`; defined: a, b",
        ],
        "{err}"
    );
    // A single problem is the error itself, not a list of one.
    let err = load("[triggers.t]\ncron = \"@fortnightly\"\n").unwrap_err();
    assert!(matches!(err, ProjectError::Invalid { .. }), "{err:?}");
}

#[test]
fn cron_triggers_take_nicknames_and_a_time_zone() {
    let p = load(
        "[triggers.h]\ncron = \"@hourly\"\n[triggers.n]\ncron = \"0 9 * * MON-FRI\"\ntimezone = \"Africa/Nairobi\"\n",
    )
    .unwrap();
    let TriggerKind::Cron {
        schedule,
        expression,
        ..
    } = &p.triggers["n"].kind
    else {
        panic!("{:?}", p.triggers["n"]);
    };
    assert_eq!(expression, "0 9 * * MON-FRI");
    assert_eq!(schedule.zone().to_string(), "Africa/Nairobi");
    let TriggerKind::Cron { schedule, .. } = &p.triggers["h"].kind else {
        panic!("{:?}", p.triggers["h"]);
    };
    assert_eq!(schedule.zone(), crate::cron::Zone::service_default());
}

#[test]
fn adaptor_specs() {
    let s = AdaptorSpec::parse("@openfn/language-http@7.0.0").unwrap();
    assert_eq!(
        (s.name.as_str(), s.version.as_deref()),
        ("@openfn/language-http", Some("7.0.0"))
    );
    assert_eq!(s.dir_name(), "@openfn+language-http@7.0.0");
    assert!(AdaptorSpec::parse("lodash").unwrap().version.is_none());
    assert!(AdaptorSpec::parse("@openfn/core@^1.5").is_ok());
    for bad in [
        "",
        "@openfn",
        "Upper",
        "a/b/c",
        "git+ssh://x",
        "@openfn/x@$(rm)",
    ] {
        assert!(AdaptorSpec::parse(bad).is_err(), "{bad}");
    }
}

/// A credential whose values come from environment variables, at the top
/// of the table, nested, and in an array.
const ENV_CREDENTIAL: &str = r#"
[jobs.a]
expression = "fn(state => state)"
trigger = "t"
credential = "dhis2"

[triggers.t]
criteria = {}

[credentials.dhis2]
username = "admin"
password = { env = "DHIS2_PASSWORD" }
auth = { token = { env = "DHIS2_TOKEN" }, realm = "main" }
hosts = ["a.example", { env = "DHIS2_HOST" }]
"#;

fn load_with_env(source: &str, vars: &[(&str, &str)]) -> Result<Project, ProjectError> {
    let dir = tempfile::tempdir().unwrap();
    let vars: std::collections::HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let lookup = |name: &str| vars.get(name).cloned();
    Project::parse_with(
        dir.path(),
        Path::new("project.toml"),
        source,
        CredentialEnv::Resolve(&lookup),
    )
}

#[test]
fn credential_values_come_from_the_environment_at_any_depth() {
    let p = load_with_env(
        ENV_CREDENTIAL,
        &[
            ("DHIS2_PASSWORD", "s3cret-pw"),
            ("DHIS2_TOKEN", "tok-123456"),
            ("DHIS2_HOST", "b.example"),
        ],
    )
    .unwrap();
    assert_eq!(
        p.credentials["dhis2"],
        serde_json::json!({
            "username": "admin",
            "password": "s3cret-pw",
            "auth": {"token": "tok-123456", "realm": "main"},
            "hosts": ["a.example", "b.example"],
        })
    );
    // Resolved values are masked like any other credential value.
    let redactor = crate::redact::Redactor::new(p.credentials.values());
    assert_eq!(
        redactor.redact("pw=s3cret-pw token=tok-123456"),
        "pw=*** token=***"
    );
}

#[test]
fn a_missing_or_empty_variable_names_file_table_key_and_variable() {
    let vars = [("DHIS2_PASSWORD", "s3cret-pw"), ("DHIS2_HOST", "b.example")];
    let err = load_with_env(ENV_CREDENTIAL, &vars)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "project.toml: [credentials.dhis2] auth.token (line 13): environment variable `DHIS2_TOKEN` is not set"
        ),
        "{err}"
    );
    let vars = [
        ("DHIS2_PASSWORD", "s3cret-pw"),
        ("DHIS2_TOKEN", "tok-123456"),
    ];
    let err = load_with_env(ENV_CREDENTIAL, &vars)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "[credentials.dhis2] hosts[1] (line 14): environment variable `DHIS2_HOST` is not set"
        ),
        "{err}"
    );
    let vars = [
        ("DHIS2_PASSWORD", ""),
        ("DHIS2_TOKEN", "tok-123456"),
        ("DHIS2_HOST", "b.example"),
    ];
    let err = load_with_env(ENV_CREDENTIAL, &vars)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "[credentials.dhis2] password (line 12): environment variable `DHIS2_PASSWORD` is empty"
        ),
        "{err}"
    );
}

#[test]
fn an_env_reference_must_name_a_variable() {
    for bad in ["{ env = 42 }", "{ env = \"1ABC\" }", "{ env = \"A-B\" }"] {
        let source = format!("[credentials.c]\npassword = {bad}\n");
        let err = load_with_env(&source, &[("A-B", "x"), ("1ABC", "x")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "[credentials.c] password (line 2): `env` must name an environment variable"
            ),
            "{bad}: {err}"
        );
    }
}

#[test]
fn a_table_with_more_than_env_is_an_ordinary_value() {
    let p = load_with_env(
        "[credentials.c]\nsettings = { env = \"production\", region = \"eu\" }\n",
        &[],
    )
    .unwrap();
    assert_eq!(
        p.credentials["c"]["settings"],
        serde_json::json!({"env": "production", "region": "eu"})
    );
}

#[test]
fn install_loads_a_project_without_its_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let p = Project::parse_with(
        dir.path(),
        Path::new("project.toml"),
        ENV_CREDENTIAL,
        CredentialEnv::Skip,
    )
    .unwrap();
    assert_eq!(p.credentials["dhis2"]["password"], serde_json::Value::Null);
    assert_eq!(p.adaptors().len(), 1);
}

#[test]
fn a_journal_table_keeps_the_built_in_settings_it_leaves_out() {
    let builtin = plugins::builtin_journal();
    let p = load("[plugins.journal]\nconfig = { max_done = 500000 }\n").unwrap();
    let j = &p.plugins["journal"];
    assert_eq!(j.file, "journal.wasm");
    assert_eq!(j.dirs, builtin.dirs);
    assert_eq!(j.timeout, builtin.timeout);
    assert_eq!(j.memory_bytes, builtin.memory_bytes);
    assert_eq!(
        j.config,
        [
            ("dir".to_string(), "/journal".to_string()),
            ("max_done".to_string(), "500000".to_string())
        ]
    );
    // What the table does say wins; other plugins get no such defaults.
    let p = load(
        "[plugins.journal]\nconfig = { dir = \"/j\" }\nmemory = \"128MiB\"\ndirs = [{ data = \"j\", guest = \"/j\", writable = true }]\n\n[plugins.other]\n",
    )
    .unwrap();
    let j = &p.plugins["journal"];
    assert_eq!(j.config, [("dir".to_string(), "/j".to_string())]);
    assert_eq!(j.memory_bytes, 128 << 20);
    assert_eq!(j.dirs[0].path, "j");
    assert_eq!(j.timeout, builtin.timeout);
    let other = &p.plugins["other"];
    assert!(other.dirs.is_empty() && other.config.is_empty());
    assert_eq!(other.timeout, plugins::DEFAULT_TIMEOUT);
}

/// Lightning's shapes: several triggers per job, `always`, a `condition`,
/// `enabled = false`, a webhook path and a cron cursor.
#[test]
fn workflows_load_with_several_triggers_conditions_and_webhooks() {
    let p = load(
        r#"
[jobs.a]
expression = "fn(s => s)"
trigger = "hook"
[jobs.b]
expression = "fn(s => s)"
trigger = ["after-a", "nightly"]
[triggers.hook]
webhook = "orders"
[triggers.after-a]
always = "a"
condition = "state.data.ok"
enabled = false
[triggers.nightly]
cron = "0 2 * * *"
cursor = "a"
"#,
    )
    .unwrap();
    assert_eq!(p.jobs["b"].triggers, ["after-a", "nightly"]);
    let after = &p.triggers["after-a"];
    assert!(matches!(&after.kind, TriggerKind::Always(up) if up == "a"));
    assert_eq!(after.condition.as_deref(), Some("state.data.ok"));
    assert!(!after.enabled);
    assert!(
        matches!(&p.triggers["hook"].kind, TriggerKind::Webhook { path, reply: Reply::BeforeStart, .. } if path == "orders")
    );
    assert!(
        matches!(&p.triggers["nightly"].kind, TriggerKind::Cron { cursor: Some(c), .. } if c == "a")
    );
    // The disabled trigger is left out of the job's live triggers.
    let live: Vec<&str> = p
        .triggers_of(&p.jobs["b"])
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(live, ["nightly"]);
}

#[test]
fn a_whole_credential_from_one_variable() {
    let source = "[jobs.a]\nexpression = \"fn(s => s)\"\ntrigger = \"t\"\ncredential = \"c\"\n[triggers.t]\ncriteria = {}\n[credentials]\nc = { env = \"CRED_C\" }\n";
    let dir = tempfile::tempdir().unwrap();
    let with = |value: &'static str| {
        let lookup = move |name: &str| (name == "CRED_C").then(|| value.to_string());
        Project::parse_with(
            dir.path(),
            Path::new("project.toml"),
            source,
            CredentialEnv::Resolve(&lookup),
        )
    };
    let p = with(r#"{"token": "s3cret"}"#).unwrap();
    assert_eq!(p.credentials["c"]["token"], "s3cret");
    let err = with("s3cret-not-json").unwrap_err().to_string();
    assert!(
        err.contains("[credentials.c] env (line 8): environment variable `CRED_C` must hold the credential as a JSON object; it is not valid JSON"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
    let err = with("[1]").unwrap_err().to_string();
    assert!(err.contains("it holds another JSON value"), "{err}");
}
