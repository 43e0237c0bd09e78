//! Trigger plugins: polled on the host's schedule.
//!
//! One loop per trigger plugin, for as long as a plugin of that name is
//! loaded (a hot reload keeps the loop; removing the file ends it). Each
//! message a poll returns goes the way of an `/inbox` receipt, through the
//! receipt door ([`crate::receipt`]): its body decoded as JSON (or as the
//! type its `content-type` metadata names), its metadata kept with it. A
//! body that does not decode is logged and skipped, not fatal to the poll.
//!
//! A poll's answer is bounded like `/inbox`: each message (its body and
//! its metadata together) must keep to the inbox's body limit, and a poll
//! may return at most
//! [`MAX_MESSAGES_PER_POLL`]; what is over is refused, and the refusal is
//! the plugin's failure (its `last_error`, counted against its budget).
//! The host names the source (`plugin:<name>`): whatever `source` the
//! plugin wrote is ignored, so no plugin can pass its messages off as
//! `/inbox`'s or another plugin's.

use std::time::Duration;

use chrono::Local;
use tracing::{info, warn};

use super::bindings::trigger::exports::openfn::microservice::trigger_source::Tick;
use super::bindings::types::Message;
use super::plugin::{CallFailure, Kind};
use super::{PluginHost, TriggerMessage};
use crate::clock::now_ms;
use crate::project::PollSchedule;

const DEFAULT_EVERY: Duration = Duration::from_secs(10);
/// Most messages one poll may return; the rest are refused.
pub const MAX_MESSAGES_PER_POLL: usize = 1000;

pub fn spawn(host: PluginHost, name: String) {
    let tracker = host.inner.tracker.clone();
    tracker.spawn(run(host, name));
}

