//! How receipts are delivered: the `[inbox]` table and retry policies
//! (`[retry]` for the project, `retry = {...}` per job).

use std::hash::{Hash, Hasher};
use std::time::Duration;

use toml::Table;

use super::credentials::CredentialEnv;
use super::fields::*;
use super::model::{ClusterConfig, InboxConfig};
use crate::storage::postgres::DatabaseUrl;

/// When and how often a failed run of a receipt is tried again.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 means no retries.
    pub max_attempts: u32,
    /// Delay before the second attempt; it doubles each time after.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Retry runs that failed (non-zero exit code).
    pub on_failure: bool,
    /// Retry runs that were killed at their timeout.
    pub on_timeout: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 1,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            on_failure: true,
            on_timeout: true,
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with jitter (between half and all of the step),
    /// capped. The jitter is derived from `seed` (the message id), so it is
    /// spread across messages yet repeatable for one.
    pub fn delay(&self, attempt: u32, seed: &str) -> Duration {
        let step = self
            .backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let step = step.min(self.max_backoff);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (seed, attempt).hash(&mut h);
        let fraction = 0.5 + (h.finish() % 1000) as f64 / 2000.0;
        step.mul_f64(fraction)
    }
}

const RETRY_KEYS: &[&str] = &["max_attempts", "backoff", "max_backoff", "on"];

/// Reads a retry table over `base` (the project default, or built-in
/// defaults); a bad key is reported and keeps `base`'s value.
pub(super) fn retry(cx: &Ctx, table: &str, t: Option<&Table>, base: &RetryPolicy) -> RetryPolicy {
    let Some(t) = t else { return base.clone() };
    let _ = check_keys(cx, table, t, RETRY_KEYS);
    let mut policy = base.clone();
    if let Some(n) = cx.ok(positive(cx, table, t, "max_attempts")).flatten() {
        policy.max_attempts = u32::try_from(n).unwrap_or(u32::MAX);
    }
    if let Some(d) = cx.ok(duration(cx, table, t, "backoff")).flatten() {
        policy.backoff = d;
    }
    if let Some(d) = cx.ok(duration(cx, table, t, "max_backoff")).flatten() {
        policy.max_backoff = d;
    }
    if let Some(on) = t.get("on") {
        let bad = || {
            cx.report(cx.err(
                table,
                Some("on"),
                "must be a list of \"failure\" and/or \"timeout\" (compile errors never retry)",
            ))
        };
        match on.as_array() {
            None => bad(),
            Some(list) => {
                let (mut on_failure, mut on_timeout) = (false, false);
                let mut ok = true;
                for item in list {
                    match item.as_str() {
                        Some("failure") => on_failure = true,
                        Some("timeout") => on_timeout = true,
                        _ => ok = false,
                    }
                }
                if ok {
                    policy.on_failure = on_failure;
                    policy.on_timeout = on_timeout;
                } else {
                    bad();
                }
            }
        }
    }
    policy
}

pub(super) fn inbox(cx: &Ctx, t: Option<&Table>) -> InboxConfig {
    let empty = Table::new();
    let t = t.unwrap_or(&empty);
    let _ = check_keys(
        cx,
        "inbox",
        t,
        &[
            "max_body_bytes",
            "durable",
            "store",
            "retention",
            "idempotency_field",
        ],
    );
    let durable = match t.get("durable") {
        None => true,
        Some(toml::Value::Boolean(b)) => *b,
        Some(_) => {
            cx.report(cx.err("inbox", Some("durable"), "must be true or false"));
            true
        }
    };
    InboxConfig {
        max_body_bytes: cx
            .ok(positive(cx, "inbox", t, "max_body_bytes"))
            .flatten()
            .unwrap_or(10 * 1024 * 1024),
        durable,
        store: cx
            .ok(string(cx, "inbox", t, "store"))
            .flatten()
            .unwrap_or(super::plugins::JOURNAL)
            .to_string(),
        retention: cx
            .ok(duration(cx, "inbox", t, "retention"))
            .flatten()
            .unwrap_or(Duration::from_secs(3600)),
        idempotency_field: cx
            .ok(string(cx, "inbox", t, "idempotency_field"))
            .flatten()
            .map(str::to_string),
    }
}

/// `[cluster]`: `database_url = { env = "NAME" }`, `lease` and `commits`.
pub(super) fn cluster(cx: &Ctx, t: Option<&Table>, env: CredentialEnv) -> ClusterConfig {
    let Some(t) = t else {
        return ClusterConfig::default();
    };
    let _ = check_keys(cx, "cluster", t, &["database_url", "lease", "commits"]);
    let database_url = t.get("database_url").and_then(|v| {
        cx.ok(super::credentials::env_string(
            cx,
            "cluster",
            "database_url",
            v,
            env,
        ))
        .flatten()
        .map(DatabaseUrl::new)
    });
    if let Some(url) = &database_url
        && url.target().is_none()
    {
        cx.report(cx.err(
            "cluster",
            Some("database_url"),
            "the variable does not hold a PostgreSQL URL; expected postgres://user:password@host:5432/database",
        ));
    }
    ClusterConfig {
        database_url,
        lease: cx.ok(duration(cx, "cluster", t, "lease")).flatten(),
        commits: match t.get("commits") {
            None => None,
            Some(toml::Value::Integer(n)) if (1..=16).contains(n) => Some(*n as usize),
            Some(_) => {
                cx.report(cx.err(
                    "cluster",
                    Some("commits"),
                    "must be a whole number from 1 to 16 (group commits in flight; default 4)",
                ));
                None
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = RetryPolicy {
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            ..Default::default()
        };
        let d1 = p.delay(1, "m");
        let d3 = p.delay(3, "m");
        assert!(
            d1 >= Duration::from_millis(500) && d1 <= Duration::from_secs(1),
            "{d1:?}"
        );
        assert!(
            d3 >= Duration::from_secs(2) && d3 <= Duration::from_secs(4),
            "{d3:?}"
        );
        assert!(p.delay(30, "m") <= Duration::from_secs(10));
        assert_eq!(p.delay(2, "a"), p.delay(2, "a"));
    }
}
