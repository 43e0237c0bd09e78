//! What each subcommand of the binary does, one module per command; the
//! flags themselves are in [`crate::cli`].
//!
//! Commands print their results on stdout and their diagnostics on stderr
//! (never the other way round: `run`'s stdout is a JSON document that a
//! pipeline reads), and return the process's exit code. None of them opens
//! a port, and only `serve` writes to the service's store (`library`
//! reads its run figures).

mod check;
mod import;
mod install;
mod library;
mod migrate;
mod new;
mod plugin;
mod run;

use std::process::ExitCode;

use crate::cli::{Command, LibraryCommand, PluginCommand};
use crate::project::Project;
use crate::service;
use crate::settings::Settings;

/// Runs one command to its end.
pub async fn execute(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve => service::serve(settings).await.map(|()| ExitCode::SUCCESS),
        Command::Run { job, data, state } => run::run(&settings, &job, data, state).await,
        Command::Check => check::check(&settings).await,
        Command::Import { file, out, force } => import::import(&file, out, force),
        Command::Install => install::install(&settings).await,
        Command::Migrate { from_embedded } => migrate::migrate(&settings, from_embedded).await,
        Command::Library(LibraryCommand::Search {
            adaptor,
            version,
            helper,
            q,
            limit,
            json,
        }) => {
            let wanted = library::Wanted {
                adaptor,
                version,
                helper,
                q,
                limit,
            };
            library::search(&settings, wanted, json).await
        }
        Command::Library(LibraryCommand::Export) => library::export(&settings).await,
        Command::Library(LibraryCommand::Import { file }) => library::import(&settings, &file),
        Command::Plugin(PluginCommand::List { json }) => plugin::list(&settings, json).await,
        Command::Plugin(PluginCommand::Inspect { file, json }) => {
            plugin::inspect(&settings, &file, json).await
        }
        Command::Plugin(PluginCommand::New {
            kind,
            name,
            lang,
            dir,
        }) => new::new(kind, &name, lang, dir),
    }
}

/// The project, or `None` when `PROJECT_DIR` has no `project.toml` (plugins
/// are then judged with no grants, as the service would judge a plugin
/// without a table).
fn project_if_any(settings: &Settings) -> anyhow::Result<Option<Project>> {
    if !settings.project_dir.join("project.toml").exists() {
        return Ok(None);
    }
    // Grants need no secrets: credential variables may be unset here.
    Ok(Some(Project::load_with(
        &settings.project_dir,
        crate::project::CredentialEnv::Skip,
    )?))
}
