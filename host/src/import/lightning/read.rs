//! Reading a Lightning workflow's YAML into plain shapes (jobs, triggers,
//! edges with their source, target and condition), before any name is
//! settled or any TOML written. Refuses what cannot be read, naming the
//! field; never reads a file.

use std::collections::BTreeMap;

use serde_yaml_ng::{Mapping, Value as Yaml};

use super::super::{key_text, mapping, scalar_text, section};

/// One workflow as read from the YAML, before any name is settled.
pub(super) struct Workflow {
    pub(super) key: String,
    /// Its `name`, and fields this importer does not know.
    pub(super) name: Option<String>,
    pub(super) unknown: Vec<(String, Yaml)>,
    pub(super) jobs: BTreeMap<String, LightningJob>,
    pub(super) triggers: Vec<(String, Mapping)>,
    pub(super) edges: Vec<(String, Mapping)>,
}

pub(super) struct LightningJob {
    pub(super) fields: Mapping,
    pub(super) body: Yaml,
}

impl Workflow {
    pub(super) fn read(key: &str, body: &Yaml) -> Result<Workflow, String> {
        let place = format!("workflows.{key}");
        let fields = mapping(body, &place)?;
        let mut wf = Workflow {
            key: key.to_string(),
            name: None,
            unknown: Vec::new(),
            jobs: BTreeMap::new(),
            triggers: Vec::new(),
            edges: Vec::new(),
        };
        for (k, v) in fields {
            let k = key_text(k, &place)?;
            match k.as_str() {
                "name" => wf.name = scalar_text(v, &place, "name").ok(),
                "jobs" => {
                    for (job, body) in &section(v, &format!("{place}.jobs"))? {
                        let job = key_text(job, &place)?;
                        let jplace = format!("{place}.jobs.{job}");
                        let fields = mapping(body, &jplace)?.clone();
                        let body = fields
                            .get("body")
                            .cloned()
                            .ok_or_else(|| format!("{jplace}: missing `body`"))?;
                        wf.jobs.insert(job, LightningJob { fields, body });
                    }
                }
                "triggers" => {
                    for (t, body) in &section(v, &format!("{place}.triggers"))? {
                        let t = key_text(t, &place)?;
                        let body = mapping(body, &format!("{place}.triggers.{t}"))?.clone();
                        wf.triggers.push((t, body));
                    }
                }
                "edges" => {
                    for (e, body) in &section(v, &format!("{place}.edges"))? {
                        let e = key_text(e, &place)?;
                        let body = mapping(body, &format!("{place}.edges.{e}"))?.clone();
                        wf.edges.push((e, body));
                    }
                }
                _ => wf.unknown.push((k, v.clone())),
            }
        }
        Ok(wf)
    }
}

pub(super) enum Source {
    Trigger(String),
    Job(String),
}

pub(super) enum Condition {
    Success,
    Failure,
    Always,
    Js {
        expression: String,
        label: Option<String>,
    },
}

pub(super) struct Edge {
    pub(super) source: Source,
    pub(super) target: String,
    pub(super) condition: Condition,
    pub(super) enabled: bool,
    pub(super) unknown: Vec<(String, Yaml)>,
}

impl Edge {
    pub(super) fn read(place: &str, fields: &Mapping) -> Result<Edge, String> {
        let text = |key: &str| -> Result<Option<String>, String> {
            match fields.get(key) {
                None | Some(Yaml::Null) => Ok(None),
                Some(v) => scalar_text(v, place, key).map(Some),
            }
        };
        let source = match (text("source_trigger")?, text("source_job")?) {
            (Some(t), None) => Source::Trigger(t),
            (None, Some(j)) => Source::Job(j),
            (Some(_), Some(_)) => {
                return Err(format!(
                    "{place}: has both source_trigger and source_job; an edge has one source"
                ));
            }
            (None, None) => {
                return Err(format!("{place}: needs source_trigger or source_job"));
            }
        };
        let target = text("target_job")?.ok_or_else(|| format!("{place}: needs target_job"))?;
        let condition = match text("condition_type")?.as_deref() {
            None | Some("always") => Condition::Always,
            Some("on_job_success") => Condition::Success,
            Some("on_job_failure") => Condition::Failure,
            Some("js_expression") => Condition::Js {
                expression: text("condition_expression")?
                    .filter(|e| !e.trim().is_empty())
                    .ok_or_else(|| {
                        format!("{place}: a js_expression edge needs condition_expression")
                    })?,
                label: text("condition_label")?,
            },
            Some(other) => {
                return Err(format!(
                    "{place}: condition_type `{other}` is not one of always, on_job_success, on_job_failure, js_expression"
                ));
            }
        };
        let enabled = fields
            .get("enabled")
            .and_then(Yaml::as_bool)
            .unwrap_or(true);
        let known = [
            "source_trigger",
            "source_job",
            "target_job",
            "condition_type",
            "condition_expression",
            "condition_label",
            "enabled",
        ];
        let unknown = fields
            .iter()
            .filter_map(|(k, v)| {
                let k = k.as_str()?;
                (!known.contains(&k) && !matches!(v, Yaml::Null))
                    .then(|| (k.to_string(), v.clone()))
            })
            .collect();
        Ok(Edge {
            source,
            target,
            condition,
            enabled,
            unknown,
        })
    }
}
