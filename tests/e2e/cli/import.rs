//! `microservice import` of every fixture of the original microservice,
//! then `check` (which finds the original's deliberately broken job), then
//! a served receipt; unknown fields; overwriting.

use std::path::Path;

use serde_json::Value;

use super::{Scratch, describe, fixtures, microservice, output, text};
use crate::harness::{Launch, Service, wait_for_finished_run, wait_for_runs};

/// Each fixture imports cleanly, passes `check` (but for the broken job the
/// original's project.yaml has on purpose), and its `job-1` runs on a
/// receipt to the served imported project.
#[test]
fn every_fixture_of_the_original_imports_checks_and_serves() {
    let valid_body = std::fs::read_to_string(fixtures().join("valid_post_body.json")).unwrap();
    for fixture in [
        "project.yaml",
        "project.yaml.example",
        "docker-example-project.yaml",
    ] {
        let s = Scratch::new(None);
        let yaml = s.dir().join("project.yaml");
        std::fs::copy(fixtures().join(fixture), &yaml).unwrap();
        let out = s.run(
            &[
                "import",
                yaml.to_str().unwrap(),
                "--out",
                s.project().to_str().unwrap(),
            ],
            None,
        );
        assert!(out.status.success(), "{fixture}: {}", describe(&out));
        assert!(
            !text(&out.stderr).contains("warning"),
            "{fixture} has only known fields: {}",
            describe(&out)
        );
        let out = s.run(&["check"], None);
        if fixture == "project.yaml" {
            // Its bad-job does not compile, on purpose: `check` says so
            // (where, with line and column) before the job ever runs.
            assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
            let stderr = text(&out.stderr);
            assert!(
                stderr.contains("/jobs/bad-job.js: job `bad-job`: line 1, column 21: syntax error")
                    && stderr.contains("1 error found"),
                "{}",
                describe(&out)
            );
        } else {
            assert!(out.status.success(), "{fixture}: check: {}", describe(&out));
        }

        let svc = serve(&s.project());
        let reply = svc.post_json("/inbox", &valid_body);
        assert_eq!(reply.status, 202, "{fixture}: {reply:?}");
        let run = wait_for_finished_run(&svc, "job-1");
        assert_eq!(
            run["status"],
            "success",
            "{fixture}: {run}\n{}",
            svc.log_tail()
        );
        if fixture == "project.yaml" {
            // The imported job does what the original's did: number * 2.
            let state = svc.job_state("job-1").unwrap();
            assert_eq!(state["data"]["number"], 4, "{state}");
            // And the flows: job-2 (`expression: none`) then flow-job;
            // bad-job fails to compile, then catch-job handles it.
            let flow = std::fs::read_to_string(fixtures().join("flow_post_body.json")).unwrap();
            assert_eq!(svc.post_json("/inbox", &flow).status, 202);
            wait_for_runs(&svc, "flow-job", "success", 1);
            assert_eq!(svc.job_state("flow-job").unwrap()["data"]["b"], 6);
            let fail = std::fs::read_to_string(fixtures().join("fail_post_body.json")).unwrap();
            assert_eq!(svc.post_json("/inbox", &fail).status, 202);
            wait_for_runs(&svc, "bad-job", "failure", 1);
            wait_for_runs(&svc, "catch-job", "success", 1);
            assert_eq!(
                svc.job_state("catch-job").unwrap()["message"],
                "handled it."
            );
        }
    }
}

/// Serves an imported project folder: its `project.toml` and job files.
fn serve(project: &Path) -> Service {
    launch(project).start()
}

/// A launch of an imported project folder: its `project.toml` and job files.
pub(super) fn launch(project: &Path) -> Launch {
    let toml = std::fs::read_to_string(project.join("project.toml")).unwrap();
    let mut launch = Launch::new(&toml);
    for entry in std::fs::read_dir(project.join("jobs")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        launch = launch.file(
            &format!("jobs/{name}"),
            &std::fs::read_to_string(&path).unwrap(),
        );
    }
    launch
}

