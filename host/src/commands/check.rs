//! `microservice check`: everything the service would refuse at start-up
//! or when loading a plugin, found without starting it.
//!
//! The project goes through the same parser as `serve`, which lists every
//! problem it finds (one line each, counted one by one); every `.wasm` in
//! the plugins folder is compiled by the service's own plugin runtime and
//! checked against its world and its `[plugins.<name>]` grants. Every job
//! expression and every file of the library folder is parsed as
//! JavaScript, so a syntax error is found here, with its line and column,
//! rather than when the job first runs. Errors go to stderr, one per
//! problem; the summary to stdout. Writes nothing.

use std::process::ExitCode;

use super::plugin::{inspector, unreadable, wasm_files};
use crate::packages::Packages;
use crate::plugins::Kind;
use crate::project::Project;
use crate::settings::Settings;

pub async fn check(settings: &Settings) -> anyhow::Result<ExitCode> {
    let mut errors = 0usize;
    let file = settings.project_dir.join("project.toml");
    let project = match Project::load(&settings.project_dir) {
        Ok(p) => {
            println!(
                "ok: {}: {} job{}, {} trigger{}, {} credential{}, {} plugin table{}",
                file.display(),
                p.jobs.len(),
                plural(p.jobs.len()),
                p.triggers.len(),
                plural(p.triggers.len()),
                p.credentials.len(),
                plural(p.credentials.len()),
                p.plugins.len(),
                plural(p.plugins.len()),
            );
            Some(p)
        }
        Err(e) => {
            for problem in e.problems() {
                eprintln!("error: {problem}");
                errors += 1;
            }
            None
        }
    };

    let inspector = inspector(settings, project.as_ref())?;
    let files = wasm_files(&settings.plugins_dir)?;
    let mut persistence = Vec::new();
    let (mut loading, mut disabled) = (0usize, 0usize);
    for path in &files {
        let i = inspector
            .inspect(path)
            .await
            .unwrap_or_else(|why| unreadable(path, why));
        let kind_name = i.kind.map(|k| format!("{k:?}").to_lowercase());
        if i.disabled {
            // The service skips a disabled file, so nothing in it stops a start.
            match &i.refusal {
                None => println!(
                    "ok: {}: {} plugin `{}` is disabled (it would load if enabled)",
                    path.display(),
                    kind_name.as_deref().unwrap_or("?"),
                    i.name
                ),
                Some(why) => eprintln!(
                    "warning: {}: plugin `{}` is disabled, and would not load if enabled: {why}",
                    path.display(),
                    i.name
                ),
            }
            disabled += 1;
            continue;
        }
        match (&i.refusal, i.kind) {
            (None, Some(kind)) => {
                loading += 1;
                println!(
                    "ok: {}: {} plugin `{}`",
                    path.display(),
                    format!("{kind:?}").to_lowercase(),
                    i.name
                );
                if kind == Kind::Persistence {
                    persistence.push(i.name.clone());
                }
                // Loads, but the calls that need it will fail: say so now.
                for c in i
                    .capabilities
                    .iter()
                    .filter(|c| !c.granted && matches!(c.name, "http" | "folders"))
                {
                    eprintln!(
                        "warning: {}: plugin `{}` imports {} but {}",
                        path.display(),
                        i.name,
                        c.imports.join(", "),
                        c.detail
                    );
                }
            }
            (why, _) => {
                eprintln!(
                    "error: {}: plugin `{}` would not load: {}",
                    path.display(),
                    i.name,
                    why.as_deref().unwrap_or("unknown reason")
                );
                errors += 1;
            }
        }
    }
    for spec in project.iter().flat_map(|p| p.plugins.values()) {
        if spec.enabled && !files.iter().any(|f| f.ends_with(&spec.file)) {
            eprintln!(
                "warning: {}: [plugins.{}] names {}, which is not in {} (it is loaded when it appears)",
                file.display(),
                spec.name,
                spec.file,
                settings.plugins_dir.display()
            );
        }
    }

    if let Some(p) = &project {
        errors += expressions(p);
        let store = &p.inbox.store;
        let database = settings
            .database_url
            .as_ref()
            .or(p.cluster.database_url.as_ref());
        if let Some(url) = database {
            let target = url
                .target()
                .map(|t| t.to_string())
                .unwrap_or_else(|| "?".into());
            println!(
                "ok: storage: PostgreSQL at {target} (from {}): receipts, runs, job states and cron ticks are kept there",
                if settings.database_url.is_some() {
                    "DATABASE_URL"
                } else {
                    "[cluster] database_url"
                }
            );
            if store != crate::project::plugins::JOURNAL {
                println!(
                    "note: {}: [inbox] store = \"{store}\" is not used: with PostgreSQL receipts are kept in the database, and the message-store plugin is not loaded as the store",
                    file.display()
                );
            }
        } else if p.inbox.durable
            && store != crate::project::plugins::JOURNAL
            && !persistence.contains(store)
        {
            eprintln!(
                "error: {}: [inbox] store = \"{store}\" names no persistence plugin that would load from {}; the service would not start",
                file.display(),
                settings.plugins_dir.display()
            );
            errors += 1;
        }
        let packages = Packages::new(&settings.packages_dir);
        let mut specs = vec![p.engine.core.clone()];
        specs.extend(p.adaptors());
        let missing: Vec<String> = specs
            .iter()
            .filter(|s| packages.installed_version(s).is_none())
            .map(|s| s.to_string())
            .collect();
        if !missing.is_empty() {
            println!(
                "note: not installed in {} yet: {} (`microservice install`, or the first `serve`, installs them)",
                settings.packages_dir.display(),
                missing.join(", ")
            );
        }
    }

    if errors > 0 {
        eprintln!("{errors} error{} found", plural(errors));
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "ok: the project and {loading} plugin{} would load{}",
        plural(loading),
        if disabled > 0 {
            format!(" ({disabled} disabled)")
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints each syntax error of each job expression and library file, with
/// where it is; returns how many.
fn expressions(p: &Project) -> usize {
    let mut errors = 0;
    for job in p.jobs.values() {
        let mut found = crate::expression::syntax_errors(&job.expression);
        if found.is_empty()
            && let Err(e) = &job.compiled
        {
            found.push(e.clone());
        }
        for e in found {
            match &job.expression_file {
                Some(file) => eprintln!(
                    "error: {}: job `{}`: line {}, column {}: syntax error: {}",
                    p.dir.join(file).display(),
                    job.name,
                    e.line,
                    e.column,
                    e.message
                ),
                None => eprintln!(
                    "error: {}: [jobs.{}] expression: line {}, column {} of the expression: syntax error: {}",
                    p.file.display(),
                    job.name,
                    e.line,
                    e.column,
                    e.message
                ),
            }
            errors += 1;
        }
    }
    let dir = crate::library::folder::dir(&p.dir);
    let (files, problems) = crate::library::folder::read(&dir);
    for problem in &problems {
        eprintln!("error: {problem}");
    }
    if !files.is_empty() {
        println!(
            "ok: {}: {} library file{}",
            dir.display(),
            files.len(),
            plural(files.len())
        );
    }
    errors + problems.len()
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
