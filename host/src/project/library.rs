//! The `[library]` table: which of the project's jobs are shared through the
//! jobs library (`GET /api/library`), and who may read it.
//!
//! Nothing is shared unless the project says so: a job is in the library
//! with `library = true` in its `[jobs.<name>]` table, or every job with
//! `share_all = true` here (a job's own `library = false` still keeps it
//! out). Only the values live here; `library/` builds and answers the list.

use toml::Table;

use super::fields::*;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LibraryConfig {
    /// `share_all`: every job is in the library unless it opts out.
    pub share_all: bool,
    /// `public`: `GET /api/library` answers without the admin key.
    pub public: bool,
    /// `job_names`: entries of local jobs carry the job's name (hidden
    /// otherwise: a name can say more about a deployment than it should).
    pub job_names: bool,
}

/// Reads `[library]`; a bad value is reported and its default stands in.
pub(super) fn library(cx: &Ctx, t: Option<&Table>) -> LibraryConfig {
    let empty = Table::new();
    let t = t.unwrap_or(&empty);
    let _ = check_keys(cx, "library", t, &["share_all", "public", "job_names"]);
    let flag = |key| {
        cx.ok(boolean(cx, "library", t, key))
            .flatten()
            .unwrap_or(false)
    };
    LibraryConfig {
        share_all: flag("share_all"),
        public: flag("public"),
        job_names: flag("job_names"),
    }
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
}
