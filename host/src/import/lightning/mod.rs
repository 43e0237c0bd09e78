//! Converting an OpenFn Lightning `project.yaml` (the project spec that
//! `openfn deploy` reads and Lightning's GitHub sync writes) into this
//! service's `project.toml` plus one `jobs/<name>.js` per job.
//!
//! Each workflow's jobs become jobs; its webhook and cron triggers become
//! `webhook` and `cron` triggers; each edge from a job becomes a flow trigger
//! of its own (`success`, `failure`, `always`, or `always` with a
//! `condition` for a `js_expression` edge), so a job with several incoming
//! edges names several triggers. Lightning exports credentials by name only:
//! each becomes `{ env = "OPENFN_CREDENTIAL_<NAME>" }`, a variable holding
//! the credential's JSON body, and the names are reported as notes. Disabled
//! triggers and edges are written `enabled = false`. Like the original's
//! format, nothing is dropped silently: an unknown field is a warning and a
//! comment. This module reads only job files a `body: { path }` names next
//! to the YAML, and writes nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::Path;

use serde_yaml_ng::{Mapping, Value as Yaml};

mod read;

use read::{Condition, Edge, LightningJob, Source, Workflow};

use super::{Imported, file_stem, key_text, scalar_text, section, toml_key, toml_string, unique};

/// The prefix of the variables credentials are read from.
const CREDENTIAL_VAR_PREFIX: &str = "OPENFN_CREDENTIAL_";

/// A Lightning project has `workflows`; the original microservice's has
/// `jobs` and `triggers` at the top level and never `workflows`.
pub(super) fn is_lightning(top: &Mapping) -> bool {
    top.contains_key("workflows")
}

pub(super) fn convert(top: &Mapping, source_name: &str, base: &Path) -> Result<Imported, String> {
    let mut cx = Converter {
        base,
        warnings: Vec::new(),
        notes: Vec::new(),
        out: String::new(),
    };
    let mut head = format!(
        "# Imported from {source_name}, an OpenFn Lightning project, by `microservice import`.\n# Each job's body is in jobs/<name>.js.\n"
    );
    let mut workflows = Mapping::new();
    let mut declared_credentials = Mapping::new();
    let mut unknown = Vec::new();
    for (key, value) in top {
        match key_text(key, "top level")?.as_str() {
            "name" | "description" => {
                if let Ok(text) = scalar_text(value, "top level", "name") {
                    let key = key_text(key, "top level")?;
                    for line in text.lines() {
                        let _ = writeln!(head, "# {key}: {line}");
                    }
                }
            }
            "workflows" => workflows = section(value, "workflows")?,
            "credentials" => declared_credentials = section(value, "credentials")?,
            other => unknown.push((other.to_string(), value.clone())),
        }
    }
    cx.out = head;
    for (key, value) in &unknown {
        // Lightning writes `collections: null` and the like: only a value
        // is worth a warning.
        if !matches!(value, Yaml::Null) {
            cx.unknown(key, value, "the top level");
        }
    }
    if workflows.is_empty() {
        cx.warnings.push("there are no workflows".into());
    }

    // Names first: jobs keep their key unless another workflow has a job of
    // the same key; then both are prefixed with their workflow's key.
    let mut parsed = Vec::new();
    for (key, body) in &workflows {
        let key = key_text(key, "workflows")?;
        parsed.push(Workflow::read(&key, body)?);
    }
    let mut job_count: HashMap<&str, usize> = HashMap::new();
    for wf in &parsed {
        for job in wf.jobs.keys() {
            *job_count.entry(job.as_str()).or_default() += 1;
        }
    }
    let job_name = |wf: &str, job: &str| {
        if job_count.get(job).copied().unwrap_or(0) > 1 {
            format!("{wf}-{job}")
        } else {
            job.to_string()
        }
    };

    let mut credentials: BTreeMap<String, String> = BTreeMap::new();
    for (key, body) in &declared_credentials {
        let key = key_text(key, "credentials")?;
        let label = match body {
            Yaml::Mapping(m) => m
                .get("name")
                .and_then(|n| scalar_text(n, "credentials", "name").ok())
                .unwrap_or_else(|| key.clone()),
            _ => key.clone(),
        };
        credentials.insert(key, label);
    }

    let mut files = Vec::new();
    let mut used_files = HashSet::new();
    let mut triggers = 0;
    let mut used_credentials: Vec<String> = Vec::new();
    let mut used_triggers: HashSet<String> = HashSet::new();
    for wf in &parsed {
        let converted = cx.workflow(wf, &job_name, &mut used_triggers)?;
        triggers += converted.triggers;
        for (key, job) in &wf.jobs {
            let name = job_name(&wf.key, key);
            let table = cx.job(wf, key, &name, job, &converted.incoming)?;
            cx.out.push_str(&table.text);
            let file = format!("jobs/{}.js", file_stem(&name, &mut used_files));
            let _ = writeln!(cx.out, "expression_file = {}", toml_string(&file));
            for (k, v) in &table.unknown {
                cx.unknown(k, v, &format!("workflows.{}.jobs.{key}", wf.key));
            }
            files.push((file, cx.body(&wf.key, &name, &job.body)?));
            if let Some(c) = &table.credential
                && !used_credentials.contains(c)
            {
                used_credentials.push(c.clone());
            }
        }
        cx.out.push_str(&converted.text);
    }

    let mut vars = HashSet::new();
    if !used_credentials.is_empty() {
        cx.out.push_str("\n[credentials]\n");
    }
    for name in &used_credentials {
        let label = credentials
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.clone());
        let var = unique_var(&label, &mut vars);
        let _ = writeln!(
            cx.out,
            "{} = {{ env = {} }}",
            toml_key(name),
            toml_string(&var)
        );
        cx.notes.push(format!(
            "credential `{name}`: set {var} to its JSON body, e.g. {var}='{{\"username\":\"…\",\"password\":\"…\"}}'"
        ));
    }
    for (name, _) in credentials
        .iter()
        .filter(|(n, _)| !used_credentials.contains(n))
    {
        let _ = writeln!(
            cx.out,
            "# not imported: credential `{name}` (no job uses it)"
        );
    }
    Ok(Imported {
        toml: cx.out,
        jobs: files.len(),
        files,
        warnings: cx.warnings,
        notes: cx.notes,
        triggers,
        credentials: used_credentials.len(),
    })
}

