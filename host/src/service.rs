//! Start-up and shutdown: the order things happen in.
//!
//! Start-up validates the project, prepares `DATA_DIR`, installs what is
//! missing and opens the store, all before the port opens, so a service that
//! listens is a service that can run its jobs. Shutdown (SIGTERM or Ctrl-C)
//! stops accepting and scheduling, then gives requests and runs in flight the
//! grace period before killing what is left.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::dispatch::Dispatcher;
use crate::engine::Engine;
use crate::http::{self, App};
use crate::packages::Packages;
use crate::project::Project;
use crate::settings::Settings;
use crate::store::Store;

/// `microservice install`: validate the project and install its packages.
pub async fn install(settings: &Settings) -> anyhow::Result<()> {
    let project = Project::load(&settings.project_dir)?;
    install_packages(settings, &project).await
}

async fn install_packages(settings: &Settings, project: &Project) -> anyhow::Result<()> {
    let mut specs = vec![project.engine.core.clone()];
    specs.extend(project.adaptors());
    std::fs::create_dir_all(&settings.packages_dir).with_context(|| {
        format!(
            "could not create PACKAGES_DIR {}",
            settings.packages_dir.display()
        )
    })?;
    Packages::new(&settings.packages_dir)
        .ensure(&specs, |line| info!("{line}"))
        .await?;
    Ok(())
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
    install_packages(&settings, &project).await?;
    let store = Store::open(&settings.data_dir.join("microservice.db"))?;
    let engine = Engine::new(
        &project.engine.node,
        Packages::new(&settings.packages_dir),
        &project.engine.core,
        settings.tmp_dir(),
    );
    let dispatcher = Dispatcher::new(project.clone(), engine, store);

    let listener = TcpListener::bind((settings.host.as_str(), settings.port))
        .await
        .with_context(|| {
            format!(
                "could not listen on {}:{} (set PORT or HOST_URL)",
                settings.host, settings.port
            )
        })?;
    let addr = listener.local_addr()?;
    info!(style = ?settings.endpoint_style, "listening on http://{addr}");

    let stop = CancellationToken::new();
    let schedulers = TaskTracker::new();
    crate::cron::start(&dispatcher, &stop, &schedulers);
    let app = Arc::new(App {
        dispatcher: dispatcher.clone(),
        endpoint_style: settings.endpoint_style,
    });
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
    info!("stopped");
    Ok(())
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
