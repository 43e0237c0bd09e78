//! `[triggers.<name>]` tables: what starts a job. Exactly one of `criteria`
//! (a receipt containing this JSON), `cron` (with an optional `timezone`),
//! `success` or `failure` (after a run of the named job). Whether the jobs
//! a flow names exist is checked with the jobs, in `validate`.

use std::collections::BTreeMap;

use serde_json::Value;
use toml::Table;

use super::ProjectError;
use super::fields::*;
use super::model::{Trigger, TriggerKind};
use crate::cron::{Schedule, Zone};

/// The keys that say what kind of trigger a table is; exactly one is needed.
const KINDS: &[&str] = &["criteria", "cron", "success", "failure"];

/// Every trigger, the bad ones too (as an empty criteria placeholder), so
/// that a job naming a bad trigger is not also told it does not exist.
pub(super) fn parse(cx: &Ctx, t: Option<&Table>) -> BTreeMap<String, Trigger> {
    let mut out = BTreeMap::new();
    for (name, value) in t.into_iter().flatten() {
        let table = format!("triggers.{name}");
        let kind = cx
            .ok(trigger(cx, &table, value))
            .unwrap_or_else(|| TriggerKind::Criteria(Value::Object(Default::default())));
        out.insert(
            name.clone(),
            Trigger {
                name: name.clone(),
                kind,
            },
        );
    }
    out
}

fn trigger(cx: &Ctx, table: &str, value: &toml::Value) -> Result<TriggerKind, ProjectError> {
    let body = sub_table(cx, table, value)?;
    let mut allowed = KINDS.to_vec();
    allowed.push("timezone");
    check_keys(cx, table, body, &allowed)?;
    let kinds: Vec<&str> = body
        .keys()
        .map(String::as_str)
        .filter(|k| KINDS.contains(k))
        .collect();
    let key = match kinds.as_slice() {
        [one] => *one,
        [] => {
            return Err(cx.err(
                table,
                None,
                "a trigger needs exactly one of criteria, cron, success, failure; it has none",
            ));
        }
        many => {
            return Err(cx.err(
                table,
                None,
                format!(
                    "a trigger needs exactly one of criteria, cron, success, failure; it has {}",
                    many.join(" and ")
                ),
            ));
        }
    };
    if key != "cron" && body.contains_key("timezone") {
        cx.report(cx.err(
            table,
            Some("timezone"),
            format!("applies to cron triggers only; this is a {key} trigger"),
        ));
    }
    Ok(match key {
        "criteria" => TriggerKind::Criteria(criteria(cx, table, &body["criteria"])?),
        "cron" => {
            let zone = cx.ok(
                string(cx, table, body, "timezone").and_then(|name| match name {
                    None => Ok(Zone::service_default()),
                    Some(name) => Zone::named(name).map_err(|m| cx.err(table, Some("timezone"), m)),
                }),
            );
            let expr = string(cx, table, body, "cron")?.unwrap_or_default();
            let schedule =
                Schedule::new(cron(cx, table, "cron", expr)?, zone.unwrap_or(Zone::Local));
            if schedule.next_after(chrono::Utc::now()).is_none() {
                return Err(cx.err(
                    table,
                    Some("cron"),
                    format!("`{expr}` never fires: no date matches it"),
                ));
            }
            TriggerKind::Cron {
                expression: expr.to_string(),
                schedule: Box::new(schedule),
            }
        }
        flow => {
            let job = string(cx, table, body, flow)?
                .unwrap_or_default()
                .to_string();
            if flow == "success" {
                TriggerKind::Success(job)
            } else {
                TriggerKind::Failure(job)
            }
        }
    })
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
