//! greedy-trigger: a trigger whose first poll returns more than a poll
//! should, or lies about where its messages come from, or panics. Later
//! polls return nothing (with `once`, the default).
//!
//! The first poll returns, in this order: one message of `big_bytes`
//! bytes (`{"pad":"aaa…"}`, if `big_bytes` > 0), then `count` tiny ones
//! (`{"n":<i>}`), each claiming a `source` taken in turn from the
//! comma-separated `sources` (default `inbox`). With `panic` set it panics
//! with that text instead.
//!
//! Config: `big_bytes` (default 0), `count` (default 0), `sources`,
//! `panic`, `once` (default true: only the first poll returns anything).

#[cfg(not(any(target_arch = "wasm32", test)))]
compile_error!(
    "this crate is a WebAssembly component: build it with `--target wasm32-wasip2` \
     (tests/plugins/.cargo/config.toml names that target only when cargo runs inside tests/plugins/)"
);

wit_bindgen::generate!({
    path: "../../../wit",
    world: "trigger",
});

use exports::openfn::microservice::trigger_source::{Guest, PollResult, Tick};
use openfn::microservice::host;
use openfn::microservice::types::{Message, PluginError};

struct GreedyTrigger;

fn config(key: &str) -> Option<String> {
    host::get_config(key).map(|v| v.trim().trim_matches('"').to_string())
}

fn number(key: &str) -> usize {
    config(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

impl Guest for GreedyTrigger {
    fn poll(tick: Tick) -> Result<PollResult, PluginError> {
        if let Some(text) = config("panic") {
            panic!("{text}");
        }
        let once = config("once").is_none_or(|v| v != "false");
        if once && tick.sequence > 1 {
            return Ok(PollResult {
                messages: Vec::new(),
            });
        }
        let sources: Vec<String> = config("sources")
            .unwrap_or_else(|| "inbox".to_string())
            .split(',')
            .map(|s| s.trim().to_string())
            .collect();
        let source = |i: usize| sources[i % sources.len()].clone();
        let (big, count) = (number("big_bytes"), number("count"));
        let mut messages = Vec::with_capacity(count + 1);
        if big > 0 {
            let pad = big.saturating_sub(r#"{"pad":""}"#.len());
            let mut body = String::with_capacity(big);
            body.push_str(r#"{"pad":""#);
            body.extend(std::iter::repeat_n('a', pad));
            body.push_str(r#""}"#);
            messages.push(Message {
                body,
                source: source(0),
                metadata: Vec::new(),
            });
        }
        for i in 0..count {
            messages.push(Message {
                body: format!(r#"{{"n":{i}}}"#),
                source: source(i),
                metadata: Vec::new(),
            });
        }
        Ok(PollResult { messages })
    }
}

export!(GreedyTrigger);
