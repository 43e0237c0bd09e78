//! The jobs library through the real binary: opted-in and opted-out jobs,
//! figures that match the run records after successes and failures,
//! ranking, helpers found by parsing (nested, chained, modern syntax),
//! version ranges, bad parameters, the admin key unless `public`, `check`
//! reporting syntax errors, the `library` commands, and that no state,
//! data, log line, credential or job name leaves in any answer.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::cli::describe;
use crate::harness::{BIN, Launch, Service, packages_dir, temp_dir, wait_for_runs};

const SECRET: &str = "s3cr3t-token-value-91";
const DATA_MARKER: &str = "receipt-marker-5521";
const LOG_MARKER: &str = "log-marker-7730";
const ADMIN_KEY: &str = "admin-key-library-19";

/// `steady` always succeeds, `flaky` fails when asked to, `hidden` is not
/// shared; all three run on every receipt.
const PROJECT: &str = r#"
[jobs.steady]
adaptor = "@openfn/language-common@3.3.4"
trigger = "go"
credential = "api"
library = true
expression_file = "jobs/steady.js"

[jobs.flaky]
trigger = "go"
library = true
expression = "fn(state => { if (state.data.fail) { throw new Error('asked to fail'); } return state; })"

[jobs.hidden]
trigger = "go"
expression = "fn(state => ({ ...state, hidden: 'opted-out-expression' }))"

[triggers.go]
criteria = { kind = "go" }

[credentials.api]
token = "s3cr3t-token-value-91"
"#;

/// A nested operation, an async arrow and a template literal (what
/// `@openfn/core` 1.5.1 itself compiles); a local function is not a
/// helper. The log line is built at run time, so the expression itself
/// does not hold it.
const STEADY: &str = r#"each('$.data.items[*]', fn(state => state));
fn(async state => {
  const count = list => list.length;
  console.log(['log', 'marker', '7730'].join('-'));
  return { ...state, note: `keys: ${count(Object.keys(state))}` };
});
"#;

/// Never run, so free to use syntax core 1.5.1 would not compile:
/// optional chaining, `??`, a chain after an operation.
const LIBRARY_FILE: &str = "// adaptor: @openfn/language-common@2.0.0\n// shared from another project\neach('$.data.rows[*]', merge(field('token', 's3cr3t-token-value-91'))).then(s => s?.data ?? s);\n";

fn entries(svc: &Service, query: &str) -> Vec<Value> {
    let reply = svc.get_json(&format!("/api/library{query}"));
    reply.as_array().cloned().unwrap_or_default()
}

fn assert_nothing_private(body: &str) {
    for private in [
        SECRET,
        DATA_MARKER,
        LOG_MARKER,
        "configuration",
        "opted-out-expression",
        "steady",
        "flaky",
        "hidden",
    ] {
        assert!(!body.contains(private), "`{private}` in {body}");
    }
}

