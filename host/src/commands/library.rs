//! `microservice library search|export|import`: the jobs library from the
//! command line.
//!
//! `search` and `export` answer as `GET /api/library` would, from the same
//! catalog (the project's opted-in jobs and the library folder) and the
//! same figures, read from the service's store without writing to it (the
//! embedded store is opened read-only, so a running service is not
//! disturbed). `import` writes library files only: never the project file
//! and never the store.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde::Deserialize;

use crate::library::{Catalog, Found, Query, WINDOW_DAYS, folder};
use crate::packages::Packages;
use crate::project::{AdaptorSpec, Project};
use crate::settings::Settings;
use crate::storage::embedded::SqliteRuns;
use crate::storage::postgres::Postgres;
use crate::storage::{JobRuns, Runs};

/// What `library search` asks for, as given.
pub struct Wanted {
    pub adaptor: Option<String>,
    pub version: Option<String>,
    pub helper: Option<String>,
    pub q: Option<String>,
    pub limit: usize,
}

pub async fn search(settings: &Settings, wanted: Wanted, json: bool) -> anyhow::Result<ExitCode> {
    let (project, catalog) = catalog(settings)?;
    // The API's own reading of its parameters: the same checks, the same errors.
    let mut raw = form_urlencoded::Serializer::new(String::new());
    for (key, value) in [
        ("adaptor", wanted.adaptor),
        ("version", wanted.version),
        ("helper", wanted.helper),
        ("q", wanted.q),
        ("limit", Some(wanted.limit.to_string())),
    ] {
        if let Some(value) = value {
            raw.append_pair(key, &value);
        }
    }
    let query = match Query::parse(Some(&raw.finish()), &catalog) {
        Ok(q) => q,
        Err(errors) => {
            for e in errors {
                eprintln!("error: {e}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    let found = catalog.search(&query, &figures(settings, &project).await?);
    if json {
        println!("{}", serde_json::to_string_pretty(&found)?);
    } else {
        print_found(&found);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn export(settings: &Settings) -> anyhow::Result<ExitCode> {
    let (project, catalog) = catalog(settings)?;
    let everything = Query {
        limit: usize::MAX,
        ..Query::default()
    };
    let found = catalog.search(&everything, &figures(settings, &project).await?);
    println!("{}", serde_json::to_string_pretty(&found)?);
    Ok(ExitCode::SUCCESS)
}

/// One entry of an exported file: what import needs of it.
#[derive(Deserialize)]
struct Exported {
    expression: String,
    adaptor: String,
    version: Option<String>,
}

pub fn import(settings: &Settings, file: &Path) -> anyhow::Result<ExitCode> {
    let mut text = String::new();
    if file == Path::new("-") {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
    }
    let entries: Vec<Exported> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a file `library export` wrote (a JSON list of entries with expression, adaptor and version)",
            file.display()
        )
    })?;
    let dir = folder::dir(&settings.project_dir);
    let (mut added, mut present, mut refused) = (0, 0, 0);
    for (i, entry) in entries.iter().enumerate() {
        let spec = match &entry.version {
            Some(v) => format!("{}@{v}", entry.adaptor),
            None => entry.adaptor.clone(),
        };
        let why = match AdaptorSpec::parse(&spec) {
            Err(why) => Some(why),
            Ok(_) if entry.expression.trim().is_empty() => Some("no expression".to_string()),
            Ok(spec) => match crate::expression::syntax_errors(&entry.expression).first() {
                Some(e) => Some(format!("syntax error at {e}")),
                None => {
                    if folder::write(&dir, &spec, &entry.expression)
                        .with_context(|| format!("cannot write into {}", dir.display()))?
                    {
                        added += 1;
                    } else {
                        present += 1;
                    }
                    None
                }
            },
        };
        if let Some(why) = why {
            eprintln!("warning: entry {} left out: {why}", i + 1);
            refused += 1;
        }
    }
    println!(
        "ok: {}: {added} added, {present} already there, {refused} left out",
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn catalog(settings: &Settings) -> anyhow::Result<(Project, Catalog)> {
    // Credentials are read as `serve` reads them: their values are what
    // the answer masks in expressions.
    let project = Project::load(&settings.project_dir)?;
    let (catalog, problems) = Catalog::build(&project, &Packages::new(&settings.packages_dir));
    for problem in problems {
        eprintln!("warning: left out of the library: {problem}");
    }
    Ok((project, catalog))
}

/// Each job's runs of the library's window, from the service's store.
async fn figures(settings: &Settings, project: &Project) -> anyhow::Result<Vec<JobRuns>> {
    let window_ms = WINDOW_DAYS as u64 * 24 * 3600 * 1000;
    let since = crate::clock::rfc3339(crate::clock::now_ms().saturating_sub(window_ms));
    let database = settings
        .database_url
        .as_ref()
        .or(project.cluster.database_url.as_ref());
    let runs = match database {
        Some(url) => {
            let pg = Postgres::new(url, 0)?;
            pg.storage().runs.runs_by_job_since(&since).await?
        }
        None => match SqliteRuns::open_read_only(&settings.data_dir.join("microservice.db"))? {
            Some(store) => store.runs_by_job_since(&since).await?,
            None => Vec::new(),
        },
    };
    Ok(runs)
}

fn print_found(found: &[Found]) {
    if found.is_empty() {
        println!("no expression matches");
        return;
    }
    for f in found {
        let rate = f
            .success_rate_last90
            .map(|r| format!("{:.1}%", r * 100.0))
            .unwrap_or_else(|| "-".into());
        let helpers: Vec<String> = f.helpers.iter().map(|(h, n)| format!("{h}×{n}")).collect();
        println!(
            "score {:.3}  runs {}  success {rate}  {}  {}@{}  {}",
            f.score,
            f.runs_last90,
            f.source,
            f.adaptor,
            f.version.as_deref().unwrap_or("?"),
            helpers.join(" ")
        );
        for line in f.expression.lines() {
            println!("    {line}");
        }
    }
}
