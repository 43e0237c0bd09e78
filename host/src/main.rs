//! The `microservice` binary: reads `.env` and flags, sets up logging, and
//! hands over to the library. Everything else lives in the library, where
//! the tests can reach it.

use std::process::ExitCode;

use clap::Parser;
use microservice::cli::{Cli, Command};
use microservice::settings::Settings;
use microservice::{logging, service};

fn main() -> ExitCode {
    let dotenv = dotenvy::dotenv();
    let cli = Cli::parse();
    logging::init();
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
            runtime.block_on(async {
                match cli.command.unwrap_or(Command::Serve) {
                    Command::Serve => service::serve(settings).await,
                    Command::Install => service::install(&settings).await,
                }
            })
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
