//! Logging plugins: the service's structured log, in batches.
//!
//! A `tracing` layer copies each event into a bounded queue (dropping, not
//! blocking, when it is full); one task, on the plugin threads, sends
//! batches of up to [`BATCH`] records, or whatever a second brought, to
//! every available logging plugin. Events of the plugin machinery itself
//! and of plugins' own output are not fed back, so a logging plugin cannot
//! feed itself. Job output reaches here already redacted by the dispatcher.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber, warn};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::PluginHost;
use super::bindings::types::{Level, LogRecord};
use super::plugin::{CallFailure, Kind, Plugin};
use crate::clock::now_ms;

const QUEUE: usize = 10_000;
pub const BATCH: usize = 256;
const FLUSH_EVERY: Duration = Duration::from_secs(1);

static QUEUE_TX: OnceLock<mpsc::Sender<LogRecord>> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The `tracing` layer; installed with the subscriber, idle until [`spawn`].
pub struct Layer;

/// `run_id` and `job` of a `run` span, kept for the events inside it.
struct RunFields {
    run_id: Option<String>,
    job: Option<String>,
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Layer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "run" || QUEUE_TX.get().is_none() {
            return;
        }
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            let take = |k: &str| {
                fields
                    .pairs
                    .iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
            };
            span.extensions_mut().insert(RunFields {
                run_id: take("run_id"),
                job: take("job"),
            });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(tx) = QUEUE_TX.get() else { return };
        let meta = event.metadata();
        let target = meta.target();
        if target == "plugin"
            || target.starts_with("microservice::plugins")
            || target.starts_with("wasmtime")
            || target.starts_with("cranelift")
        {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let (mut run_id, mut job) = (None, None);
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope {
                if let Some(r) = span.extensions().get::<RunFields>() {
                    run_id = r.run_id.clone();
                    job = r.job.clone();
                    break;
                }
            }
        }
        let record = LogRecord {
            timestamp_ms: now_ms(),
            level: match *meta.level() {
                tracing::Level::TRACE => Level::Trace,
                tracing::Level::DEBUG => Level::Debug,
                tracing::Level::INFO => Level::Info,
                tracing::Level::WARN => Level::Warn,
                tracing::Level::ERROR => Level::Error,
            },
            target: target.to_string(),
            message: fields.message,
            fields: fields.pairs,
            run_id,
            job,
        };
        if tx.try_send(record).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.pairs
                .push((field.name().to_string(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.pairs.push((field.name().to_string(), text));
        }
    }
}

/// Starts feeding logging plugins. Only the first call has an effect.
pub fn spawn(host: PluginHost) {
    let (tx, mut rx) = mpsc::channel(QUEUE);
    if QUEUE_TX.set(tx).is_err() {
        return;
    }
    let (tracker, pool) = (host.inner.tracker.clone(), host.pool().handle().clone());
    tracker.spawn_on(async move {
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            let stop = tokio::select! {
                n = rx.recv_many(&mut batch, BATCH) => n == 0,
                _ = tokio::time::sleep(FLUSH_EVERY) => false,
                _ = host.inner.stop.cancelled() => true,
            };
            if !batch.is_empty() {
                let dropped = DROPPED.swap(0, Ordering::Relaxed);
                if dropped > 0 {
                    warn!(dropped, "log records dropped: the logging plugins fell behind");
                }
                for plugin in host.of_kind(Kind::Logging).into_iter().filter(|p| p.available()) {
                    if let Err(f) = write_batch(&host, &plugin, &batch).await {
                        warn!(plugin = &*plugin.name, cause = %f.message, records = batch.len(), "log batch not written");
                    }
                }
                batch.clear();
            }
            if stop {
                return;
            }
        }
    }, &pool);
}

async fn write_batch(
    host: &PluginHost,
    plugin: &Plugin,
    records: &[LogRecord],
) -> Result<(), CallFailure> {
    call_reusing!(host, plugin, Logging, |store, instance| instance
        .openfn_microservice_log_sink()
        .call_write_batch(store, records))
}
