//! Project validation through `serve`: good variants start and run. The
//! invalid projects, and the exact list of errors each must produce from
//! `check` and `serve`, are fixture files in tests/projects/invalid/,
//! walked by tests/e2e/cli/check.rs.

use crate::harness::Launch;

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

#[test]
fn valid_project_variants_are_accepted() {
    // The counterparts of the invalid fixtures: an expression_file inside
    // the project, a five-field cron schedule, the nicknames the original
    // accepted, a trigger's own time zone and an [engine] table are fine,
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

[jobs.hourly]
adaptor = "@openfn/language-common"
trigger = "every-hour"
expression = "fn(state => state)"

[triggers.every-hour]
cron = "@hourly"

[jobs.nairobi-mornings]
adaptor = "@openfn/language-common"
trigger = "nairobi-9am"
expression = "fn(state => state)"

[triggers.nairobi-9am]
cron = "0 9 * * MON-FRI"
timezone = "Africa/Nairobi"
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
    assert_eq!(
        names,
        ["hourly", "job-1", "nairobi-mornings", "yearly"],
        "{jobs}"
    );

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
