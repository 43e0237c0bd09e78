//! Persistence plugins: a durable message store behind one long-lived instance.
//!
//! Unlike the other kinds, a message store keeps state in its instance (its
//! index of the journal), so the host keeps one instance per store and
//! serializes calls to it. The instance is replaced, and `open` called again,
//! when the plugin file changes (hot reload) or after a call trapped or timed
//! out: a trapped instance is never used again. Every call runs on the
//! store's own thread, where its file I/O blocks that thread and nothing
//! else: it must never run on the HTTP workers.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use wasmtime::Store;

use super::PluginHost;
use super::bindings::persistence::Persistence;
use super::bindings::persistence::exports::openfn::microservice::message_store::{
    MessageStatus, StoreStats, StoredMessage,
};
use super::bindings::types::Message;
use super::own_thread::OwnThread;
use super::plugin::{CallFailure, Kind, Plugin, Pre};
use super::runtime::ticks;
use super::state::PluginState;

pub use super::bindings::persistence::exports::openfn::microservice::message_store::{
    MessageStatus as Status, StoreStats as Stats, StoredMessage as Stored,
};
pub use super::bindings::types::Message as NewMessage;

/// Opening replays the store's file and compacting may copy it: their time
/// grows with what the store holds, not with one request, so they get at
/// least this long. A deadline hit there would trap the instance, and the
/// next call would open (replay) all over again.
const MAINTENANCE_TIMEOUT: Duration = Duration::from_secs(300);

/// A client for one persistence plugin; clones share its instance.
#[derive(Clone)]
pub struct MessageStore {
    shared: Arc<Shared>,
}

struct Shared {
    host: PluginHost,
    name: String,
    live: Mutex<Option<Live>>,
    thread: OwnThread,
}

struct Live {
    /// The plugin version this instance runs.
    hash: String,
    store: Store<PluginState>,
    instance: Persistence,
    opened: StoreStats,
}

/// The call to make, as data, so one function can run them all (owned:
/// it crosses to the store's thread).
enum Call {
    /// Messages, how many of them to store leased, for how long, now.
    Enqueue(Vec<Message>, u32, u64, u64),
    Lease(u32, u64, u64),
    Ack(String, u64),
    AckMany(Vec<String>, u64),
    Nack(String, u64, String, u64),
    Dead(String, String, u64),
    Requeue(String, u64),
    List(MessageStatus, u32),
    Get(String),
    Stats,
    Compact(u64),
}

enum Answer {
    Ids(Vec<String>),
    Messages(Vec<StoredMessage>),
    One(Option<StoredMessage>),
    Stats(StoreStats),
    Count(u64),
    Done,
}

