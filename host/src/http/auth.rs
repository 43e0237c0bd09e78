//! API keys: `API_KEY` guards `/inbox`, `ADMIN_API_KEY` guards `/api` and
//! `/metrics` (and works on `/inbox` too).
//!
//! A key arrives as `x-api-key: KEY`, `Authorization: Bearer KEY`, or as
//! the password of `Authorization: Basic` (any user name), for clients such
//! as ODK Collect that only speak Basic auth. Only the inbox's 401s offer a
//! Basic challenge (senders such as ODK Collect send their credentials only
//! when challenged): on `/api` and `/metrics`, which the dashboard calls
//! from a browser, a Basic challenge would make the browser hold the answer
//! back from the page and ask its user for a password. Keys are
//! kept only as SHA-256 digests and compared in constant time against every
//! configured key, so neither the comparison's timing nor a memory dump or a
//! `Debug` print gives a key away. This module must never log a presented or
//! configured key, nor say which part of a wrong key was wrong. `/healthz`,
//! `/readyz` and the dashboard's static files are open: they hold no data.

use std::borrow::Cow;
use std::fmt;

use base64::Engine;

use hyper::header::{AUTHORIZATION, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};
use subtle::ConstantTimeEq;

use super::{Body, error};
use crate::project::WebhookAuth;

type KeyDigest = [u8; 32];

/// The configured keys. Each variable may hold several keys, comma-separated,
/// so a key can be rotated without downtime.
#[derive(Clone, Default)]
pub struct ApiKeys {
    inbox: Vec<KeyDigest>,
    admin: Vec<KeyDigest>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys")
            .field("inbox_keys", &self.inbox.len())
            .field("admin_keys", &self.admin.len())
            .finish()
    }
}

/// Which key a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Open,
    Inbox,
    Admin,
}

impl ApiKeys {
    /// From `API_KEY` and `ADMIN_API_KEY`, through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> ApiKeys {
        let keys = |name| {
            lookup(name)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(digest)
                .collect()
        };
        ApiKeys {
            inbox: keys("API_KEY"),
            admin: keys("ADMIN_API_KEY"),
        }
    }

    pub fn inbox_configured(&self) -> bool {
        !self.inbox.is_empty()
    }

    pub fn admin_configured(&self) -> bool {
        !self.admin.is_empty()
    }

    /// The 401 to answer, or `None` when the request may go on.
    pub fn refusal(&self, scope: Scope, headers: &HeaderMap) -> Option<Response<Body>> {
        let (keys, also): (&[KeyDigest], &[KeyDigest]) = match scope {
            Scope::Open => return None,
            // The admin key opens everything; the inbox key only the inbox.
            Scope::Inbox if self.inbox.is_empty() => return None,
            Scope::Inbox => (&self.inbox, &self.admin),
            Scope::Admin if self.admin.is_empty() => return None,
            Scope::Admin => (&self.admin, &[]),
        };
        let (name, header) = match scope {
            Scope::Admin => ("ADMIN_API_KEY", "an admin API key"),
            _ => ("API_KEY", "an API key"),
        };
        let Some(presented) = presented(headers) else {
            return Some(unauthorized(
                scope,
                format!(
                    "this endpoint needs {header} ({name}) in an `x-api-key` or `Authorization: Bearer` header, or as the password of Basic auth"
                ),
            ));
        };
        let presented = digest(&presented);
        // Every configured key is compared, match or not: no early exit.
        let matched = keys
            .iter()
            .chain(also)
            .fold(subtle::Choice::from(0), |found, key| {
                found | key.ct_eq(&presented)
            });
        (!bool::from(matched))
            .then(|| unauthorized(scope, format!("the {header} given is not valid")))
    }
}

impl ApiKeys {
    /// The 401 for a webhook trigger's receipt, or `None`. A trigger without
    /// keys of its own is guarded like `/inbox`; one with keys accepts them
    /// (an API key, or Basic `username:password`) besides the service's
    /// inbox and admin keys, and nothing else.
    pub fn webhook_refusal(
        &self,
        own: &WebhookAuth,
        headers: &HeaderMap,
    ) -> Option<Response<Body>> {
        if own.is_empty() {
            return self.refusal(Scope::Inbox, headers);
        }
        let key = presented(headers).map(|k| digest(&k));
        let pair = basic_pair(headers).map(|p| digest(&p));
        let mut matched = subtle::Choice::from(0);
        if let Some(key) = &key {
            for known in own.api_keys.iter().chain(&self.inbox).chain(&self.admin) {
                matched |= known.ct_eq(key);
            }
        }
        if let (Some(pair), Some(known)) = (&pair, &own.basic) {
            matched |= known.ct_eq(pair);
        }
        if bool::from(matched) {
            return None;
        }
        let message = if key.is_none() {
            "this webhook needs its API key (an `x-api-key` or `Authorization: Bearer` header) or its Basic auth user name and password"
        } else {
            "the credentials given are not valid for this webhook"
        };
        Some(unauthorized(Scope::Inbox, message.into()))
    }
}

