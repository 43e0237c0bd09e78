//! Notification plugins: told about every run when it finishes.
//!
//! Runs hand their summaries to a bounded queue; one task, on the plugin
//! threads, drains it and calls every available notification plugin, each
//! with a fresh instance, in parallel. A slow or broken plugin delays only
//! notifications and never a run or a request. When the queue is full,
//! summaries are dropped and counted rather than holding up the dispatcher.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::PluginHost;
use super::bindings::types::{RunEvent, RunStatus};
use super::plugin::{CallFailure, Kind, Plugin, Pre};
use super::runtime::ticks;
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

/// One notification, on a fresh instance, on a plugin thread.
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

/// One instance kept for many notifications. The host calls each
/// notification on a fresh instance; this exists to measure what reuse
/// would save (`bench/`), and re-arms the deadline per call as the host does.
pub struct Reused {
    store: wasmtime::Store<super::state::PluginState>,
    instance: super::bindings::notification::Notification,
    timeout: std::time::Duration,
}

impl Reused {
    pub async fn new(host: &PluginHost, plugin: &Plugin) -> anyhow::Result<Reused> {
        let loaded = plugin.current();
        let Pre::Notification(pre) = &loaded.pre else {
            anyhow::bail!("`{}` is not a notification plugin", plugin.name);
        };
        let mut store = loaded.grants.store(&host.runtime().engine, &plugin.name)?;
        let instance = pre.instantiate_async(&mut store).await?;
        Ok(Reused {
            store,
            instance,
            timeout: loaded.grants.timeout,
        })
    }

    pub async fn notify(&mut self, event: &RunEvent) -> anyhow::Result<()> {
        self.store.set_epoch_deadline(ticks(self.timeout));
        self.instance
            .openfn_microservice_notifier()
            .call_notify(&mut self.store, event)
            .await?
            .map_err(|e| anyhow::anyhow!("{e}"))
    }
}