/// A workflow's triggers and edges as TOML, and which triggers each job
/// is started by.
struct Converted {
    text: String,
    triggers: usize,
    /// Job key (in the workflow) → trigger names, in the order written.
    incoming: HashMap<String, Vec<String>>,
}

/// A job's table, before its `expression_file`.
struct JobTable {
    text: String,
    credential: Option<String>,
    unknown: Vec<(String, Yaml)>,
}

struct Converter<'a> {
    base: &'a Path,
    warnings: Vec<String>,
    notes: Vec<String>,
    out: String,
}

impl Converter<'_> {
    fn unknown(&mut self, key: &str, value: &Yaml, place: &str) {
        self.warnings.push(format!(
            "{place}: unknown field `{key}`; not imported (kept as a comment in project.toml)"
        ));
        let text = serde_json::to_string(value).unwrap_or_else(|_| "(not representable)".into());
        let _ = writeln!(self.out, "# not imported: {key} = {text}");
    }

    fn workflow(
        &mut self,
        wf: &Workflow,
        job_name: &dyn Fn(&str, &str) -> String,
        used: &mut HashSet<String>,
    ) -> Result<Converted, String> {
        let place = format!("workflows.{}", wf.key);
        let _ = writeln!(
            self.out,
            "\n# Workflow `{}`{}",
            wf.key,
            wf.name
                .as_ref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default()
        );
        for (key, value) in &wf.unknown {
            self.unknown(key, value, &place);
        }
        let mut text = String::new();
        let mut incoming: HashMap<String, Vec<String>> = HashMap::new();
        let mut count = 0;
        let webhooks = wf
            .triggers
            .iter()
            .filter(|(_, t)| t.get("type").and_then(Yaml::as_str) == Some("webhook"))
            .count();
        // Lightning's triggers, by their key in the workflow.
        let mut trigger_names: HashMap<&str, (String, Mapping)> = HashMap::new();
        for (key, fields) in &wf.triggers {
            let name = unique(format!("{}-{key}", wf.key), used);
            trigger_names.insert(key.as_str(), (name, fields.clone()));
        }
        for (edge, fields) in &wf.edges {
            let eplace = format!("{place}.edges.{edge}");
            let mut e = Edge::read(&eplace, fields)?;
            if !wf.jobs.contains_key(&e.target) {
                return Err(format!(
                    "{eplace}: target_job `{}` is not a job of this workflow",
                    e.target
                ));
            }
            let target = job_name(&wf.key, &e.target);
            for (key, value) in std::mem::take(&mut e.unknown) {
                self.unknown(&key, &value, &eplace);
            }
            match &e.source {
                Source::Trigger(t) => {
                    let Some((name, tfields)) = trigger_names.get(t.as_str()) else {
                        return Err(format!(
                            "{eplace}: source_trigger `{t}` is not a trigger of this workflow"
                        ));
                    };
                    if !matches!(e.condition, Condition::Always) {
                        self.warnings.push(format!(
                            "{eplace}: a condition on an edge from a trigger is not imported; the trigger starts `{target}` on every receipt or tick"
                        ));
                    }
                    if e.enabled {
                        incoming
                            .entry(e.target.clone())
                            .or_default()
                            .push(name.clone());
                        continue;
                    }
                    // A disabled edge from a trigger: a disabled copy of the
                    // trigger for this job alone, so it stays visible.
                    let copy = unique(format!("{name}-{target}"), used);
                    let path_suffix = format!("-{target}");
                    text.push_str(&self.trigger(
                        &format!("{place}.triggers.{t}"),
                        &copy,
                        tfields,
                        &TriggerCx {
                            webhook_path: webhook_path(wf, t, webhooks, &path_suffix),
                            job_name,
                            workflow: wf,
                            disabled: true,
                            quiet: true,
                        },
                    )?);
                    incoming.entry(e.target.clone()).or_default().push(copy);
                    count += 1;
                }
                Source::Job(s) => {
                    if !wf.jobs.contains_key(s) {
                        return Err(format!(
                            "{eplace}: source_job `{s}` is not a job of this workflow"
                        ));
                    }
                    let source = job_name(&wf.key, s);
                    let name = unique(
                        if edge.contains("->") {
                            edge.clone()
                        } else {
                            format!("{s}->{}", e.target)
                        },
                        used,
                    );
                    let _ = writeln!(text, "\n[triggers.{}]", toml_key(&name));
                    let (key, condition) = match &e.condition {
                        Condition::Success => ("success", None),
                        Condition::Failure => ("failure", None),
                        Condition::Always => ("always", None),
                        Condition::Js { expression, label } => {
                            ("always", Some((expression, label)))
                        }
                    };
                    let _ = writeln!(text, "{key} = {}", toml_string(&source));
                    if let Some((expression, label)) = condition {
                        if let Some(label) = label {
                            let _ = writeln!(text, "# condition_label: {label}");
                        }
                        let _ = writeln!(text, "condition = {}", toml_string(expression.trim()));
                    }
                    if !e.enabled {
                        text.push_str("enabled = false\n");
                    }
                    incoming.entry(e.target.clone()).or_default().push(name);
                    count += 1;
                }
            }
        }
        for (key, fields) in &wf.triggers {
            let (name, _) = &trigger_names[key.as_str()];
            text.push_str(&self.trigger(
                &format!("{place}.triggers.{key}"),
                name,
                fields,
                &TriggerCx {
                    webhook_path: webhook_path(wf, key, webhooks, ""),
                    job_name,
                    workflow: wf,
                    disabled: false,
                    quiet: false,
                },
            )?);
            count += 1;
        }
        // A job no edge reaches (Lightning allows it) still needs a trigger:
        // a disabled webhook of its own, which starts nothing until enabled.
        for job in wf.jobs.keys() {
            if incoming.contains_key(job) {
                continue;
            }
            let target = job_name(&wf.key, job);
            let name = unique(format!("{target}-unreached"), used);
            self.warnings.push(format!(
                "{place}.jobs.{job}: no enabled edge leads to it; it gets the disabled trigger `{name}`"
            ));
            let _ = writeln!(
                text,
                "\n[triggers.{}]\nwebhook = {}\nenabled = false",
                toml_key(&name),
                toml_string(&path_segment(&name))
            );
            incoming.insert(job.clone(), vec![name]);
            count += 1;
        }
        Ok(Converted {
            text,
            triggers: count,
            incoming,
        })
    }

    fn trigger(
        &mut self,
        place: &str,
        name: &str,
        fields: &Mapping,
        tcx: &TriggerCx,
    ) -> Result<String, String> {
        let mut text = format!("\n[triggers.{}]\n", toml_key(name));
        let kind = fields
            .get("type")
            .map(|t| scalar_text(t, place, "type"))
            .transpose()?
            .ok_or_else(|| format!("{place}: missing `type` (webhook or cron)"))?;
        let mut enabled = !tcx.disabled;
        // Written after the kind's key: `reply`, and comments.
        let mut lines = Vec::new();
        for (key, value) in fields {
            let key = key_text(key, place)?;
            match key.as_str() {
                "type" => {}
                "enabled" => {
                    if value.as_bool() == Some(false) {
                        enabled = false;
                    }
                }
                "cron_expression" if kind == "cron" => {
                    let expr = scalar_text(value, place, &key)?;
                    let _ = writeln!(text, "cron = {}", toml_string(&expr));
                }
                "cron_cursor_job" if kind == "cron" => {
                    if !matches!(value, Yaml::Null) {
                        let job = scalar_text(value, place, &key)?;
                        if !tcx.workflow.jobs.contains_key(&job) {
                            return Err(format!(
                                "{place}: cron_cursor_job `{job}` is not a job of this workflow"
                            ));
                        }
                        let job = (tcx.job_name)(&tcx.workflow.key, &job);
                        let _ = writeln!(text, "cursor = {}", toml_string(&job));
                    }
                }
                "webhook_reply" if kind == "webhook" => {
                    match scalar_text(value, place, &key)?.as_str() {
                        "before_start" => {}
                        "after_completion" => {
                            lines.push("reply = \"after_completion\"".to_string());
                        }
                        other => {
                            if !tcx.quiet {
                                self.warnings.push(format!(
                                "{place}: webhook_reply `{other}` has no equivalent here; the webhook answers 202 at once (kept as a comment)"
                            ));
                            }
                            lines.push(format!("# not imported: webhook_reply = {other:?}"));
                        }
                    }
                }
                _ => {
                    if !tcx.quiet {
                        self.warnings.push(format!(
                            "{place}: unknown field `{key}`; not imported (kept as a comment in project.toml)"
                        ));
                    }
                    let json = serde_json::to_string(value)
                        .unwrap_or_else(|_| "(not representable)".into());
                    lines.push(format!("# not imported: {key} = {json}"));
                }
            }
        }
        match kind.as_str() {
            "webhook" => {
                let _ = writeln!(text, "webhook = {}", toml_string(&tcx.webhook_path));
                if enabled && !tcx.quiet {
                    self.notes
                        .push(format!("webhook `{name}`: POST /i/{}", tcx.webhook_path));
                }
            }
            "cron" => {
                if !fields.contains_key("cron_expression") {
                    return Err(format!("{place}: a cron trigger needs `cron_expression`"));
                }
            }
            other => {
                return Err(format!(
                    "{place}: `{other}` triggers have no equivalent here (webhook and cron do); remove it, or the edges from it, and import again"
                ));
            }
        }
        if !enabled {
            text.push_str("enabled = false\n");
        }
        for c in lines {
            let _ = writeln!(text, "{c}");
        }
        Ok(text)
    }

    fn job(
        &mut self,
        wf: &Workflow,
        key: &str,
        name: &str,
        job: &LightningJob,
        incoming: &HashMap<String, Vec<String>>,
    ) -> Result<JobTable, String> {
        let place = format!("workflows.{}.jobs.{key}", wf.key);
        let mut text = format!("\n[jobs.{}]\n", toml_key(name));
        let mut credential = None;
        let mut unknown = Vec::new();
        for (k, v) in &job.fields {
            let k = key_text(k, &place)?;
            match k.as_str() {
                "body" => {}
                "name" => {
                    let label = scalar_text(v, &place, "name")?;
                    let _ = writeln!(text, "# name: {label}");
                }
                "adaptor" => {
                    let adaptor = scalar_text(v, &place, "adaptor")?;
                    let _ = writeln!(text, "adaptor = {}", toml_string(&adaptor));
                }
                "credential" | "project_credential_id" | "keychain_credential_id"
                    if matches!(v, Yaml::Null) => {}
                "credential" => {
                    let c = scalar_text(v, &place, "credential")?;
                    let _ = writeln!(text, "credential = {}", toml_string(&c));
                    credential = Some(c);
                }
                _ => unknown.push((k, v.clone())),
            }
        }
        if !job.fields.contains_key("adaptor") {
            self.warnings.push(format!(
                "{place}: no adaptor; the default @openfn/language-common will be used"
            ));
        }
        let triggers = &incoming[key];
        let list: Vec<String> = triggers.iter().map(|t| toml_string(t)).collect();
        match list.as_slice() {
            [one] => {
                let _ = writeln!(text, "trigger = {one}");
            }
            many => {
                let _ = writeln!(text, "trigger = [{}]", many.join(", "));
            }
        }
        Ok(JobTable {
            text,
            credential,
            unknown,
        })
    }

    /// A job's body: inline text, or `{ path: <file> }` next to the YAML.
    fn body(&mut self, wf: &str, job: &str, body: &Yaml) -> Result<String, String> {
        let place = format!("workflows.{wf}.jobs.{job}");
        let mut text = match body {
            Yaml::Mapping(m) => {
                let path = m
                    .get("path")
                    .and_then(Yaml::as_str)
                    .ok_or_else(|| format!("{place}: body must be text or {{ path: <file> }}"))?;
                let full = self.base.join(path);
                std::fs::read_to_string(&full)
                    .map_err(|e| format!("{place}: body: cannot read {} ({e})", full.display()))?
            }
            other => scalar_text(other, &place, "body")?,
        };
        if !text.ends_with('\n') {
            text.push('\n');
        }
        Ok(text)
    }
}