/// `user:password` of an `Authorization: Basic` header.
fn basic_pair(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = auth.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()?;
    String::from_utf8(decoded).ok()
}

/// The route's scope, from its first path segment.
pub fn scope_of(first_segment: &str) -> Scope {
    match first_segment {
        "inbox" | "submission" => Scope::Inbox,
        "api" | "metrics" => Scope::Admin,
        _ => Scope::Open,
    }
}

fn presented(headers: &HeaderMap) -> Option<Cow<'_, str>> {
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(Cow::Borrowed(key.trim()));
    }
    let auth = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = auth.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(Cow::Borrowed(token.trim()));
    }
    let credentials = basic_pair(headers)?;
    let (_user, password) = credentials.split_once(':')?;
    Some(Cow::Owned(password.to_string()))
}

fn digest(key: &str) -> KeyDigest {
    crate::project::secret_digest(key)
}

/// The 401, with the challenges `scope`'s clients answer (see the module doc).
fn unauthorized(scope: Scope, message: String) -> Response<Body> {
    let mut res = error(StatusCode::UNAUTHORIZED, message);
    let challenges = res.headers_mut();
    challenges.insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"microservice\""),
    );
    if scope == Scope::Inbox {
        // For senders that only do Basic (ODK Collect asks its user for it).
        challenges.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"microservice\", charset=\"UTF-8\""),
        );
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(inbox: &str, admin: &str) -> ApiKeys {
        ApiKeys::from_lookup(|name| match name {
            "API_KEY" => Some(inbox.to_string()),
            "ADMIN_API_KEY" => Some(admin.to_string()),
            _ => None,
        })
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn challenges(res: &Response<Body>) -> Vec<&str> {
        res.headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn only_the_inbox_offers_a_basic_challenge() {
        let k = keys("in-key", "admin-key");
        let inbox = k.refusal(Scope::Inbox, &HeaderMap::new()).unwrap();
        assert_eq!(
            challenges(&inbox),
            [
                "Bearer realm=\"microservice\"",
                "Basic realm=\"microservice\", charset=\"UTF-8\""
            ]
        );
        // A browser shown a Basic challenge on the dashboard's API calls
        // would hold their answers back and prompt for a password.
        for presented in [HeaderMap::new(), headers(&[("x-api-key", "wrong")])] {
            let admin = k.refusal(Scope::Admin, &presented).unwrap();
            assert_eq!(challenges(&admin), ["Bearer realm=\"microservice\""]);
        }
    }

    #[test]
    fn no_keys_means_open() {
        let k = keys("", "");
        assert!(k.refusal(Scope::Inbox, &HeaderMap::new()).is_none());
        assert!(k.refusal(Scope::Admin, &HeaderMap::new()).is_none());
    }

    #[test]
    fn either_header_form_works() {
        let k = keys("in-key", "admin-key");
        assert!(
            k.refusal(Scope::Inbox, &headers(&[("x-api-key", "in-key")]))
                .is_none()
        );
        assert!(
            k.refusal(
                Scope::Inbox,
                &headers(&[("authorization", "Bearer in-key")])
            )
            .is_none()
        );
        assert!(
            k.refusal(
                Scope::Admin,
                &headers(&[("authorization", "bearer admin-key")])
            )
            .is_none()
        );
        // Basic: the key is the password, whatever the user name.
        let basic = |user_pass: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(user_pass)
            )
        };
        assert!(
            k.refusal(
                Scope::Inbox,
                &headers(&[("authorization", &basic("odk:in-key"))])
            )
            .is_none()
        );
        assert!(
            k.refusal(
                Scope::Inbox,
                &headers(&[("authorization", &basic("in-key:"))])
            )
            .is_some()
        );
        assert!(
            k.refusal(
                Scope::Inbox,
                &headers(&[("authorization", "Basic not base64!")])
            )
            .is_some()
        );
    }

    #[test]
    fn wrong_or_missing_keys_are_refused() {
        let k = keys("in-key,second", "admin-key");
        assert!(k.refusal(Scope::Inbox, &HeaderMap::new()).is_some());
        assert!(
            k.refusal(Scope::Inbox, &headers(&[("x-api-key", "in-ke")]))
                .is_some()
        );
        assert!(
            k.refusal(Scope::Inbox, &headers(&[("x-api-key", "second")]))
                .is_none()
        );
        // The inbox key does not open the admin API; the admin key opens both.
        assert!(
            k.refusal(Scope::Admin, &headers(&[("x-api-key", "in-key")]))
                .is_some()
        );
        assert!(
            k.refusal(Scope::Inbox, &headers(&[("x-api-key", "admin-key")]))
                .is_none()
        );
        assert!(
            k.refusal(
                Scope::Admin,
                &headers(&[("authorization", "Basic admin-key")])
            )
            .is_some()
        );
    }

    #[test]
    fn debug_shows_no_key() {
        let text = format!("{:?}", keys("in-key", "admin-key"));
        assert!(
            !text.contains("in-key") && !text.contains("admin-key"),
            "{text}"
        );
    }
}
