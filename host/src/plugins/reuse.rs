//! Instances kept between calls of the kinds that hold no state from one
//! call to the next: notification and logging.
//!
//! Instantiating a component is most of what a call to it costs when the
//! component is large: a Python or JavaScript plugin (12-18 MiB, an
//! interpreter inside) runs its start-up code again on every new instance,
//! then faults in the pages of its memory image, where the call itself
//! takes a fraction of that (see the README's Benchmarks). So a call of
//! these kinds takes the plugin's idle instance when it has one that may
//! serve it, and instantiates a fresh one otherwise; after the call the
//! instance is parked for the next call, unless:
//!
//! - the call failed in any way (a trap, its deadline, an error the plugin
//!   answered, a host error): the next call gets a fresh instance;
//! - the instance has served [`CALLS_PER_INSTANCE`] calls (what a plugin
//!   leaks or accumulates is bounded);
//! - its memories have grown past [`KEEP_MEMORY`] (a plugin that needed a
//!   lot of memory for one call gives it back, as a fresh instance would).
//!
//! A parked instance is dropped when the plugin is reloaded (a new file or
//! a new table: the next call runs the new version under the new grants)
//! and when it has sat idle for [`MAX_IDLE`]. One instance is parked per
//! plugin: a call that finds none (another call holds it) instantiates its
//! own, and the one parked last wins.
//!
//! This module must never hand one instance to two calls, keep an instance
//! after a call that failed, or serve a call with an instance made for
//! another version of the plugin than the one current.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::Store;

use super::bindings::logging::Logging;
use super::bindings::notification::Notification;
use super::plugin::Loaded;
use super::state::PluginState;

/// Calls an instance serves before it is dropped.
pub const CALLS_PER_INSTANCE: u32 = 1000;
/// Linear memory (of all its memories) past which an instance is dropped
/// after its call instead of kept: a Python plugin starts with 12 MiB, a
/// JavaScript one with 9 MiB, a Rust one with about 1 MiB.
pub const KEEP_MEMORY: usize = 32 << 20;
/// How long a parked instance may wait for its next call.
pub const MAX_IDLE: Duration = Duration::from_secs(60);

/// An instance and its store, between or during calls.
pub struct Kept<I> {
    pub store: Store<PluginState>,
    pub instance: I,
    /// Calls it has answered.
    calls: u32,
}

impl<I> Kept<I> {
    pub fn new(store: Store<PluginState>, instance: I) -> Kept<I> {
        Kept {
            store,
            instance,
            calls: 0,
        }
    }

    /// Whether, after one more call that succeeded, it may serve another.
    fn may_serve_again(&mut self) -> bool {
        self.calls += 1;
        keeps(self.calls, self.store.data().limits.memory())
    }
}

/// Whether an instance that has answered `calls` calls, all of them
/// successfully, with `memory` bytes of linear memory, is kept.
pub fn keeps(calls: u32, memory: usize) -> bool {
    calls < CALLS_PER_INSTANCE && memory <= KEEP_MEMORY
}

/// An idle instance of one of the kinds that keep theirs.
pub enum Idle {
    Notification(Kept<Notification>),
    Logging(Kept<Logging>),
}

struct Parked {
    /// The version it was made from: only a call of that version takes it.
    loaded: Arc<Loaded>,
    since: Instant,
    idle: Idle,
}

/// A plugin's parked instance, if any.
#[derive(Default)]
pub struct Slot(Mutex<Option<Parked>>);

impl Slot {
    /// The parked instance, if it was made from `loaded` and has not sat
    /// idle too long; any other is dropped. The slot is left empty.
    pub fn take(&self, loaded: &Arc<Loaded>) -> Option<Idle> {
        let parked = self.lock().take()?;
        // Dropped outside the lock: dropping a store returns its memory.
        (Arc::ptr_eq(&parked.loaded, loaded) && parked.since.elapsed() < MAX_IDLE)
            .then_some(parked.idle)
    }

    /// Parks the instance of a call of `loaded` that succeeded, if it may
    /// serve another call; drops it otherwise.
    pub fn put_back<I>(&self, loaded: &Arc<Loaded>, mut kept: Kept<I>, wrap: fn(Kept<I>) -> Idle) {
        if !kept.may_serve_again() {
            return;
        }
        let parked = Parked {
            loaded: loaded.clone(),
            since: Instant::now(),
            idle: wrap(kept),
        };
        let replaced = self.lock().replace(parked);
        drop(replaced);
    }

    /// Drops the parked instance, if any.
    pub fn clear(&self) {
        let parked = self.lock().take();
        drop(parked);
    }

    /// Drops the parked instance if it has sat idle for [`MAX_IDLE`].
    pub fn sweep(&self) {
        let mut slot = self.lock();
        let stale = slot.as_ref().is_some_and(|p| p.since.elapsed() >= MAX_IDLE);
        let parked = if stale { slot.take() } else { None };
        drop(slot);
        drop(parked);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Parked>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_is_kept_until_its_call_budget_or_its_memory_runs_out() {
        assert!(keeps(1, 12 << 20));
        assert!(keeps(CALLS_PER_INSTANCE - 1, KEEP_MEMORY));
        assert!(!keeps(CALLS_PER_INSTANCE, 1 << 20));
        assert!(!keeps(1, KEEP_MEMORY + 1));
    }
}
