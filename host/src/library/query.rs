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
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

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
    /// Only entries of this origin: `self`, or a remote's URL.
    pub origin: Option<String>,
    pub limit: usize,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            adaptor: None,
            version: None,
            helper: None,
            q: None,
            origin: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

/// One entry of the answer (and of a remote's answer, read back).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = LibraryEntry)]
pub struct Found {
    pub expression: String,
    /// It ran in the last 90 days.
    pub active: bool,
    pub runs_last90: u64,
    /// `null` when it did not run in the period.
    pub success_rate_last90: Option<f64>,
    /// `local` (a job of the deployment it comes from) or `library` (a
    /// library file there).
    pub source: String,
    /// The adaptor's package name, e.g. `@openfn/language-common`.
    pub adaptor: String,
    pub version: Option<String>,
    /// Each adaptor helper the expression calls, with how many times.
    pub helpers: BTreeMap<String, u32>,
    /// Where it came from: `self` (this deployment) or the URL of the
    /// remote library (`[library] remotes`) that answered with it.
    pub origin: String,
    /// The ranking score (see the README's Jobs library).
    pub score: f64,
    /// The job's name, only with `[library] job_names = true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
                "origin" => query.origin = Some(value.trim_end_matches('/').to_string()),
                "limit" => match value.parse::<usize>() {
                    Ok(n) if (1..=MAX_LIMIT).contains(&n) => query.limit = n,
                    _ => errors.push(format!(
                        "limit `{value}` must be a number from 1 to {MAX_LIMIT}"
                    )),
                },
                other => errors.push(format!(
                    "unknown query parameter `{other}`; use adaptor, version, helper, q, origin, limit"
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
        self.origin.as_ref().is_none_or(|o| o == "self")
            && self.matches(
                &entry.adaptor,
                entry.version.as_deref(),
                &entry.helpers,
                &entry.expression,
            )
    }

    /// A remote's entry.
    fn wants_found(&self, found: &Found) -> bool {
        self.origin.as_ref().is_none_or(|o| *o == found.origin)
            && self.matches(
                &found.adaptor,
                found.version.as_deref(),
                &found.helpers,
                &found.expression,
            )
    }

    fn matches(
        &self,
        adaptor: &str,
        version: Option<&str>,
        helpers: &BTreeMap<String, u32>,
        expression: &str,
    ) -> bool {
        self.adaptor.as_ref().is_none_or(|a| a == adaptor)
            && self.version.as_ref().is_none_or(|req| {
                version
                    .and_then(|v| Version::parse(v).ok())
                    .is_some_and(|v| req.matches(&v))
            })
            && self.helper.as_ref().is_none_or(|h| helpers.contains_key(h))
            && self
                .q
                .as_ref()
                .is_none_or(|q| expression.to_lowercase().contains(q))
    }
}

impl Catalog {
    /// The entries `query` wants, best first, with their figures from
    /// `runs` (each job's finished runs of the last 90 days).
    pub fn search(&self, query: &Query, runs: &[JobRuns]) -> Vec<Found> {
        // Ranked on figures alone; only the entries kept are copied out
        // (and their expressions masked).
        let ranked: Vec<(f64, u64, u64, &Entry)> = self
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
        // A remote's entry that is also here is this deployment's.
        let remotes = self.remote.entries();
        let mut candidates: Vec<Candidate> = remotes
            .iter()
            .flat_map(|list| list.iter())
            .filter(|(hash, f)| {
                query.wants_found(f) && !self.entries.iter().any(|e| &e.hash == hash)
            })
            .map(|(hash, f)| Candidate::Remote(hash, f))
            .collect();
        candidates.extend(ranked.into_iter().map(|(score, finished, succeeded, e)| {
            Candidate::Local(score, finished, succeeded, e)
        }));
        candidates.sort_by(|a, b| {
            b.score()
                .total_cmp(&a.score())
                .then(b.runs().cmp(&a.runs()))
                .then(a.hash().cmp(b.hash()))
        });
        candidates
            .into_iter()
            .take(query.limit)
            .map(|c| match c {
                Candidate::Local(score, finished, succeeded, e) => {
                    self.local(score, finished, succeeded, e)
                }
                Candidate::Remote(_, f) => Found {
                    expression: self.redactor.redact(&f.expression).into_owned(),
                    ..f.clone()
                },
            })
            .collect()
    }

    fn local(&self, score: f64, finished: u64, succeeded: u64, e: &Entry) -> Found {
        Found {
            expression: self.redactor.redact(&e.expression).into_owned(),
            active: finished > 0,
            runs_last90: finished,
            success_rate_last90: (finished > 0).then(|| succeeded as f64 / finished as f64),
            source: if e.job.is_some() { "local" } else { "library" }.to_string(),
            adaptor: e.adaptor.clone(),
            version: e.version.clone(),
            helpers: e.helpers.clone(),
            origin: "self".to_string(),
            score,
            job: e.job.clone().filter(|_| self.job_names),
        }
    }
}

/// An entry to rank: a local one with its figures, or a remote's.
enum Candidate<'a> {
    Local(f64, u64, u64, &'a Entry),
    Remote(&'a String, &'a Found),
}

impl Candidate<'_> {
    fn score(&self) -> f64 {
        match self {
            Candidate::Local(score, ..) => *score,
            Candidate::Remote(_, f) => f.score,
        }
    }

    fn runs(&self) -> u64 {
        match self {
            Candidate::Local(_, finished, ..) => *finished,
            Candidate::Remote(_, f) => f.runs_last90,
        }
    }

    fn hash(&self) -> &str {
        match self {
            Candidate::Local(.., e) => &e.hash,
            Candidate::Remote(hash, _) => hash,
        }
    }
}

/// One adaptor of `GET /api/library/helpers`: how many expressions use it,
/// and how many of them call each of its helpers.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[schema(as = LibraryAdaptor)]
pub struct Facet {
    pub adaptor: String,
    pub expressions: u64,
    pub helpers: BTreeMap<String, u64>,
}

impl Catalog {
    /// Every adaptor of the library with its helpers' counts, by name.
    pub fn facets(&self) -> Vec<Facet> {
        let mut by_adaptor: BTreeMap<String, Facet> = BTreeMap::new();
        let mut count = |adaptor: &str, helpers: &BTreeMap<String, u32>| {
            let facet = by_adaptor.entry(adaptor.to_string()).or_default();
            facet.expressions += 1;
            for helper in helpers.keys() {
                *facet.helpers.entry(helper.clone()).or_default() += 1;
            }
        };
        for e in &self.entries {
            count(&e.adaptor, &e.helpers);
        }
        for list in self.remote.entries() {
            for (hash, f) in list.iter() {
                if !self.entries.iter().any(|e| &e.hash == hash) {
                    count(&f.adaptor, &f.helpers);
                }
            }
        }
        by_adaptor
            .into_iter()
            .map(|(adaptor, facet)| Facet { adaptor, ..facet })
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