/// Polls `name` until it is unloaded. The schedule is read from its table
/// before each wait, so an edited `interval` or `cron` applies from the
/// next tick.
async fn run(host: PluginHost, name: String) {
    let (mut sequence, mut last_success_ms) = (0u64, None);
    let mut ready = host.inner.ready.subscribe();
    tokio::select! {
        _ = ready.wait_for(|open| *open) => {}
        _ = host.inner.stop.cancelled() => return,
    }
    info!(plugin = %name, "polling started");
    loop {
        let schedule = host
            .spec(&name)
            .map_or(PollSchedule::Every(DEFAULT_EVERY), |s| s.schedule);
        let wait = match &schedule {
            PollSchedule::Every(every) => *every,
            PollSchedule::Cron(cron) => {
                let now = Local::now();
                match cron.find_next_occurrence(&now, false) {
                    Ok(next) => (next - now).to_std().unwrap_or_default(),
                    Err(e) => {
                        warn!(plugin = %name, cause = %e, "the poll schedule has no next time; polling stops");
                        return;
                    }
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = host.inner.stop.cancelled() => return,
        }
        let Some(plugin) = host
            .get(&name)
            .filter(|p| p.current().kind == Kind::Trigger)
        else {
            info!(plugin = %name, "polling stopped: the plugin is gone");
            return;
        };
        if !plugin.available() {
            continue;
        }
        let now_ms = now_ms();
        if !holds_lease(&host, &name, wait, now_ms).await {
            continue;
        }
        sequence += 1;
        let tick = Tick {
            sequence,
            now_ms,
            last_success_ms,
        };
        match poll_once(&host, &plugin, &tick).await {
            Ok(messages) => {
                last_success_ms = Some(now_ms);
                let (taken, refused) = bound(messages, host.inner.options.max_message_bytes);
                if let Some(why) = refused {
                    plugin.fail_answer(why);
                }
                let source = format!("plugin:{name}");
                for message in taken {
                    let message = TriggerMessage {
                        body: message.body,
                        metadata: message.metadata,
                        source: source.clone(),
                    };
                    (host.inner.messages)(message).await;
                }
            }
            Err(f) => warn!(plugin = %name, cause = %f.message, "poll failed"),
        }
    }
}

/// How long past its next poll a replica's lease on polling a plugin lasts:
/// room for a slow poll, and how soon after a holder dies another takes over.
const LEASE_MARGIN: Duration = Duration::from_secs(15);

/// Whether this process polls `name` now: it holds the plugin's lease (see
/// [`crate::storage::TriggerLeases`]), taken or renewed until its next poll
/// (`wait` from now) plus [`LEASE_MARGIN`]. A store that cannot say means no
/// poll: what a poll returns could not be stored anyway.
async fn holds_lease(host: &PluginHost, name: &str, wait: Duration, now_ms: u64) -> bool {
    let until = now_ms + (wait + LEASE_MARGIN).as_millis() as u64;
    match host
        .inner
        .options
        .trigger_leases
        .hold(name, until, now_ms)
        .await
    {
        Ok(held) => {
            if !held {
                tracing::debug!(plugin = %name, "another replica polls this plugin");
            }
            held
        }
        Err(e) => {
            warn!(plugin = %name, cause = %e, "could not take the lease on polling; not polling now");
            false
        }
    }
}

async fn poll_once(
    host: &PluginHost,
    plugin: &super::Plugin,
    tick: &Tick,
) -> Result<Vec<Message>, CallFailure> {
    let result = call_fresh!(host, plugin, Trigger, |store, instance| instance
        .openfn_microservice_trigger_source()
        .call_poll(&mut store, *tick))?;
    Ok(result.messages)
}

/// A message's size: its body and every metadata key and value.
fn size_of(message: &Message) -> usize {
    let metadata: usize = message
        .metadata
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    message.body.len() + metadata
}

/// The `messages` that keep to the bounds, and what was refused.
fn bound(messages: Vec<Message>, max_bytes: usize) -> (Vec<Message>, Option<String>) {
    let total = messages.len();
    let mut problems = Vec::new();
    if total > MAX_MESSAGES_PER_POLL {
        problems.push(format!(
            "the poll returned {total} messages, over the {MAX_MESSAGES_PER_POLL} a poll may return: the first {MAX_MESSAGES_PER_POLL} were taken, {} refused",
            total - MAX_MESSAGES_PER_POLL
        ));
    }
    let mut taken = Vec::with_capacity(total.min(MAX_MESSAGES_PER_POLL));
    let (mut too_big, mut largest) = (0usize, 0usize);
    for message in messages.into_iter().take(MAX_MESSAGES_PER_POLL) {
        let size = size_of(&message);
        if size > max_bytes {
            too_big += 1;
            largest = largest.max(size);
        } else {
            taken.push(message);
        }
    }
    if too_big > 0 {
        problems.push(format!(
            "{too_big} message{} refused for size (the largest {largest} bytes), over the inbox's limit of {max_bytes} bytes ([inbox] max_body_bytes)",
            if too_big == 1 { "" } else { "s" }
        ));
    }
    (taken, (!problems.is_empty()).then(|| problems.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &str) -> Message {
        Message {
            body: body.into(),
            source: "inbox".into(),
            metadata: Vec::new(),
        }
    }

    fn bodies(messages: &[Message]) -> Vec<&str> {
        messages.iter().map(|m| m.body.as_str()).collect()
    }

    #[test]
    fn messages_over_the_bounds_are_refused_and_said_so() {
        let (taken, refused) = bound(vec![message("{}"), message("[1,2,3]")], 5);
        assert_eq!(bodies(&taken), ["{}"]);
        let why = refused.unwrap();
        assert!(
            why.contains("1 message refused for size (the largest 7 bytes)"),
            "{why}"
        );
        assert!(why.contains("max_body_bytes"), "{why}");

        let many = (0..MAX_MESSAGES_PER_POLL + 5)
            .map(|_| message("1"))
            .collect();
        let (taken, refused) = bound(many, 10);
        assert_eq!(taken.len(), MAX_MESSAGES_PER_POLL);
        assert!(refused.unwrap().contains("5 refused"));

        let (taken, refused) = bound(vec![message("{}")], 2);
        assert_eq!((bodies(&taken), refused), (vec!["{}"], None));
    }

    #[test]
    fn metadata_counts_toward_a_message_size() {
        let mut padded = message("{}");
        padded.metadata = vec![("file".into(), "x".repeat(100))];
        let (taken, refused) = bound(vec![padded.clone(), message("{}")], 50);
        assert_eq!(bodies(&taken), ["{}"]);
        assert!(
            refused.unwrap().contains("the largest 106 bytes"),
            "metadata is part of the size"
        );
        let (taken, refused) = bound(vec![padded], 106);
        assert_eq!((taken.len(), refused), (1, None));
    }
}
