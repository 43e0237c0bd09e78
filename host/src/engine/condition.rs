//! Flow conditions: a JavaScript expression over the state a flow would be
//! handed (`state.data.ok`, `!state.errors && state.data`), evaluated the
//! way OpenFn's Lightning evaluates a `js_expression` edge.
//!
//! The expression runs in a Node process of its own, in a fresh `vm`
//! context holding only `state` (a copy, without `configuration`), under a
//! short deadline: the `vm` timeout inside, and the process killed with its
//! group outside. The host never evaluates it, and nothing here logs the
//! state or the expression's output; a failure says why in words.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::PASSTHROUGH_ENV;

/// How long one condition may take, Node's start-up included.
pub const DEADLINE: Duration = Duration::from_secs(2);

/// Reads `{expression, state, timeout_ms}` from stdin and prints `true` or
/// `false`; a thrown error goes to stderr with exit code 1.
const SCRIPT: &str = r#"
const vm = require('vm');
let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (c) => { input += c; });
process.stdin.on('end', () => {
  try {
    const { expression, state, timeout_ms } = JSON.parse(input);
    const context = vm.createContext({ state }, { codeGeneration: { strings: false, wasm: false } });
    const result = vm.runInContext('(' + expression + '\n)', context, { timeout: timeout_ms });
    process.stdout.write(result ? 'true' : 'false');
  } catch (e) {
    process.stderr.write(String(e && e.message ? e.message : e).slice(0, 500));
    process.exitCode = 1;
  }
});
"#;

/// Whether `expression` is truthy over `state`; `Err` says why it could not
/// be told (a syntax error, a throw, the deadline, no `node`).
pub async fn evaluate(node: &str, expression: &str, state: &Value) -> Result<bool, String> {
    let input = json!({
        "expression": expression,
        "state": state,
        "timeout_ms": DEADLINE.as_millis() as u64 / 2,
    });
    let mut cmd = tokio::process::Command::new(node);
    cmd.arg("-e")
        .arg(SCRIPT)
        .env_clear()
        .envs(
            PASSTHROUGH_ENV
                .iter()
                .filter_map(|k| Some((k, std::env::var_os(k)?))),
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("could not start `{node}`: {e}"))?;
    let _group = child
        .id()
        .map(|pid| super::GroupGuard::new(pid as i32, Default::default()));
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let work = async {
        let bytes = serde_json::to_vec(&input).map_err(|e| e.to_string())?;
        // A condition that never reads its input is still bounded by the deadline.
        let _ = stdin.write_all(&bytes).await;
        drop(stdin);
        let (mut out, mut err) = (String::new(), String::new());
        let _ = tokio::join!(
            stdout.read_to_string(&mut out),
            stderr.read_to_string(&mut err)
        );
        let status = child.wait().await.map_err(|e| e.to_string())?;
        match (status.success(), out.as_str()) {
            (true, "true") => Ok(true),
            (true, "false") => Ok(false),
            _ if err.contains("Script execution timed out") => Err(format!(
                "the condition did not finish within {}",
                humantime::format_duration(DEADLINE / 2)
            )),
            _ if !err.trim().is_empty() => Err(format!("the condition threw: {}", err.trim())),
            _ => Err(format!("the condition's process ended with {status}")),
        }
    };
    match tokio::time::timeout(DEADLINE, work).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "the condition did not finish within {}",
            humantime::format_duration(DEADLINE)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> String {
        "node".into()
    }

    #[tokio::test]
    async fn truthy_falsy_throws_and_loops() {
        let state = json!({ "data": { "n": 3 }, "errors": null });
        assert_eq!(
            evaluate(&node(), "state.data.n > 2", &state).await,
            Ok(true)
        );
        assert_eq!(
            evaluate(&node(), "!state.errors && state.data.n < 2\n", &state).await,
            Ok(false)
        );
        let err = evaluate(&node(), "state.nope.deeper", &state)
            .await
            .unwrap_err();
        assert!(err.starts_with("the condition threw:"), "{err}");
        let err = evaluate(&node(), "(() => { while (true) {} })()", &state)
            .await
            .unwrap_err();
        assert!(err.contains("did not finish within"), "{err}");
        // No way out of the context: no `require`, no `process`.
        let err = evaluate(&node(), "require('fs')", &state)
            .await
            .unwrap_err();
        assert!(err.contains("require is not defined"), "{err}");
        assert_eq!(
            evaluate(&node(), "typeof process === 'undefined'", &state).await,
            Ok(true)
        );
    }
}
