//! webhook-notify: a notification plugin that POSTs a JSON summary of each
//! finished run to a URL, through the host's `wasi:http/outgoing-handler`.
//!
//! Config (`[plugins.<name>.config]`):
//! - `url` (required): `http://` or `https://` URL, with optional port, path
//!   and query.
//! - `on`: `"failure"` (default: only failed runs) or `"all"`.
//! - `timeout_ms`: connect / first-byte / between-bytes timeout, default 10000.
//! - `headers`: optional JSON object of extra request headers, e.g.
//!   `{"authorization": "Bearer ..."}`.

mod http;

#[cfg(not(any(target_arch = "wasm32", test)))]
compile_error!(
    "this crate is a WebAssembly component: build it with `--target wasm32-wasip2` \
     (plugins/.cargo/config.toml names that target only when cargo runs inside plugins/)"
);

use openfn_plugin_sdk::config::string as config;
use openfn_plugin_sdk::{Level, Notifier, PluginError, RunEvent, RunStatus, host};

struct WebhookNotify;

/// The JSON body, fields in this order.
#[derive(serde::Serialize)]
struct Summary<'a> {
    run_id: &'a str,
    job: &'a str,
    trigger: &'a str,
    status: &'static str,
    exit_code: Option<i32>,
    started_at_ms: u64,
    finished_at_ms: u64,
    duration_ms: u64,
    error: Option<&'a str>,
}

fn summary(event: &RunEvent) -> Summary<'_> {
    Summary {
        run_id: &event.run_id,
        job: &event.job,
        trigger: &event.trigger,
        status: match event.status {
            RunStatus::Success => "success",
            RunStatus::Failure => "failure",
        },
        exit_code: event.exit_code,
        started_at_ms: event.started_at_ms,
        finished_at_ms: event.finished_at_ms,
        duration_ms: event.duration_ms,
        error: event.error.as_deref(),
    }
}

fn extra_headers() -> Result<Vec<(String, String)>, PluginError> {
    let Some(raw) = host::get_config("headers") else {
        return Ok(Vec::new());
    };
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&raw).map_err(|e| {
            PluginError::Reject(format!(
                "config `headers` must be a JSON object of strings: {e}"
            ))
        })?;
    map.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            _ => Err(PluginError::Reject(format!(
                "config `headers`: value of `{k}` must be a string"
            ))),
        })
        .collect()
}

impl Notifier for WebhookNotify {
    fn notify(event: RunEvent) -> Result<(), PluginError> {
        let on = config("on").unwrap_or_else(|| "failure".to_string());
        match on.trim() {
            "failure" => {
                if matches!(event.status, RunStatus::Success) {
                    return Ok(());
                }
            }
            "all" => {}
            other => {
                return Err(PluginError::Reject(format!(
                    "config `on` must be \"failure\" or \"all\", got `{other}`"
                )));
            }
        }

        let url = config("url")
            .ok_or_else(|| PluginError::Reject("config `url` is missing".to_string()))?;
        let target = http::Target::parse(url.trim())
            .map_err(|e| PluginError::Reject(format!("config `url` is invalid: {e}")))?;
        let timeout_ms = openfn_plugin_sdk::config::number("timeout_ms", 10_000u64)?;
        let mut headers = extra_headers()?;
        headers.push(("content-type".to_string(), "application/json".to_string()));

        let body =
            serde_json::to_vec(&summary(&event)).map_err(|e| PluginError::Other(e.to_string()))?;
        let response = http::post(&target, &headers, &body, timeout_ms).map_err(|e| {
            PluginError::Unavailable(format!("POST to {} failed: {e}", target.display()))
        })?;

        if (200..300).contains(&response.status) {
            host::log(
                Level::Debug,
                &format!(
                    "run {} reported to {}: HTTP {}",
                    event.run_id,
                    target.display(),
                    response.status
                ),
            );
            return Ok(());
        }
        if matches!(response.status, 429 | 503)
            && let Some(ms) = response
                .retry_after
                .as_deref()
                .and_then(http::parse_retry_after_ms)
        {
            return Err(PluginError::RetryAfter(ms));
        }
        let mut msg = format!("{} answered HTTP {}", target.display(), response.status);
        let snippet = String::from_utf8_lossy(&response.body_snippet);
        let snippet = snippet.trim();
        if !snippet.is_empty() {
            msg.push_str(": ");
            msg.push_str(snippet);
        }
        Err(PluginError::Unavailable(msg))
    }
}

openfn_plugin_sdk::export!(WebhookNotify as notification);
