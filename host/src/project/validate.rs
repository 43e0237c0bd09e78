//! From TOML text to a [`Project`], checking everything on the way.
//!
//! The document is parsed once as a plain TOML table (syntax errors carry
//! line and column from the parser, and stop there), then each table is read
//! on its own so an error can name the table and key it is about. A problem
//! is reported and reading goes on with a placeholder, so one pass finds
//! every problem in the file; a project with any problem is never returned.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use toml::Table;

use super::credentials::CredentialEnv;
use super::delivery::RetryPolicy;
use super::fields::*;
use super::model::*;
use super::{ProjectError, read_inside};

const DEFAULT_CORE: &str = "@openfn/core@1.5.1";
const DEFAULT_ADAPTOR: &str = "@openfn/language-common";

/// Top-level tables, in the order they are read.
const TABLES: &[&str] = &[
    "engine",
    "inbox",
    "http",
    "cluster",
    "retry",
    "jobs",
    "triggers",
    "credentials",
    "plugins",
    "library",
];

pub(super) fn parse(
    dir: &Path,
    file: &Path,
    source: &str,
    env: CredentialEnv,
) -> Result<Project, ProjectError> {
    let doc: Table = toml::from_str(source).map_err(|e| ProjectError::Syntax {
        file: file.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    let cx = Ctx::new(file, source);
    for key in doc.keys().filter(|k| !TABLES.contains(&k.as_str())) {
        cx.report(cx.err(
            "",
            Some(key),
            format!("unknown table; expected one of {}", TABLES.join(", ")),
        ));
    }
    let section = |name: &str| cx.ok(section(&cx, &doc, name)).flatten();
    let engine = engine(&cx, section("engine"));
    let inbox = super::delivery::inbox(&cx, section("inbox"));
    let http = super::http::http(&cx, section("http"));
    let cluster = super::delivery::cluster(&cx, section("cluster"), env);
    let retry = super::delivery::retry(&cx, "retry", section("retry"), &RetryPolicy::default());
    let credentials = super::credentials::parse(&cx, section("credentials"), env);
    let triggers = super::triggers::parse(&cx, section("triggers"), env);
    let library = super::library::library(&cx, section("library"));
    let jobs = jobs(&cx, dir, section("jobs"), &triggers, &credentials, &retry);
    let jobs = shared(jobs, &library);
    check_flows(&cx, &jobs, &triggers);
    let plugins = cx
        .ok(super::plugins::parse(&cx, section("plugins")))
        .unwrap_or_default();
    let plugin_memory = cx
        .ok(super::plugins::max_memory(&cx, section("plugins")))
        .unwrap_or(super::plugins::DEFAULT_MAX_MEMORY);
    // Past this point every value above is real: a problem anywhere means
    // the placeholders standing in for bad values are never used.
    if let Some(problems) = cx.finish() {
        return Err(problems);
    }
    Ok(Project {
        dir: dir.to_path_buf(),
        file: file.to_path_buf(),
        engine,
        inbox,
        http,
        cluster,
        jobs,
        triggers,
        credentials,
        plugins,
        plugin_memory,
        library,
    })
}

/// Settles each job's `library` flag: its own `library` key, else
/// `[library] share_all`.
fn shared(
    jobs: BTreeMap<String, (Job, Option<bool>)>,
    library: &super::library::LibraryConfig,
) -> BTreeMap<String, Arc<Job>> {
    jobs.into_iter()
        .map(|(name, (mut job, opt_in))| {
            job.library = opt_in.unwrap_or(library.share_all);
            (name, Arc::new(job))
        })
        .collect()
}

fn engine(cx: &Ctx, t: Option<&Table>) -> EngineConfig {
    let empty = Table::new();
    let t = t.unwrap_or(&empty);
    let _ = check_keys(
        cx,
        "engine",
        t,
        &[
            "core",
            "timeout",
            "concurrency",
            "shutdown_grace",
            "node",
            "mode",
            "worker_memory_mb",
            "recycle_after",
        ],
    );
    let mode = cx
        .ok(string(cx, "engine", t, "mode").and_then(|m| match m {
            None => Ok(EngineMode::Worker),
            Some(m) => EngineMode::parse(m).ok_or_else(|| {
                cx.err(
                    "engine",
                    Some("mode"),
                    format!("`{m}` is not an engine mode; use \"worker\" or \"cli\""),
                )
            }),
        }))
        .unwrap_or(EngineMode::Worker);
    let core = cx
        .ok(string(cx, "engine", t, "core").and_then(|core| {
            AdaptorSpec::parse(core.unwrap_or(DEFAULT_CORE))
                .map_err(|m| cx.err("engine", Some("core"), m))
        }))
        .unwrap_or_else(|| AdaptorSpec::parse(DEFAULT_CORE).expect("the default parses"));
    let duration = |key, default| {
        cx.ok(duration(cx, "engine", t, key))
            .flatten()
            .unwrap_or(default)
    };
    let positive = |key, default| {
        cx.ok(positive(cx, "engine", t, key))
            .flatten()
            .unwrap_or(default)
    };
    EngineConfig {
        core,
        timeout: duration("timeout", Duration::from_secs(300)),
        concurrency: positive("concurrency", 5),
        shutdown_grace: duration("shutdown_grace", Duration::from_secs(30)),
        node: cx
            .ok(string(cx, "engine", t, "node"))
            .flatten()
            .unwrap_or("node")
            .to_string(),
        mode,
        worker_memory_mb: positive("worker_memory_mb", 512) as u32,
        recycle_after: positive("recycle_after", 1000) as u32,
    }
}

/// Every job, the bad ones too (with placeholder values), so that a flow
/// naming a bad job is not also told it does not exist; each with its
/// `library` key, if written.
fn jobs(
    cx: &Ctx,
    dir: &Path,
    t: Option<&Table>,
    triggers: &BTreeMap<String, Trigger>,
    credentials: &BTreeMap<String, Value>,
    retry: &RetryPolicy,
) -> BTreeMap<String, (Job, Option<bool>)> {
    let mut out = BTreeMap::new();
    for (name, value) in t.into_iter().flatten() {
        let table = format!("jobs.{name}");
        let Some(body) = cx.ok(sub_table(cx, &table, value)) else {
            continue;
        };
        let job = job(cx, dir, &table, name, body, triggers, credentials, retry);
        let opt_in = super::library::job_opt_in(cx, &table, body);
        out.insert(name.clone(), (job, opt_in));
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn job(
    cx: &Ctx,
    dir: &Path,
    table: &str,
    name: &str,
    body: &Table,
    triggers: &BTreeMap<String, Trigger>,
    credentials: &BTreeMap<String, Value>,
    retry: &RetryPolicy,
) -> Job {
    let _ = check_keys(
        cx,
        table,
        body,
        &[
            "adaptor",
            "expression",
            "expression_file",
            "trigger",
            "credential",
            "timeout",
            "retry",
            "library",
        ],
    );
    let adaptor = cx
        .ok(string(cx, table, body, "adaptor").and_then(|a| {
            AdaptorSpec::parse(a.unwrap_or(DEFAULT_ADAPTOR))
                .map_err(|m| cx.err(table, Some("adaptor"), m))
        }))
        .unwrap_or_else(|| AdaptorSpec::parse(DEFAULT_ADAPTOR).expect("the default parses"));
    let expression = cx.ok(expression(cx, dir, table, body)).unwrap_or_default();
    // Its type error, if any, was reported by `expression` above.
    let expression_file = body
        .get("expression_file")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let triggers = cx
        .ok(job_triggers(cx, table, body, triggers))
        .unwrap_or_default();
    let credential = cx
        .ok(string(cx, table, body, "credential").and_then(|c| match c {
            Some(c) if !credentials.contains_key(c) => Err(cx.err(
                table,
                Some("credential"),
                format!(
                    "no credential named `{c}`; defined: {}",
                    names(credentials.keys())
                ),
            )),
            c => Ok(c.map(str::to_string)),
        }))
        .flatten();
    let retry = match body.get("retry") {
        None => retry.clone(),
        Some(toml::Value::Table(t)) => super::delivery::retry(cx, table, Some(t), retry),
        Some(_) => {
            cx.report(cx.err(
                table,
                Some("retry"),
                "must be a table such as { max_attempts = 5, backoff = \"2s\" }",
            ));
            retry.clone()
        }
    };
    Job {
        name: name.to_string(),
        adaptor,
        compiled: crate::expression::compile(&expression),
        expression,
        expression_file,
        triggers,
        credential,
        timeout: cx.ok(duration(cx, table, body, "timeout")).flatten(),
        retry,
        library: false,
    }
}

/// `trigger = "t"` or `trigger = ["a", "b"]`: each must exist, none twice.
fn job_triggers(
    cx: &Ctx,
    table: &str,
    body: &Table,
    triggers: &BTreeMap<String, Trigger>,
) -> Result<Vec<String>, ProjectError> {
    let err = |m: String| cx.err(table, Some("trigger"), m);
    let names: Vec<&str> = match body.get("trigger") {
        None => return Err(err("missing key: every job needs a trigger".into())),
        Some(toml::Value::String(t)) => vec![t.as_str()],
        Some(toml::Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| v.as_str())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| err("must be a trigger's name or a list of names".into()))?,
        Some(_) => {
            return Err(err(
                "must be a trigger's name, such as \"orders\", or a list of names, such as [\"orders\", \"nightly\"]".into(),
            ));
        }
    };
    let mut out: Vec<String> = Vec::new();
    for t in names {
        if !triggers.contains_key(t) {
            return Err(err(format!(
                "no trigger named `{t}`; defined: {}",
                self::names(triggers.keys())
            )));
        }
        if out.iter().any(|o| o == t) {
            return Err(err(format!("names `{t}` twice")));
        }
        out.push(t.to_string());
    }
    Ok(out)
}

fn expression(cx: &Ctx, dir: &Path, table: &str, body: &Table) -> Result<String, ProjectError> {
    match (
        string(cx, table, body, "expression")?,
        string(cx, table, body, "expression_file")?,
    ) {
        (Some(e), None) => Ok(e.to_string()),
        (None, Some(path)) => {
            read_inside(dir, path).map_err(|m| cx.err(table, Some("expression_file"), m))
        }
        (Some(_), Some(_)) => Err(cx.err(
            table,
            Some("expression"),
            "give either expression or expression_file, not both",
        )),
        (None, None) => Err(cx.err(
            table,
            None,
            "missing key `expression` (or `expression_file`)",
        )),
    }
}

fn names<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = keys.map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// Flow triggers and cron cursors must name a job, and following flows must
/// never come back to where they started (that would run forever; disabled
/// flows count, since enabling one must not make a loop). Each cycle is
/// reported once, at the first of its jobs in name order.
fn check_flows(cx: &Ctx, jobs: &BTreeMap<String, Arc<Job>>, triggers: &BTreeMap<String, Trigger>) {
    let mut downstream: HashMap<&str, Vec<&str>> = HashMap::new();
    for trigger in triggers.values() {
        let (up, key): (&str, &str) = match &trigger.kind {
            TriggerKind::Cron {
                cursor: Some(up), ..
            } => (up, "cursor"),
            kind => match kind.upstream() {
                Some(up) => (up, kind.label()),
                None => continue,
            },
        };
        if !jobs.contains_key(up) {
            cx.report(cx.err(
                &format!("triggers.{}", trigger.name),
                Some(key),
                format!("no job named `{up}`; defined: {}", names(jobs.keys())),
            ));
            continue;
        }
        if key == "cursor" {
            continue;
        }
        for job in jobs.values().filter(|j| j.triggers.contains(&trigger.name)) {
            downstream.entry(up).or_default().push(job.name.as_str());
        }
    }
    // Depth-first search; `path` holds the chain being explored, and every
    // edge back into it closes a cycle.
    fn visit<'a>(
        job: &'a str,
        edges: &HashMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut Vec<&'a str>,
        cycles: &mut Vec<Vec<&'a str>>,
    ) {
        if let Some(i) = path.iter().position(|p| *p == job) {
            let mut cycle = path[i..].to_vec();
            cycle.push(job);
            cycles.push(cycle);
            return;
        }
        if done.contains(&job) {
            return;
        }
        path.push(job);
        for next in edges.get(job).into_iter().flatten() {
            visit(next, edges, path, done, cycles);
        }
        path.pop();
        done.push(job);
    }
    let (mut done, mut cycles) = (Vec::new(), Vec::new());
    for job in jobs.keys() {
        visit(job, &downstream, &mut Vec::new(), &mut done, &mut cycles);
    }
    for cycle in cycles {
        let first = &jobs[cycle[1]];
        cx.report(cx.err(
            &format!("jobs.{}", first.name),
            Some("trigger"),
            format!(
                "flow cycle: {} would trigger each other forever",
                cycle.join(" → ")
            ),
        ));
    }
}
