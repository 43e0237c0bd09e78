//! The command line, through the real binary: `run` in a shell-style
//! pipeline with the real `@openfn/core`, `check` on broken and good
//! projects, `import` of every fixture of the original microservice (then
//! `check`, then a served receipt running the imported job), `install`
//! idempotence, and `plugin inspect`/`list` on the first-party plugins.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{
    BIN, Launch, json, packages_dir, temp_dir, wait_for_finished_run, wait_for_runs, wasm_plugins,
};

/// The original microservice's fixtures, next to the repository.
fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/openfn-microservice")
}

/// A command of the binary with a project's environment; runs in `dir` so
/// no stray `.env` is read.
fn microservice(dir: &Path, project: &Path, data: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env("PROJECT_DIR", project)
        .env("DATA_DIR", data)
        .env("PACKAGES_DIR", packages_dir())
        .env("NO_COLOR", "1")
        .env_remove("LOG_LEVEL")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `cmd`, feeding `stdin` when given.
fn output(mut cmd: Command, stdin: Option<&str>) -> Output {
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {BIN}: {e}"));
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(out: &Output) -> String {
    format!(
        "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// A project folder holding `toml` (and a data folder), in a temp root.
struct Scratch {
    root: tempfile::TempDir,
}

impl Scratch {
    fn new(toml: Option<&str>) -> Scratch {
        let root = temp_dir("e2e-cli-");
        std::fs::create_dir_all(root.path().join("project")).unwrap();
        if let Some(toml) = toml {
            std::fs::write(root.path().join("project/project.toml"), toml).unwrap();
        }
        Scratch { root }
    }
    fn dir(&self) -> &Path {
        self.root.path()
    }
    fn project(&self) -> PathBuf {
        self.root.path().join("project")
    }
    fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = microservice(self.dir(), &self.project(), &self.data());
        cmd.args(args);
        cmd
    }
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        output(self.cmd(args), stdin)
    }
}

const RUN_PROJECT: &str = r#"
[jobs.double]
trigger = "numbers"
credential = "api"
expression = """
fn(state => {
  console.log("doubling " + state.data.number + " with " + state.configuration.password);
  state.data.number = state.data.number * 2;
  return state;
})
"""

[jobs.then-triple]
trigger = "after-double"
expression = "fn(state => { state.data.number = state.data.number * 3; return state; })"

[jobs.doomed]
trigger = "numbers"
credential = "api"
expression = """
fn(state => {
  console.log("about to fail, holding " + JSON.stringify(state.configuration));
  throw new Error("no luck");
})
"""

[triggers.numbers]
criteria = { number = 2 }

[triggers.after-double]
success = "double"

[credentials.api]
password = "hunter2-very-secret"
"#;

#[test]
fn run_pipes_stdin_to_stdout_through_core() {
    let s = Scratch::new(Some(RUN_PROJECT));
    let out = s.run(&["run", "double", "--data", "-"], Some(r#"{"number": 21}"#));
    assert!(out.status.success(), "{}", describe(&out));
    let state: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", describe(&out)));
    assert_eq!(
        state,
        json(r#"{"data": {"number": 42}}"#),
        "{}",
        describe(&out)
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("doubling 21 with ***"),
        "{}",
        describe(&out)
    );
    assert!(!stderr.contains("hunter2"), "{}", describe(&out));

    // A shell pipeline: `run double --data - | run then-triple --state -`.
    let mut first = s.cmd(&["run", "double", "--data", "-"]);
    first.stdin(Stdio::piped());
    let mut first = first.spawn().unwrap();
    first
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"number": 2}"#)
        .unwrap();
    let mut second = s.cmd(&["run", "then-triple", "--state", "-"]);
    second.stdin(first.stdout.take().unwrap());
    let second = second.output().unwrap();
    assert!(first.wait().unwrap().success());
    assert!(second.status.success(), "{}", describe(&second));
    let state: Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(
        state,
        json(r#"{"data": {"number": 12}}"#),
        "{}",
        describe(&second)
    );

    // --state and --data together: the state's other keys stay, data is replaced.
    let state_file = s.dir().join("state.json");
    std::fs::write(&state_file, r#"{"data": {"number": 1}, "cursor": "c-7"}"#).unwrap();
    let out = s.run(
        &[
            "run",
            "double",
            "--state",
            state_file.to_str().unwrap(),
            "--data",
            "-",
        ],
        Some(r#"{"number": 5}"#),
    );
    assert!(out.status.success(), "{}", describe(&out));
    let state: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["data"]["number"], 10, "{}", describe(&out));
    assert_eq!(state["cursor"], "c-7", "{}", describe(&out));

    // A dry run: no run record or job state was written.
    assert!(
        !s.data().join("microservice.db").exists(),
        "`run` must not open the service's store"
    );
}

#[test]
fn a_failing_run_exits_non_zero_without_configuration() {
    let s = Scratch::new(Some(RUN_PROJECT));
    let out = s.run(&["run", "doomed", "--data", "-"], Some(r#"{"number": 2}"#));
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        out.stdout.is_empty(),
        "a failed run prints no state: {}",
        describe(&out)
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("no luck"), "{}", describe(&out));
    assert!(stderr.contains("failed"), "{}", describe(&out));
    assert!(!stderr.contains("hunter2"), "{}", describe(&out));

    // Bad input fails before anything runs, naming what is wrong.
    let out = s.run(&["run", "nope"], None);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("no job named `nope`; defined: doomed, double, then-triple"),
        "{}",
        describe(&out)
    );
    let out = s.run(&["run", "double", "--data", "-"], Some("{not json"));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("--data: stdin is not valid JSON"),
        "{}",
        describe(&out)
    );
}

#[test]
fn check_reports_the_line_of_a_broken_project_and_passes_a_good_one() {
    let good = Scratch::new(Some(RUN_PROJECT));
    let out = good.run(&["check"], None);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stdout).contains("3 jobs, 2 triggers, 1 credential"),
        "{}",
        describe(&out)
    );

    // A TOML syntax error on line 4: the parser's line and column.
    let broken = Scratch::new(Some(
        "[jobs.a]\ntrigger = \"t\"\nexpression = \"fn(s => s)\"\nadaptor = \"@openfn/language-common\n[triggers.t]\ncriteria = {}\n",
    ));
    let out = broken.run(&["check"], None);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("project.toml"), "{}", describe(&out));
    assert!(stderr.contains("line 4, column"), "{}", describe(&out));

    // A job naming a missing trigger: the table, the key and the table's line.
    let broken = Scratch::new(Some(
        "# a comment\n\n[triggers.t]\ncriteria = {}\n\n[jobs.a]\ntrigger = \"t2\"\nexpression = \"fn(s => s)\"\n",
    ));
    let out = broken.run(&["check"], None);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("[jobs.a] trigger (line 6): no trigger named `t2`"),
        "{}",
        describe(&out)
    );
}

/// Each fixture imports cleanly, passes `check`, and its `job-1` runs on a
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
        assert!(out.status.success(), "{fixture}: check: {}", describe(&out));

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
fn serve(project: &Path) -> crate::harness::Service {
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
    launch.start()
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

#[test]
fn install_is_idempotent() {
    // The harness installed the packages with `microservice install`; a
    // second install finds everything and runs no npm.
    let packages = packages_dir();
    let s = Scratch::new(Some(
        "[jobs.a]\ntrigger = \"t\"\nexpression = \"fn(s => s)\"\n[triggers.t]\ncriteria = {}\n",
    ));
    let marker = packages.join("@openfn+language-common");
    let before = std::fs::metadata(&marker).unwrap().modified().unwrap();
    let started = Instant::now();
    let out = s.run(&["install"], None);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stdout).contains("nothing to install")
            && text(&out.stdout).contains("npm was not run"),
        "{}",
        describe(&out)
    );
    // Not a terminal: plain lines, one per package.
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("@openfn/core 1.5.1 already installed"),
        "{}",
        describe(&out)
    );
    assert!(
        stderr.contains("@openfn/language-common"),
        "{}",
        describe(&out)
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        std::fs::metadata(&marker).unwrap().modified().unwrap(),
        before
    );
}