#[test]
fn import_reports_unknown_fields_and_never_overwrites_silently() {
    let s = Scratch::new(None);
    std::fs::copy(
        fixtures().join("credential.json"),
        s.dir().join("credential.json"),
    )
    .unwrap();
    let yaml = s.dir().join("project.yaml");
    std::fs::write(
        &yaml,
        r#"name: my-project
jobs:
  job-1:
    expression: >
      fn(state => { state.data.seen = state.configuration.username; return state; })
    adaptor: '@openfn/language-common'
    trigger: trigger-1
    credential: from-file
    enabled: true
triggers:
  trigger-1:
    criteria: '{"number":2}'
    webhook_url: /inbox/secret
credentials:
  from-file: file://credential.json
"#,
    )
    .unwrap();
    let out = s.run(&["import", yaml.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", describe(&out));
    let stderr = text(&out.stderr);
    for field in [
        "unknown field `name`",
        "jobs.job-1: unknown field `enabled`",
        "triggers.trigger-1: unknown field `webhook_url`",
    ] {
        assert!(
            stderr.contains(field),
            "missing `{field}`: {}",
            describe(&out)
        );
    }
    assert!(!stderr.contains("mcTesterson"), "{}", describe(&out));
    let toml = std::fs::read_to_string(s.dir().join("project.toml")).unwrap();
    assert!(toml.contains("# not imported: enabled = true"), "{toml}");
    assert!(toml.contains("password = \"mcTesterson\""), "{toml}");

    // The imported job runs with the credential read from credential.json.
    let mut run = microservice(s.dir(), s.dir(), &s.data());
    run.args(["run", "job-1", "--data", "-"]);
    let out = output(run, Some(r#"{"number": 2}"#));
    assert!(out.status.success(), "{}", describe(&out));
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["data"]["seen"], "Testy", "{}", describe(&out));

    // A second import refuses to overwrite, unless told to.
    let out = s.run(&["import", yaml.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(text(&out.stderr).contains("--force"), "{}", describe(&out));
    let out = s.run(&["import", yaml.to_str().unwrap(), "--force"], None);
    assert!(out.status.success(), "{}", describe(&out));

    // A YAML error names the line; nothing is written.
    let bad = s.dir().join("bad.yaml");
    std::fs::write(&bad, "jobs:\n  job-1:\n    expression: [unclosed\n").unwrap();
    let out_dir = s.dir().join("bad-out");
    let out = s.run(
        &[
            "import",
            bad.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(text(&out.stderr).contains("line"), "{}", describe(&out));
    assert!(!out_dir.join("project.toml").exists());
}

/// The original accepted cron nicknames; so do `import` and `check`. A bad
/// expression is refused naming the field and its range.
#[test]
fn import_and_check_accept_cron_nicknames() {
    let nicknames = [
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
    ];
    let s = Scratch::new(None);
    let mut yaml = String::from("jobs:\n");
    for (i, _) in nicknames.iter().enumerate() {
        yaml.push_str(&format!(
            "  job-{i}:\n    expression: fn(state => state)\n    adaptor: '@openfn/language-common'\n    trigger: t-{i}\n"
        ));
    }
    yaml.push_str("triggers:\n");
    for (i, nick) in nicknames.iter().enumerate() {
        yaml.push_str(&format!("  t-{i}:\n    cron: \"{nick}\"\n"));
    }
    let file = s.dir().join("project.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let project = s.project();
    let out = s.run(
        &[
            "import",
            file.to_str().unwrap(),
            "--out",
            project.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{yaml}\n{}", describe(&out));
    let toml = std::fs::read_to_string(project.join("project.toml")).unwrap();
    for nick in nicknames {
        assert!(toml.contains(&format!("cron = \"{nick}\"")), "{toml}");
    }
    let out = s.run(&["check"], None);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stdout).contains("7 jobs, 7 triggers"),
        "{}",
        describe(&out)
    );

    let bad = s.dir().join("bad.yaml");
    std::fs::write(
        &bad,
        "jobs:\n  j:\n    expression: fn(state => state)\n    adaptor: '@openfn/language-common'\n    trigger: t\ntriggers:\n  t:\n    cron: '0 61 * * *'\n",
    )
    .unwrap();
    let out_dir = s.dir().join("bad-out");
    let out = s.run(
        &[
            "import",
            bad.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains(
            "the converted project is not valid: [triggers.t] cron: `0 61 * * *`: hour field: 61 is out of range 0-23"
        ),
        "{}",
        describe(&out)
    );
    assert!(!out_dir.join("project.toml").exists());
}
