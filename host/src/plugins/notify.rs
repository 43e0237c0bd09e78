//! Notification plugins: told about every run when it finishes.
//!
//! Runs hand their summaries to a bounded queue; one task, on the plugin
//! threads, drains it and calls every available notification plugin, in
//! parallel, each on the instance it kept from its last call or on a fresh
//! one (see `reuse`). A slow or broken plugin delays only
//! notifications and never a run or a request. When the queue is full,
//! summaries are dropped and counted rather than holding up the dispatcher.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::PluginHost;
use super::bindings::types::{RunEvent, RunStatus};
use super::plugin::{CallFailure, Kind, Plugin};
use crate::dispatch::RunFinished;

/// Drains `finished` until the dispatcher is gone.
pub fn spawn(host: PluginHost, mut finished: mpsc::Receiver<RunFinished>) {
    // Not tracked with the schedulers: runs finishing during a shutdown's
    // grace period are still reported, and the queue closes with the dispatcher.
    let pool = host.pool().handle().clone();
    pool.spawn(async move {
        while let Some(run) = finished.recv().await {
            let event = event_of(&run);
            let plugins = host.of_kind(Kind::Notification);
            let mut calls = tokio::task::JoinSet::new();
            for plugin in plugins.into_iter().filter(|p| p.available()) {
                let (host, event) = (host.clone(), event.clone());
                calls.spawn(async move {
                    if let Err(f) = notify_one(&host, &plugin, &event).await {
                        warn!(plugin = &*plugin.name, run_id = %event.run_id, cause = %f.message, "notification failed");
                    }
                });
            }
            while calls.join_next().await.is_some() {}
        }
        debug!("notification queue closed");
    });
}

/// One notification, on a plugin thread: on the plugin's parked instance
/// if it has one, else on a fresh one (see `reuse`).
pub async fn notify_one(
    host: &PluginHost,
    plugin: &Arc<Plugin>,
    event: &RunEvent,
) -> Result<(), CallFailure> {
    if super::pool::here() {
        return notify_here(host, plugin, event).await;
    }
    let (on_pool, plugin, event) = (host.clone(), plugin.clone(), event.clone());
    host.pool()
        .run(async move { notify_here(&on_pool, &plugin, &event).await })
        .await
}

async fn notify_here(
    host: &PluginHost,
    plugin: &Arc<Plugin>,
    event: &RunEvent,
) -> Result<(), CallFailure> {
    call_reusing!(host, plugin, Notification, |store, instance| instance
        .openfn_microservice_notifier()
        .call_notify(store, event))
}

/// One notification on a fresh instance, dropped after the call, from a
/// plugin thread: how every notification was called before instances were
/// kept. The service never calls this; it is there to measure what keeping
/// them saves (`examples/plugin_bench.rs`).
pub async fn notify_fresh(
    host: &PluginHost,
    plugin: &Arc<Plugin>,
    event: &RunEvent,
) -> Result<(), CallFailure> {
    debug_assert!(super::pool::here(), "call from a plugin thread");
    call_fresh!(host, plugin, Notification, |store, instance| instance
        .openfn_microservice_notifier()
        .call_notify(&mut store, event))
}

pub fn event_of(run: &RunFinished) -> RunEvent {
    RunEvent {
        run_id: run.run_id.clone(),
        job: run.job.clone(),
        trigger: run.trigger.clone(),
        status: if run.success {
            RunStatus::Success
        } else {
            RunStatus::Failure
        },
        exit_code: run.exit_code,
        started_at_ms: run.started_at_ms,
        finished_at_ms: run.finished_at_ms,
        duration_ms: run.duration_ms,
        error: run.error.clone(),
    }
}
