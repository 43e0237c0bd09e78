//! WebAssembly plugins: loading, hot reload, and the calls of each kind.
//!
//! Every `.wasm` in the plugins folder is loaded; its kind comes from the
//! plugin interface it exports (see `wit/`), its config and grants from the
//! matching `[plugins.<name>]` table. The folder is re-scanned every couple of
//! seconds: a new or changed file is loaded and, if it loads, replaces the
//! old version; if it does not, the old version keeps serving and the error
//! is logged and shown in `/api/plugins`. A plugin call can trap, time out or
//! hit its memory cap: that call fails, nothing else does.
//!
//! Layout: [`runtime`] (engine, linker, epoch ticker), [`cache`] (the
//! compile cache, verified before use), [`grants`] (what a plugin may
//! touch), [`folders`] (the host's own folders, which no grant may reach),
//! [`state`] (a store's contents and the `host` imports), [`plugin`] (a
//! plugin's versions and health), [`pool`] (the threads plugin calls run
//! on), [`budget`] (the memory all calls may hold at once), one file per
//! kind: [`notify`], [`poll`], [`log_sink`], [`persistence`] (on its
//! [`own_thread`]), [`reuse`] (the instances notification and logging
//! plugins keep between calls), [`manifest`] (what a plugin says it needs,
//! checked against its table), and [`inspect`] (a plugin file judged
//! without serving it, for the CLI).

/// One call on a fresh instance of a plugin, under its deadline: the
/// plugin's memory reserved from the budget (waiting for it is not the
/// plugin's time), the store (with the plugin's grants) armed to yield at
/// every epoch tick, instantiation, then `$call` on the instance. Trigger
/// polls are called this way, on a plugin thread (see [`pool`]);
/// notification and logging calls keep their instance ([`call_reusing`]).
/// A macro because each world has its own pre-instance and instance types.
macro_rules! call_fresh {
    ($host:expr, $plugin:expr, $variant:ident, |$store:ident, $instance:ident| $call:expr) => {{
        debug_assert!(
            $crate::plugins::pool::here(),
            "plugin calls run on the plugin threads"
        );
        let loaded = $plugin.current();
        match &loaded.pre {
            $crate::plugins::plugin::Pre::$variant(pre) => {
                let timeout = loaded.grants.timeout;
                // Dropped after the store, so the memory is back first.
                let _memory = $host.budget().reserve(loaded.grants.memory_bytes).await;
                let wall = timeout * $crate::plugins::runtime::WALL_FACTOR;
                $plugin
                    .guard(timeout, wall, async {
                        let mut $store = loaded
                            .grants
                            .store(&$host.runtime().engine, &$plugin.name)?;
                        $crate::plugins::runtime::yield_each_tick(&mut $store, timeout);
                        let $instance = pre.instantiate_async(&mut $store).await?;
                        Ok($call.await?)
                    })
                    .await
            }
            _ => Err($crate::plugins::plugin::CallFailure::not_kind(
                $crate::plugins::plugin::Kind::$variant,
            )),
        }
    }};
}

/// One call of a kind that keeps its instances (notification, logging;
/// see [`reuse`]): as [`call_fresh`], on the plugin's parked instance if it
/// has one for its current version, else on a fresh one; the deadline is
/// re-armed for each call. After a call that succeeded the instance is
/// parked for the next one (if [`reuse::keeps`] it); after any failure it
/// is dropped.
macro_rules! call_reusing {
    ($host:expr, $plugin:expr, $variant:ident, |$store:ident, $instance:ident| $call:expr) => {{
        debug_assert!(
            $crate::plugins::pool::here(),
            "plugin calls run on the plugin threads"
        );
        let loaded = $plugin.current();
        match &loaded.pre {
            $crate::plugins::plugin::Pre::$variant(pre) => {
                let timeout = loaded.grants.timeout;
                // Dropped after the store, so the memory is back first.
                let _memory = $host.budget().reserve(loaded.grants.memory_bytes).await;
                let wall = timeout * $crate::plugins::runtime::WALL_FACTOR;
                let parked = match $plugin.idle().take(&loaded) {
                    Some($crate::plugins::reuse::Idle::$variant(kept)) => Some(kept),
                    _ => None,
                };
                $plugin
                    .guard(timeout, wall, async {
                        let mut kept = match parked {
                            Some(mut kept) => {
                                $crate::plugins::runtime::yield_each_tick(&mut kept.store, timeout);
                                kept
                            }
                            None => {
                                let mut store = loaded
                                    .grants
                                    .store(&$host.runtime().engine, &$plugin.name)?;
                                $crate::plugins::runtime::yield_each_tick(&mut store, timeout);
                                let instance = pre.instantiate_async(&mut store).await?;
                                $crate::plugins::reuse::Kept::new(store, instance)
                            }
                        };
                        let answer = {
                            let $store = &mut kept.store;
                            let $instance = &kept.instance;
                            $call.await?
                        };
                        if answer.is_ok() {
                            $plugin.idle().put_back(
                                &loaded,
                                kept,
                                $crate::plugins::reuse::Idle::$variant,
                            );
                        }
                        Ok(answer)
                    })
                    .await
            }
            _ => Err($crate::plugins::plugin::CallFailure::not_kind(
                $crate::plugins::plugin::Kind::$variant,
            )),
        }
    }};
}

