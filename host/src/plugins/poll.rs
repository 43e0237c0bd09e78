//! Trigger plugins: polled on the host's schedule.
//!
//! One loop per trigger plugin, for as long as a plugin of that name is
//! loaded (a hot reload keeps the loop; removing the file ends it). Each
//! message a poll returns must be JSON; it then goes the way of an `/inbox`
//! receipt. Invalid JSON is logged and skipped, not fatal to the poll.

use std::time::Duration;

use chrono::Local;
use serde_json::Value;
use tracing::{info, warn};

use super::PluginHost;
use super::bindings::trigger::exports::openfn::microservice::trigger_source::Tick;
use super::plugin::{CallFailure, Kind};
use crate::clock::now_ms;
use crate::project::PollSchedule;

const DEFAULT_EVERY: Duration = Duration::from_secs(10);

pub fn spawn(host: PluginHost, name: String, schedule: Option<PollSchedule>) {
    let tracker = host.inner.tracker.clone();
    tracker.spawn(run(
        host,
        name,
        schedule.unwrap_or(PollSchedule::Every(DEFAULT_EVERY)),
    ));
}

async fn run(host: PluginHost, name: String, schedule: PollSchedule) {
    let (mut sequence, mut last_success_ms) = (0u64, None);
    let mut ready = host.inner.ready.subscribe();
    tokio::select! {
        _ = ready.wait_for(|open| *open) => {}
        _ = host.inner.stop.cancelled() => return,
    }
    info!(plugin = %name, "polling started");
    loop {
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
        sequence += 1;
        let now_ms = now_ms();
        let tick = Tick {
            sequence,
            now_ms,
            last_success_ms,
        };
        match poll_once(&host, &plugin, &tick).await {
            Ok(messages) => {
                last_success_ms = Some(now_ms);
                for message in messages {
                    match serde_json::from_str::<Value>(&message.body) {
                        Ok(body) => (host.inner.messages)(body, message.source).await,
                        Err(e) => {
                            warn!(plugin = %name, cause = %e, "a polled message is not JSON; skipped")
                        }
                    }
                }
            }
            Err(f) => warn!(plugin = %name, cause = %f.message, "poll failed"),
        }
    }
}

async fn poll_once(
    host: &PluginHost,
    plugin: &super::Plugin,
    tick: &Tick,
) -> Result<Vec<super::bindings::types::Message>, CallFailure> {
    let result = call_fresh!(host, plugin, Trigger, |store, instance| instance
        .openfn_microservice_trigger_source()
        .call_poll(&mut store, *tick))?;
    Ok(result.messages)
}
