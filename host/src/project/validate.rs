//! From TOML text to a [`Project`], checking everything on the way.
//!
//! The document is parsed once as a plain TOML table (syntax errors carry
//! line and column from the parser), then each table is read on its own so an
//! error can name the table and key it is about.

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
    let cx = Ctx { file, source };
    for key in doc.keys() {
        if ![
            "engine",
            "inbox",
            "http",
            "retry",
            "jobs",
            "triggers",
            "credentials",
            "plugins",
        ]
        .contains(&key.as_str())
        {
            return Err(cx.err(
                "",
                Some(key),
                "unknown table; expected one of engine, inbox, http, retry, jobs, triggers, credentials, plugins",
            ));
        }
    }
    let engine = engine(&cx, section(&cx, &doc, "engine")?)?;
    let inbox = super::delivery::inbox(&cx, section(&cx, &doc, "inbox")?)?;
    let http = super::http::http(&cx, section(&cx, &doc, "http")?)?;
    let retry = super::delivery::retry(
        &cx,
        "retry",
        section(&cx, &doc, "retry")?,
        &RetryPolicy::default(),
    )?;
    let credentials = super::credentials::parse(&cx, section(&cx, &doc, "credentials")?, env)?;
    let triggers = triggers(&cx, section(&cx, &doc, "triggers")?)?;
    let jobs = jobs(
        &cx,
        dir,
        section(&cx, &doc, "jobs")?,
        &triggers,
        &credentials,
        &retry,
    )?;
    check_flows(&cx, &jobs, &triggers)?;
    let plugins = super::plugins::parse(&cx, section(&cx, &doc, "plugins")?)?;
    Ok(Project {
        dir: dir.to_path_buf(),
        file: file.to_path_buf(),
        engine,
        inbox,
        http,
        jobs,
        triggers,
        credentials,
        plugins,
    })
}

fn engine(cx: &Ctx, t: Option<&Table>) -> Result<EngineConfig, ProjectError> {
    let empty = Table::new();
    let t = t.unwrap_or(&empty);
    check_keys(
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
    )?;
    let mode = match string(cx, "engine", t, "mode")? {
        None => EngineMode::Worker,
        Some(m) => EngineMode::parse(m).ok_or_else(|| {
            cx.err(
                "engine",
                Some("mode"),
                format!("`{m}` is not an engine mode; use \"worker\" or \"cli\""),
            )
        })?,
    };
    let core = string(cx, "engine", t, "core")?.unwrap_or(DEFAULT_CORE);
    let core = AdaptorSpec::parse(core).map_err(|m| cx.err("engine", Some("core"), m))?;
    Ok(EngineConfig {
        core,
        timeout: duration(cx, "engine", t, "timeout")?.unwrap_or(Duration::from_secs(300)),
        concurrency: positive(cx, "engine", t, "concurrency")?.unwrap_or(5),
        shutdown_grace: duration(cx, "engine", t, "shutdown_grace")?
            .unwrap_or(Duration::from_secs(30)),
        node: string(cx, "engine", t, "node")?
            .unwrap_or("node")
            .to_string(),
        mode,
        worker_memory_mb: positive(cx, "engine", t, "worker_memory_mb")?.unwrap_or(512) as u32,
        recycle_after: positive(cx, "engine", t, "recycle_after")?.unwrap_or(1000) as u32,
    })
}

fn triggers(cx: &Ctx, t: Option<&Table>) -> Result<BTreeMap<String, Trigger>, ProjectError> {
    let mut out = BTreeMap::new();
    for (name, value) in t.into_iter().flatten() {
        let table = format!("triggers.{name}");
        let body = sub_table(cx, &table, value)?;
        check_keys(
            cx,
            &table,
            body,
            &["criteria", "cron", "success", "failure"],
        )?;
        let kinds: Vec<&String> = body.keys().collect();
        let key = match kinds.as_slice() {
            [one] => one.as_str(),
            [] => {
                return Err(cx.err(
                    &table,
                    None,
                    "a trigger needs exactly one of criteria, cron, success, failure; it has none",
                ));
            }
            many => {
                let names: Vec<&str> = many.iter().map(|k| k.as_str()).collect();
                return Err(cx.err(&table, None, format!("a trigger needs exactly one of criteria, cron, success, failure; it has {}", names.join(" and "))));
            }
        };
        let kind = match key {
            "criteria" => TriggerKind::Criteria(criteria(cx, &table, &body["criteria"])?),
            "cron" => {
                let expr = string(cx, &table, body, "cron")?.unwrap_or_default();
                let schedule = cron(cx, &table, "cron", expr)?;
                TriggerKind::Cron {
                    expression: expr.to_string(),
                    schedule: Box::new(schedule),
                }
            }
            flow => {
                let job = string(cx, &table, body, flow)?
                    .unwrap_or_default()
                    .to_string();
                if flow == "success" {
                    TriggerKind::Success(job)
                } else {
                    TriggerKind::Failure(job)
                }
            }
        };
        out.insert(
            name.clone(),
            Trigger {
                name: name.clone(),
                kind,
            },
        );
    }
    Ok(out)
}

