//! The project: `PROJECT_DIR/project.toml`, parsed and validated as a whole.
//!
//! Loading either yields a [`Project`] that every other module can trust
//! (every trigger a job names exists, cron expressions parse, flows have no
//! cycle, expression files were read from inside the project directory) or a
//! [`ProjectError`] listing every problem found in one pass, each naming the
//! file, the table, the key and its line. Credential values
//! written `{ env = "NAME" }` are read from the environment here (see
//! `credentials`). Nothing here touches the network, npm or the data
//! directory, and nothing is half-loaded: the service does not start on an
//! invalid project.

mod credentials;
mod delivery;
mod fields;
mod http;
mod library;
mod locate;
mod model;
mod paths;
pub mod plugins;
mod triggers;
mod validate;
mod webhooks;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use credentials::CredentialEnv;
pub use http::HttpConfig;
pub use library::LibraryConfig;
pub use model::{
    AdaptorSpec, ClusterConfig, DEFAULT_COMMITS, DirBase, DirGrant, EngineConfig, EngineMode,
    InboxConfig, Job, PluginSpec, PollSchedule, Project, RetryPolicy, Trigger, TriggerKind,
};
pub use paths::read_inside;
pub use webhooks::{Reply, SecretDigest, WebhookAuth, digest as secret_digest};

/// What is wrong with a project, precise enough to fix without guessing.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error("{}: cannot read the project file: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", file.display())]
    Syntax { file: PathBuf, message: String },
    #[error("{}: {}{}{}: {message}", file.display(), table_label(table), key_label(key), line_label(*line))]
    Invalid {
        file: PathBuf,
        /// Dotted table path, e.g. `jobs.job-1`; empty for the top level.
        table: String,
        key: Option<String>,
        /// Line of the key, or of its table when the key is not written.
        line: Option<usize>,
        message: String,
    },
    /// Every problem of a project that has more than one, in file order.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Many(Vec<ProjectError>),
}

impl ProjectError {
    /// Each problem on its own: one line of output per item.
    pub fn problems(&self) -> Vec<&ProjectError> {
        match self {
            ProjectError::Many(all) => all.iter().collect(),
            one => vec![one],
        }
    }
}

fn table_label(table: &str) -> String {
    if table.is_empty() {
        "top level".into()
    } else {
        format!("[{table}]")
    }
}

fn key_label(key: &Option<String>) -> String {
    key.as_ref().map(|k| format!(" {k}")).unwrap_or_default()
}

fn line_label(line: Option<usize>) -> String {
    line.map(|l| format!(" (line {l})")).unwrap_or_default()
}

/// Reads a variable of the process environment, for `{ env = "NAME" }`.
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Project {
    /// Reads and validates `dir/project.toml`, taking `{ env = "NAME" }`
    /// credential values from the process environment.
    pub fn load(dir: &Path) -> Result<Project, ProjectError> {
        Self::load_with(dir, CredentialEnv::Resolve(&process_env))
    }

    /// Reads and validates `dir/project.toml`, treating credential env
    /// references as `env` says.
    pub fn load_with(dir: &Path, env: CredentialEnv) -> Result<Project, ProjectError> {
        let file = dir.join("project.toml");
        let source = std::fs::read_to_string(&file).map_err(|source| ProjectError::Read {
            file: file.clone(),
            source,
        })?;
        Self::parse_with(dir, &file, &source, env)
    }

    /// Validates `source` as the text of `file`, resolving paths inside `dir`
    /// and credential env references from the process environment.
    pub fn parse(dir: &Path, file: &Path, source: &str) -> Result<Project, ProjectError> {
        Self::parse_with(dir, file, source, CredentialEnv::Resolve(&process_env))
    }

    /// [`Project::parse`] with credential env references looked up through
    /// `env` (tests pass a map instead of mutating the process environment).
    pub fn parse_with(
        dir: &Path,
        file: &Path,
        source: &str,
        env: CredentialEnv,
    ) -> Result<Project, ProjectError> {
        validate::parse(dir, file, source, env)
    }
}
