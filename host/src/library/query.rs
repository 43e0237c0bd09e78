//! A library search: its parameters, the figures and score of each entry,
//! and the ranked answer in the original's shape.
//!
//! The score favours a success rate with enough runs behind it, and
//! activity: the lower bound of the 95% Wilson score interval of the
//! success rate over the last 90 days (0 with no runs: ten successes out of
//! ten rank above one out of one), times 1 for an active entry (one that ran
//! in the last 90 days) and 0.5 for an idle one. Ties go to more runs, then
//! to the expression's hash, so the order is stable.

use std::collections::BTreeMap;

use semver::{Version, VersionReq};
use serde::Serialize;

use super::{Catalog, Entry, adaptor};
use crate::storage::JobRuns;

pub const DEFAULT_LIMIT: usize = 10;
pub const MAX_LIMIT: usize = 100;

/// What `GET /api/library` and `library search` ask for.
#[derive(Debug, Clone)]
pub struct Query {
    /// A package name (`common` and `language-common` are read as
    /// `@openfn/language-common`).
    pub adaptor: Option<String>,
    pub version: Option<VersionReq>,
    pub helper: Option<String>,
    /// Case-insensitive text the expression must contain.
    pub q: Option<String>,
    pub limit: usize,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            adaptor: None,
            version: None,
            helper: None,
            q: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

/// One entry of the answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Found {
    pub expression: String,
    pub active: bool,
    pub runs_last90: u64,
    /// `null` when it did not run in the period.
    pub success_rate_last90: Option<f64>,
    /// `local` (a job of this deployment) or `library` (a library file).
    pub source: &'static str,
    pub adaptor: String,
    pub version: Option<String>,
    pub helpers: BTreeMap<String, u32>,
    /// Where it came from: `self`, this deployment.
    pub origin: &'static str,
    pub score: f64,
    /// The job's name, only with `[library] job_names = true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

/// The full package name an `adaptor=` value means.
pub fn adaptor_name(given: &str) -> String {
    let given = given.trim();
    if given.contains('/') {
        given.to_string()
    } else if given.starts_with("language-") {
        format!("@openfn/{given}")
    } else {
        format!("@openfn/language-{given}")
    }
}

/// A `version=` range: semver requirements (`^3`, `>=3.1, <4`, `3.3.*`,
/// `3.3.4` for that version only), npm's space-separated comparators too
/// (`>=3.1 <4`). npm's `||` is not read.
pub fn version_req(given: &str) -> Result<VersionReq, String> {
    let mut parts: Vec<String> = Vec::new();
    let mut pending = String::new();
    for token in given.split_whitespace() {
        pending.push_str(token);
        // An operator alone (`>= 3`) belongs to the number after it.
        if !token.chars().all(|c| "<>=~^".contains(c)) {
            parts.push(std::mem::take(&mut pending));
        }
    }
    if !pending.is_empty() {
        parts.push(pending);
    }
    let joined = parts
        .iter()
        .map(|p| exact(p.trim_end_matches(',')))
        .collect::<Vec<_>>()
        .join(", ");
    VersionReq::parse(&joined).map_err(|e| {
        format!(
            "version `{given}` is not a semver range ({e}); write e.g. `^3`, `>=3.1, <4` or `3.3.4`"
        )
    })
}

/// A whole version alone is that version, as npm reads it (the semver
/// crate would read `3.3.4` as `^3.3.4`).
fn exact(part: &str) -> String {
    if Version::parse(part).is_ok() {
        format!("={part}")
    } else {
        part.to_string()
    }
}

impl Query {
    /// Reads the query string of `GET /api/library`; every problem at
    /// once, each naming its parameter.
    pub fn parse(raw: Option<&str>, catalog: &Catalog) -> Result<Query, Vec<String>> {
        let mut query = Query::default();
        let mut errors = Vec::new();
        for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            match key.as_ref() {
                "adaptor" => query.adaptor = Some(adaptor_name(value)),
                "version" => match version_req(value) {
                    Ok(req) => query.version = Some(req),
                    Err(why) => errors.push(why),
                },
                "helper" => query.helper = Some(value.to_string()),
                "q" => query.q = Some(value.to_lowercase()),
                "limit" => match value.parse::<usize>() {
                    Ok(n) if (1..=MAX_LIMIT).contains(&n) => query.limit = n,
                    _ => errors.push(format!(
                        "limit `{value}` must be a number from 1 to {MAX_LIMIT}"
                    )),
                },
                other => errors.push(format!(
                    "unknown query parameter `{other}`; use adaptor, version, helper, q, limit"
                )),
            }
        }
        if let Some(why) = query.unknown_helper(catalog) {
            errors.push(why);
        }
        if errors.is_empty() {
            Ok(query)
        } else {
            Err(errors)
        }
    }

