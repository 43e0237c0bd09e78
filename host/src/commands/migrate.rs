//! `microservice migrate`: brings the PostgreSQL schema up to date and
//! exits, as `serve` does at start-up (under the same advisory lock); with
//! `--from-embedded`, then copies an embedded deployment's `DATA_DIR` in
//! (see [`crate::storage::postgres::from_embedded`]).
//!
//! It never starts a run or delivers a receipt: the embedded store is
//! opened only to be read.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::plugins::PluginHost;
use crate::project::{CredentialEnv, Project};
use crate::settings::Settings;
use crate::storage::postgres::Postgres;
use crate::storage::postgres::from_embedded::Embedded;
use crate::storage::{ReceiptStatus, Receipts, embedded};

pub async fn migrate(settings: &Settings, from_embedded: bool) -> anyhow::Result<ExitCode> {
    let has_project = settings.project_dir.join("project.toml").exists();
    // Its other secrets need not be set for this: only `[cluster]
    // database_url` and the message store's table are read.
    let project = if has_project {
        let lookup = |name: &str| std::env::var(name).ok();
        match Project::load_with(&settings.project_dir, CredentialEnv::Resolve(&lookup)) {
            Ok(p) => Some(p),
            Err(e) => {
                for problem in e.problems() {
                    eprintln!("error: {problem}");
                }
                return Ok(ExitCode::FAILURE);
            }
        }
    } else {
        None
    };
    let url = settings.database_url.clone().or_else(|| {
        project
            .as_ref()
            .and_then(|p| p.cluster.database_url.clone())
    });
    let Some(url) = url else {
        eprintln!(
            "error: no database to migrate: set DATABASE_URL (or [cluster] database_url in project.toml); without one the service keeps everything in DATA_DIR and needs no migration"
        );
        return Ok(ExitCode::from(2));
    };
    let pg = Postgres::new(&url, 0)?;
    let report = pg.migrate().await?;
    if report.applied.is_empty() {
        println!(
            "ok: {}: the schema is up to date (version {})",
            pg.target(),
            report.version.unwrap_or(0)
        );
    } else {
        for m in &report.applied {
            println!("applied: {m}");
        }
        println!(
            "ok: {}: migrated to version {}",
            pg.target(),
            report.version.unwrap_or(0)
        );
    }
    if from_embedded {
        return copy_embedded(settings, project.as_ref(), &pg).await;
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads `DATA_DIR`'s embedded store and copies it in.
async fn copy_embedded(
    settings: &Settings,
    project: Option<&Project>,
    pg: &Postgres,
) -> anyhow::Result<ExitCode> {
    let db = settings.data_dir.join("microservice.db");
    if !db.exists() {
        eprintln!(
            "error: no embedded store in DATA_DIR {}: {} does not exist (set DATA_DIR to the embedded deployment's folder)",
            settings.data_dir.display(),
            db.display()
        );
        return Ok(ExitCode::from(2));
    }
    let Some(project) = project else {
        eprintln!(
            "error: no project.toml in PROJECT_DIR {}: the project says which message store holds the receipts",
            settings.project_dir.display()
        );
        return Ok(ExitCode::from(2));
    };
    let runs = embedded::SqliteRuns::open(&db)?;
    let (runs, job_states, pending_flows) = runs.export().await?;

    let (stop, tracker) = (CancellationToken::new(), TaskTracker::new());
    let sink: crate::plugins::MessageSink = std::sync::Arc::new(|_| Box::pin(async {}));
    let options = crate::service::plugin_options(
        settings,
        project,
        std::sync::Arc::new(embedded::OneProcess),
    );
    let plugins = PluginHost::start(options, sink, stop.clone(), tracker.clone())?;
    let journal = crate::service::open_embedded_receipts(project, &plugins).await?;
    let mut receipts = Vec::new();
    for status in [
        ReceiptStatus::Pending,
        ReceiptStatus::Leased,
        ReceiptStatus::Dead,
        ReceiptStatus::Done,
    ] {
        receipts.extend(journal.list(status, u32::MAX).await?);
    }
    stop.cancel();
    tracker.close();

    let embedded = Embedded {
        receipts,
        runs,
        job_states,
        pending_flows,
    };
    let copied = pg
        .copy_from_embedded(&embedded, crate::clock::now_ms())
        .await?;
    for (what, (new, had)) in [
        ("receipts", copied.receipts),
        ("runs", copied.runs),
        ("job states", copied.job_states),
        ("pending flows", copied.pending_flows),
    ] {
        println!("copied: {new} {what} ({had} already in the database)");
    }
    println!(
        "ok: {} now holds what {} held; start the replicas with DATABASE_URL set",
        pg.target(),
        settings.data_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
