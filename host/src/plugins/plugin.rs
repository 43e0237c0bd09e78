//! One plugin: the version currently serving, and its health.
//!
//! A plugin is a name (its `[plugins.<name>]` table, or its file's stem)
//! over successive versions of its file; hot reload swaps the version and
//! keeps the name and the counters. Every call goes through [`Plugin::guard`],
//! which applies the deadline, turns traps and timeouts into a failed call,
//! and disables a plugin that keeps failing, for a backoff that doubles each
//! time (a restart budget).

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::warn;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::bindings::logging::LoggingPre;
use super::bindings::notification::NotificationPre;
use super::bindings::persistence::PersistencePre;
use super::bindings::trigger::TriggerPre;
use super::bindings::types::PluginError;
use super::grants::Grants;
use super::reuse::Slot;
use super::state::PluginState;
use crate::metrics::PluginMetrics;

/// Failures in a row before a plugin is disabled for a while.
const FAILURE_BUDGET: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Extra time the host allows over the guest's deadline, for host calls
/// (HTTP, disk) that an epoch cannot interrupt.
const HOST_SLACK: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Trigger,
    Notification,
    Logging,
    Persistence,
}

impl Kind {
    /// The kind a component is, from the one plugin interface it exports.
    pub fn from_export(name: &str) -> Option<Kind> {
        let unversioned = name.split('@').next().unwrap_or(name);
        match unversioned {
            "openfn:microservice/trigger-source" => Some(Kind::Trigger),
            "openfn:microservice/notifier" => Some(Kind::Notification),
            "openfn:microservice/log-sink" => Some(Kind::Logging),
            "openfn:microservice/message-store" => Some(Kind::Persistence),
            _ => None,
        }
    }
}

/// The kind a component is, from the one plugin interface it exports.
pub(super) fn kind_of(component: &Component, engine: &Engine) -> Result<Kind, String> {
    let kinds: Vec<Kind> = component
        .component_type()
        .exports(engine)
        .filter_map(|(name, _)| Kind::from_export(name))
        .collect();
    match kinds.as_slice() {
        [one] => Ok(*one),
        [] => Err("it exports none of the plugin interfaces (trigger-source, notifier, log-sink, message-store) of openfn:microservice@0.1".into()),
        _ => Err("it exports more than one plugin interface; a plugin is one kind".into()),
    }
}

/// Links a component against the host's imports and checks it against the
/// world of its kind.
pub(super) fn link(
    linker: &Linker<PluginState>,
    component: &Component,
    kind: Kind,
) -> Result<Pre, String> {
    let instance_pre = linker
        .instantiate_pre(component)
        .map_err(|e| format!("cannot be linked: {e:#}"))?;
    let link = |e: wasmtime::Error| format!("does not match the {kind:?} world: {e:#}");
    Ok(match kind {
        Kind::Trigger => Pre::Trigger(TriggerPre::new(instance_pre).map_err(link)?),
        Kind::Notification => Pre::Notification(NotificationPre::new(instance_pre).map_err(link)?),
        Kind::Logging => Pre::Logging(LoggingPre::new(instance_pre).map_err(link)?),
        Kind::Persistence => Pre::Persistence(PersistencePre::new(instance_pre).map_err(link)?),
    })
}

/// Instantiates `pre` in `store` and drops the instance: the check of the
/// exported functions' types that linking leaves to instantiation.
pub(super) async fn instantiate(
    pre: &Pre,
    store: &mut wasmtime::Store<PluginState>,
) -> wasmtime::Result<()> {
    match pre {
        Pre::Trigger(p) => p.instantiate_async(store).await.map(drop),
        Pre::Notification(p) => p.instantiate_async(store).await.map(drop),
        Pre::Logging(p) => p.instantiate_async(store).await.map(drop),
        Pre::Persistence(p) => p.instantiate_async(store).await.map(drop),
    }
}

/// Pre-linked instances, one type per world.
pub enum Pre {
    Trigger(TriggerPre<PluginState>),
    Notification(NotificationPre<PluginState>),
    Logging(LoggingPre<PluginState>),
    Persistence(PersistencePre<PluginState>),
}

/// One loaded version of a plugin file.
pub struct Loaded {
    pub kind: Kind,
    pub file: String,
    pub hash: String,
    pub pre: Pre,
    pub grants: Grants,
    pub loaded_at: String,
    pub from_cache: bool,
}

pub struct Plugin {
    pub name: Arc<str>,
    current: RwLock<Arc<Loaded>>,
    /// The instance parked between calls (notification and logging kinds).
    idle: Slot,
    health: Mutex<Health>,
    metrics: PluginMetrics,
}