    /// Why `helper` names no helper of the adaptor asked for (or of any
    /// installed adaptor), with the nearest real names; `None` when it
    /// does, or when there is no list to check it against.
    fn unknown_helper(&self, catalog: &Catalog) -> Option<String> {
        let helper = self.helper.as_ref()?;
        let (known, of) = match &self.adaptor {
            Some(a) => (catalog.helpers_of(a)?.iter().collect(), format!("`{a}`")),
            None => (catalog.all_helpers(), "any installed adaptor".to_string()),
        };
        if known.is_empty() || known.contains(helper) {
            return None;
        }
        let near = adaptor::nearest(helper, known, 3);
        Some(format!(
            "helper `{helper}` is not a helper of {of}; did you mean {}?",
            near.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    fn wants(&self, entry: &Entry) -> bool {
        self.adaptor.as_ref().is_none_or(|a| *a == entry.adaptor)
            && self.version.as_ref().is_none_or(|req| {
                entry
                    .version
                    .as_deref()
                    .and_then(|v| Version::parse(v).ok())
                    .is_some_and(|v| req.matches(&v))
            })
            && self
                .helper
                .as_ref()
                .is_none_or(|h| entry.helpers.contains_key(h))
            && self
                .q
                .as_ref()
                .is_none_or(|q| entry.expression.to_lowercase().contains(q))
    }
}

impl Catalog {
    /// The entries `query` wants, best first, with their figures from
    /// `runs` (each job's finished runs of the last 90 days).
    pub fn search(&self, query: &Query, runs: &[JobRuns]) -> Vec<Found> {
        // Ranked on figures alone; only the entries kept are copied out
        // (and their expressions masked).
        let mut ranked: Vec<(f64, u64, u64, &Entry)> = self
            .entries
            .iter()
            .filter(|e| query.wants(e))
            .map(|e| {
                let figures = e
                    .job
                    .as_ref()
                    .and_then(|job| runs.iter().find(|r| &r.job == job));
                let (finished, succeeded) = figures.map_or((0, 0), |r| (r.finished, r.succeeded));
                (
                    score(succeeded, finished, finished > 0),
                    finished,
                    succeeded,
                    e,
                )
            })
            .collect();
        ranked.sort_by(|(a, an, _, ae), (b, bn, _, be)| {
            b.total_cmp(a).then(bn.cmp(an)).then(ae.hash.cmp(&be.hash))
        });
        ranked
            .into_iter()
            .take(query.limit)
            .map(|(score, finished, succeeded, e)| Found {
                expression: self.redactor.redact(&e.expression).into_owned(),
                active: finished > 0,
                runs_last90: finished,
                success_rate_last90: (finished > 0).then(|| succeeded as f64 / finished as f64),
                source: if e.job.is_some() { "local" } else { "library" },
                adaptor: e.adaptor.clone(),
                version: e.version.clone(),
                helpers: e.helpers.clone(),
                origin: "self",
                score,
                job: e.job.clone().filter(|_| self.job_names),
            })
            .collect()
    }
}

/// The ranking score (see the module doc).
pub fn score(succeeded: u64, finished: u64, active: bool) -> f64 {
    let activity = if active { 1.0 } else { 0.5 };
    wilson_lower_bound(succeeded, finished) * activity
}

/// Lower bound of the Wilson score interval at 95% confidence.
fn wilson_lower_bound(succeeded: u64, n: u64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let (n, p, z) = (n as f64, succeeded as f64 / n as f64, 1.959_963_985);
    let z2 = z * z;
    (p + z2 / (2.0 * n) - z * ((p * (1.0 - p) + z2 / (4.0 * n)) / n).sqrt()) / (1.0 + z2 / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_runs_behind_a_rate_rank_higher() {
        assert!(score(10, 10, true) > score(1, 1, true));
        assert!(score(97, 100, true) > score(9, 10, true));
        assert!(score(9, 10, true) > score(9, 10, false));
        assert_eq!(score(0, 0, false), 0.0);
        assert!((wilson_lower_bound(1, 1) - 0.2065).abs() < 1e-3);
    }

    #[test]
    fn version_ranges_read_as_semver_and_npm_write_them() {
        let v = |s: &str| Version::parse(s).unwrap();
        assert!(version_req("^3").unwrap().matches(&v("3.3.4")));
        assert!(version_req(">=3.1 <4").unwrap().matches(&v("3.3.4")));
        assert!(!version_req(">= 3.4, < 4").unwrap().matches(&v("3.3.4")));
        assert!(version_req("3.3.*").unwrap().matches(&v("3.3.4")));
        assert!(!version_req("3.3.4").unwrap().matches(&v("3.3.5")));
        assert!(version_req("not a range").is_err());
    }

    #[test]
    fn adaptor_short_names() {
        assert_eq!(adaptor_name("common"), "@openfn/language-common");
        assert_eq!(adaptor_name("language-http"), "@openfn/language-http");
        assert_eq!(adaptor_name("@acme/x"), "@acme/x");
    }
}
