//! A webhook trigger's own settings: who may send to it (`api_key`,
//! `basic`) and how it answers (`reply` and its codes and deadline).
//!
//! Keys and passwords come from the environment only (`{ env = "NAME" }`,
//! resolved as credentials are) and are kept as SHA-256 digests, never as
//! text: this module must never put a secret into an error, a log line or a
//! `Debug` print.

use std::fmt;
use std::time::Duration;

use sha2::{Digest, Sha256};
use toml::Table;

use super::ProjectError;
use super::credentials::{CredentialEnv, env_string};
use super::fields::{Ctx, duration, string};

/// Keys only webhook triggers take.
pub(super) const KEYS: &[&str] = &[
    "api_key",
    "basic",
    "reply",
    "success_code",
    "failure_code",
    "reply_timeout",
];

/// A SHA-256 digest of a key, or of `user:password`.
pub type SecretDigest = [u8; 32];

pub fn digest(secret: &str) -> SecretDigest {
    Sha256::digest(secret.as_bytes()).into()
}

/// Credentials a webhook trigger accepts besides the service's own keys.
#[derive(Clone, Default)]
pub struct WebhookAuth {
    /// `api_key`: each key the variable holds (comma-separated, for rotation).
    pub api_keys: Vec<SecretDigest>,
    /// `basic`: `username:password`.
    pub basic: Option<SecretDigest>,
}

impl WebhookAuth {
    pub fn is_empty(&self) -> bool {
        self.api_keys.is_empty() && self.basic.is_none()
    }
}

impl fmt::Debug for WebhookAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookAuth")
            .field("api_keys", &self.api_keys.len())
            .field("basic", &self.basic.is_some())
            .finish()
    }
}

/// How a webhook answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// 202 once the receipt is taken (or stored), as `/inbox` does.
    BeforeStart,
    /// After the workflow (the trigger's jobs and every flow after them)
    /// has finished, with the final state of its last step.
    AfterCompletion {
        success_code: u16,
        failure_code: u16,
        /// Past this, a 202 with the runs' ids; the runs go on.
        timeout: Duration,
    },
}

pub const DEFAULT_SUCCESS_CODE: u16 = 201;
pub const DEFAULT_FAILURE_CODE: u16 = 422;
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn auth(
    cx: &Ctx,
    table: &str,
    body: &Table,
    env: CredentialEnv,
) -> Result<WebhookAuth, ProjectError> {
    let mut auth = WebhookAuth::default();
    if let Some(value) = body.get("api_key")
        && let Some(keys) = env_string(cx, table, "api_key", value, env)?
    {
        auth.api_keys = keys
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(digest)
            .collect();
    }
    if let Some(value) = body.get("basic") {
        let bad = || {
            cx.err(
                table,
                Some("basic"),
                "must be { username = \"…\", password = { env = \"NAME\" } }",
            )
        };
        let basic = value.as_table().ok_or_else(bad)?;
        if basic.len() != 2 || !basic.contains_key("username") {
            return Err(bad());
        }
        let username = match basic.get("username") {
            Some(toml::Value::String(u)) if !u.is_empty() && !u.contains(':') => Some(u.clone()),
            Some(v @ toml::Value::Table(_)) => env_string(cx, table, "basic.username", v, env)?,
            _ => {
                return Err(cx.err(
                    table,
                    Some("basic"),
                    "username must be text without `:`, or { env = \"NAME\" }",
                ));
            }
        };
        let password = basic.get("password").ok_or_else(bad)?;
        let password = env_string(cx, table, "basic.password", password, env)?;
        if let (Some(u), Some(p)) = (username, password) {
            auth.basic = Some(digest(&format!("{u}:{p}")));
        }
    }
    Ok(auth)
}

pub(super) fn reply(cx: &Ctx, table: &str, body: &Table) -> Result<Reply, ProjectError> {
    let mode = string(cx, table, body, "reply")?.unwrap_or("before_start");
    let code = |key: &str, default: u16| -> Result<u16, ProjectError> {
        match body.get(key) {
            None => Ok(default),
            Some(toml::Value::Integer(n)) if (200..=599).contains(n) => Ok(*n as u16),
            Some(_) => Err(cx.err(
                table,
                Some(key),
                "must be an HTTP status code from 200 to 599",
            )),
        }
    };
    match mode {
        "before_start" => {
            for key in ["success_code", "failure_code", "reply_timeout"] {
                if body.contains_key(key) {
                    return Err(cx.err(
                        table,
                        Some(key),
                        "applies to reply = \"after_completion\" only",
                    ));
                }
            }
            Ok(Reply::BeforeStart)
        }
        "after_completion" => Ok(Reply::AfterCompletion {
            success_code: code("success_code", DEFAULT_SUCCESS_CODE)?,
            failure_code: code("failure_code", DEFAULT_FAILURE_CODE)?,
            timeout: duration(cx, table, body, "reply_timeout")?.unwrap_or(DEFAULT_REPLY_TIMEOUT),
        }),
        other => Err(cx.err(
            table,
            Some("reply"),
            format!("`{other}` is not a reply mode; use \"before_start\" (202 at once) or \"after_completion\""),
        )),
    }
}
