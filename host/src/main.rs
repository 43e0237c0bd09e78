//! The `microservice` binary: reads `.env` and flags, sets up logging, and
//! hands over to the library. Everything else lives in the library, where
//! the tests can reach it.

use std::process::ExitCode;

use clap::Parser;
use microservice::cli::{Cli, Command};
use microservice::project::ProjectError;
use microservice::settings::Settings;
use microservice::{commands, logging};

// glibc's malloc was a tenth of the CPU of a busy inbox (many small,
// short-lived allocations across worker threads); mimalloc handles that
// pattern with per-thread free lists.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let dotenv = dotenvy::dotenv();
    let command = Cli::parse().command.unwrap_or(Command::Serve);
    let serving = matches!(command, Command::Serve);
    logging::init(command.default_log_level());
    if let Err(e) = dotenv
        && !e.not_found()
    {
        tracing::error!("could not read .env: {e}");
        return ExitCode::FAILURE;
    }
    let result = Settings::from_env()
        .map_err(anyhow::Error::from)
        .and_then(|settings| {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(commands::execute(command, settings))
        });
    match result {
        Ok(code) => code,
        Err(e) => {
            // An invalid project is a list of problems, one line each.
            let project = e.downcast_ref::<ProjectError>();
            let lines: Vec<String> = match project {
                Some(p) => p.problems().iter().map(ToString::to_string).collect(),
                None => vec![format!("{e:#}")],
            };
            // The service's log may go to a collector; a one-shot command's
            // user reads stderr, where the lines below already are (after
            // the log's, so the list reads as one block, as `check` prints it).
            if serving {
                for line in &lines {
                    tracing::error!("{line}");
                }
            }
            for line in &lines {
                eprintln!("error: {line}");
            }
            if project.is_some() {
                let n = lines.len();
                eprintln!("{n} error{} found", if n == 1 { "" } else { "s" });
            }
            ExitCode::FAILURE
        }
    }
}