/// Criteria come as a TOML table or, as in the original's `project.yaml`, a JSON string.
fn criteria(cx: &Ctx, table: &str, value: &toml::Value) -> Result<Value, ProjectError> {
    let json = match value {
        toml::Value::String(s) => serde_json::from_str(s)
            .map_err(|e| cx.err(table, Some("criteria"), format!("is not valid JSON: {e}")))?,
        toml::Value::Table(t) => {
            serde_json::to_value(t).map_err(|e| cx.err(table, Some("criteria"), e.to_string()))?
        }
        _ => {
            return Err(cx.err(
                table,
                Some("criteria"),
                "must be a table such as { number = 2 } or a JSON object string",
            ));
        }
    };
    if !json.is_object() {
        return Err(cx.err(table, Some("criteria"), "must be a JSON object"));
    }
    Ok(json)
}

fn jobs(
    cx: &Ctx,
    dir: &Path,
    t: Option<&Table>,
    triggers: &BTreeMap<String, Trigger>,
    credentials: &BTreeMap<String, Value>,
    retry: &RetryPolicy,
) -> Result<BTreeMap<String, Arc<Job>>, ProjectError> {
    let mut out = BTreeMap::new();
    for (name, value) in t.into_iter().flatten() {
        let table = format!("jobs.{name}");
        let body = sub_table(cx, &table, value)?;
        check_keys(
            cx,
            &table,
            body,
            &[
                "adaptor",
                "expression",
                "expression_file",
                "trigger",
                "credential",
                "timeout",
                "retry",
            ],
        )?;
        let adaptor = string(cx, &table, body, "adaptor")?.unwrap_or(DEFAULT_ADAPTOR);
        let adaptor =
            AdaptorSpec::parse(adaptor).map_err(|m| cx.err(&table, Some("adaptor"), m))?;
        let expression = match (
            string(cx, &table, body, "expression")?,
            string(cx, &table, body, "expression_file")?,
        ) {
            (Some(e), None) => e.to_string(),
            (None, Some(path)) => {
                read_inside(dir, path).map_err(|m| cx.err(&table, Some("expression_file"), m))?
            }
            (Some(_), Some(_)) => {
                return Err(cx.err(
                    &table,
                    Some("expression"),
                    "give either expression or expression_file, not both",
                ));
            }
            (None, None) => {
                return Err(cx.err(
                    &table,
                    None,
                    "missing key `expression` (or `expression_file`)",
                ));
            }
        };
        let trigger = string(cx, &table, body, "trigger")?.ok_or_else(|| {
            cx.err(
                &table,
                Some("trigger"),
                "missing key: every job needs a trigger",
            )
        })?;
        if !triggers.contains_key(trigger) {
            return Err(cx.err(
                &table,
                Some("trigger"),
                format!(
                    "no trigger named `{trigger}`; defined: {}",
                    names(triggers.keys())
                ),
            ));
        }
        let credential = string(cx, &table, body, "credential")?;
        if let Some(c) = credential
            && !credentials.contains_key(c)
        {
            return Err(cx.err(
                &table,
                Some("credential"),
                format!(
                    "no credential named `{c}`; defined: {}",
                    names(credentials.keys())
                ),
            ));
        }
        let job = Job {
            name: name.clone(),
            adaptor,
            expression,
            trigger: trigger.to_string(),
            credential: credential.map(str::to_string),
            timeout: duration(cx, &table, body, "timeout")?,
            retry: match body.get("retry") {
                None => retry.clone(),
                Some(toml::Value::Table(t)) => super::delivery::retry(cx, &table, Some(t), retry)?,
                Some(_) => {
                    return Err(cx.err(
                        &table,
                        Some("retry"),
                        "must be a table such as { max_attempts = 5, backoff = \"2s\" }",
                    ));
                }
            },
        };
        out.insert(name.clone(), Arc::new(job));
    }
    Ok(out)
}

fn names<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = keys.map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// Flow triggers must name a job, and following flows must never come back
/// to where they started (that would run forever).
fn check_flows(
    cx: &Ctx,
    jobs: &BTreeMap<String, Arc<Job>>,
    triggers: &BTreeMap<String, Trigger>,
) -> Result<(), ProjectError> {
    let mut downstream: HashMap<&str, Vec<&str>> = HashMap::new();
    for trigger in triggers.values() {
        let (TriggerKind::Success(up) | TriggerKind::Failure(up)) = &trigger.kind else {
            continue;
        };
        let key = trigger.kind.label();
        if !jobs.contains_key(up) {
            return Err(cx.err(
                &format!("triggers.{}", trigger.name),
                Some(key),
                format!("no job named `{up}`; defined: {}", names(jobs.keys())),
            ));
        }
        for job in jobs.values().filter(|j| j.trigger == trigger.name) {
            downstream
                .entry(up.as_str())
                .or_default()
                .push(job.name.as_str());
        }
    }
    // Depth-first search; `path` holds the chain being explored.
    fn visit<'a>(
        job: &'a str,
        edges: &HashMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut Vec<&'a str>,
    ) -> Option<Vec<&'a str>> {
        if let Some(i) = path.iter().position(|p| *p == job) {
            let mut cycle = path[i..].to_vec();
            cycle.push(job);
            return Some(cycle);
        }
        if done.contains(&job) {
            return None;
        }
        path.push(job);
        for next in edges.get(job).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.push(job);
        None
    }
    let mut done = Vec::new();
    for job in jobs.keys() {
        if let Some(cycle) = visit(job, &downstream, &mut Vec::new(), &mut done) {
            let first = &jobs[cycle[1]];
            return Err(cx.err(
                &format!("jobs.{}", first.name),
                Some("trigger"),
                format!(
                    "flow cycle: {} would trigger each other forever",
                    cycle.join(" → ")
                ),
            ));
        }
    }
    Ok(())
}
