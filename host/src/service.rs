//! Start-up and shutdown: the order things happen in.
//!
//! Start-up validates the project, prepares `DATA_DIR`, installs what is
//! missing and opens the store, all before the port opens, so a service that
//! listens is a service that can run its jobs. Plugins other than the
//! message store compile in the background and need not be ready: those
//! still compiling a moment after the store opens become active when done. Shutdown (SIGTERM or Ctrl-C)
//! stops accepting and scheduling, then gives requests and runs in flight the
//! grace period before killing what is left.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::dispatch::Dispatcher;
use crate::engine::worker::PoolConfig;
use crate::engine::{CliEngine, Engine, WorkerPool};
use crate::http::{self, App};
use crate::packages::{Packages, Progress};
use crate::plugins::persistence::MessageStore;
use crate::plugins::{self, MessageSink, PluginHost, TriggerMessage};
use crate::project::Project;
use crate::project::plugins::{JOURNAL, builtin_journal};
use crate::project::{AdaptorSpec, EngineMode, TriggerKind};
use crate::queue::Queue;
use crate::receipt::{Door, Options, Refused};
use crate::settings::Settings;
use crate::storage::postgres::Postgres;
use crate::storage::{Reachable, Storage, embedded};

/// Finished runs waiting for notification plugins; beyond this they are dropped.
const NOTIFY_QUEUE: usize = 1024;
/// How long the port waits, once the store is open, for plugins still
/// compiling: those that take longer load in the background (`/readyz`
/// lists them) instead of holding up start-up.
const PLUGINS_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// The packages a project needs: `@openfn/core` and every adaptor its jobs name.
pub fn package_specs(project: &Project) -> Vec<AdaptorSpec> {
    let mut specs = vec![project.engine.core.clone()];
    specs.extend(project.adaptors());
    specs
}