#[derive(Default)]
struct Health {
    calls: u64,
    failures: u64,
    in_a_row: u32,
    last_error: Option<String>,
    disabled_until: Option<Instant>,
    backoff: Duration,
    reloads: u64,
}

/// Why a call did not succeed, and what the guest asked for, if anything.
#[derive(Debug, Clone)]
pub struct CallFailure {
    pub message: String,
    /// The guest answered `retry-after(ms)`.
    pub retry_after_ms: Option<u64>,
    /// The guest answered `reject`: the input is at fault, not the plugin.
    pub rejected: bool,
    /// The call trapped or timed out: its instance must not be used again.
    pub trapped: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = PluginStatus)]
pub struct Status {
    pub name: String,
    pub kind: Kind,
    pub file: String,
    pub hash: String,
    pub status: &'static str,
    pub calls: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    pub loaded_at: String,
    pub reloads: u64,
    pub from_cache: bool,
}

impl Plugin {
    pub fn new(name: &str, loaded: Loaded) -> Plugin {
        Plugin {
            name: name.into(),
            current: RwLock::new(Arc::new(loaded)),
            idle: Slot::default(),
            health: Mutex::default(),
            metrics: crate::metrics::get().plugin(name),
        }
    }

    pub fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The instance parked between calls, if the kind keeps one.
    pub(crate) fn idle(&self) -> &Slot {
        &self.idle
    }

    /// Serves `loaded` from now on; counters carry over, a disablement does
    /// not, and an instance of the old version is not used again.
    pub fn replace(&self, loaded: Loaded) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(loaded);
        self.idle.clear();
        let mut h = self.health();
        h.reloads += 1;
        h.in_a_row = 0;
        h.disabled_until = None;
        h.backoff = Duration::ZERO;
    }

    /// Notes a load failure of a newer version; the current one keeps serving.
    pub fn note_error(&self, message: String) {
        self.health().last_error = Some(message);
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// False while the plugin sits out a backoff.
    pub fn available(&self) -> bool {
        self.health()
            .disabled_until
            .is_none_or(|until| Instant::now() >= until)
    }

    /// Runs one call under the plugin's deadline and records how it went:
    /// `timeout` is what the store's epoch deadline enforces (for the
    /// message), `wall` how long the host waits for an answer at all.
    pub async fn guard<T>(
        &self,
        timeout: Duration,
        wall: Duration,
        call: impl Future<Output = anyhow::Result<Result<T, PluginError>>>,
    ) -> Result<T, CallFailure> {
        let started = Instant::now();
        let stderr = self.current().grants.stderr.clone();
        let outcome = match tokio::time::timeout(wall + HOST_SLACK, call).await {
            Err(_) => Err(CallFailure::trapped(format!(
                "no answer within {} of wall time",
                humantime::format_duration(wall)
            ))),
            Ok(Err(e)) => Err(CallFailure::trapped(describe_trap(
                &e,
                timeout,
                &stderr.since(started),
            ))),
            Ok(Ok(Err(guest))) => Err(CallFailure::from_guest(guest)),
            Ok(Ok(Ok(value))) => Ok(value),
        };
        self.metrics.record(started.elapsed(), outcome.is_err());
        self.record(outcome.as_ref().err());
        outcome
    }

    /// Counts a call that answered but whose answer broke a host limit (a
    /// trigger plugin's messages over their bounds): a failure like any
    /// other, shown as `last_error` and counted against the budget.
    pub fn fail_answer(&self, message: String) {
        warn!(plugin = &*self.name, cause = %message, "plugin answer refused");
        self.metrics.failed();
        let mut h = self.health();
        Plugin::count_failure(&self.name, &mut h, &CallFailure::plain(message));
    }

    fn record(&self, failure: Option<&CallFailure>) {
        let mut h = self.health();
        h.calls += 1;
        let Some(f) = failure else {
            h.in_a_row = 0;
            h.backoff = Duration::ZERO;
            h.disabled_until = None;
            return;
        };
        Plugin::count_failure(&self.name, &mut h, f);
    }

    fn count_failure(name: &str, h: &mut Health, f: &CallFailure) {
        h.failures += 1;
        h.last_error = Some(f.message.clone());
        // A rejected input is not the plugin's fault, and a plugin asking
        // to be called later is busy, not broken: neither counts against
        // the failure budget.
        if f.rejected || f.retry_after_ms.is_some() {
            return;
        }
        h.in_a_row += 1;
        if h.in_a_row >= FAILURE_BUDGET {
            h.backoff = if h.backoff.is_zero() {
                FIRST_BACKOFF
            } else {
                (h.backoff * 2).min(MAX_BACKOFF)
            };
            h.disabled_until = Some(Instant::now() + h.backoff);
            h.in_a_row = 0;
            warn!(plugin = name, backoff = %humantime::format_duration(h.backoff), last_error = %f.message, "plugin keeps failing; disabled for a while");
        }
    }

    pub fn status(&self) -> Status {
        let loaded = self.current();
        let h = self.health();
        let disabled = h.disabled_until.is_some_and(|until| Instant::now() < until);
        Status {
            name: self.name.to_string(),
            kind: loaded.kind,
            file: loaded.file.clone(),
            hash: loaded.hash.clone(),
            status: if disabled { "disabled" } else { "active" },
            calls: h.calls,
            failures: h.failures,
            last_error: h.last_error.clone(),
            loaded_at: loaded.loaded_at.clone(),
            reloads: h.reloads,
            from_cache: loaded.from_cache,
        }
    }
}