#[test]
fn library_ranks_shared_jobs_by_their_runs_and_keeps_the_rest_private() {
    let svc = Launch::new(PROJECT)
        .file("jobs/steady.js", STEADY)
        .file("library/rows.js", LIBRARY_FILE)
        .start();
    for fail in [false, true, false, true] {
        let body = format!(
            r#"{{"kind": "go", "fail": {fail}, "marker": "{DATA_MARKER}", "items": [1, 2]}}"#
        );
        assert_eq!(svc.post_json("/inbox", &body).status, 202);
    }
    wait_for_runs(&svc, "steady", "success", 4);
    wait_for_runs(&svc, "flaky", "success", 2);
    wait_for_runs(&svc, "flaky", "failure", 2);
    wait_for_runs(&svc, "hidden", "success", 4);

    let all = svc.get("/api/library");
    assert_eq!(all.status, 200, "{all:?}");
    assert_nothing_private(&all.body);
    let all = all.json.as_array().unwrap().clone();
    assert_eq!(all.len(), 3, "{all:#?}");

    // steady: 4 of 4, pinned to the installed 3.3.4, helpers by parsing.
    let steady = &all[0];
    assert_eq!(steady["source"], "local");
    assert_eq!(steady["origin"], "self");
    assert_eq!(steady["active"], true);
    assert_eq!(steady["runsLast90"], 4);
    assert_eq!(steady["successRateLast90"], 1.0);
    assert_eq!(steady["adaptor"], "@openfn/language-common");
    assert_eq!(steady["version"], "3.3.4");
    assert_eq!(steady["helpers"], serde_json::json!({ "each": 1, "fn": 2 }));
    assert_eq!(steady["expression"], STEADY.trim());
    // flaky: 2 of 4, so below.
    let flaky = &all[1];
    assert_eq!(flaky["runsLast90"], 4);
    assert_eq!(flaky["successRateLast90"], 0.5);
    assert!(steady["score"].as_f64() > flaky["score"].as_f64());
    // The library file: no runs, last; its credential value masked.
    let file = &all[2];
    assert_eq!(file["source"], "library");
    assert_eq!(file["active"], false);
    assert_eq!(file["runsLast90"], 0);
    assert_eq!(file["successRateLast90"], Value::Null);
    assert_eq!(
        file["helpers"],
        serde_json::json!({ "each": 1, "field": 1, "merge": 1 })
    );
    assert!(file["expression"].as_str().unwrap().contains("'***'"));

    // Filters.
    let each = entries(&svc, "?adaptor=common&helper=each");
    assert_eq!(each.len(), 2, "{each:#?}");
    let items = entries(&svc, "?helper=each&q=ITEMS");
    assert_eq!((items.len(), &items[0]["runsLast90"]), (1, &Value::from(4)));
    // Both jobs run the installed 3.3.4 (flaky names no version); the file 2.0.0.
    assert_eq!(entries(&svc, "?version=3.3.4").len(), 2);
    assert_eq!(entries(&svc, "?version=%3E%3D3.3.4%20%3C3.4").len(), 2);
    assert_eq!(entries(&svc, "?version=%3E3.3.4").len(), 0);
    let v2 = entries(&svc, "?version=%5E2");
    assert_eq!((v2.len(), &v2[0]["source"]), (1, &Value::from("library")));
    assert_eq!(entries(&svc, "?limit=1").len(), 1);

    // An unknown helper: the nearest real ones, from the installed package.
    let bad = svc.get("/api/library?adaptor=common&helper=eachh");
    assert_eq!(bad.status, 400, "{bad:?}");
    let why = bad.json["errors"][0].as_str().unwrap();
    assert!(why.contains("`eachh`") && why.contains("`each`"), "{why}");
    // Every bad parameter at once, each named.
    let bad = svc.get("/api/library?limit=0&version=bogus&colour=red");
    assert_eq!(bad.status, 400, "{bad:?}");
    let errors = bad.json["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 3, "{errors:?}");
    let text = bad.body.clone();
    for name in ["limit", "version", "colour"] {
        assert!(text.contains(name), "{text}");
    }

    // The command line answers the same from the same records.
    let out = cli(
        &svc,
        &[
            "library",
            "search",
            "--adaptor",
            "common",
            "--helper",
            "each",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed[0]["runsLast90"], 4, "{listed:#}");
    assert_eq!(listed.as_array().unwrap().len(), 2);
    let out = cli(&svc, &["library", "search", "--helper", "eachh"]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`each`"));

    // Export, then import into another project: deduplicated by expression.
    let export = cli(&svc, &["library", "export"]);
    assert!(export.status.success(), "{}", describe(&export));
    assert_nothing_private(&String::from_utf8_lossy(&export.stdout));
    let other = temp_dir("e2e-library-import-");
    let file = other.path().join("library.json");
    std::fs::write(&file, &export.stdout).unwrap();
    std::fs::write(other.path().join("project.toml"), "").unwrap();
    let import = |project: &Path| {
        let out = Command::new(BIN)
            .args(["library", "import"])
            .arg(&file)
            .env("PROJECT_DIR", project)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", describe(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(import(other.path()).contains("3 added, 0 already there"));
    assert!(import(other.path()).contains("0 added, 3 already there"));
    let written = std::fs::read_dir(other.path().join("library"))
        .unwrap()
        .count();
    assert_eq!(written, 3);
}

#[test]
fn library_needs_the_admin_key_unless_public() {
    let private = Launch::new(PROJECT)
        .file("jobs/steady.js", STEADY)
        .env("ADMIN_API_KEY", ADMIN_KEY)
        .start();
    assert_eq!(private.get("/api/library").status, 401);
    let ok = private.get_with("/api/library", &[("x-api-key", ADMIN_KEY)]);
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(ok.json.as_array().unwrap().len(), 2);

    let public = Launch::new(&format!(
        "[library]\npublic = true\njob_names = true\n{PROJECT}"
    ))
    .file("jobs/steady.js", STEADY)
    .env("ADMIN_API_KEY", ADMIN_KEY)
    .start();
    let open = public.get("/api/library");
    assert_eq!(open.status, 200, "{open:?}");
    // Job names only because the project allows them.
    let names: Vec<&str> = open
        .json
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["job"].as_str())
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"steady") && names.contains(&"flaky"));
    // The rest of the API still takes the key.
    assert_eq!(public.get("/api/jobs").status, 401);
}

#[test]
fn check_reports_syntax_errors_of_jobs_and_library_files_with_line_and_column() {
    let root = temp_dir("e2e-library-check-");
    let project = root.path().join("project");
    std::fs::create_dir_all(project.join("jobs")).unwrap();
    std::fs::create_dir_all(project.join("library")).unwrap();
    std::fs::write(
        project.join("project.toml"),
        r#"
[jobs.inline]
trigger = "t"
expression = "fn(state => {\n  return state;\n);"

[jobs.from-file]
trigger = "t"
expression_file = "jobs/broken.js"

[jobs.modern]
trigger = "t"
expression = "fn(async s => ({ ...s, a: `x${s.data?.y ?? 1}` }))"

[jobs.lightning]
trigger = "t"
expression = "each($.data.items, fn(state => state)).then(s => s)"

[jobs.lazy-outside]
trigger = "t"
expression = "fn(state => state);\nconst x = $.data.x;"

[triggers.t]
criteria = { a = 1 }
"#,
    )
    .unwrap();
    std::fs::write(
        project.join("jobs/broken.js"),
        "fn(state => state);\nfn(state => state.data.);\n",
    )
    .unwrap();
    std::fs::write(
        project.join("library/bad.js"),
        "// adaptor: @openfn/language-common\nfn(s => s\n",
    )
    .unwrap();
    std::fs::write(project.join("library/bare.js"), "fn(s => s);\n").unwrap();
    let out = Command::new(BIN)
        .arg("check")
        .env("PROJECT_DIR", &project)
        .env("DATA_DIR", root.path().join("data"))
        .env("PACKAGES_DIR", root.path().join("packages"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&project.display().to_string(), "{p}");
    let expected = [
        "error: {p}/project.toml: [jobs.inline] expression: line 3, column 1 of the expression: syntax error:",
        "error: {p}/jobs/broken.js: job `from-file`: line 2, column 24: syntax error:",
        "error: {p}/library/bad.js: line 3, column 1: syntax error:",
        "error: {p}/library/bare.js: line 1: no `// adaptor: <spec>` line",
        // Lazy state where OpenFn's compiler refuses it.
        "error: {p}/project.toml: [jobs.lazy-outside] expression: line 2, column 11 of the expression: syntax error: invalid state operator: must be inside an expression",
    ];
    for line in expected {
        assert!(stderr.contains(line), "missing `{line}` in:\n{stderr}");
    }
    assert!(!stderr.contains("modern"), "{stderr}");
    assert!(!stderr.contains("jobs.lightning"), "{stderr}");
    assert!(stderr.contains("5 errors found"), "{stderr}");
}

/// The binary with `args` on the service's project, data and packages.
fn cli(svc: &Service, args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("PROJECT_DIR", svc.project_dir())
        .env("DATA_DIR", svc.data_dir())
        .env("PACKAGES_DIR", packages_dir())
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null());
    if crate::postgres::enabled() {
        cmd.env(
            "DATABASE_URL",
            crate::postgres::database_url_for(svc.data_dir()),
        );
    }
    cmd.output().unwrap()
}

/// The deployment whose library the other fetches: public, one shared job.
const REMOTE_PROJECT: &str = r#"
[library]
public = true

[jobs.remote-shared]
trigger = "go"
library = true
expression = "each('$.data.rows[*]', fn(state => ({ ...state, from: 'the remote' })));"

[jobs.remote-private]
trigger = "go"
expression = "fn(state => ({ ...state, note: 'remote-opted-out' }))"

[triggers.go]
criteria = { kind = "go" }
"#;

#[test]
fn remote_libraries_are_merged_with_their_origin_and_a_dead_remote_slows_nothing() {
    let remote = Launch::new(REMOTE_PROJECT).start();
    for _ in 0..2 {
        let sent = remote.post_json("/inbox", r#"{"kind": "go", "rows": [1]}"#);
        assert_eq!(sent.status, 202, "{sent:?}");
    }
    wait_for_runs(&remote, "remote-shared", "success", 2);
    // A remote that takes the connection and never answers, and one that
    // refuses it.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let remote_url = format!("http://{}", remote.addr());
    let toml = format!(
        "[library]\nremotes = [\"http://{}\", \"{remote_url}/\", \"http://{refused}\"]\nremote_timeout = \"30s\"\n{PROJECT}",
        hung.local_addr().unwrap()
    );
    let svc = Launch::new(&toml).file("jobs/steady.js", STEADY).start();

    // The local library answers at once, whatever the remotes do.
    let asked = std::time::Instant::now();
    let own = svc.get("/api/library?origin=self");
    assert_eq!(own.status, 200, "{own:?}");
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(10),
        "a local query waited {:?} on the remotes",
        asked.elapsed()
    );
    assert_eq!(own.json.as_array().unwrap().len(), 2, "{own:?}");

    // The live remote's own entries arrive, marked with where they came from.
    let merged = svc.wait_until(
        "the remote's entry in the library",
        std::time::Duration::from_secs(30),
        || {
            let all = entries(&svc, "");
            all.iter().any(|e| e["origin"] == remote_url).then_some(all)
        },
    );
    assert_eq!(merged.len(), 3, "{merged:#?}");
    let theirs: Vec<&Value> = merged
        .iter()
        .filter(|e| e["origin"] == remote_url)
        .collect();
    assert_eq!(theirs.len(), 1, "{merged:#?}");
    let theirs = theirs[0];
    assert_eq!(theirs["source"], "local");
    assert_eq!(theirs["runsLast90"], 2);
    assert_eq!(theirs["successRateLast90"], 1.0);
    assert!(theirs.get("job").is_none(), "{theirs}");
    assert!(
        theirs["expression"]
            .as_str()
            .unwrap()
            .contains("the remote")
    );
    // Two for two on the remote outranks this deployment's runless entries.
    assert_eq!(merged[0]["origin"], remote_url, "{merged:#?}");
    // Filters apply to them as to local entries.
    let each = entries(&svc, "?adaptor=common&helper=each");
    assert_eq!(each.len(), 2, "{each:#?}");
    let only = entries(&svc, &format!("?origin={remote_url}"));
    assert_eq!(only.len(), 1, "{only:#?}");
    let body = svc.get("/api/library").body;
    assert!(!body.contains("remote-opted-out") && !body.contains("remote-shared"));
    // The dashboard's choices count them too.
    let helpers = svc.get_json("/api/library/helpers");
    let common = helpers
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["adaptor"] == "@openfn/language-common")
        .unwrap();
    assert_eq!(common["expressions"], 3, "{helpers:#}");
    assert_eq!(common["helpers"]["each"], 2, "{helpers:#}");

    // The remote gone: its last entries are kept.
    drop(remote);
    let again = entries(&svc, "");
    assert!(
        again.iter().any(|e| e["origin"] == remote_url),
        "{again:#?}"
    );
    drop(hung);
}