impl MessageStore {
    /// Starts the store's thread; the instance is made at the first call.
    pub fn new(host: PluginHost, name: &str) -> std::io::Result<Self> {
        Ok(MessageStore {
            shared: Arc::new(Shared {
                host,
                name: name.to_string(),
                live: Mutex::new(None),
                thread: OwnThread::start("message-store")?,
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The store's thread, for tasks that do little but call the store.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        self.shared.thread.handle()
    }

    fn plugin(&self) -> Result<Arc<Plugin>, CallFailure> {
        let name = &self.shared.name;
        self.shared
            .host
            .get(name)
            .filter(|p| p.current().kind == Kind::Persistence)
            .ok_or_else(|| {
                CallFailure::unavailable(format!("persistence plugin `{name}` is not loaded"))
            })
    }

    /// Stats as of the last `open` (records skipped while recovering included).
    pub async fn opened_stats(&self) -> Result<StoreStats, CallFailure> {
        let this = self.clone();
        self.shared
            .thread
            .run(async move {
                let plugin = this.plugin()?;
                let mut live = this.shared.live.lock().await;
                this.ensure(&plugin, &mut live).await?;
                Ok(live.as_ref().map(|l| l.opened).expect("ensured"))
            })
            .await
    }

    /// Stores `messages`, the first `lease_first` of them already leased to
    /// the caller for `lease_ms`.
    pub async fn enqueue(
        &self,
        messages: Vec<Message>,
        lease_first: u32,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<String>, CallFailure> {
        match self
            .call(Call::Enqueue(messages, lease_first, lease_ms, now_ms))
            .await?
        {
            Answer::Ids(ids) => Ok(ids),
            _ => unreachable!("enqueue answers ids"),
        }
    }

    pub async fn lease(
        &self,
        max: u32,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<StoredMessage>, CallFailure> {
        match self.call(Call::Lease(max, lease_ms, now_ms)).await? {
            Answer::Messages(m) => Ok(m),
            _ => unreachable!("lease answers messages"),
        }
    }

    pub async fn ack(&self, id: &str, now_ms: u64) -> Result<(), CallFailure> {
        self.call(Call::Ack(id.to_string(), now_ms))
            .await
            .map(|_| ())
    }

    /// Acknowledges many messages in one call (one write).
    pub async fn ack_many(&self, ids: Vec<String>, now_ms: u64) -> Result<(), CallFailure> {
        self.call(Call::AckMany(ids, now_ms)).await.map(|_| ())
    }

    pub async fn nack(
        &self,
        id: &str,
        retry_after_ms: u64,
        error: &str,
        now_ms: u64,
    ) -> Result<(), CallFailure> {
        self.call(Call::Nack(
            id.to_string(),
            retry_after_ms,
            error.to_string(),
            now_ms,
        ))
        .await
        .map(|_| ())
    }

    pub async fn dead_letter(
        &self,
        id: &str,
        reason: &str,
        now_ms: u64,
    ) -> Result<(), CallFailure> {
        self.call(Call::Dead(id.to_string(), reason.to_string(), now_ms))
            .await
            .map(|_| ())
    }

    pub async fn requeue(&self, id: &str, now_ms: u64) -> Result<(), CallFailure> {
        self.call(Call::Requeue(id.to_string(), now_ms))
            .await
            .map(|_| ())
    }

    pub async fn list(
        &self,
        status: MessageStatus,
        limit: u32,
    ) -> Result<Vec<StoredMessage>, CallFailure> {
        match self.call(Call::List(status, limit)).await? {
            Answer::Messages(m) => Ok(m),
            _ => unreachable!("list answers messages"),
        }
    }

    pub async fn get(&self, id: &str) -> Result<Option<StoredMessage>, CallFailure> {
        match self.call(Call::Get(id.to_string())).await? {
            Answer::One(m) => Ok(m),
            _ => unreachable!("get answers one message"),
        }
    }

    pub async fn stats(&self) -> Result<StoreStats, CallFailure> {
        match self.call(Call::Stats).await? {
            Answer::Stats(s) => Ok(s),
            _ => unreachable!("stats answers stats"),
        }
    }

    pub async fn compact(&self, before_ms: u64) -> Result<u64, CallFailure> {
        match self.call(Call::Compact(before_ms)).await? {
            Answer::Count(n) => Ok(n),
            _ => unreachable!("compact answers a count"),
        }
    }

    /// Instantiates and opens the store if there is no live instance, or it
    /// runs an older version of the plugin.
    async fn ensure(&self, plugin: &Plugin, live: &mut Option<Live>) -> Result<(), CallFailure> {
        let loaded = plugin.current();
        if live.as_ref().is_some_and(|l| l.hash == loaded.hash) {
            return Ok(());
        }
        *live = None;
        let Pre::Persistence(pre) = &loaded.pre else {
            return Err(CallFailure::not_kind(Kind::Persistence));
        };
        let timeout = loaded.grants.timeout.max(MAINTENANCE_TIMEOUT);
        let engine = &self.shared.host.runtime().engine;
        let mut store = loaded
            .grants
            .store_with(engine, &plugin.name, true)
            .map_err(|e| CallFailure::unavailable(format!("{e:#}")))?;
        let instance = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| CallFailure::unavailable(format!("could not instantiate: {e:#}")))?;
        store.set_epoch_deadline(ticks(timeout));
        let opened = plugin
            .guard(timeout, timeout, async {
                Ok(instance
                    .openfn_microservice_message_store()
                    .call_open(&mut store)
                    .await?)
            })
            .await?;
        if opened.skipped_records > 0 {
            tracing::warn!(
                plugin = &*plugin.name,
                skipped = opened.skipped_records,
                "the message store skipped torn or corrupt records while opening"
            );
        }
        *live = Some(Live {
            hash: loaded.hash.clone(),
            store,
            instance,
            opened,
        });
        Ok(())
    }

    async fn call(&self, call: Call) -> Result<Answer, CallFailure> {
        let this = self.clone();
        self.shared
            .thread
            .run(async move { this.call_here(call).await })
            .await
    }

    async fn call_here(&self, call: Call) -> Result<Answer, CallFailure> {
        let plugin = self.plugin()?;
        if !plugin.available() {
            return Err(CallFailure::unavailable(format!(
                "persistence plugin `{}` is disabled after repeated failures",
                self.shared.name
            )));
        }
        let mut guard = self.shared.live.lock().await;
        self.ensure(&plugin, &mut guard).await?;
        let live = guard.as_mut().expect("ensured");
        let mut timeout = plugin.current().grants.timeout;
        if matches!(call, Call::Compact(_)) {
            timeout = timeout.max(MAINTENANCE_TIMEOUT);
        }
        live.store.set_epoch_deadline(ticks(timeout));
        let (store, api) = (
            &mut live.store,
            live.instance.openfn_microservice_message_store(),
        );
        let outcome = plugin
            .guard(timeout, timeout, async {
                Ok(match call {
                    Call::Enqueue(m, first, lease, now) => api
                        .call_enqueue(&mut *store, &m, first, lease, now)
                        .await?
                        .map(Answer::Ids),
                    Call::Lease(max, lease, now) => api
                        .call_lease(&mut *store, max, lease, now)
                        .await?
                        .map(Answer::Messages),
                    Call::Ack(id, now) => api
                        .call_ack(&mut *store, &id, now)
                        .await?
                        .map(|()| Answer::Done),
                    Call::AckMany(ids, now) => api
                        .call_ack_many(&mut *store, &ids, now)
                        .await?
                        .map(|()| Answer::Done),
                    Call::Nack(id, after, err, now) => api
                        .call_nack(&mut *store, &id, after, &err, now)
                        .await?
                        .map(|()| Answer::Done),
                    Call::Dead(id, why, now) => api
                        .call_dead_letter(&mut *store, &id, &why, now)
                        .await?
                        .map(|()| Answer::Done),
                    Call::Requeue(id, now) => api
                        .call_requeue(&mut *store, &id, now)
                        .await?
                        .map(|()| Answer::Done),
                    Call::List(status, limit) => api
                        .call_list_messages(&mut *store, status, limit)
                        .await?
                        .map(Answer::Messages),
                    Call::Get(id) => api.call_get(&mut *store, &id).await?.map(Answer::One),
                    Call::Stats => api.call_stats(&mut *store).await?.map(Answer::Stats),
                    Call::Compact(before) => api
                        .call_compact(&mut *store, before)
                        .await?
                        .map(Answer::Count),
                })
            })
            .await;
        if outcome.as_ref().is_err_and(|f| f.trapped) {
            *guard = None;
        }
        outcome
    }
}
