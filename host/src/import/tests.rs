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
