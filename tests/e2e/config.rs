//! Project validation: an invalid `project.toml` makes the service exit
//! non-zero before listening, with an error naming the file, the table and
//! the key at fault.

use crate::harness::{Launch, Service};

/// A job that is valid on its own, for cases about other tables.
const VALID_JOB: &str = r#"
[jobs.job-1]
adaptor = "@openfn/language-common"
trigger = "trigger-1"
expression = "fn(state => state)"

[triggers.trigger-1]
criteria = { number = 2 }
"#;

struct Case {
    name: &'static str,
    toml: String,
    /// Extra files, relative to the project dir (`..` reaches the temp root).
    files: &'static [(&'static str, &'static str)],
    /// Substrings the output must contain (case-insensitive).
    expected: &'static [&'static str],
}

fn job_with(extra: &str) -> String {
    format!(
        r#"
[jobs.job-1]
adaptor = "@openfn/language-common"
trigger = "trigger-1"
{extra}

[triggers.trigger-1]
criteria = {{ number = 2 }}
"#
    )
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "job naming a missing trigger",
            toml: r#"
[jobs.job-1]
adaptor = "@openfn/language-common"
trigger = "no-such-trigger"
expression = "fn(state => state)"
"#
            .into(),
            files: &[],
            expected: &["project.toml", "jobs.job-1", "trigger", "no-such-trigger"],
        },
        Case {
            name: "unknown key in a job",
            toml: job_with("expression = \"fn(state => state)\"\ncolour = \"red\""),
            files: &[],
            expected: &["project.toml", "jobs.job-1", "colour"],
        },
        Case {
            name: "trigger without a kind",
            toml: format!("{VALID_JOB}\n[triggers.kindless]\n"),
            files: &[],
            expected: &["project.toml", "triggers.kindless"],
        },
        Case {
            name: "trigger with two kinds",
            toml: format!(
                "{VALID_JOB}\n[triggers.both]\ncriteria = {{ a = 1 }}\ncron = \"* * * * *\"\n"
            ),
            files: &[],
            expected: &["project.toml", "triggers.both"],
        },
        Case {
            name: "bad cron expression",
            toml: format!("{VALID_JOB}\n[triggers.bad-cron]\ncron = \"every tuesday\"\n"),
            files: &[],
            expected: &["project.toml", "triggers.bad-cron", "cron"],
        },
        Case {
            name: "success flow cycle",
            toml: r#"
[jobs.ping]
adaptor = "@openfn/language-common"
trigger = "after-pong"
expression = "fn(state => state)"

[jobs.pong]
adaptor = "@openfn/language-common"
trigger = "after-ping"
expression = "fn(state => state)"

[triggers.after-ping]
success = "ping"

[triggers.after-pong]
success = "pong"
"#
            .into(),
            files: &[],
            expected: &["project.toml", "cycle", "ping", "pong"],
        },
        Case {
            name: "missing expression_file",
            toml: job_with("expression_file = \"jobs/missing.js\""),
            files: &[],
            expected: &[
                "project.toml",
                "jobs.job-1",
                "expression_file",
                "missing.js",
            ],
        },
        Case {
            name: "expression_file escaping the project with ..",
            toml: job_with("expression_file = \"../outside.js\""),
            files: &[("../outside.js", "fn(state => state)\n")],
            expected: &["project.toml", "jobs.job-1", "expression_file"],
        },
        Case {
            name: "absolute expression_file",
            toml: job_with("expression_file = \"{root}/outside.js\""),
            files: &[("../outside.js", "fn(state => state)\n")],
            expected: &["project.toml", "jobs.job-1", "expression_file"],
        },
    ]
}

#[test]
fn invalid_projects_are_rejected_with_precise_errors() {
    let mut problems = Vec::new();
    for case in cases() {
        let result = if case.files.is_empty() {
            Service::try_start_expect_failure(&case.toml)
        } else {
            let mut launch = Launch::new(&case.toml);
            for (path, contents) in case.files {
                launch = launch.file(path, contents);
            }
            launch.expect_failure()
        };
        match result {
            Err(problem) => problems.push(format!("[{}] {problem}", case.name)),
            Ok(output) => {
                let lower = output.to_lowercase();
                let missing: Vec<&str> = case
                    .expected
                    .iter()
                    .copied()
                    .filter(|s| !lower.contains(&s.to_lowercase()))
                    .collect();
                if !missing.is_empty() {
                    problems.push(format!(
                        "[{}] output lacks {missing:?}:\n{output}",
                        case.name
                    ));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} cases failed:\n\n{}",
        problems.len(),
        cases().len(),
        problems.join("\n\n")
    );
}

#[test]
fn valid_project_variants_are_accepted() {
    // The counterparts of the cases above: an expression_file inside the
    // project, a five-field cron schedule and an [engine] table are fine,
    // and the job defined in the file runs.
    let toml = format!(
        r#"
[engine]
timeout = "1m"
concurrency = 2

{}

[jobs.yearly]
adaptor = "@openfn/language-common"
trigger = "new-year"
expression = "fn(state => state)"

[triggers.new-year]
cron = "0 0 1 1 *"
"#,
        job_with("expression_file = \"jobs/job-1.js\"")
    );
    let svc = Launch::new(&toml)
        .file(
            "jobs/job-1.js",
            "fn(state => { state.data.number = state.data.number * 5; return state; })\n",
        )
        .start();

    let jobs = svc.get_json("/api/jobs");
    let mut names: Vec<&str> = jobs
        .as_array()
        .unwrap_or_else(|| panic!("/api/jobs is not an array: {jobs}"))
        .iter()
        .filter_map(|j| j["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["job-1", "yearly"], "{jobs}");

    let reply = svc.post_json("/inbox", crate::harness::RECEIPT);
    assert_eq!(
        reply.json["data"],
        serde_json::json!(["job-1"]),
        "{reply:?}"
    );
    let state = svc.poll_until("job-1 state", crate::harness::RUN_TIMEOUT, || {
        svc.job_state("job-1")
            .ok_or_else(|| format!("no state; job-1 runs: {:?}", svc.runs("job-1")))
    });
    assert_eq!(state["data"]["number"], 10, "{state}");
}