mod bindings;
mod budget;
mod cache;
pub mod capabilities;
mod folders;
mod grants;
pub mod inspect;
pub mod log_sink;
pub mod manifest;
pub mod notify;
mod own_thread;
pub mod persistence;
mod plugin;
mod poll;
mod pool;
mod reuse;
mod runtime;
mod state;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

pub use self::bindings::types::{RunEvent, RunStatus};
use self::budget::MemoryBudget;
pub use self::folders::HostFolders;
use self::grants::Grants;
use self::plugin::Loaded;
pub use self::plugin::{CallFailure, Kind, Plugin, Status};
use self::pool::CallPool;
use self::runtime::Runtime;
use crate::project::PluginSpec;

/// How often the plugins folder is checked for changes.
pub const SCAN_EVERY: Duration = Duration::from_secs(2);

/// A trigger plugin's message as the host hands it on.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerMessage {
    /// The body as the plugin wrote it: the receipt door decodes it (JSON,
    /// or the type its `content-type` metadata names).
    pub body: String,
    /// The plugin's metadata, kept with the receipt (`state.receipt.metadata`).
    pub metadata: Vec<(String, String)>,
    /// `plugin:<name>`, named by the host.
    pub source: String,
}

/// Where messages from trigger plugins go: the same path as `/inbox`. The
/// poll waits for it, so a durable inbox has stored the message first.
pub type MessageSink =
    Arc<dyn Fn(TriggerMessage) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

pub struct Options {
    pub plugins_dir: PathBuf,
    pub project_dir: PathBuf,
    pub data_dir: PathBuf,
    /// `PACKAGES_DIR`: one of the host's folders no grant may reach.
    pub packages_dir: PathBuf,
    /// Jobs' expression files (relative to `project_dir`), whose folders
    /// no grant may be or contain.
    pub job_files: Vec<String>,
    /// The inbox's body limit, which each message a trigger plugin returns
    /// must keep to as well.
    pub max_message_bytes: usize,
    pub specs: BTreeMap<String, PluginSpec>,
    /// Tables that apply to a name the project has no table for (the
    /// built-in journal's grants, for a `journal.wasm` in the folder).
    pub default_specs: BTreeMap<String, PluginSpec>,
    /// `[plugins] max_memory`: the memory caps of trigger, notification and
    /// logging instances alive at once add up to at most this.
    pub max_memory: usize,
    /// Who polls each trigger plugin when replicas share a database (one
    /// at a time); the one process always does when they do not.
    pub trigger_leases: Arc<dyn crate::storage::TriggerLeases>,
}

impl Options {
    /// `specs` plus the default tables of names it does not configure.
    fn with_defaults(
        &self,
        mut specs: BTreeMap<String, PluginSpec>,
    ) -> BTreeMap<String, PluginSpec> {
        for (name, spec) in &self.default_specs {
            specs.entry(name.clone()).or_insert_with(|| spec.clone());
        }
        specs
    }

    pub fn host_folders(&self) -> HostFolders {
        HostFolders {
            project_dir: self.project_dir.clone(),
            data_dir: self.data_dir.clone(),
            packages_dir: self.packages_dir.clone(),
            plugins_dir: self.plugins_dir.clone(),
            job_files: self.job_files.clone(),
        }
    }
}

