//! The wasmtime side shared by every plugin: one `Engine`, one `Linker`, the
//! epoch ticker, and the on-disk cache of compiled components (`DATA_DIR/plugin-cache`),
//! whose entries [`super::cache`] verifies before anything is deserialized.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tracing::{info, warn};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::notification::Notification;
use super::state::PluginState;

/// One epoch tick; a call's deadline is a number of these.
pub const TICK: Duration = Duration::from_millis(10);
/// Largest memory any plugin may be configured to use.
pub const MAX_PLUGIN_MEMORY: usize = 1 << 30;

pub struct Runtime {
    pub engine: Engine,
    pub linker: Linker<PluginState>,
    cache_dir: PathBuf,
    /// Whether the pooling allocator could be used on this machine.
    pub pooling: bool,
    ticker_stop: Arc<AtomicBool>,
}

impl Runtime {
    pub fn new(cache_dir: PathBuf) -> anyhow::Result<Runtime> {
        std::fs::create_dir_all(&cache_dir).with_context(|| {
            format!("could not create the plugin cache {}", cache_dir.display())
        })?;
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
            pooling,
            ticker_stop,
        })
    }

    /// Compiles `bytes`, or loads the compiled form from the cache.
    pub fn component(&self, bytes: &[u8]) -> anyhow::Result<(Component, String, bool)> {
        super::cache::component(&self.engine, &self.cache_dir, bytes)
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
            .total_core_instances(400)
            .total_memories(400)
            .total_tables(400)
            .max_memory_size(MAX_PLUGIN_MEMORY)
            // A fresh instance per call makes decommitting its memory on
            // drop a large part of the call; batching the madvise calls
            // amortizes it.
            .decommit_batch_size(64);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
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