/// Installs what of `specs` is missing from `PACKAGES_DIR` (creating it),
/// telling `progress` about each step; returns how many were installed.
pub async fn install_packages(
    settings: &Settings,
    specs: &[AdaptorSpec],
    progress: impl Fn(Progress<'_>),
) -> anyhow::Result<usize> {
    std::fs::create_dir_all(&settings.packages_dir).with_context(|| {
        format!(
            "could not create PACKAGES_DIR {}",
            settings.packages_dir.display()
        )
    })?;
    Ok(Packages::new(&settings.packages_dir)
        .ensure(specs, progress)
        .await?)
}

/// The jobs library, read once: its bad files are left out, with a warning each.
fn library_catalog(settings: &Settings, project: &Project) -> Arc<crate::library::Catalog> {
    let packages = Packages::new(&settings.packages_dir);
    let (catalog, problems) = crate::library::Catalog::build(project, &packages);
    for problem in problems {
        warn!(%problem, "a library file is left out of the jobs library");
    }
    Arc::new(catalog)
}

/// `microservice serve`: runs until SIGTERM or Ctrl-C.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let project = Arc::new(Project::load(&settings.project_dir)?);
    info!(
        project = %project.file.display(),
        jobs = project.jobs.len(),
        triggers = project.triggers.len(),
        "project loaded"
    );
    prepare_data_dir(&settings)?;
    install_packages(&settings, &package_specs(&project), |p| info!("{p}")).await?;
    let stop = CancellationToken::new();
    let database = open_database(&settings, &project).await?;
    let storage = match &database {
        Some(pg) => {
            pg.probe(stop.clone());
            pg.storage()
        }
        None => Storage {
            runs: Arc::new(embedded::SqliteRuns::open(
                &settings.data_dir.join("microservice.db"),
            )?),
            cron: Arc::new(embedded::OneProcess),
            triggers: Arc::new(embedded::OneProcess),
            reachable: Reachable::new(true),
            shared: false,
        },
    };
    let engine = engine(
        &settings,
        &project,
        EngineDirs {
            tmp: settings.tmp_dir(),
            worker: settings.data_dir.join("worker"),
            warm: project.engine.concurrency,
        },
    )?;
    let (finished_tx, finished_rx) = tokio::sync::mpsc::channel(NOTIFY_QUEUE);
    let dispatcher = Dispatcher::new(project.clone(), engine, storage, Some(finished_tx));
    let schedulers = TaskTracker::new();
    let queue_cell: Arc<OnceLock<Queue>> = Arc::default();
    // Every source of receipts goes through it; the queue is set in it once open.
    let door = Door::new(dispatcher.clone(), queue_cell.clone());
    let plugins = start_plugins(&settings, &project, &door, &stop, &schedulers)?;
    plugins::notify::spawn(plugins.clone(), finished_rx);
    plugins::log_sink::spawn(plugins.clone());
    let queue = if project.inbox.durable {
        let queue = start_queue(
            &project,
            &plugins,
            database.as_ref(),
            &dispatcher,
            &stop,
            &schedulers,
        )
        .await?;
        let _ = queue_cell.set(queue.clone());
        Some(queue)
    } else {
        info!(
            "[inbox] durable = false: receipts are not stored before the 202, and failed runs are not retried"
        );
        None
    };
    plugins.settled_all(PLUGINS_GRACE).await;
    let loading = plugins.loading();
    if !loading.is_empty() {
        info!(plugins = ?loading.keys().collect::<Vec<_>>(), "opening the port while these plugins are still compiling; each is active as soon as it is compiled");
    }

    let listener = TcpListener::bind((settings.host.as_str(), settings.port))
        .await
        .with_context(|| {
            format!(
                "could not listen on {}:{} (set PORT or HOST_URL)",
                settings.host, settings.port
            )
        })?;
    let addr = listener.local_addr()?;
    // Before "listening on": whoever waits for that line (a supervisor, the
    // tests) has read everything start-up had to say.
    announce_security(&settings, addr);
    info!(style = ?settings.endpoint_style, "listening on http://{addr}");
    let metrics = crate::metrics::get();
    metrics.set_engine_slots(project.engine.concurrency);
    metrics.declare(project.jobs.keys().map(String::as_str));

    let library = library_catalog(&settings, &project);
    crate::cron::start(&dispatcher, &stop, &schedulers);
    dispatcher.adopt_flows(stop.clone());
    plugins.open_triggers();
    let app = Arc::new(App {
        dispatcher: dispatcher.clone(),
        door,
        endpoint_style: settings.endpoint_style,
        plugins: Some(plugins.clone()),
        queue: queue.clone(),
        stopping: stop.clone(),
        api_keys: settings.api_keys.clone(),
        activity: Default::default(),
        library,
    });
    tokio::spawn(http::stats::sample_queue(app.clone(), stop.clone()));
    tokio::spawn(crate::library::remote::keep_fetched(
        app.library.clone(),
        project.library.remotes.clone(),
        project.library.remote_timeout,
        project.library.remote_refresh,
        stop.clone(),
    ));
    let grace = project.engine.shutdown_grace;
    let server = tokio::spawn(http::serve(listener, app, stop.clone(), grace));

    shutdown_signal().await;
    info!(grace = %humantime::format_duration(grace), "shutting down: no new receipts; waiting for runs in flight");
    stop.cancel();
    schedulers.close();
    let (_, served, _) = tokio::join!(schedulers.wait(), server, dispatcher.shutdown(grace));
    if let Err(e) = served {
        warn!(cause = %e, "the HTTP server task ended badly");
    }
    if let Some(queue) = &queue {
        queue.flush_acks(std::time::Duration::from_secs(5)).await;
    }
    info!("stopped");
    Ok(())
}

