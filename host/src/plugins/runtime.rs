//! The wasmtime side shared by every plugin: one `Engine`, one `Linker`, the
//! epoch ticker, and the on-disk cache of compiled components (`DATA_DIR/plugin-cache`),
//! whose entries [`super::cache`] verifies before anything is deserialized.
//!
//! The engine's pooling allocator gives each instance's linear memory back
//! to the kernel as soon as the instance is dropped (past a small part kept
//! resident for the next call), and a store armed with [`yield_each_tick`]
//! hands its thread back at every epoch tick until its deadline traps it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tracing::{info, warn};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
    UpdateDeadline,
};

use super::bindings::notification::Notification;
use super::state::PluginState;

/// One epoch tick; a call's deadline is a number of these.
pub const TICK: Duration = Duration::from_millis(10);
/// Largest memory any plugin may be configured to use.
pub const MAX_PLUGIN_MEMORY: usize = 1 << 30;
/// Bytes of each linear memory (and table) kept resident when its instance
/// is dropped, reset in place instead of returned to the kernel: what a
/// small plugin's call touches (its stack and a little heap).
const KEEP_RESIDENT: usize = 1 << 20;
/// Idle instance slots that may hold their resident part: with the slots of
/// calls under way, what bounds the memory kept between calls.
const WARM_SLOTS: u32 = 16;

pub struct Runtime {
    pub engine: Engine,
    pub linker: Linker<PluginState>,
    cache_dir: PathBuf,
    /// Whether compiled components are written to the cache (the service)
    /// or only read from it (`check`, `plugin inspect`).
    write_cache: bool,
    /// Whether the pooling allocator could be used on this machine.
    pub pooling: bool,
    ticker_stop: Arc<AtomicBool>,
}

impl Runtime {
    pub fn new(cache_dir: PathBuf) -> anyhow::Result<Runtime> {
        std::fs::create_dir_all(&cache_dir).with_context(|| {
            format!("could not create the plugin cache {}", cache_dir.display())
        })?;
        Runtime::with_cache(cache_dir, true)
    }

    /// A runtime that reads the compile cache at `cache_dir` but writes
    /// nothing there (nor creates it).
    pub fn reading_cache(cache_dir: PathBuf) -> anyhow::Result<Runtime> {
        Runtime::with_cache(cache_dir, false)
    }

    fn with_cache(cache_dir: PathBuf, write_cache: bool) -> anyhow::Result<Runtime> {
        let (engine, pooling) = match Engine::new(&config(true)) {
            Ok(engine) => (engine, true),
            Err(e) => {
                warn!(cause = %e, "the pooling allocator is not available here; using on-demand allocation");
                (
                    Engine::new(&config(false)).map_err(anyhow::Error::from)?,
                    false,
                )
            }
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)?;
        // Every world imports the same `host` and `types`, so one world's
        // linker function adds them for all.
        Notification::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(anyhow::Error::from)?;
        super::grants::deny_symlinks(&mut linker)?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        start_ticker(engine.clone(), ticker_stop.clone());
        Ok(Runtime {
            engine,
            linker,
            cache_dir,
            write_cache,
            pooling,
            ticker_stop,
        })
    }

    /// Compiles `bytes`, or loads the compiled form from the cache.
    pub fn component(&self, bytes: &[u8]) -> anyhow::Result<(Component, String, bool)> {
        super::cache::component(&self.engine, &self.cache_dir, bytes, self.write_cache)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn config(pooling: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(200)
            // A count, not a reservation: a componentize-py plugin is about
            // 60 core instances, and notification and logging plugins keep
            // one instance each between calls (`reuse`).
            .total_core_instances(5000)
            .total_memories(400)
            .total_tables(400)
            .max_memory_size(MAX_PLUGIN_MEMORY)
            // An instance's memory goes back to the kernel when the instance
            // is dropped, past a small part kept to spare the next call's
            // page faults. Batching the decommits (as this did) held up to
            // 64 dropped memories per CPU resident: 40 calls of a plugin
            // using 60 MiB left the process 1.1 GiB larger.
            .decommit_batch_size(1)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            // Idle slots that keep their resident part: with the default
            // (100) idle slots are preferred over reused ones until there
            // are that many, each keeping up to KEEP_RESIDENT.
            .max_unused_warm_slots(WARM_SLOTS)
            // With it, only the pages a call touched are reset by hand
            // (Linux 6.7 and later; older kernels reset the kept part whole).
            .pagemap_scan(Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// How much wall time a call gets per unit of its running-time deadline,
/// for what the epoch does not count: waiting for a CPU on a busy machine,
/// for a plugin thread other calls hold, or in a host call.
pub const WALL_FACTOR: u32 = 10;

/// Arms `store` to give its thread back at every epoch tick while a call
/// runs, and to trap once the call has run for `timeout`. A call that never
/// returns then holds its thread for one tick at a time, not for its whole
/// deadline; without it the thread it ran on could run nothing else.
///
/// The deadline counts the ticks in which the call's wasm ran (the callback
/// fires at most once per tick, and only while the wasm runs), not wall
/// time: a call parked while other calls have the plugin threads, or
/// starved of CPU on a saturated machine (the threads are niced), is not
/// charged for the wait. A well-behaved plugin failing its deadlines on a
/// busy machine is what charging the wait did. Wall time stays bounded by
/// the caller's guard, [`WALL_FACTOR`] times `timeout`.
pub fn yield_each_tick<T>(store: &mut Store<T>, timeout: Duration) {
    let budget = ticks(timeout);
    let mut ran = 0u64;
    store.epoch_deadline_callback(move |_| {
        ran += 1;
        Ok(if ran >= budget {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Yield(1)
        })
    });
    store.set_epoch_deadline(1);
}

/// Advances the engine's epoch from a plain thread: a tokio task could be
/// starved by the very plugin call it is meant to interrupt.
fn start_ticker(engine: Engine, stop: Arc<AtomicBool>) {
    std::thread::Builder::new()
        .name("plugin-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(TICK);
                engine.increment_epoch();
            }
        })
        .expect("spawning the epoch thread");
    info!(
        tick_ms = TICK.as_millis() as u64,
        "plugin epoch ticker started"
    );
}

/// Ticks that make up `deadline`, plus one so a call is never cut short.
pub fn ticks(deadline: Duration) -> u64 {
    (deadline.as_millis() / TICK.as_millis()).max(1) as u64 + 1
}
