//! `microservice migrate`: brings the PostgreSQL schema up to date and
//! exits, as `serve` does at start-up (under the same advisory lock).

use std::process::ExitCode;

use crate::project::{CredentialEnv, Project};
use crate::settings::Settings;
use crate::storage::postgres::Postgres;

pub async fn migrate(settings: &Settings) -> anyhow::Result<ExitCode> {
    let url = match &settings.database_url {
        Some(url) => Some(url.clone()),
        // `[cluster] database_url` when there is a project; its other
        // secrets need not be set for this.
        None if settings.project_dir.join("project.toml").exists() => {
            let lookup = |name: &str| std::env::var(name).ok();
            let project =
                Project::load_with(&settings.project_dir, CredentialEnv::Resolve(&lookup));
            match project {
                Ok(p) => p.cluster.database_url,
                Err(e) => {
                    for problem in e.problems() {
                        eprintln!("error: {problem}");
                    }
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        None => None,
    };
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
    Ok(ExitCode::SUCCESS)
}
