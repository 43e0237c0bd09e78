//! The command line: clap's definitions of `microservice` and its
//! subcommands, and nothing else. What each subcommand does lives in
//! [`crate::commands`].
//!
//! Settings come from the environment (and `.env`), as in the original, so
//! the subcommands take few flags of their own.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "microservice",
    version,
    about = "Receives JSON receipts and runs OpenFn jobs with @openfn/core",
    after_help = "Configuration comes from the environment or a .env file:\n  PORT (4001), HOST_URL (127.0.0.1; 0.0.0.0 in a container), ENDPOINT_STYLE (async|sync),\n  PROJECT_DIR (./project), DATA_DIR (PROJECT_DIR/.microservice), PACKAGES_DIR (DATA_DIR/packages),\n  PLUGINS_DIR (PROJECT_DIR/plugins), ENGINE_MODE (worker|cli), LOG_FORMAT (pretty|json), LOG_LEVEL (info),\n  DATABASE_URL (unset: the embedded store in DATA_DIR; set: PostgreSQL, shared by replicas)\n\nExamples:\n  PROJECT_DIR=./project PORT=4001 microservice serve\n  echo '{\"number\": 2}' | microservice run job-1 --data -\n  microservice check && microservice serve"
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

    /// Run one job of the project once and print its final state as JSON.
    ///
    /// The job runs through the configured engine (ENGINE_MODE or [engine]
    /// mode) with its credential as `configuration`, exactly as the service
    /// would run it. Its log goes to stderr; its final state, without
    /// `configuration`, to stdout. The exit code is 0 when the run succeeded,
    /// the run's own exit code when it failed (124 for a timeout, 1 when it
    /// has none). Nothing is stored: no run record, no job state, no flows.
    #[command(
        after_help = "The initial state is --state (default {\"data\": {}}); --data replaces its `data`.\n`-` reads stdin, so runs compose in a pipeline.\n\nExamples:\n  echo '{\"number\": 2}' | microservice run job-1 --data -\n  microservice run job-1 --data receipt.json | microservice run flow-job --state -\n  curl -s localhost:4001/api/jobs/heartbeat/state > s.json && microservice run heartbeat --state s.json"
    )]
    Run {
        /// The job's name, as in `[jobs.<name>]`.
        job: String,
        /// A JSON file (or `-` for stdin) that becomes the state's `data`.
        #[arg(long, value_name = "FILE|-")]
        data: Option<PathBuf>,
        /// A JSON file (or `-` for stdin) holding the whole initial state.
        #[arg(long, value_name = "FILE|-")]
        state: Option<PathBuf>,
    },

    /// Validate project.toml and every plugin in the plugins folder, without serving.
    ///
    /// Every plugin is compiled with the service's own plugin runtime and
    /// checked against its world and its `[plugins.<name>]` grants. Prints
    /// each error (with file, table, key and line) and exits 1 if there is
    /// any; prints a short summary and exits 0 otherwise. Writes nothing.
    #[command(after_help = "Example:\n  PROJECT_DIR=./project microservice check")]
    Check,

    /// Convert the original microservice's project.yaml into project.toml and jobs/<name>.js.
    ///
    /// Unknown fields are reported on stderr and kept as comments in
    /// project.toml. The result is validated before anything is written, and
    /// an existing project.toml is never overwritten without --force.
    #[command(
        after_help = "Examples:\n  microservice import ./sample-project/project.yaml\n  microservice import project.yaml --out ./project && PROJECT_DIR=./project microservice check"
    )]
    Import {
        /// The original's project.yaml.
        file: PathBuf,
        /// Where project.toml and jobs/ are written (default: the YAML file's folder).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Overwrite an existing project.toml and job files.
        #[arg(long)]
        force: bool,
    },

    /// Install @openfn/core and every adaptor the project names, then exit.
    ///
    /// Installs into PACKAGES_DIR only what is missing, so a second run does
    /// no npm work at all.
    #[command(
        after_help = "Example:\n  PROJECT_DIR=./project PACKAGES_DIR=/opt/openfn microservice install"
    )]
    Install,

    /// Bring the PostgreSQL database's schema up to date, then exit.
    ///
    /// Needs DATABASE_URL (or `[cluster] database_url` in project.toml).
    /// `serve` migrates at start-up too; this runs the migrations alone, e.g.
    /// as a deployment step before the replicas roll. Replicas and this
    /// command take one advisory lock first, so only one migrates at a time.
    ///
    /// With --from-embedded, then copies an embedded deployment's receipts
    /// (pending, dead and done), run records, job states and pending flows
    /// from DATA_DIR into the database, keeping their ids: idempotent, so
    /// it can be run again. Stop the embedded service first.
    #[command(
        after_help = "Examples:\n  DATABASE_URL=postgres://app:secret@db:5432/microservice microservice migrate\n  DATA_DIR=/var/lib/microservice DATABASE_URL=... microservice migrate --from-embedded"
    )]
    Migrate {
        /// Also copy what the embedded store in DATA_DIR holds.
        #[arg(long)]
        from_embedded: bool,
    },

    /// Search, export or import the jobs library.
    #[command(
        subcommand,
        after_help = "Examples:\n  microservice library search --adaptor common --helper each\n  microservice library export > library.json\n  microservice library import library.json"
    )]
    Library(LibraryCommand),

    /// List or inspect WebAssembly plugins.
    #[command(
        subcommand,
        after_help = "Examples:\n  microservice plugin list\n  microservice plugin inspect project/plugins/file_drop.wasm"
    )]
    Plugin(PluginCommand),
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// The plugins folder: each file's name, kind, size and whether it would load.
    #[command(after_help = "Example:\n  PROJECT_DIR=./project microservice plugin list --json")]
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One plugin file: kind, WIT world and version, exports, imports, size,
    /// and whether it would load under the project's grants.
    #[command(
        after_help = "Example:\n  microservice plugin inspect project/plugins/webhook_notify.wasm"
    )]
    Inspect {
        /// The `.wasm` component (in the plugins folder or anywhere).
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write a new plugin project: a working example of the kind, the WIT
    /// it builds against, a one-command build script, a README and the
    /// [plugins.<name>] table to paste.
    #[command(
        after_help = "Example:\n  microservice plugin new notification run-alerts --lang rust\n  ./run-alerts/build.sh && cp run-alerts/run-alerts.wasm project/plugins/"
    )]
    New {
        /// trigger, notification, logging or persistence.
        kind: PluginKind,
        /// The plugin's name (lowercase letters, digits, dashes): its table,
        /// crate and file name.
        name: String,
        /// The language of the project.
        #[arg(long, value_enum, default_value = "rust")]
        lang: PluginLang,
        /// Where to write it (default: ./<name>); must not exist or be empty.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum LibraryCommand {
    /// The library's expressions that match, best first, as `GET
    /// /api/library` answers (figures from the service's run records).
    #[command(
        after_help = "Example:\n  microservice library search --adaptor common --helper each --version '^3'"
    )]
    Search {
        /// The adaptor: `common`, `language-common` or `@openfn/language-common`.
        #[arg(long)]
        adaptor: Option<String>,
        /// A semver range of the adaptor's version (`^3`, `>=3.1 <4`, `3.3.4`).
        #[arg(long)]
        version: Option<String>,
        /// A helper the expression must call (`each`, `fn`, `createTEI`).
        #[arg(long)]
        helper: Option<String>,
        /// Text the expression must contain (any case).
        #[arg(long)]
        q: Option<String>,
        /// How many to show (1 to 100).
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Every entry of the library as JSON, with its figures: the shareable
    /// file `library import` reads (expressions, adaptors, figures; no
    /// state, data, log or credential).
    #[command(after_help = "Example:\n  microservice library export > library.json")]
    Export,
    /// Adds the expressions of an exported file to the library folder
    /// (PROJECT_DIR/library/), one `.js` file each, skipping those it
    /// already holds (the same expression) and those that do not parse.
    #[command(
        after_help = "Example:\n  microservice library import library.json && microservice check"
    )]
    Import {
        /// A file written by `library export` (or `-` for stdin).
        #[arg(value_name = "FILE|-")]
        file: PathBuf,
    },
}

/// The kinds of plugin, as `plugin new` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PluginKind {
    Trigger,
    Notification,
    Logging,
    Persistence,
}

/// The languages `plugin new` writes projects in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PluginLang {
    Rust,
    Python,
    /// JavaScript (componentize-js).
    Js,
}

impl Command {
    /// The log level when neither LOG_LEVEL nor RUST_LOG says: the service
    /// narrates at `info`; one-shot commands print their own output and
    /// keep the log for warnings.
    pub fn default_log_level(&self) -> &'static str {
        match self {
            Command::Serve => "info",
            _ => "warn",
        }
    }
}
