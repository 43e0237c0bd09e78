//! The jobs library: proven job expressions, searchable by adaptor, version
//! and helper, ranked by how well they fare (`GET /api/library`,
//! `microservice library`).
//!
//! Its entries come from three sources, the first two read once at start-up
//! into a [`Catalog`]:
//! - `local`: the project's jobs that opted in (`library = true`, or
//!   `[library] share_all`), with figures computed on each request from the
//!   run records of the last 90 days (one grouped query, [`crate::storage::Runs::runs_by_job_since`]);
//! - `library`: the `.js` files of `PROJECT_DIR/library/` ([`folder`]);
//! - remote: the libraries of the deployments in `[library] remotes`,
//!   fetched in the background and kept in memory ([`remote`]).
//!
//! The helpers an entry calls are found by parsing it ([`crate::expression`])
//! and kept to those its adaptor really has ([`adaptor`]); [`query`] reads
//! the request, ranks and shapes the answer.
//!
//! What leaves this module is an expression, its adaptor, version, helpers
//! and figures: never a state, a receipt, a log line or a credential (every
//! credential value written into an expression is masked on the way out),
//! and a job's name only when `[library] job_names = true`.

pub mod adaptor;
pub mod folder;
pub mod query;
pub mod remote;

use std::collections::{BTreeMap, BTreeSet};

use crate::packages::Packages;
use crate::project::Project;
use crate::redact::Redactor;

pub use folder::FileProblem;
pub use query::{Facet, Found, Query};

/// How far back the figures look.
pub const WINDOW_DAYS: i64 = 90;

/// Every entry the library can answer with, and what it needs to answer.
pub struct Catalog {
    entries: Vec<Entry>,
    /// The helpers of each adaptor package (by name) found installed.
    known: BTreeMap<String, BTreeSet<String>>,
    /// `[library] public`: readable without the admin key.
    pub public: bool,
    job_names: bool,
    redactor: Redactor,
    /// The remotes' last answers (empty without `[library] remotes`).
    pub remote: remote::Cache,
}

/// One expression of the library.
#[derive(Debug, Clone)]
pub struct Entry {
    pub expression: String,
    /// The adaptor's package name, e.g. `@openfn/language-common`.
    pub adaptor: String,
    /// The installed version when the package is installed, else the
    /// version or range the job or file gives.
    pub version: Option<String>,
    /// Helper name → calls in the expression.
    pub helpers: BTreeMap<String, u32>,
    /// The project's job it is (`local`), or `None` for a library file.
    pub job: Option<String>,
    /// [`folder::hash`] of the expression.
    pub hash: String,
}

impl Catalog {
    /// The project's opted-in jobs and the library folder's files, with
    /// the helpers of every installed adaptor they use. Returns the
    /// library files that could not be read, each with why (they are left
    /// out; `check` reports them too).
    pub fn build(project: &Project, packages: &Packages) -> (Catalog, Vec<FileProblem>) {
        let mut known = BTreeMap::new();
        let mut versions = BTreeMap::new();
        for spec in project.adaptors() {
            if let Some(helpers) = adaptor::helpers(&packages.package_dir(&spec)) {
                known
                    .entry(spec.name.clone())
                    .or_insert_with(BTreeSet::new)
                    .extend(helpers);
            }
            if let Some(v) = packages.installed_version(&spec) {
                versions.insert(spec.clone(), v);
            }
        }
        let mut entries = Vec::new();
        for job in project.jobs.values().filter(|j| j.library) {
            // A job that does not parse fails every run: nothing to share.
            let Ok(calls) = crate::expression::helper_calls(&job.expression) else {
                continue;
            };
            entries.push(Entry {
                helpers: keep_known(calls, known.get(&job.adaptor.name)),
                adaptor: job.adaptor.name.clone(),
                version: versions
                    .get(&job.adaptor)
                    .cloned()
                    .or_else(|| job.adaptor.version.clone()),
                job: Some(job.name.clone()),
                hash: folder::hash(&job.expression),
                expression: job.expression.trim().to_string(),
            });
        }
        let (files, problems) = folder::read(&folder::dir(&project.dir));
        for file in files {
            let hash = folder::hash(&file.expression);
            // The same expression as a local job: the job, with its figures.
            if entries.iter().any(|e| e.hash == hash) {
                continue;
            }
            let Ok(calls) = crate::expression::helper_calls(&file.expression) else {
                continue;
            };
            entries.push(Entry {
                helpers: keep_known(calls, known.get(&file.adaptor.name)),
                adaptor: file.adaptor.name.clone(),
                version: file.adaptor.version.clone(),
                job: None,
                hash,
                expression: file.expression,
            });
        }
        let catalog = Catalog {
            entries,
            known,
            public: project.library.public,
            job_names: project.library.job_names,
            redactor: Redactor::new(project.credentials.values()),
            remote: remote::Cache::default(),
        };
        (catalog, problems)
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The helpers of `adaptor` (a package name), when its package is
    /// installed and lists them.
    pub fn helpers_of(&self, adaptor: &str) -> Option<&BTreeSet<String>> {
        self.known.get(adaptor)
    }

    /// Every helper of every installed adaptor.
    pub fn all_helpers(&self) -> BTreeSet<&String> {
        self.known.values().flatten().collect()
    }
}

/// The calls that are helpers of the adaptor, when its list is known.
fn keep_known(
    mut calls: BTreeMap<String, u32>,
    known: Option<&BTreeSet<String>>,
) -> BTreeMap<String, u32> {
    if let Some(known) = known {
        calls.retain(|name, _| known.contains(name));
    }
    calls
}