impl CallFailure {
    fn plain(message: String) -> Self {
        CallFailure {
            message,
            retry_after_ms: None,
            rejected: false,
            trapped: false,
        }
    }

    fn trapped(message: String) -> Self {
        CallFailure {
            trapped: true,
            ..CallFailure::plain(message)
        }
    }

    pub fn unavailable(message: String) -> Self {
        CallFailure::plain(message)
    }

    /// Asked a plugin of one kind to do another kind's work (a reload changed its kind).
    pub fn not_kind(kind: Kind) -> Self {
        CallFailure::plain(format!("the plugin is no longer a {kind:?} plugin"))
    }

    fn from_guest(e: PluginError) -> Self {
        match e {
            PluginError::RetryAfter(ms) => CallFailure {
                retry_after_ms: Some(ms),
                ..CallFailure::plain(format!("asked to retry after {ms} ms"))
            },
            PluginError::Reject(m) => CallFailure {
                rejected: true,
                ..CallFailure::plain(format!("rejected: {m}"))
            },
            PluginError::Unavailable(m) => CallFailure::plain(format!("unavailable: {m}")),
            PluginError::Other(m) => CallFailure::plain(m),
        }
    }
}

/// A host-side error as an operator wants to read it: the trap or the root
/// cause, on one line (wasmtime's message leads with a wasm backtrace),
/// after the panic message or the last lines the plugin wrote to `stderr`
/// during the call, if any.
fn describe_trap(e: &anyhow::Error, timeout: Duration, stderr: &[String]) -> String {
    let trap = e.chain().find_map(|c| c.downcast_ref::<wasmtime::Trap>());
    let root = e.root_cause().to_string();
    let text = match trap {
        Some(wasmtime::Trap::Interrupt) => {
            return format!(
                "deadline of {} exceeded (trap: interrupted)",
                humantime::format_duration(timeout)
            );
        }
        _ if root.contains("forcing trap when growing memory") => {
            format!("memory limit reached (trap): {root}")
        }
        Some(trap) => match said_before(stderr) {
            Some(said) => format!("{said} (trapped: {trap})"),
            None => format!("trapped: {trap}"),
        },
        None => format!("{e:#}"),
    };
    text.lines()
        .next()
        .unwrap_or_default()
        .chars()
        .take(500)
        .collect()
}

/// What a trapped plugin said on `stderr` just before: a Rust panic's
/// `panicked at <file>:<line>:<col>:` and its message, else its last lines.
fn said_before(stderr: &[String]) -> Option<String> {
    let lines: Vec<&str> = stderr
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    if let Some(at) = lines.iter().rposition(|l| l.contains("panicked at")) {
        let head = &lines[at][lines[at].find("panicked at").unwrap_or(0)..];
        let message: Vec<&str> = lines[at + 1..]
            .iter()
            .take_while(|l| !l.starts_with("note:"))
            .copied()
            .collect();
        return Some(format!("{head} {}", message.join(" ")).trim().to_string());
    }
    let last = &lines[lines.len().saturating_sub(3)..];
    (!last.is_empty()).then(|| format!("stderr: {}", last.join(" | ")))
}

#[cfg(test)]
mod tests {
    use super::said_before;

    #[test]
    fn a_panic_is_told_by_its_message() {
        let lines = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            said_before(&lines(&[
                "thread '<unnamed>' panicked at src/lib.rs:22:9:",
                "boom",
                "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
            ]))
            .as_deref(),
            Some("panicked at src/lib.rs:22:9: boom")
        );
        assert_eq!(
            said_before(&lines(&["a", "b", "c", "d"])).as_deref(),
            Some("stderr: b | c | d")
        );
        assert_eq!(said_before(&[]), None);
    }
}