#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: Runtime,
    /// Where every plugin call but the message store's runs.
    pool: CallPool,
    budget: MemoryBudget,
    options: Options,
    plugins: RwLock<BTreeMap<String, Arc<Plugin>>>,
    /// Files that never loaded, by plugin name, with why.
    failed: Mutex<BTreeMap<String, Failed>>,
    /// What each file looked like when last read, to skip unchanged ones.
    seen: Mutex<HashMap<PathBuf, Seen>>,
    /// The `[plugins.<name>]` tables in force: those the service started
    /// with, then those of each version of `project.toml` that loaded.
    specs: RwLock<BTreeMap<String, PluginSpec>>,
    /// What `project.toml` looked like when last read.
    project_seen: Mutex<Option<Seen>>,
    messages: MessageSink,
    /// Trigger plugins wait for this before their first poll, so nothing
    /// is polled before the inbox (and its durable queue) is ready.
    ready: tokio::sync::watch::Sender<bool>,
    /// Plugins of the first scan still compiling, name to file: the port
    /// opens without waiting for them (`/readyz` lists them), and each
    /// leaves the set as soon as it is in service or refused.
    loading: tokio::sync::watch::Sender<BTreeMap<String, String>>,
    /// Puts one prepared file in service at a time (they are compiled in
    /// parallel, and each is applied as soon as it is compiled).
    applying: Mutex<()>,
    stop: CancellationToken,
    tracker: TaskTracker,
}

/// A file read and compiled, waiting to be put in service.
enum Prepared {
    /// Unchanged bytes under an unchanged table: nothing to do.
    Skip,
    /// Its table says `enabled = false`.
    Disabled(String),
    /// Its name, its table, and the compiled plugin or why it was refused.
    Done(String, Option<PluginSpec>, Box<Result<Loaded, String>>),
}

#[derive(Clone, PartialEq)]
struct Seen {
    modified: Option<SystemTime>,
    len: u64,
}

/// A plugin whose file could not be loaded.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = PluginFailed)]
pub struct Failed {
    name: String,
    file: String,
    /// Always `failed`.
    status: &'static str,
    last_error: String,
}

/// A plugin still compiling since start-up.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = PluginLoading)]
pub struct Loading {
    name: String,
    file: String,
    status: LoadingStatus,
}

/// A loading plugin's `status`: always `loading` (one value, so that the
/// document tells it from a loaded plugin's report).
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LoadingStatus {
    Loading,
}

/// What `/api/plugins` shows for one plugin.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(as = PluginReport)]
pub enum Report {
    Loaded(Status),
    Failed(Failed),
    /// Still compiling since start-up.
    Loading(Loading),
}

