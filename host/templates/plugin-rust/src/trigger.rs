//! {{name}}: a trigger plugin. The host calls `poll` on the table's
//! `interval` (or `cron`); each message returned goes through the jobs'
//! criteria like an `/inbox` receipt. This one returns one message a poll:
//! `{"plugin":"{{name}}","sequence":<n>,"now_ms":<ms>}`, merged into the
//! JSON object in config `message` if set.

wit_bindgen::generate!({
    path: "wit",
    world: "trigger",
});

use exports::openfn::microservice::trigger_source::{Guest, PollResult, Tick};
use openfn::microservice::host;
use openfn::microservice::types::{Level, Message, PluginError};

struct Plugin;

impl Guest for Plugin {
    fn poll(tick: Tick) -> Result<PollResult, PluginError> {
        let extra = host::get_config("message").unwrap_or_else(|| "{}".to_string());
        let extra = extra.trim();
        let Some(inner) = extra.strip_prefix('{').and_then(|e| e.strip_suffix('}')) else {
            return Err(PluginError::Reject(format!(
                "config `message` must be a JSON object, got `{extra}`"
            )));
        };
        let inner = inner.trim();
        let body = format!(
            "{{\"plugin\":\"{{name}}\",\"sequence\":{},\"now_ms\":{}{}{inner}}}",
            tick.sequence,
            tick.now_ms,
            if inner.is_empty() { "" } else { "," }
        );
        host::log(Level::Debug, &format!("poll {}: {body}", tick.sequence));
        Ok(PollResult {
            messages: vec![Message {
                body,
                // The host sets it to `plugin:{{name}}` whatever is written here.
                source: String::new(),
                metadata: vec![("sequence".to_string(), tick.sequence.to_string())],
            }],
        })
    }
}

export!(Plugin);
