//! The conversion, on small documents: what each field becomes, and what is
//! reported or refused.

use super::*;

fn convert_text(yaml: &str) -> Imported {
    convert(yaml, "project.yaml", Path::new(".")).unwrap()
}

#[test]
fn jobs_become_files_and_criteria_tables() {
    let imported = convert_text(
        "jobs:\n  job-1:\n    expression: >\n      fn(state => state)\n    adaptor: '@openfn/language-common'\n    trigger: t\n    credential: c\ntriggers:\n  t:\n    criteria: '{\"number\":2, \"deep\": {\"a\": [1, \"x\"]}}'\ncredentials:\n  c:\n    username: u\n    password: 'shhh'\n",
    );
    assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
    assert_eq!(
        imported.files,
        vec![(
            "jobs/job-1.js".to_string(),
            "fn(state => state)\n".to_string()
        )]
    );
    let doc: toml::Table = toml::from_str(&imported.toml).unwrap();
    assert_eq!(
        doc["jobs"]["job-1"]["expression_file"].as_str(),
        Some("jobs/job-1.js")
    );
    assert_eq!(doc["jobs"]["job-1"]["credential"].as_str(), Some("c"));
    assert_eq!(
        doc["triggers"]["t"]["criteria"]["number"].as_integer(),
        Some(2)
    );
    assert_eq!(
        doc["triggers"]["t"]["criteria"]["deep"]["a"][1].as_str(),
        Some("x")
    );
    assert_eq!(doc["credentials"]["c"]["password"].as_str(), Some("shhh"));
}

#[test]
fn criteria_with_null_stay_json() {
    let imported = convert_text(
        "jobs:\n  j:\n    expression: x\n    adaptor: a\n    trigger: t\ntriggers:\n  t:\n    criteria: '{\"gone\": null}'\n",
    );
    let doc: toml::Table = toml::from_str(&imported.toml).unwrap();
    assert_eq!(
        doc["triggers"]["t"]["criteria"].as_str(),
        Some("{\"gone\":null}")
    );
}

#[test]
fn criteria_with_numbers_toml_would_round_stay_json() {
    let import = |criteria: &str| {
        let yaml = format!(
            "jobs:\n  j:\n    expression: x\n    adaptor: a\n    trigger: t\ntriggers:\n  t:\n    criteria: '{criteria}'\n"
        );
        let doc: toml::Table = toml::from_str(&convert_text(&yaml).toml).unwrap();
        doc["triggers"]["t"]["criteria"].clone()
    };
    for criteria in [
        r#"{"id":18446744073709551617}"#,
        r#"{"a":[{"amount":0.1000000000000000000001}]}"#,
    ] {
        assert_eq!(import(criteria).as_str(), Some(criteria));
    }
    // What TOML holds exactly still becomes a table.
    let table = import(r#"{"n": 9223372036854775807, "x": 0.1, "e": 1e2}"#);
    assert_eq!(table["n"].as_integer(), Some(i64::MAX), "{table}");
    assert_eq!(table["x"].as_float(), Some(0.1), "{table}");
    assert_eq!(table["e"].as_float(), Some(100.0), "{table}");
}

#[test]
fn unknown_fields_are_warnings_and_comments() {
    let imported = convert_text(
        "version: 3\njobs:\n  j:\n    expression: x\n    adaptor: a\n    trigger: t\n    enabled: false\ntriggers:\n  t:\n    cron: '* * * * *'\n    timezone: UTC\n",
    );
    let w = imported.warnings.join("\n");
    assert!(w.contains("the top level: unknown field `version`"), "{w}");
    assert!(w.contains("jobs.j: unknown field `enabled`"), "{w}");
    assert!(w.contains("triggers.t: unknown field `timezone`"), "{w}");
    assert!(imported.toml.contains("# not imported: enabled = false"));
    assert!(imported.toml.contains("# not imported: timezone = \"UTC\""));
    toml::from_str::<toml::Table>(&imported.toml).unwrap();
}

#[test]
fn odd_names_are_quoted_and_files_are_safe() {
    let imported = convert_text(
        "jobs:\n  'a job/..':\n    expression: x\n    adaptor: a\n    trigger: 't 1'\ntriggers:\n  't 1':\n    success: 'a job/..'\n",
    );
    let doc: toml::Table = toml::from_str(&imported.toml).unwrap();
    assert_eq!(
        doc["jobs"]["a job/.."]["expression_file"].as_str(),
        Some("jobs/a_job_...js")
    );
    assert_eq!(doc["triggers"]["t 1"]["success"].as_str(), Some("a job/.."));
}

#[test]
fn bad_input_names_the_field() {
    let err = convert("jobs:\n  j:\n    adaptor: a\n", "p", Path::new(".")).unwrap_err();
    assert!(err.contains("jobs.j: missing `expression`"), "{err}");
    let err = convert(
        "triggers:\n  t:\n    criteria: '{nope'\n",
        "p",
        Path::new("."),
    )
    .unwrap_err();
    assert!(
        err.contains("triggers.t: criteria is not valid JSON"),
        "{err}"
    );
    let err = convert(
        "jobs:\n  j:\n    expression: https://example.org/j.js\n",
        "p",
        Path::new("."),
    )
    .unwrap_err();
    assert!(err.contains("https:// URI"), "{err}");
    let err = convert("jobs: [\n", "p", Path::new(".")).unwrap_err();
    assert!(err.contains("line"), "{err}");
}

#[test]
fn file_uris_read_next_to_the_yaml() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("j.js"), "fn(s => s)").unwrap();
    std::fs::write(dir.path().join("c.json"), r#"{"user": "u", "token": null}"#).unwrap();
    let imported = convert(
        "jobs:\n  j:\n    expression: file://j.js\n    adaptor: a\n    trigger: t\ncredentials:\n  c: file://c.json\n",
        "p",
        dir.path(),
    )
    .unwrap();
    assert_eq!(imported.files[0].1, "fn(s => s)\n");
    assert!(imported.toml.contains("user = \"u\""));
    assert!(
        imported
            .warnings
            .iter()
            .any(|w| w.contains("credentials.c.token is null")),
        "{:?}",
        imported.warnings
    );
}

