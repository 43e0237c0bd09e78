//! The `[library]` table: which of the project's jobs are shared through the
//! jobs library (`GET /api/library`), and who may read it.
//!
//! Nothing is shared unless the project says so: a job is in the library
//! with `library = true` in its `[jobs.<name>]` table, or every job with
//! `share_all = true` here (a job's own `library = false` still keeps it
//! out). Only the values live here; `library/` builds and answers the list.

use std::time::Duration;

use toml::Table;

use super::ProjectError;
use super::fields::*;

/// How long a remote has to answer, unless `remote_timeout` says.
pub const REMOTE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often remotes are fetched again, unless `remote_refresh` says.
pub const REMOTE_REFRESH: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryConfig {
    /// `share_all`: every job is in the library unless it opts out.
    pub share_all: bool,
    /// `public`: `GET /api/library` answers without the admin key.
    pub public: bool,
    /// `job_names`: entries of local jobs carry the job's name (hidden
    /// otherwise: a name can say more about a deployment than it should).
    pub job_names: bool,
    /// `remotes`: base URLs (`http://` or `https://`) of other deployments
    /// whose public library is fetched in the background and merged in.
    pub remotes: Vec<String>,
    /// `remote_timeout`: how long one fetch of a remote may take.
    pub remote_timeout: Duration,
    /// `remote_refresh`: how often each remote is fetched again.
    pub remote_refresh: Duration,
}

impl Default for LibraryConfig {
    fn default() -> Self {
        LibraryConfig {
            share_all: false,
            public: false,
            job_names: false,
            remotes: Vec::new(),
            remote_timeout: REMOTE_TIMEOUT,
            remote_refresh: REMOTE_REFRESH,
        }
    }
}

/// Reads `[library]`; a bad value is reported and its default stands in.
pub(super) fn library(cx: &Ctx, t: Option<&Table>) -> LibraryConfig {
    let empty = Table::new();
    let t = t.unwrap_or(&empty);
    let _ = check_keys(
        cx,
        "library",
        t,
        &[
            "share_all",
            "public",
            "job_names",
            "remotes",
            "remote_timeout",
            "remote_refresh",
        ],
    );
    let flag = |key| {
        cx.ok(boolean(cx, "library", t, key))
            .flatten()
            .unwrap_or(false)
    };
    LibraryConfig {
        share_all: flag("share_all"),
        public: flag("public"),
        job_names: flag("job_names"),
        remotes: cx.ok(remotes(cx, t)).unwrap_or_default(),
        remote_timeout: cx
            .ok(duration(cx, "library", t, "remote_timeout"))
            .flatten()
            .unwrap_or(REMOTE_TIMEOUT),
        remote_refresh: cx
            .ok(duration(cx, "library", t, "remote_refresh"))
            .flatten()
            .unwrap_or(REMOTE_REFRESH),
    }
}

/// `remotes`: a list of `http://` or `https://` URLs, each without a query.
fn remotes(cx: &Ctx, t: &Table) -> Result<Vec<String>, ProjectError> {
    let Some(value) = t.get("remotes") else {
        return Ok(Vec::new());
    };
    let bad = |why: &str| cx.err("library", Some("remotes"), why);
    let list = value
        .as_array()
        .ok_or_else(|| bad("must be a list of URLs, e.g. [\"https://jobs.example.org\"]"))?;
    list.iter()
        .map(|v| {
            let url = v
                .as_str()
                .ok_or_else(|| bad("each remote must be a string"))?;
            let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
            if !scheme_ok || url.contains(['?', '#', ' ']) {
                return Err(bad(&format!(
                    "`{url}` is not an http:// or https:// base URL without query"
                )));
            }
            Ok(url.trim_end_matches('/').to_string())
        })
        .collect()
}

/// A job's `library` key: `Some` when written.
pub(super) fn job_opt_in(cx: &Ctx, table: &str, body: &Table) -> Option<bool> {
    cx.ok(boolean(cx, table, body, "library")).flatten()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::project::{Project, ProjectError};

    fn parse(source: &str) -> Result<Project, ProjectError> {
        Project::parse(Path::new("/p"), Path::new("/p/project.toml"), source)
    }

    const TRIGGER: &str = "[triggers.t]\ncriteria = { a = 1 }\n";

    #[test]
    fn jobs_are_shared_only_when_the_project_says_so() {
        let p = parse(&format!(
            "[jobs.a]\ntrigger = \"t\"\nexpression = \"fn(s => s)\"\nlibrary = true\n\n[jobs.b]\ntrigger = \"t\"\nexpression = \"fn(s => s)\"\n{TRIGGER}"
        ))
        .unwrap();
        assert!(p.jobs["a"].library);
        assert!(!p.jobs["b"].library);
        assert_eq!(p.library, Default::default());

        let p = parse(&format!(
            "[library]\nshare_all = true\npublic = true\n\n[jobs.a]\ntrigger = \"t\"\nexpression = \"fn(s => s)\"\n\n[jobs.b]\ntrigger = \"t\"\nexpression = \"fn(s => s)\"\nlibrary = false\n{TRIGGER}"
        ))
        .unwrap();
        assert!(p.jobs["a"].library && !p.jobs["b"].library);
        assert!(p.library.public && p.library.share_all && !p.library.job_names);
    }

    #[test]
    fn bad_values_name_file_table_key_and_line() {
        let e = parse(&format!(
            "[library]\npublic = \"yes\"\nremote = 1\n\n[jobs.a]\ntrigger = \"t\"\nexpression = \"fn(s => s)\"\nlibrary = 1\n{TRIGGER}"
        ))
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("/p/project.toml: [library] public (line 2): must be true or false"),
            "{text}"
        );
        assert!(
            text.contains("/p/project.toml: [library] remote (line 3): unknown key"),
            "{text}"
        );
        assert!(
            text.contains("/p/project.toml: [jobs.a] library (line 8): must be true or false"),
            "{text}"
        );
    }

    #[test]
    fn remotes_are_http_urls() {
        let p = parse(&format!(
            "[library]\nremotes = [\"https://a.example/\", \"http://127.0.0.1:4001\"]\nremote_timeout = \"2s\"\n{TRIGGER}"
        ))
        .unwrap();
        assert_eq!(
            p.library.remotes,
            ["https://a.example", "http://127.0.0.1:4001"]
        );
        assert_eq!(p.library.remote_timeout.as_secs(), 2);
        let e = parse(&format!(
            "[library]\nremotes = [\"ftp://a.example\"]\n{TRIGGER}"
        ))
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("[library] remotes (line 2): `ftp://a.example` is not an http://"),
            "{e}"
        );
    }
}
