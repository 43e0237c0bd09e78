//! Jobs written for OpenFn's current runtime (Lightning's job syntax) run
//! here unchanged, with the results that runtime gives.
//!
//! Each case is a job as a Lightning user writes it, and the ES module
//! OpenFn's compiler makes of it (its transforms `lazy-state`, `promises`,
//! `top-level-operations` and `add-imports`, written out by hand: the
//! compiler is not on the npm registry). The job runs through the service,
//! in whichever mode `ENGINE_MODE` names; the module runs through the real
//! `@openfn/runtime` (`tests/runtime`, `npm ci` once) on the same input; the
//! two final states must be equal (the service's without the `receipt` it
//! adds, the runtime's without `configuration`, which it removes).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Map, Value, json};

use crate::harness::{INSTALL_TIMEOUT, Launch, output_within};

/// `defer` as OpenFn's compiler injects it for a promise chain.
const DEFER: &str = "function defer(fn, complete = (p) => p, error = (e) => { throw e; }) {\n  return (state) => {\n    try {\n      return complete(Promise.resolve(fn(state)).catch(error));\n    } catch (e) {\n      return error(e);\n    }\n  };\n}\n";

/// (case, the job as written, the module OpenFn's compiler makes of it,
/// the receipt's body).
const CASES: &[(&str, &str, &str, &str)] = &[
    (
        "lazy-each",
        "each($.data.items, fn(state => {\n  state.sum = (state.sum || 0) + state.data.n;\n  return state;\n}));",
        "export default [each((state) => state.data.items, fn(state => {\n  state.sum = (state.sum || 0) + state.data.n;\n  return state;\n}))];",
        r#"{"items": [{"n": 1}, {"n": 5}]}"#,
    ),
    (
        "lazy-in-objects",
        "fnIf($.data.go === true, fn(state => ({ ...state, went: true })));\nfnIf($.data.go === false, fn(state => ({ ...state, stayed: true })));\nfn(state => ({ ...state, copy: { n: $.data.n, tag: `n=${$.data.n}` } }));",
        "export default [fnIf((state) => state.data.go === true, fn(state => ({ ...state, went: true }))), fnIf((state) => state.data.go === false, fn(state => ({ ...state, stayed: true }))), fn(state => ({ ...state, copy: { n: state.data.n, tag: `n=${state.data.n}` } }))];",
        r#"{"go": true, "n": 7}"#,
    ),
    (
        "promise-chain",
        "fn(() => { throw new Error('boom'); }).catch(e => ({ data: { caught: e.message } }));\nfn(state => ({ ...state, a: 1 }))\n  .then(state => ({ ...state, b: state.a + 1 }))\n  .then(state => ({ ...state, c: state.b * 10 }));",
        "__DEFER__export default [defer(fn(() => { throw new Error('boom'); }), undefined, e => ({ data: { caught: e.message } })), defer(fn(state => ({ ...state, a: 1 })), p => p.then(state => ({ ...state, b: state.a + 1 })).then(state => ({ ...state, c: state.b * 10 })))];",
        r#"{"n": 1}"#,
    ),
    (
        "newer-syntax",
        "fn(state => {\n  const items = state.data?.items ?? [];\n  state.count = items.length;\n  state.first = state.data.items?.[0]?.name ?? 'none';\n  state.missing = state.data.nothing?.deeper?.x;\n  state.flag ||= 'set';\n  state.zero ??= 0;\n  return state;\n});",
        "export default [fn(state => {\n  const items = state.data?.items ?? [];\n  state.count = items.length;\n  state.first = state.data.items?.[0]?.name ?? 'none';\n  state.missing = state.data.nothing?.deeper?.x;\n  state.flag ||= 'set';\n  state.zero ??= 0;\n  return state;\n})];",
        r#"{"items": [{"name": "a"}, {"name": "b"}]}"#,
    ),
    (
        "module-scope",
        "import { fn } from '@openfn/language-common';\n\nconst names = { a: 'Alpha', b: 'Beta' };\nfunction label(key) {\n  return names[key] ?? key.toUpperCase();\n}\n\nfn(state => ({ ...state, labels: state.data.keys.map(label) }));\nfn(state => {\n  state.count = state.labels.length;\n  return state;\n});",
        "const names = { a: 'Alpha', b: 'Beta' };\nfunction label(key) {\n  return names[key] ?? key.toUpperCase();\n}\n\nexport default [fn(state => ({ ...state, labels: state.data.keys.map(label) })), fn(state => {\n  state.count = state.labels.length;\n  return state;\n})];",
        r#"{"keys": ["a", "b", "c"]}"#,
    ),
];