const LIGHTNING: &str = include_str!("../../../tests/projects/lightning/project.yaml");

/// The sample Lightning project: every workflow, edge kind, the disabled
/// edge and trigger, the cursor and the credential by name.
#[test]
fn a_lightning_project_becomes_jobs_triggers_and_flows() {
    let imported = convert_text(LIGHTNING);
    assert!(imported.warnings.is_empty(), "{:?}", imported.warnings);
    let doc: toml::Table = toml::from_str(&imported.toml).unwrap();
    let jobs = doc["jobs"].as_table().unwrap();
    let triggers = doc["triggers"].as_table().unwrap();
    assert_eq!(imported.jobs, 8);
    assert_eq!(jobs.len(), 8);
    let job = |name: &str, key: &str| jobs[name].get(key).cloned();
    assert_eq!(
        job("register", "adaptor").unwrap().as_str(),
        Some("@openfn/language-common@3.3.4")
    );
    assert_eq!(
        job("register", "credential").unwrap().as_str(),
        Some("records@clinic.example-records-api")
    );
    assert_eq!(
        job("register", "trigger").unwrap().as_str(),
        Some("patient-intake-webhook")
    );
    assert_eq!(
        triggers["patient-intake-webhook"]["webhook"].as_str(),
        Some("patient-intake")
    );
    assert_eq!(
        triggers["patient-intake-webhook"]["reply"].as_str(),
        Some("after_completion")
    );
    // Each edge from a job is a flow trigger of its own.
    assert_eq!(
        triggers["register->notify-ward"]["success"].as_str(),
        Some("register")
    );
    assert_eq!(
        triggers["register->log-failure"]["failure"].as_str(),
        Some("register")
    );
    let urgent = &triggers["register->urgent-escalation"];
    assert_eq!(urgent["always"].as_str(), Some("register"));
    assert_eq!(
        urgent["condition"].as_str(),
        Some("!state.errors && state.data.priority === 'urgent'")
    );
    assert!(imported.toml.contains("# condition_label: urgent patients"));
    assert_eq!(
        triggers["register->legacy-export"]["enabled"].as_bool(),
        Some(false)
    );
    // Two incoming edges: two triggers.
    let audit = job("audit", "trigger").unwrap();
    let audit: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(audit, ["notify-ward->audit", "log-failure->audit"]);
    // The cron with its cursor, and the disabled webhook beside it.
    let cron = &triggers["nightly-visits-cron"];
    assert_eq!(cron["cron"].as_str(), Some("0 2 * * *"));
    assert_eq!(cron["cursor"].as_str(), Some("count-visits"));
    let hook = &triggers["nightly-visits-webhook"];
    assert_eq!(hook["enabled"].as_bool(), Some(false));
    assert_eq!(hook["webhook"].as_str(), Some("nightly-visits"));
    // The credential comes from the environment, and the note says which variable.
    assert_eq!(
        doc["credentials"]["records@clinic.example-records-api"]["env"].as_str(),
        Some("OPENFN_CREDENTIAL_RECORDS_API")
    );
    assert!(
        imported
            .notes
            .iter()
            .any(|n| n.contains("set OPENFN_CREDENTIAL_RECORDS_API")),
        "{:?}",
        imported.notes
    );
    assert!(
        imported
            .notes
            .iter()
            .any(|n| n.contains("POST /i/patient-intake"))
    );
    assert!(
        !imported
            .notes
            .iter()
            .any(|n| n.contains("POST /i/nightly-visits"))
    );
    let register = imported
        .files
        .iter()
        .find(|(p, _)| p == "jobs/register.js")
        .unwrap();
    assert!(register.1.contains("the records API refused the patient"));
}

