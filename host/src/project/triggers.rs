//! `[triggers.<name>]` tables: what starts a job. Exactly one of `criteria`
//! (a receipt at `/inbox` containing this JSON), `cron` (with an optional
//! `timezone` and `cursor`), `webhook` (every receipt at `/i/<path>`), or a
//! flow: `success`, `failure` or `always` (after a run of the named job),
//! optionally with a JavaScript `condition`. Any trigger may be
//! `enabled = false`. Whether the jobs a flow or cursor names exist is
//! checked with the jobs, in `validate`; this module never runs a condition.

use std::collections::BTreeMap;

use serde_json::Value;
use toml::Table;

use super::ProjectError;
use super::credentials::CredentialEnv;
use super::fields::*;
use super::model::{Trigger, TriggerKind};
use crate::cron::{Schedule, Zone};

/// The keys that say what kind of trigger a table is; exactly one is needed.
const KINDS: &[&str] = &[
    "criteria", "cron", "webhook", "success", "failure", "always",
];

/// Keys that only some kinds take, with those kinds.
const ONLY_FOR: &[(&str, &[&str])] = &[
    ("timezone", &["cron"]),
    ("cursor", &["cron"]),
    ("condition", &["success", "failure", "always"]),
];

/// Every trigger, the bad ones too (as an empty criteria placeholder), so
/// that a job naming a bad trigger is not also told it does not exist.
pub(super) fn parse(cx: &Ctx, t: Option<&Table>, env: CredentialEnv) -> BTreeMap<String, Trigger> {
    let mut out = BTreeMap::new();
    let mut paths: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in t.into_iter().flatten() {
        let table = format!("triggers.{name}");
        let kind = cx
            .ok(trigger(cx, &table, value, env))
            .unwrap_or_else(|| TriggerKind::Criteria(Value::Object(Default::default())));
        if let TriggerKind::Webhook { path, .. } = &kind
            && let Some(other) = paths.insert(path.clone(), name.clone())
        {
            cx.report(cx.err(
                &table,
                Some("webhook"),
                format!(
                    "`{path}` is also the path of [triggers.{other}]; each webhook needs its own"
                ),
            ));
        }
        let body = value.as_table();
        let enabled = body
            .and_then(|b| cx.ok(boolean(cx, &table, b, "enabled")))
            .flatten()
            .unwrap_or(true);
        let condition = body.and_then(|b| cx.ok(condition(cx, &table, b))).flatten();
        out.insert(
            name.clone(),
            Trigger {
                name: name.clone(),
                kind,
                enabled,
                condition,
            },
        );
    }
    out
}

/// A flow's `condition`: JavaScript text, checked only for being there.
fn condition(cx: &Ctx, table: &str, body: &Table) -> Result<Option<String>, ProjectError> {
    match string(cx, table, body, "condition")? {
        Some(c) if c.trim().is_empty() => Err(cx.err(
            table,
            Some("condition"),
            "is empty; write a JavaScript expression over `state`, such as \"state.data.ok\", or leave the key out",
        )),
        c => Ok(c.map(str::to_string)),
    }
}

/// A webhook path: one URL segment of unreserved characters.
fn webhook_path(cx: &Ctx, table: &str, body: &Table) -> Result<String, ProjectError> {
    let path = string(cx, table, body, "webhook")?.unwrap_or_default();
    let ok = !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c));
    if !ok {
        return Err(cx.err(
            table,
            Some("webhook"),
            format!(
                "`{path}` is not a webhook path; use letters, digits, `-`, `_`, `.` and `~` (it is served at POST /i/<path>)"
            ),
        ));
    }
    Ok(path.to_string())
}

fn trigger(
    cx: &Ctx,
    table: &str,
    value: &toml::Value,
    env: CredentialEnv,
) -> Result<TriggerKind, ProjectError> {
    let body = sub_table(cx, table, value)?;
    let mut allowed = KINDS.to_vec();
    allowed.extend(ONLY_FOR.iter().map(|(k, _)| *k));
    allowed.extend(super::webhooks::KEYS);
    allowed.push("enabled");
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
                "a trigger needs exactly one of criteria, cron, webhook, success, failure, always; it has none",
            ));
        }
        many => {
            return Err(cx.err(
                table,
                None,
                format!(
                    "a trigger needs exactly one of criteria, cron, webhook, success, failure, always; it has {}",
                    many.join(" and ")
                ),
            ));
        }
    };
    let webhook_only = super::webhooks::KEYS.iter().map(|k| (*k, &["webhook"][..]));
    for (only, kinds) in ONLY_FOR.iter().copied().chain(webhook_only) {
        if !kinds.contains(&key) && body.contains_key(only) {
            let kinds = match kinds {
                [one] => format!("{one} triggers"),
                _ => "flow triggers (success, failure, always)".to_string(),
            };
            cx.report(cx.err(
                table,
                Some(only),
                format!(
                    "applies to {kinds} only; this is {} {key} trigger",
                    if key.starts_with(['a', 'e', 'i', 'o', 'u']) {
                        "an"
                    } else {
                        "a"
                    }
                ),
            ));
        }
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
            let cursor = cx
                .ok(string(cx, table, body, "cursor"))
                .flatten()
                .map(str::to_string);
            TriggerKind::Cron {
                expression: expr.to_string(),
                schedule: Box::new(schedule),
                cursor,
            }
        }
        "webhook" => TriggerKind::Webhook {
            path: webhook_path(cx, table, body)?,
            auth: super::webhooks::auth(cx, table, body, env)?,
            reply: super::webhooks::reply(cx, table, body)?,
        },
        flow => {
            let job = string(cx, table, body, flow)?
                .unwrap_or_default()
                .to_string();
            match flow {
                "success" => TriggerKind::Success(job),
                "failure" => TriggerKind::Failure(job),
                _ => TriggerKind::Always(job),
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
