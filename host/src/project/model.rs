//! The validated project model: what the rest of the service reads.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::storage::postgres::DatabaseUrl;

pub use super::delivery::RetryPolicy;

#[derive(Debug)]
pub struct Project {
    pub dir: PathBuf,
    pub file: PathBuf,
    pub engine: EngineConfig,
    pub inbox: InboxConfig,
    pub http: super::http::HttpConfig,
    /// `[cluster]`: the shared database, when replicas share one.
    pub cluster: ClusterConfig,
    /// Sorted by name, so matched jobs come back in a stable order.
    pub jobs: BTreeMap<String, Arc<Job>>,
    pub triggers: BTreeMap<String, Trigger>,
    /// Credential bodies as JSON, handed to jobs as `configuration`, with
    /// `{ env = "NAME" }` values already replaced by the variable's value.
    pub credentials: BTreeMap<String, Value>,
    /// `[plugins.<name>]` tables: config and grants for plugin files.
    pub plugins: BTreeMap<String, PluginSpec>,
    /// `[plugins] max_memory`: the memory caps of the trigger, notification
    /// and logging instances alive at once add up to at most this.
    pub plugin_memory: usize,
    /// `[library]`: what the jobs library shares, and with whom.
    pub library: super::library::LibraryConfig,
}

/// How one plugin file is configured and what it may touch.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    pub name: String,
    /// File name inside the plugins folder.
    pub file: String,
    /// The plugin's own settings, values as text (non-strings as JSON).
    pub config: Vec<(String, String)>,
    /// `scheme://host[:port]` origins the plugin may send HTTP requests to.
    pub allowed_hosts: Vec<String>,
    pub dirs: Vec<DirGrant>,
    /// Deadline for one call.
    pub timeout: Duration,
    /// Cap on the plugin's linear memory, in bytes.
    pub memory_bytes: usize,
    /// How often a trigger plugin is polled.
    pub schedule: PollSchedule,
    pub enabled: bool,
}

/// A host directory a plugin may use, mounted at `guest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    pub base: DirBase,
    /// Relative to `base`; must stay inside it.
    pub path: String,
    pub guest: String,
    pub writable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirBase {
    Project,
    Data,
}

#[derive(Debug, Clone)]
pub enum PollSchedule {
    Every(Duration),
    Cron(Box<croner::Cron>),
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// npm spec of `@openfn/core`.
    pub core: AdaptorSpec,
    /// Default per-run timeout; a job's own `timeout` wins.
    pub timeout: Duration,
    /// Runs allowed at once, over all jobs.
    pub concurrency: usize,
    /// How long a shutdown waits for running runs before killing them.
    pub shutdown_grace: Duration,
    /// The `node` executable.
    pub node: String,
    pub mode: EngineMode,
    /// `worker` mode: memory limit of each worker (`--max-old-space-size`), MiB.
    pub worker_memory_mb: u32,
    /// `worker` mode: a worker is replaced after this many runs.
    pub recycle_after: u32,
}

/// How runs execute: a `core execute` process each (`cli`), or on warm
/// workers through core's JavaScript interface (`worker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineMode {
    Cli,
    Worker,
}

impl EngineMode {
    pub fn parse(text: &str) -> Option<EngineMode> {
        match text {
            "cli" => Some(EngineMode::Cli),
            "worker" => Some(EngineMode::Worker),
            _ => None,
        }
    }
}

/// `[cluster]`: what replicas sharing one PostgreSQL need.
#[derive(Debug, Clone, Default)]
pub struct ClusterConfig {
    /// `database_url = { env = "NAME" }`, resolved (`DATABASE_URL` in the
    /// environment wins over it). Never printed: see [`DatabaseUrl`].
    pub database_url: Option<DatabaseUrl>,
    /// `lease`: how long a replica's lease on a receipt lasts before another
    /// replica may deliver it (default: twice the longest job timeout plus a
    /// minute, so a slow run is never delivered twice).
    pub lease: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct InboxConfig {
    pub max_body_bytes: usize,
    /// Keep each receipt in the message store before answering 202.
    pub durable: bool,
    /// Name of the persistence plugin to use; `journal` is the built-in one.
    pub store: String,
    /// How long finished receipts are kept before compaction.
    pub retention: Duration,
    /// A body field whose value makes a re-sent receipt a no-op.
    pub idempotency_field: Option<String>,
}

#[derive(Debug)]
pub struct Job {
    pub name: String,
    pub adaptor: AdaptorSpec,
    pub expression: String,
    /// What the engine runs: `expression` made into code core 1.5.1 runs
    /// (lazy state, promise chains, newer syntax, module scope; see
    /// [`crate::expression::compile`]). `Ok(None)`: `expression` itself.
    /// `Err`: the compile step refused it, a compile failure for every run.
    pub compiled: Result<Option<String>, crate::expression::SyntaxError>,
    /// Where `expression` was read from (relative to the project), if from
    /// a file: a host file no plugin grant may reach.
    pub expression_file: Option<String>,
    /// The triggers that start it (`trigger = "t"` or `trigger = ["a", "b"]`),
    /// in the order written; never empty.
    pub triggers: Vec<String>,
    pub credential: Option<String>,
    pub timeout: Option<Duration>,
    pub retry: RetryPolicy,
    /// In the jobs library: its `library` key, else `[library] share_all`.
    pub library: bool,
}

impl Job {
    /// The code the engine runs, or why the compile step refused the job
    /// (its line and column are the expression's own).
    pub fn code(&self) -> Result<&str, String> {
        match &self.compiled {
            Ok(Some(code)) => Ok(code),
            Ok(None) => Ok(&self.expression),
            Err(e) => Err(format!("the expression did not compile: {e}")),
        }
    }
}

#[derive(Debug)]
pub struct Trigger {
    pub name: String,
    pub kind: TriggerKind,
    /// `enabled = false`: kept in the project (and shown) but never fires:
    /// no receipt, tick or upstream run starts its jobs.
    pub enabled: bool,
    /// Flow triggers only: a JavaScript expression over the state handed
    /// on (the upstream run's final state, or its input plus `errors` after
    /// a failure); the flow follows only when it is truthy. Evaluated by the
    /// engine's sandbox (see [`crate::engine::condition`]), never here.
    pub condition: Option<String>,
}

#[derive(Debug)]
pub enum TriggerKind {
    /// Receipts containing this JSON value start the trigger's jobs.
    Criteria(Value),
    /// The schedule, kept as text for display and parsed (with its time
    /// zone) for use.
    Cron {
        expression: String,
        schedule: Box<crate::cron::Schedule>,
        /// `cursor = "job"`: each tick starts from that job's last successful
        /// final state (Lightning's cursor job) instead of the ticking job's own.
        cursor: Option<String>,
    },
    /// `webhook = "orders"`: receipts at `POST /i/orders` start its jobs,
    /// without criteria; with its own keys, if any, and reply mode.
    Webhook {
        path: String,
        auth: super::webhooks::WebhookAuth,
        reply: super::webhooks::Reply,
    },
    /// Runs after a successful run of the named job.
    Success(String),
    /// Runs after a failed run of the named job.
    Failure(String),
    /// Runs after any run of the named job, successful or not.
    Always(String),
}

impl TriggerKind {
    pub fn label(&self) -> &'static str {
        match self {
            TriggerKind::Criteria(_) => "criteria",
            TriggerKind::Cron { .. } => "cron",
            TriggerKind::Webhook { .. } => "webhook",
            TriggerKind::Success(_) => "success",
            TriggerKind::Failure(_) => "failure",
            TriggerKind::Always(_) => "always",
        }
    }

