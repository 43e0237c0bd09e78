//! Final states that plain JSON cannot hold come out as `core execute`
//! writes them (with fast-safe-stringify, through vm2's proxies): one
//! expected JSON per job, checked in whichever mode `ENGINE_MODE` names, so
//! `make test` holds both modes to the same answers. The expected values are
//! what core 1.5.1's CLI wrote for these jobs.

use serde_json::{Value, json};

use crate::harness::{Launch, log_lines};

/// (job, expression, the final state, or the failure's log line).
const CASES: &[(&str, &str, Expect)] = &[
    (
        "values",
        r#"fn(state => {
  const shared = { x: 1 };
  state.data = {
    date: new Date(0),
    map: new Map([[1, 2]]),
    set: new Set([1]),
    bytes: new Uint8Array([1, 2]),
    floats: new Float64Array([0.5]),
    nan: NaN,
    infinity: Infinity,
    minusInfinity: -Infinity,
    minusZero: -0,
    fn: () => 1,
    undef: undefined,
    symbol: Symbol('s'),
    array: [undefined, () => 1, NaN, Symbol('s'), null],
    custom: { toJSON() { return 'from toJSON'; } },
    customKey: { toJSON(key) { return 'key ' + key; } },
    shared: [shared, shared],
    boxed: [new Number(1), new String('s'), new Boolean(false)],
    error: new Error('e'),
    regexp: /x/g,
    nested: { deeper: { n: null, t: true, s: 'é\u2028"\\' } },
  };
  state.data.loop = state.data;
  state.data.array.push(state.data.array);
  state.self = state;
  return state;
})"#,
        Expect::State(
            r#"{"data": {"date": "1970-01-01T00:00:00.000Z", "map": {}, "set": {},
              "bytes": {"0": 1, "1": 2}, "floats": {"0": 0.5}, "nan": null, "infinity": null,
              "minusInfinity": null, "minusZero": 0,
              "array": [null, null, null, null, null, "[Circular]"],
              "custom": "from toJSON", "customKey": "key customKey",
              "shared": [{"x": 1}, {"x": 1}], "boxed": [{}, {"0": "s"}, {}],
              "error": {}, "regexp": {},
              "nested": {"deeper": {"n": null, "t": true, "s": "\u00e9\u2028\"\\"}},
              "loop": "[Circular]"},
             "self": "[Circular]"}"#,
        ),
    ),
    // The issue's report. A BigInt anywhere makes JSON.stringify throw, and
    // fast-safe-stringify then writes this one string instead of the state.
    (
        "circular-bigint",
        "fn(state => { state.self = state; state.big = BigInt(10); return state; })",
        Expect::State(r#""[unable to serialize, circular reference is too complex to analyze]""#),
    ),
    (
        "circular",
        "fn(state => { state.self = state; state.data.again = state.data; return state; })",
        Expect::State(
            r#"{"data": {"kind": "serialize", "again": "[Circular]"}, "self": "[Circular]"}"#,
        ),
    ),
    (
        "string",
        "fn(state => 'just text')",
        Expect::State(r#""just text""#),
    ),
    ("number", "fn(state => 42.5)", Expect::State("42.5")),
    ("null", "fn(state => null)", Expect::State("null")),
    (
        "undefined",
        "fn(state => undefined)",
        Expect::Fails("type must be serializable. Got 'undefined'"),
    ),
    (
        "function",
        "fn(state => () => state)",
        Expect::Fails("type must be serializable. Got 'function'"),
    ),
    (
        "to-json-nothing",
        "fn(state => ({ toJSON() { return undefined; } }))",
        Expect::Fails(r#"The "data" argument must be of type string"#),
    ),
    (
        "throwing-getter",
        "fn(state => { Object.defineProperty(state, 'bad', { enumerable: true, get() { throw new Error('no reading me'); } }); return state; })",
        Expect::Fails("no reading me"),
    ),
];

enum Expect {
    State(&'static str),
    /// Fails with exit code 1, this in its log.
    Fails(&'static str),
}

/// A final state without the `receipt` its initial state carried (how the
/// receipt arrived, passed along by a job that returns its state); other
/// values as they are.
fn without_receipt(state: &Value) -> Value {
    let mut state = state.clone();
    if let Some(receipt) = state.as_object_mut().and_then(|o| o.remove("receipt")) {
        assert_eq!(receipt["source"], json!("inbox"), "{receipt}");
    }
    state
}

#[test]
fn final_states_are_written_as_cores_cli_writes_them() {
    let mut toml = String::from("[triggers.serialize]\ncriteria = { kind = \"serialize\" }\n");
    for (name, expression, _) in CASES {
        toml.push_str(&format!(
            "\n[jobs.{name}]\ntrigger = \"serialize\"\nexpression = '''\n{expression}\n'''\n"
        ));
    }
    let svc = Launch::new(&toml).env("ENDPOINT_STYLE", "sync").start();
    let reply = svc.post_json("/inbox", r#"{"kind":"serialize"}"#);
    let jobs = reply.json["jobs"].as_array().cloned().unwrap_or_default();
    assert_eq!(jobs.len(), CASES.len(), "{reply:?}\n{}", svc.log_tail());
    for (name, _, expect) in CASES {
        let entry = jobs
            .iter()
            .find(|j| j["job"] == *name)
            .unwrap_or_else(|| panic!("no run of {name}: {reply:?}"));
        let run = svc.get_json(&format!(
            "/api/runs/{}",
            entry["run_id"].as_str().unwrap_or_default()
        ));
        match expect {
            Expect::State(text) => {
                let expected: Value = serde_json::from_str(text).unwrap();
                assert_eq!(run["status"], "success", "{name}: {run}");
                assert_eq!(run["exit_code"], 0, "{name}: {run}");
                assert_eq!(without_receipt(&run["state"]), expected, "{name}: {run}");
                assert_eq!(
                    without_receipt(&entry["state"]),
                    expected,
                    "{name}: {entry}"
                );
            }
            Expect::Fails(line) => {
                assert_eq!(run["status"], "failure", "{name}: {run}");
                assert_eq!(run["exit_code"], 1, "{name}: {run}");
                assert_eq!(run["state"], json!(null), "{name}: {run}");
                let log = log_lines(&run).join("\n");
                assert!(
                    log.contains(line),
                    "{name}: {line:?} not in the log:\n{log}"
                );
            }
        }
    }
}