/// Kind and world of each first-party plugin.
const FIRST_PARTY: &[(&str, &str, &str, &str)] = &[
    ("file_drop.wasm", "trigger", "trigger", "poll"),
    ("journal.wasm", "persistence", "persistence", "enqueue"),
    ("jsonl_logger.wasm", "logging", "logging", "write-batch"),
    (
        "webhook_notify.wasm",
        "notification",
        "notification",
        "notify",
    ),
];

#[test]
fn plugin_inspect_describes_each_first_party_plugin() {
    let (first_party, test_plugins) = wasm_plugins();
    let bare = Scratch::new(None);
    for (file, kind, world, function) in FIRST_PARTY {
        let path = first_party.join(file);
        let out = bare.run(
            &["plugin", "inspect", "--json", path.to_str().unwrap()],
            None,
        );
        assert!(out.status.success(), "{file}: {}", describe(&out));
        let i: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(i["kind"], *kind, "{file}: {i}");
        assert_eq!(
            i["world"],
            format!("openfn:microservice/{world}@0.1.0"),
            "{file}: {i}"
        );
        assert_eq!(i["size"], std::fs::metadata(&path).unwrap().len(), "{file}");
        let exports = i["exports"].as_array().unwrap();
        assert!(
            exports.iter().any(|e| e["functions"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f == function))),
            "{file} should export {function}: {i}"
        );
        let imports: Vec<&str> = i["imports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert!(
            imports
                .iter()
                .any(|n| n.starts_with("openfn:microservice/host")),
            "{file}: {imports:?}"
        );
        // With no project, no grants: only the plugin needing the network is refused.
        if *file == "webhook_notify.wasm" {
            assert_eq!(i["would_load"], false, "{i}");
            assert!(
                i["refusal"].as_str().unwrap().contains("allowed_hosts"),
                "{i}"
            );
        } else {
            assert_eq!(i["would_load"], true, "{file}: {i}");
        }
    }

    // Under a project that grants it network access, the webhook plugin loads;
    // the text form says so.
    let granted = Scratch::new(Some(
        "[plugins.alerts]\nfile = \"webhook_notify.wasm\"\nconfig = { url = \"http://127.0.0.1:9/hook\" }\nallowed_hosts = [\"http://127.0.0.1:9\"]\n",
    ));
    let path = first_party.join("webhook_notify.wasm");
    let out = granted.run(&["plugin", "inspect", path.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = text(&out.stdout);
    for line in [
        "name:       alerts",
        "kind:       notification",
        "world:      openfn:microservice/notification@0.1.0",
        "grants:     [plugins.alerts]",
        "would load: yes",
    ] {
        assert!(
            stdout.contains(line),
            "missing `{line}`: {}",
            describe(&out)
        );
    }

    // `check` over a folder with every first-party plugin passes; add a
    // plugin that imports wasi:http without a grant and a file that is no
    // component at all, and `plugin list` and `check` both point at them.
    let plugins = granted.project().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for (file, ..) in FIRST_PARTY {
        std::fs::copy(first_party.join(file), plugins.join(file)).unwrap();
    }
    let out = granted.run(&["check"], None);
    assert!(
        out.status.success(),
        "every first-party plugin loads: {}",
        describe(&out)
    );
    assert!(
        text(&out.stdout).contains("ok: the project and 4 plugins would load"),
        "{}",
        describe(&out)
    );
    std::fs::copy(
        test_plugins.join("sneaky_http.wasm"),
        plugins.join("sneaky_http.wasm"),
    )
    .unwrap();
    std::fs::write(plugins.join("garbage.wasm"), b"not wasm").unwrap();
    let out = granted.run(&["plugin", "list", "--json"], None);
    assert!(out.status.success(), "{}", describe(&out));
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = list.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "file_drop",
            "garbage",
            "journal",
            "jsonl_logger",
            "sneaky_http",
            "alerts"
        ]
    );
    let loads: Vec<bool> = list
        .iter()
        .map(|p| p["would_load"].as_bool().unwrap())
        .collect();
    assert_eq!(loads, [true, false, true, true, false, true], "{list:?}");
    let out = granted.run(&["plugin", "list"], None);
    assert!(
        text(&out.stdout).contains("sneaky_http          notification"),
        "{}",
        describe(&out)
    );
    let out = granted.run(&["check"], None);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("garbage.wasm: plugin `garbage` would not load"),
        "{}",
        describe(&out)
    );
    assert!(
        stderr.contains(
            "sneaky_http.wasm: plugin `sneaky_http` would not load: it imports wasi:http"
        ),
        "{}",
        describe(&out)
    );
}

#[test]
fn every_command_has_help_with_an_example_and_there_is_a_version() {
    let s = Scratch::new(None);
    let out = s.run(&["--version"], None);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).starts_with("microservice "),
        "{}",
        describe(&out)
    );
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["run", "--help"],
        &["check", "--help"],
        &["import", "--help"],
        &["install", "--help"],
        &["plugin", "--help"],
        &["plugin", "list", "--help"],
        &["plugin", "inspect", "--help"],
    ] {
        let out = s.run(args, None);
        assert!(out.status.success(), "{args:?}: {}", describe(&out));
        assert!(
            text(&out.stdout).contains("Example"),
            "{args:?}: {}",
            describe(&out)
        );
    }
}