#[test]
fn lightning_unknown_fields_clashes_and_bad_edges() {
    let yaml = "name: p\nversion: 4\nworkflows:\n  a:\n    name: a\n    concurrency: 2\n    jobs:\n      same:\n        name: same\n        adaptor: '@openfn/language-common'\n        body: fn(s => s)\n        keep: 1\n      lonely:\n        body:\n          path: lonely.js\n    triggers:\n      hook:\n        type: webhook\n        enabled: true\n        custom: x\n    edges:\n      hook->same:\n        source_trigger: hook\n        target_job: same\n        condition_type: always\n        enabled: false\n  b:\n    jobs:\n      same:\n        body: fn(s => s)\n    triggers:\n      hook:\n        type: webhook\n    edges:\n      hook->same:\n        source_trigger: hook\n        target_job: same\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lonely.js"), "fn(s => s)").unwrap();
    let imported = convert(yaml, "p", dir.path()).unwrap();
    let w = imported.warnings.join("\n");
    for expected in [
        "the top level: unknown field `version`",
        "workflows.a: unknown field `concurrency`",
        "workflows.a.jobs.same: unknown field `keep`",
        "workflows.a.triggers.hook: unknown field `custom`",
        "workflows.a.jobs.lonely: no enabled edge leads to it",
    ] {
        assert!(w.contains(expected), "missing {expected}: {w}");
    }
    assert!(
        imported.toml.contains("# not imported: concurrency = 2"),
        "{}",
        imported.toml
    );
    let doc: toml::Table = toml::from_str(&imported.toml).unwrap();
    // Same key in two workflows: both prefixed.
    assert!(doc["jobs"].get("a-same").is_some() && doc["jobs"].get("b-same").is_some());
    // The disabled edge from a trigger: a disabled copy for that job.
    assert_eq!(
        doc["jobs"]["a-same"]["trigger"].as_str(),
        Some("a-hook-a-same")
    );
    assert_eq!(
        doc["triggers"]["a-hook-a-same"]["enabled"].as_bool(),
        Some(false)
    );
    assert_eq!(
        doc["triggers"]["a-hook-a-same"]["webhook"].as_str(),
        Some("a-a-same")
    );
    assert_eq!(
        doc["jobs"]["lonely"]["trigger"].as_str(),
        Some("lonely-unreached")
    );
    assert_eq!(
        imported
            .files
            .iter()
            .find(|(p, _)| p == "jobs/lonely.js")
            .unwrap()
            .1,
        "fn(s => s)\n"
    );

    let bad = |edges: &str| {
        let yaml = format!(
            "workflows:\n  w:\n    jobs:\n      j:\n        body: x\n    triggers:\n      t:\n        type: webhook\n    edges:\n{edges}"
        );
        convert(&yaml, "p", Path::new(".")).unwrap_err()
    };
    let err = bad("      e:\n        source_job: j\n        target_job: ghost\n");
    assert!(
        err.contains("workflows.w.edges.e: target_job `ghost` is not a job of this workflow"),
        "{err}"
    );
    let err = bad(
        "      e:\n        source_trigger: t\n        target_job: j\n        condition_type: sometimes\n",
    );
    assert!(
        err.contains("condition_type `sometimes` is not one of"),
        "{err}"
    );
    let err = bad(
        "      e:\n        source_job: j\n        target_job: j\n        condition_type: js_expression\n",
    );
    assert!(err.contains("needs condition_expression"), "{err}");
    let err = convert(
        "workflows:\n  w:\n    jobs:\n      j:\n        body: x\n    triggers:\n      k:\n        type: kafka\n",
        "p",
        Path::new("."),
    )
    .unwrap_err();
    assert!(
        err.contains("`kafka` triggers have no equivalent here"),
        "{err}"
    );
}