impl PluginHost {
    /// Starts loading what is in the plugins folder now (compiling in
    /// parallel, in the background), then watches it. Returns at once: each
    /// plugin is active as soon as it is compiled; [`PluginHost::loading`]
    /// names those still compiling, and [`PluginHost::settled`] waits for one.
    pub fn start(
        options: Options,
        messages: MessageSink,
        stop: CancellationToken,
        tracker: TaskTracker,
    ) -> anyhow::Result<PluginHost> {
        let started = Instant::now();
        let runtime = Runtime::new(options.data_dir.join(folders::CACHE))?;
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let pool = CallPool::start(threads).context("could not start the plugin threads")?;
        let budget = MemoryBudget::new(options.max_memory);
        let specs = RwLock::new(options.with_defaults(options.specs.clone()));
        // The tables the service starts with are this version's.
        let project_seen = Mutex::new(project_file_seen(&options.project_dir));
        let host = PluginHost {
            inner: Arc::new(Inner {
                runtime,
                pool,
                budget,
                messages: pool::on_callers_runtime(messages),
                options,
                plugins: RwLock::default(),
                failed: Mutex::default(),
                seen: Mutex::default(),
                specs,
                project_seen,
                ready: tokio::sync::watch::Sender::new(false),
                loading: tokio::sync::watch::Sender::new(BTreeMap::new()),
                applying: Mutex::default(),
                stop,
                tracker,
            }),
        };
        for (name, spec) in host
            .inner
            .specs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            // The journal is built into the binary: a missing file is the norm.
            if spec.enabled
                && name != crate::project::plugins::JOURNAL
                && !host.inner.options.plugins_dir.join(&spec.file).exists()
            {
                warn!(plugin = %name, file = %spec.file, dir = %host.inner.options.plugins_dir.display(), "configured plugin file is not in the plugins folder (yet)");
            }
        }
        let first: BTreeMap<String, String> = wasm_files(&host.inner.options.plugins_dir)
            .iter()
            .filter_map(|path| {
                let name = host.name_for(path);
                let enabled = host.spec(&name).is_none_or(|s| s.enabled);
                let file = path.file_name()?.to_string_lossy().to_string();
                enabled.then_some((name, file))
            })
            .collect();
        host.inner.loading.send_replace(first);
        let watcher = host.clone();
        host.inner.tracker.spawn(async move {
            let mut first = true;
            loop {
                let scanner = watcher.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || scanner.scan()).await {
                    error!(cause = %e, "plugin scan failed");
                }
                if std::mem::take(&mut first) {
                    // Whatever the scan skipped is not coming either.
                    watcher.inner.loading.send_replace(BTreeMap::new());
                    info!(
                        plugins = watcher
                            .inner
                            .plugins
                            .read()
                            .unwrap_or_else(|p| p.into_inner())
                            .len(),
                        pooling = watcher.inner.runtime.pooling,
                        threads = watcher.inner.pool.threads(),
                        max_memory_mib = watcher.inner.budget.bytes() >> 20,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "plugins loaded"
                    );
                }
                tokio::select! {
                    _ = tokio::time::sleep(SCAN_EVERY) => {}
                    _ = watcher.inner.stop.cancelled() => return,
                }
            }
        });
        Ok(host)
    }

    /// The plugins of the first scan still compiling, name to file.
    pub fn loading(&self) -> BTreeMap<String, String> {
        self.inner.loading.borrow().clone()
    }

    /// Waits until the plugin `name` is no longer compiling (loaded,
    /// refused, or never there).
    pub async fn settled(&self, name: &str) {
        let mut loading = self.inner.loading.subscribe();
        let _ = loading.wait_for(|l| !l.contains_key(name)).await;
    }

    /// Waits until nothing of the first scan is compiling, or `limit` passed.
    pub async fn settled_all(&self, limit: Duration) {
        let mut loading = self.inner.loading.subscribe();
        let _ = tokio::time::timeout(limit, loading.wait_for(|l| l.is_empty())).await;
    }

    /// Lets trigger plugins start polling.
    pub fn open_triggers(&self) {
        self.inner.ready.send_replace(true);
    }

    pub fn runtime(&self) -> &Runtime {
        &self.inner.runtime
    }

    /// The threads plugin calls run on.
    pub fn pool(&self) -> &CallPool {
        &self.inner.pool
    }

    fn budget(&self) -> &MemoryBudget {
        &self.inner.budget
    }

    /// The loaded plugins of one kind, in name order.
    pub fn of_kind(&self, kind: Kind) -> Vec<Arc<Plugin>> {
        self.inner
            .plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|p| p.current().kind == kind)
            .cloned()
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<Arc<Plugin>> {
        self.inner
            .plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    pub fn reports(&self) -> Vec<Report> {
        let mut out: Vec<Report> = self
            .inner
            .plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|p| Report::Loaded(p.status()))
            .collect();
        for failed in self
            .inner
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            out.push(Report::Failed(failed.clone()));
        }
        for (name, file) in self.loading() {
            out.push(Report::Loading(Loading {
                name,
                file,
                status: LoadingStatus::Loading,
            }));
        }
        out
    }

    /// Brings the loaded set in line with the folder's contents and the
    /// project's `[plugins.*]` tables. Files to (re)load are compiled in
    /// parallel, each put in service as soon as it is compiled.
    fn scan(&self) {
        let present = wasm_files(&self.inner.options.plugins_dir);
        // Files whose table changed are reloaded whatever their bytes.
        let retabled = self.reread_tables(&present);
        let mut todo = Vec::new();
        for path in &present {
            let Ok(meta) = std::fs::metadata(path) else {
                continue;
            };
            let seen = Seen {
                modified: meta.modified().ok(),
                len: meta.len(),
            };
            let changed = self
                .inner
                .seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(path)
                != Some(&seen);
            let forced = retabled.contains(path);
            if changed || forced {
                todo.push((path.clone(), seen, forced));
            }
        }
        // Each file is put in service as soon as it is compiled, so a slow
        // one holds up no other.
        std::thread::scope(|scope| {
            for (path, seen, forced) in todo {
                scope.spawn(move || {
                    let name = self.name_for(&path);
                    let prepared = self.prepare(&path, forced);
                    {
                        let _one = self
                            .inner
                            .applying
                            .lock()
                            .unwrap_or_else(|p| p.into_inner());
                        self.apply(&path, prepared);
                        self.inner
                            .seen
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(path, seen);
                    }
                    self.inner
                        .loading
                        .send_if_modified(|l| l.remove(&name).is_some());
                });
            }
        });
        // Files that went away take their plugin with them.
        let gone: Vec<PathBuf> = self
            .inner
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|p| !present.contains(p))
            .cloned()
            .collect();
        for path in gone {
            self.inner
                .seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&path);
            let name = self.name_for(&path);
            self.unload(&name, "plugin file removed; unloaded");
        }
        // Instances parked too long give their memory back.
        let loaded: Vec<Arc<Plugin>> = self
            .inner
            .plugins
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for plugin in loaded {
            plugin.idle().sweep();
        }
    }

    /// Forgets the plugin `name`, loaded or failed; logs `why` if it was loaded.
    fn unload(&self, name: &str, why: &str) {
        self.inner
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        if self
            .inner
            .plugins
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
            .is_some()
        {
            info!(plugin = %name, "{why}");
        }
    }

    /// Re-reads `project.toml` when it changed since last read, and returns
    /// the files among `present` whose plugin table (or name) changed. The
    /// old name of a file whose table now names it otherwise is unloaded.
    /// A project file that no longer parses changes nothing: every plugin
    /// keeps its table, and the error is logged and shown on each.
    fn reread_tables(&self, present: &[PathBuf]) -> Vec<PathBuf> {
        let file = self.inner.options.project_dir.join("project.toml");
        let modified = project_file_seen(&self.inner.options.project_dir);
        {
            let mut seen = self
                .inner
                .project_seen
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if *seen == modified {
                return Vec::new();
            }
            *seen = modified.clone();
        }
        if modified.is_none() {
            return Vec::new();
        }
        let project = match crate::project::Project::load_with(
            &self.inner.options.project_dir,
            crate::project::CredentialEnv::Skip,
        ) {
            Ok(p) => p,
            Err(e) => {
                let why = format!(
                    "{} changed but does not load, so plugins keep their previous tables: {}",
                    file.display(),
                    e.problems()
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                );
                error!("{why}");
                for plugin in self
                    .inner
                    .plugins
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                {
                    plugin.note_error(why.clone());
                }
                return Vec::new();
            }
        };
        let specs = self.inner.options.with_defaults(project.plugins);
        let old = std::mem::replace(
            &mut *self.inner.specs.write().unwrap_or_else(|p| p.into_inner()),
            specs.clone(),
        );
        let mut retabled = Vec::new();
        for path in present {
            let (before, after) = (name_for_file(&old, path), name_for_file(&specs, path));
            // Debug text compares every field, the cron schedule included.
            let same = before == after
                && format!("{:?}", old.get(&before)) == format!("{:?}", specs.get(&after));
            if same {
                continue;
            }
            if before != after {
                self.unload(
                    &before,
                    "plugin renamed by its table; the old name is unloaded",
                );
            }
            info!(plugin = %after, file = %path.display(), "its [plugins.{after}] table changed; reloading");
            retabled.push(path.clone());
        }
        retabled
    }

    fn name_for(&self, path: &Path) -> String {
        name_for_file(
            &self.inner.specs.read().unwrap_or_else(|p| p.into_inner()),
            path,
        )
    }

    /// The plugin's current `[plugins.<name>]` table, if it has one.
    pub fn spec(&self, name: &str) -> Option<PluginSpec> {
        self.inner
            .specs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Reads and compiles a file (the slow part, run in parallel with
    /// other files'); `forced` recompiles unchanged bytes too (new grants).
    fn prepare(&self, path: &Path, forced: bool) -> Prepared {
        let name = self.name_for(path);
        let spec = self.spec(&name);
        if spec.as_ref().is_some_and(|s| !s.enabled) {
            return Prepared::Disabled(name);
        }
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => {
                return Prepared::Done(
                    name,
                    spec,
                    Box::new(Err(format!("cannot read {}: {e}", path.display()))),
                );
            }
        };
        if !forced
            && let Some(p) = self.get(&name)
            && hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)) == p.current().hash
        {
            return Prepared::Skip;
        }
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default();
        let compiled = self.compile(&bytes, file, &name, spec.as_ref());
        Prepared::Done(name, spec, Box::new(compiled))
    }

    /// Puts a prepared file in service (or records why it is not).
    fn apply(&self, path: &Path, prepared: Prepared) {
        let (name, spec, compiled) = match prepared {
            Prepared::Skip => return,
            Prepared::Disabled(name) => {
                info!(plugin = %name, "plugin is disabled in project.toml; not loading");
                self.unload(&name, "plugin disabled in project.toml; unloaded");
                return;
            }
            Prepared::Done(name, spec, compiled) => (name, spec, compiled),
        };
        let existing = self.get(&name);
        match *compiled {
            Ok(loaded) => {
                if spec.is_none() {
                    warn!(plugin = %name, file = %path.display(), "plugin has no [plugins.{name}] table in project.toml: it runs with no grants (no folders, no network, no config), so any file or network access it tries fails; add the table to grant them");
                }
                let kind = loaded.kind;
                let (hash, cached) = (loaded.hash.clone(), loaded.from_cache);
                self.inner
                    .failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&name);
                match existing {
                    Some(p) if p.current().kind == kind => {
                        p.replace(loaded);
                        info!(plugin = %name, kind = ?kind, hash = %&hash[..12], "plugin reloaded");
                    }
                    _ => {
                        let plugin = Arc::new(Plugin::new(&name, loaded));
                        self.inner
                            .plugins
                            .write()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(name.clone(), plugin);
                        info!(plugin = %name, kind = ?kind, hash = %&hash[..12], from_cache = cached, "plugin loaded");
                        if kind == Kind::Trigger {
                            // The poll loop is spawned on the current
                            // runtime: the plugin threads'.
                            let _on_pool = self.inner.pool.handle().enter();
                            poll::spawn(self.clone(), name.clone());
                        }
                    }
                }
            }
            Err(why) => {
                let file = path
                    .file_name()
                    .and_then(|f| f.to_str())
                    .unwrap_or_default()
                    .to_string();
                match existing {
                    Some(p) => {
                        error!(plugin = %name, file = %file, cause = %why, "the new version did not load; the old one keeps serving");
                        p.note_error(format!("new version refused: {why}"));
                    }
                    None => {
                        error!(plugin = %name, file = %file, cause = %why, "plugin refused");
                        self.inner
                            .failed
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(
                                name.clone(),
                                Failed {
                                    name,
                                    file,
                                    status: "failed",
                                    last_error: why,
                                },
                            );
                    }
                }
            }
        }
    }

    /// Serves a plugin built into the binary (the default message store)
    /// unless the plugins folder already provides one of that name; a file
    /// of that name added later replaces it like any hot reload.
    pub fn embed(&self, name: &str, bytes: &[u8], spec: &PluginSpec) -> Result<(), String> {
        if self.get(name).is_some() {
            return Ok(());
        }
        let loaded = self.compile(bytes, "(built in)", name, Some(spec))?;
        info!(plugin = %name, kind = ?loaded.kind, from_cache = loaded.from_cache, "built-in plugin loaded");
        self.inner
            .plugins
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), Arc::new(Plugin::new(name, loaded)));
        Ok(())
    }

    fn compile(
        &self,
        bytes: &[u8],
        file: &str,
        name: &str,
        spec: Option<&PluginSpec>,
    ) -> Result<Loaded, String> {
        let rt = &self.inner.runtime;
        let (component, hash, from_cache) = rt
            .component(bytes)
            .map_err(|e| format!("not a valid component: {e:#}"))?;
        let kind = plugin::kind_of(&component, &rt.engine)?;
        let spec = manifest::applied(bytes, spec, name)?;
        let grants = Grants::resolve(spec.as_ref(), &self.inner.options.host_folders())?;
        grants.check_imports(&component, &rt.engine)?;
        budget::check_cap(kind, grants.memory_bytes, self.inner.budget.bytes())?;
        let pre = plugin::link(&rt.linker, &component, kind)?;
        Ok(Loaded {
            kind,
            file: file.to_string(),
            hash,
            pre,
            grants,
            loaded_at: crate::clock::now_rfc3339(),
            from_cache,
        })
    }
}

/// The `.wasm` files in `dir`, in name order.
fn wasm_files(dir: &Path) -> Vec<PathBuf> {
    let mut present = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "wasm") && path.is_file() {
                present.push(path);
            }
        }
    }
    present.sort();
    present
}

/// What `project.toml` in `project_dir` looks like now, if it exists.
fn project_file_seen(project_dir: &Path) -> Option<Seen> {
    std::fs::metadata(project_dir.join("project.toml"))
        .ok()
        .map(|m| Seen {
            modified: m.modified().ok(),
            len: m.len(),
        })
}

/// A file's plugin name: the table that names the file, else the file's stem.
pub fn name_for_file(specs: &BTreeMap<String, PluginSpec>, path: &Path) -> String {
    let file = path
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or_default();
    specs
        .values()
        .find(|s| s.file == file)
        .map(|s| s.name.clone())
        .unwrap_or_else(|| {
            path.file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or(file)
                .to_string()
        })
}