/// Says at start-up what is open to whom, so an operator never finds out
/// from an incident.
fn announce_security(settings: &Settings, addr: std::net::SocketAddr) {
    let keys = &settings.api_keys;
    let open: Vec<&str> = [
        (!keys.inbox_configured()).then_some("/inbox (set API_KEY)"),
        (!keys.admin_configured()).then_some("/api and /metrics (set ADMIN_API_KEY)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if open.is_empty() {
        info!("API keys are required on /inbox, /api and /metrics");
    } else if addr.ip().is_loopback() {
        info!(
            open = ?open,
            "no API key for some endpoints, so the service listens on this machine only; set the keys, or HOST_URL=0.0.0.0 to accept other hosts anyway"
        );
    } else {
        warn!(open = ?open, "no API key for some endpoints, and the service accepts connections from other hosts: anyone who can reach {addr} can use them");
    }
}

/// Where an engine works, and how many workers it starts ahead of time.
pub struct EngineDirs {
    /// `cli` mode: the parent of each run's private temp dir.
    pub tmp: PathBuf,
    /// `worker` mode: where the worker script is written.
    pub worker: PathBuf,
    /// `worker` mode: workers started before the first run.
    pub warm: usize,
}

/// The configured engine mode (`ENGINE_MODE` wins over `[engine] mode`).
pub fn engine(settings: &Settings, project: &Project, dirs: EngineDirs) -> anyhow::Result<Engine> {
    let e = &project.engine;
    let packages = Packages::new(&settings.packages_dir);
    let mode = settings.engine_mode.unwrap_or(e.mode);
    info!(mode = ?mode, concurrency = e.concurrency, "engine");
    Ok(match mode {
        EngineMode::Cli => Engine::Cli(CliEngine::new(&e.node, packages, &e.core, dirs.tmp)),
        EngineMode::Worker => {
            let config = PoolConfig {
                node: e.node.clone(),
                warm: dirs.warm,
                memory_mb: e.worker_memory_mb,
                recycle_after: e.recycle_after,
            };
            let dir = dirs.worker;
            let pool = WorkerPool::new(config, packages, &e.core, &dir).with_context(|| {
                format!("could not write the worker script into {}", dir.display())
            })?;
            Engine::Worker(pool)
        }
    })
}

/// Loads the plugins folder; trigger plugins' messages go through the
/// receipt door like `/inbox` receipts.
fn start_plugins(
    settings: &Settings,
    project: &Project,
    door: &Door,
    stop: &CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<PluginHost> {
    let leases = door.dispatcher().storage().triggers.clone();
    let door = door.clone();
    let sink: MessageSink = Arc::new(move |message| {
        let door = door.clone();
        Box::pin(async move {
            // The decision is the inbox's; only the answer to a refusal
            // differs: there is no one to answer, so it is logged.
            let TriggerMessage {
                body,
                metadata,
                source,
            } = message;
            let taken = door
                .take_plugin_message(body, &source, &metadata, Options::default())
                .await;
            match taken {
                Ok(_) => {}
                Err(Refused::Store(f)) => {
                    warn!(source, cause = %f, "could not store a trigger plugin's message; it is lost")
                }
                Err(Refused::Decode(e)) => {
                    warn!(source, cause = %e, "a trigger plugin's message was refused")
                }
            }
        })
    });
    let options = plugin_options(settings, project, leases);
    PluginHost::start(options, sink, stop.clone(), tracker.clone())
}

/// The plugin host's options for the project: its folders, tables and limits.
pub fn plugin_options(
    settings: &Settings,
    project: &Project,
    trigger_leases: Arc<dyn crate::storage::TriggerLeases>,
) -> plugins::Options {
    plugins::Options {
        plugins_dir: settings.plugins_dir.clone(),
        project_dir: settings.project_dir.clone(),
        data_dir: settings.data_dir.clone(),
        packages_dir: settings.packages_dir.clone(),
        job_files: project.job_files(),
        max_message_bytes: project.inbox.max_body_bytes,
        specs: project.plugins.clone(),
        // A journal.wasm dropped in the folder (a newer journal) gets the
        // built-in journal's grants unless the project configures it.
        default_specs: [(JOURNAL.to_string(), builtin_journal())].into(),
        max_memory: project.plugin_memory,
        trigger_leases,
    }
}

/// The built-in message store: the journal plugin compiled into the binary.
const JOURNAL_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/journal.wasm"));

/// The PostgreSQL store when `DATABASE_URL` (or `[cluster] database_url`)
/// names one, its schema migrated; `None` for the embedded store.
pub async fn open_database(
    settings: &Settings,
    project: &Project,
) -> anyhow::Result<Option<Postgres>> {
    let Some(url) = settings
        .database_url
        .as_ref()
        .or(project.cluster.database_url.as_ref())
    else {
        return Ok(None);
    };
    let cron_jobs = project
        .jobs
        .values()
        .flat_map(|j| project.triggers_of(j))
        .filter(|t| matches!(t.kind, TriggerKind::Cron { .. }))
        .count();
    let pg = Postgres::new(url, cron_jobs)?;
    info!(database = %pg.target(), "storage: PostgreSQL");
    pg.migrate().await?;
    pg.heartbeat()
        .await
        .map_err(|e| anyhow::anyhow!("the database at {}: {e}", pg.target()))?;
    Ok(Some(pg))
}

/// Starts delivery from the receipts store: PostgreSQL's table when there
/// is a database, else the message store named by `[inbox] store`.
async fn start_queue(
    project: &Project,
    plugins: &PluginHost,
    database: Option<&Postgres>,
    dispatcher: &Dispatcher,
    stop: &CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<Queue> {
    let longest_run = project
        .jobs
        .values()
        .map(|j| project.timeout_of(j))
        .max()
        .unwrap_or(project.engine.timeout);
    // A lease must outlast any run, or a slow receipt would be delivered twice.
    let lease = longest_run * 2 + std::time::Duration::from_secs(60);
    if let Some(pg) = database {
        if project.inbox.store != JOURNAL {
            warn!(store = %project.inbox.store, "[inbox] store is not used: receipts are kept in PostgreSQL");
        }
        let lease = project.cluster.lease.unwrap_or(lease);
        return Queue::start(
            Arc::new(
                pg.receipts(
                    stop,
                    project
                        .cluster
                        .commits
                        .unwrap_or(crate::project::DEFAULT_COMMITS),
                ),
            ),
            dispatcher.clone(),
            lease,
            project.inbox.retention,
            stop.clone(),
            tracker.clone(),
        )
        .await;
    }
    let receipts = open_embedded_receipts(project, plugins).await?;
    Queue::start(
        Arc::new(receipts),
        dispatcher.clone(),
        lease,
        project.inbox.retention,
        stop.clone(),
        tracker.clone(),
    )
    .await
}

/// The embedded store's receipts: the message-store plugin `[inbox] store`
/// names (the built-in journal unless the project says otherwise), opened
/// with what a previous process left.
pub async fn open_embedded_receipts(
    project: &Project,
    plugins: &PluginHost,
) -> anyhow::Result<embedded::JournalReceipts> {
    let name = &project.inbox.store;
    // The store may be a file of the plugins folder still compiling.
    plugins.settled(name).await;
    if name == JOURNAL {
        let spec = project
            .plugins
            .get(name)
            .cloned()
            .unwrap_or_else(builtin_journal);
        plugins
            .embed(name, JOURNAL_WASM, &spec)
            .map_err(|e| anyhow::anyhow!("the built-in journal could not be loaded: {e}"))?;
    }
    if plugins
        .get(name)
        .is_none_or(|p| p.status().kind != plugins::Kind::Persistence)
    {
        anyhow::bail!(
            "{}: [inbox] store = \"{name}\" names no loaded persistence plugin; put it in the plugins folder, or use the built-in \"journal\"",
            project.file.display()
        );
    }
    let store = MessageStore::new(plugins.clone(), name)
        .context("could not start the message store's thread")?;
    embedded::JournalReceipts::open(store).await
}

/// Creates `DATA_DIR` and empties `DATA_DIR/tmp`: temp dirs left by a killed
/// process hold initial states, credentials included.
fn prepare_data_dir(settings: &Settings) -> anyhow::Result<()> {
    let tmp = settings.tmp_dir();
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("could not create DATA_DIR {}", settings.data_dir.display()))?;
    if tmp.exists() {
        remove_children(&tmp).with_context(|| format!("could not clean {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("could not create {}", tmp.display()))?;
    Ok(())
}

fn remove_children(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