    /// The upstream job of a flow trigger (`success`, `failure`, `always`).
    pub fn upstream(&self) -> Option<&str> {
        match self {
            TriggerKind::Success(up) | TriggerKind::Failure(up) | TriggerKind::Always(up) => {
                Some(up)
            }
            _ => None,
        }
    }
}

/// An npm package name with an optional version or range: `@openfn/language-common@3.3.4`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AdaptorSpec {
    pub name: String,
    pub version: Option<String>,
}

impl AdaptorSpec {
    /// Parses a registry spec. Only registry names are accepted (no paths,
    /// URLs or git specs), since the spec ends up in npm's argument list.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        let (name, version) = match spec.strip_prefix('@') {
            Some(rest) => match rest.split_once('@') {
                Some((n, v)) => (format!("@{n}"), Some(v)),
                None => (spec.to_string(), None),
            },
            None => match spec.split_once('@') {
                Some((n, v)) => (n.to_string(), Some(v)),
                None => (spec.to_string(), None),
            },
        };
        let body = name.strip_prefix('@').unwrap_or(&name);
        let parts: Vec<&str> = body.split('/').collect();
        let scoped = name.starts_with('@');
        let name_ok = !body.is_empty()
            && parts.len() == if scoped { 2 } else { 1 }
            && parts.iter().all(|p| {
                !p.is_empty()
                    && !p.starts_with('.')
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._~".contains(c))
            });
        if !name_ok {
            return Err(format!(
                "`{spec}` is not an npm package name (expected e.g. `@openfn/language-common` or `@openfn/language-common@3.3.4`)"
            ));
        }
        let version = match version {
            None => None,
            Some(v)
                if !v.is_empty()
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-+^~<>=*| ".contains(c)) =>
            {
                Some(v.to_string())
            }
            Some(v) => return Err(format!("`{v}` in `{spec}` is not an npm version or range")),
        };
        Ok(AdaptorSpec { name, version })
    }

    /// A directory name unique to this spec.
    pub fn dir_name(&self) -> String {
        let base = self.name.replace('/', "+");
        match &self.version {
            Some(v) => format!(
                "{base}@{}",
                v.replace(|c: char| !c.is_ascii_alphanumeric() && c != '.', "_")
            ),
            None => base,
        }
    }
}

impl std::fmt::Display for AdaptorSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{}@{v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

impl Project {
    /// The jobs' expression files, relative to the project directory.
    pub fn job_files(&self) -> Vec<String> {
        self.jobs
            .values()
            .filter_map(|j| j.expression_file.clone())
            .collect()
    }

    /// The jobs started by `trigger`, in name order.
    pub fn jobs_of(&self, trigger: &str) -> impl Iterator<Item = &Arc<Job>> {
        self.jobs
            .values()
            .filter(move |j| j.triggers.iter().any(|t| t == trigger))
    }

    /// The enabled triggers of `job`, with their names, in the order written.
    pub fn triggers_of<'a>(&'a self, job: &'a Job) -> impl Iterator<Item = &'a Trigger> {
        job.triggers
            .iter()
            .filter_map(|t| self.triggers.get(t))
            .filter(|t| t.enabled)
    }

    /// Every adaptor the jobs name, once each.
    pub fn adaptors(&self) -> Vec<AdaptorSpec> {
        let mut specs: Vec<AdaptorSpec> = self.jobs.values().map(|j| j.adaptor.clone()).collect();
        specs.sort();
        specs.dedup();
        specs
    }

    /// The credential body a job runs with, if it names one.
    pub fn configuration_of(&self, job: &Job) -> Option<&Value> {
        job.credential
            .as_ref()
            .and_then(|c| self.credentials.get(c))
    }

    pub fn timeout_of(&self, job: &Job) -> std::time::Duration {
        job.timeout.unwrap_or(self.engine.timeout)
    }
}
