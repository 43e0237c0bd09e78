//! The command line: `microservice [serve]` and `microservice install`.
//!
//! Settings come from the environment (and `.env`), as in the original, so
//! the subcommands take few flags of their own.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "microservice",
    version,
    about = "Receives JSON receipts and runs OpenFn jobs with @openfn/core",
    after_help = "Configuration comes from the environment or a .env file:\n  PORT (4001), HOST_URL (127.0.0.1; 0.0.0.0 in a container), ENDPOINT_STYLE (async|sync),\n  PROJECT_DIR (./project), DATA_DIR (PROJECT_DIR/.microservice), PACKAGES_DIR (DATA_DIR/packages),\n  LOG_FORMAT (pretty|json), LOG_LEVEL (info)\n\nExample:\n  PROJECT_DIR=./project PORT=4001 microservice serve"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the project, install what it needs, and serve (the default).
    #[command(after_help = "Example:\n  PROJECT_DIR=./project microservice serve")]
    Serve,
    /// Install @openfn/core and every adaptor the project names, then exit.
    #[command(
        after_help = "Example:\n  PROJECT_DIR=./project PACKAGES_DIR=/opt/openfn microservice install"
    )]
    Install,
}