/// What a trigger's conversion needs from its workflow.
struct TriggerCx<'a> {
    webhook_path: String,
    job_name: &'a dyn Fn(&str, &str) -> String,
    workflow: &'a Workflow,
    /// Written disabled whatever the YAML says (a disabled edge's copy).
    disabled: bool,
    /// A copy: its warnings and notes were given with the original.
    quiet: bool,
}

/// Where a webhook is served: the workflow's key when it has one webhook
/// (Lightning's URL is a UUID the project file does not hold), else the
/// workflow's and the trigger's keys.
fn webhook_path(wf: &Workflow, trigger: &str, webhooks: usize, suffix: &str) -> String {
    let base = if webhooks > 1 {
        format!("{}-{trigger}", wf.key)
    } else {
        wf.key.clone()
    };
    path_segment(&format!("{base}{suffix}"))
}

/// Text as a URL path segment: unreserved characters kept, others `-`.
fn path_segment(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._~".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// `OPENFN_CREDENTIAL_` and the credential's name in capitals, every other
/// character `_`, unique.
fn unique_var(label: &str, used: &mut HashSet<String>) -> String {
    let mut base = String::from(CREDENTIAL_VAR_PREFIX);
    let mut last_underscore = true;
    for c in label.chars() {
        if c.is_ascii_alphanumeric() {
            base.push(c.to_ascii_uppercase());
            last_underscore = false;
        } else if !last_underscore {
            base.push('_');
            last_underscore = true;
        }
    }
    let base = base.trim_end_matches('_').to_string();
    unique(base, used)
}