/// The adaptor functions the cases use, imported as the compiler's
/// `add-imports` transform does.
const IMPORTS: &str = "import { each, fn, fnIf } from '@openfn/language-common';\n";

#[test]
fn lightning_era_jobs_give_the_results_openfns_runtime_gives() {
    let mut toml = String::new();
    for (name, job, _, _) in CASES {
        toml.push_str(&format!(
            "[triggers.{name}]\ncriteria = {{ case = \"{name}\" }}\n\n[jobs.{name}]\ntrigger = \"{name}\"\nexpression = '''\n{job}\n'''\n\n"
        ));
    }
    toml.push_str(
        "[triggers.refused]\ncriteria = { case = \"refused\" }\n\n[jobs.refused]\ntrigger = \"refused\"\nexpression = \"fn(state => state);\\nconst x = $.data.x;\"\n",
    );
    let svc = Launch::new(&toml).env("ENDPOINT_STYLE", "sync").start();

    // Lazy state where OpenFn's compiler refuses it fails every run as a
    // compile failure that says where, without starting the job.
    let reply = svc.post_json("/inbox", r#"{"case": "refused"}"#);
    let run = svc.get_json(&format!(
        "/api/runs/{}",
        reply.json["jobs"][0]["run_id"].as_str().unwrap_or_default()
    ));
    assert_eq!(run["status"], "failure", "{run}");
    assert!(
        run["reason"].as_str().unwrap_or_default().contains(
            "did not compile: line 2, column 11: invalid state operator: must be inside an expression"
        ),
        "{run}"
    );

    let mut reference_input = Vec::new();
    let mut ours = Map::new();
    for (name, _, module, body) in CASES {
        let mut data: Value = serde_json::from_str(body).unwrap();
        data["case"] = json!(name);
        let reply = svc.post_json("/inbox", &data.to_string());
        assert_eq!(reply.status, 201, "{name}: {reply:?}\n{}", svc.log_tail());
        let run = &reply.json["jobs"][0];
        assert_eq!(run["job"], *name, "{reply:?}");
        let detail = svc.get_json(&format!(
            "/api/runs/{}",
            run["run_id"].as_str().unwrap_or_default()
        ));
        assert_eq!(
            detail["status"], "success",
            "{name} failed here:\n{}",
            detail["log"]
        );
        let mut state = detail["state"].clone();
        if let Some(o) = state.as_object_mut() {
            o.remove("receipt");
        }
        ours.insert(name.to_string(), state);
        let source = format!("{IMPORTS}{}", module.replace("__DEFER__", DEFER));
        reference_input.push(json!({ "name": name, "source": source, "state": { "data": data } }));
    }

    let theirs = run_reference(&Value::Array(reference_input));
    for (name, ..) in CASES {
        let expected = &theirs[*name];
        assert!(
            expected.get("error").is_none(),
            "{name}: OpenFn's runtime failed: {expected}"
        );
        assert_eq!(
            ours[*name], expected["state"],
            "{name}: this service's final state (left) differs from OpenFn's runtime's (right)"
        );
    }
}

/// `tests/runtime/run.mjs` over `cases`: each case's final state or error.
fn run_reference(cases: &Value) -> Value {
    let out = output_within(
        Command::new("node")
            .args(["--experimental-vm-modules", "--no-warnings", "run.mjs"])
            .current_dir(runtime_dir()),
        Some(cases.to_string().as_bytes()),
        INSTALL_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("running OpenFn's runtime: {e}"));
    assert!(
        out.status.success(),
        "run.mjs exited with {}:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "run.mjs wrote no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

static NODE_MODULES: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// `tests/runtime`, with its locked packages installed.
fn runtime_dir() -> PathBuf {
    NODE_MODULES
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/runtime");
            crate::harness::npm_ci(&dir, "@openfn/runtime/package.json")
        })
        .clone()
        .unwrap_or_else(|e| panic!("installing OpenFn's runtime failed:\n{e}"))
}
