//! The receipt door: every source of receipts (`POST /inbox`, the OpenRosa
//! `/submission` endpoint, trigger plugins) goes through [`Door`], which
//! decodes the body, matches it against the criteria triggers, then stores
//! it (durable inbox) or starts its runs.
//!
//! The sources only say what arrived and answer for the outcome in their
//! own way (an HTTP status, an OpenRosa response, a log line); the decision
//! is made here, once. Decoding is in [`decode`] (encodings, charsets, JSON),
//! [`form`] (urlencoded and multipart) and [`xml`]. This module never
//! answers for a receipt the store did not keep, and never builds a
//! receipt into a `Value` that no trigger can match and nothing stores.

pub mod arrival;
pub mod decode;
mod fields;
pub mod form;
pub mod xml;

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::info;

use crate::dispatch::{Dispatcher, RunReport};
use crate::project::Job;
use crate::queue::{Queue, Submitted};
use crate::storage::StorageError;
pub use arrival::{Arrival, Arrived, HttpArrival};
pub use decode::DecodeError;
use decode::{Decoded, Kind};
pub use form::Purpose;

/// Bodies at least this large (compressed, or XML) are decoded on the
/// blocking pool, not on a thread that serves requests.
const DECODE_INLINE_MAX: usize = 64 * 1024;

/// Decodes, matches, then stores or runs.
#[derive(Clone)]
pub struct Door {
    dispatcher: Dispatcher,
    /// The durable queue, once it is open; never set when `[inbox] durable = false`.
    queue: Arc<OnceLock<Queue>>,
}

/// A body as it arrived.
pub struct Arriving<'a> {
    pub body: Bytes,
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    pub purpose: Purpose,
    /// Where it came from: `inbox`, `submission`.
    pub source: &'a str,
    /// The request path, without its query.
    pub path: &'a str,
    /// The peer's address, as `SocketAddr` displays it.
    pub remote_addr: Option<&'a str>,
    /// The connection's last arrival record, to reuse (see [`arrival::Written`]).
    pub written: Option<&'a arrival::Written>,
}

/// How the source wants it taken.
#[derive(Default)]
pub struct Options {
    /// A key that makes a re-sent receipt a no-op (durable inbox only).
    pub idempotency_key: Option<String>,
    /// Return a way to wait for the first attempt's run reports.
    pub wait: bool,
    /// Hears every run of the workflow the receipt starts (its runs and
    /// the flows after them) finish; with the store, the first attempt's.
    pub watch: Option<crate::dispatch::Watch>,
}

/// A receipt taken.
pub struct Taken {
    /// The jobs whose criteria it met.
    pub jobs: Vec<String>,
    pub outcome: Outcome,
}

impl Taken {
    /// Matched nothing, and nothing stores it.
    fn nothing() -> Taken {
        Taken {
            jobs: Vec::new(),
            outcome: Outcome::Started(Vec::new()),
        }
    }
}

/// A decoded receipt, ready to match ([`Door::prepare`]).
struct Prepared<'a> {
    message: Value,
    /// Its JSON text as received, when it came as JSON.
    text: Option<Bytes>,
    arrival: Arrived<'a>,
    options: Options,
}

pub enum Outcome {
    /// Not durable: its runs have started.
    Started(Vec<JoinHandle<RunReport>>),
    /// Stored under `id`; with `wait`, the first attempt's reports come
    /// through `first_attempt`.
    Stored {
        id: String,
        first_attempt: Option<oneshot::Receiver<Vec<RunReport>>>,
    },
    /// Its idempotency key was seen before: the first receipt's id.
    Duplicate(String),
}

/// Why a receipt was not taken.
#[derive(Debug)]
pub enum Refused {
    /// The body could not be decoded (a 4xx).
    Decode(DecodeError),
    /// The store could not keep it (a 503).
    Store(StorageError),
}

impl Door {
    /// The dispatcher behind the door.
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    pub fn new(dispatcher: Dispatcher, queue: Arc<OnceLock<Queue>>) -> Door {
        Door { dispatcher, queue }
    }

    /// Decodes `arriving`, then matches it and stores it or starts its runs.
    pub async fn take(&self, arriving: Arriving<'_>, options: Options) -> Result<Taken, Refused> {
        let limit = self.dispatcher.project().inbox.max_body_bytes;
        let (decoded, attachments) = decode_body(&arriving, limit)
            .await
            .map_err(Refused::Decode)?;
        let Some(prepared) = self.prepare(decoded, attachments, &arriving, options)? else {
            return Ok(Taken::nothing());
        };
        self.take_decoded(prepared, arriving.source).await
    }

    /// [`Door::take`] for a receipt that needs no waiting: no message store
    /// to write it to, and a body small enough to decode on this thread.
    /// That is every receipt of a non-durable inbox but a large compressed
    /// or XML body and a multipart one; taking them without a future saves
    /// moving (or boxing) `take`'s, which is larger than the work. `Err`
    /// hands the options back: take the receipt with [`Door::take`].
    pub fn take_at_once(
        &self,
        arriving: &Arriving<'_>,
        options: Options,
    ) -> Result<Result<Taken, Refused>, Options> {
        if self.queue.get().is_some() {
            return Err(options);
        }
        let limit = self.dispatcher.project().inbox.max_body_bytes;
        let Some(decoded) = decode_inline(arriving, limit) else {
            return Err(options);
        };
        Ok(decoded.map_err(Refused::Decode).and_then(|decoded| {
            let Some(p) = self.prepare(decoded, Vec::new(), arriving, options)? else {
                return Ok(Taken::nothing());
            };
            Ok(self.start(p, arriving.source))
        }))
    }

    /// A decoded body as the receipt to match; `None` when no trigger can
    /// match it and nothing stores it (then it is never built into a
    /// `Value`: building it is most of its cost).
    fn prepare<'a>(
        &self,
        decoded: Decoded,
        attachments: Vec<Value>,
        arriving: &Arriving<'a>,
        options: Options,
    ) -> Result<Option<Prepared<'a>>, Refused> {
        let (message, text) = match decoded {
            Decoded::Json(json) => {
                let webhook = arriving.source.starts_with(crate::dispatch::WEBHOOK_SOURCE);
                if self.queue.get().is_none()
                    && !webhook
                    && !self
                        .dispatcher
                        .may_match(&json)
                        .map_err(|e| Refused::Decode(e.into()))?
                {
                    info!(source = arriving.source, matched = ?Vec::<String>::new(), "receipt");
                    return Ok(None);
                }
                let message: Value =
                    serde_json::from_slice(&json).map_err(|e| Refused::Decode(e.into()))?;
                (message, Some(json))
            }
            Decoded::Value(message) => (message, None),
        };
        let mut options = options;
        if arriving.purpose == Purpose::OpenRosa && options.idempotency_key.is_none() {
            // A phone re-sends a form it got no 201 for: one instance, one receipt.
            options.idempotency_key =
                form::instance_id(&message).map(|id| format!("openrosa:{id}"));
        }
        let arrival = Arrived::Http(HttpArrival {
            source: arriving.source,
            path: arriving.path,
            content_type: arriving.content_type,
            content_encoding: arriving.content_encoding,
            remote_addr: arriving.remote_addr,
            attachments,
            written: arriving.written,
        });
        Ok(Some(Prepared {
            message,
            text,
            arrival,
            options,
        }))
    }

    /// Takes a trigger plugin's message as the plugin returned it: its body
    /// through the same decoding step as an `/inbox` body (JSON unless its
    /// metadata names another `content-type`), its metadata kept in the
    /// arrival.
    pub async fn take_plugin_message(
        &self,
        body: String,
        source: &str,
        metadata: &[(String, String)],
        options: Options,
    ) -> Result<Taken, Refused> {
        let limit = self.dispatcher.project().inbox.max_body_bytes;
        let message =
            decode_plugin_body(Bytes::from(body), metadata, limit).map_err(Refused::Decode)?;
        let prepared = Prepared {
            message,
            text: None,
            arrival: Arrived::Plugin(Arrival::plugin(source, metadata)),
            options,
        };
        self.take_decoded(prepared, source).await
    }

    /// Matches, then stores or runs. The receipt's JSON text as received is
    /// stored when it came as JSON; otherwise the message is stored as
    /// serialized here. Its arrival is only written out when something keeps
    /// it: the store (as JSON text), or a run (as a value).
    async fn take_decoded(&self, p: Prepared<'_>, source: &str) -> Result<Taken, Refused> {
        let Some(queue) = self.queue.get() else {
            return Ok(self.start(p, source));
        };
        let (jobs, names) = self.matching(&p.message, source);
        // What the store needs moves into its future, boxed so that a
        // receipt that is not stored does not carry its space; nothing else
        // is kept while it is stored.
        let submitting = {
            let Prepared {
                message,
                text,
                arrival,
                options,
            } = p;
            let key = options.idempotency_key.or_else(|| self.body_key(&message));
            let text = match text {
                Some(json) => String::from_utf8_lossy(&json).into_owned(),
                None => message.to_string(),
            };
            let receipt = arrival.to_json();
            let wait = crate::queue::Wait {
                reports: options.wait,
                watch: options.watch,
            };
            let matched = !jobs.is_empty();
            Box::pin(queue.submit(text, message, receipt, source, key, wait, matched))
        };
        let outcome = match submitting.await.map_err(Refused::Store)? {
            (Submitted::Duplicate(id), _) => Outcome::Duplicate(id),
            (Submitted::New(id), first_attempt) => Outcome::Stored { id, first_attempt },
        };
        Ok(Taken {
            jobs: names,
            outcome,
        })
    }

    /// Without a store: matches the receipt and starts the runs of the jobs
    /// it matched.
    fn start(&self, p: Prepared<'_>, source: &str) -> Taken {
        let (jobs, names) = self.matching(&p.message, source);
        let receipt = (!jobs.is_empty()).then(|| p.arrival.to_value());
        let runs =
            self.dispatcher
                .receive(&p.message, receipt.as_ref(), &jobs, None, p.options.watch);
        Taken {
            jobs: names,
            outcome: Outcome::Started(runs),
        }
    }

    /// The jobs whose criteria the receipt meets, and their names; the
    /// receipt's log line.
    fn matching(&self, message: &Value, source: &str) -> (Vec<Arc<Job>>, Vec<String>) {
        let jobs = self.dispatcher.matching_jobs(message, source);
        let names: Vec<String> = jobs.iter().map(|j| j.name.clone()).collect();
        info!(source, matched = ?names, "receipt");
        (jobs, names)
    }

    /// The configured body field's value, as text, when the project names one.
    fn body_key(&self, message: &Value) -> Option<String> {
        let field = self.dispatcher.project().inbox.idempotency_field.as_ref()?;
        match message.get(field)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    }
}

/// A trigger plugin's message body as a value: JSON, or the type its
/// `content-type` metadata names (a multipart body is not taken from a
/// plugin).
fn decode_plugin_body(
    body: Bytes,
    metadata: &[(String, String)],
    limit: usize,
) -> Result<Value, DecodeError> {
    let meta = |name: &str| {
        metadata
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let content_type = meta("content-type");
    let kind = decode::kind_of(content_type)?;
    if kind == Kind::Multipart {
        return Err(DecodeError::Refused(
            "a trigger plugin's message cannot be multipart".into(),
        ));
    }
    let decoded = decode::decode(body, content_type, kind, meta("content-encoding"), limit)?;
    match decoded {
        Decoded::Json(json) => Ok(serde_json::from_slice(&json)?),
        Decoded::Value(value) => Ok(value),
    }
}

/// The decoding step, when it is quick enough for a thread that serves
/// requests: not multipart (nor an OpenRosa submission), and not a large
/// compressed or XML body. `None` when it is not; see [`decode_body`].
fn decode_inline(arriving: &Arriving<'_>, limit: usize) -> Option<Result<Decoded, DecodeError>> {
    let kind = match decode::kind_of(arriving.content_type) {
        Ok(kind) => kind,
        Err(e) => return Some(Err(e)),
    };
    let heavy = arriving.body.len() >= DECODE_INLINE_MAX
        && (arriving.content_encoding.is_some() || kind == Kind::Xml);
    if kind == Kind::Multipart || arriving.purpose == Purpose::OpenRosa || heavy {
        return None;
    }
    Some(decode::decode(
        arriving.body.clone(),
        arriving.content_type,
        kind,
        arriving.content_encoding,
        limit,
    ))
}

/// Runs the decoding step, big bodies on the blocking pool.
async fn decode_body(
    arriving: &Arriving<'_>,
    limit: usize,
) -> Result<(Decoded, Vec<Value>), DecodeError> {
    let kind = decode::kind_of(arriving.content_type)?;
    let purpose = arriving.purpose;
    if purpose == Purpose::OpenRosa && kind != Kind::Multipart {
        return Err(DecodeError::Refused(
            "an OpenRosa submission is multipart/form-data".into(),
        ));
    }
    if kind == Kind::Multipart {
        // Rare, and its future is large: boxed, so that it does not set
        // the size of every receipt's future.
        return Box::pin(decode_multipart(arriving, limit)).await;
    }
    if let Some(decoded) = decode_inline(arriving, limit) {
        return Ok((decoded?, Vec::new()));
    }
    let body = arriving.body.clone();
    let content_type = arriving.content_type.map(str::to_string);
    let content_encoding = arriving.content_encoding.map(str::to_string);
    let decoded = blocking(move || {
        decode::decode(
            body,
            content_type.as_deref(),
            kind,
            content_encoding.as_deref(),
            limit,
        )
    })
    .await?;
    Ok((decoded, Vec::new()))
}

/// A multipart body as a value, and (OpenRosa) its attachments described.
async fn decode_multipart(
    arriving: &Arriving<'_>,
    limit: usize,
) -> Result<(Decoded, Vec<Value>), DecodeError> {
    let body = match arriving.content_encoding {
        None => arriving.body.clone(),
        Some(codings) => {
            let (body, codings) = (arriving.body.clone(), codings.to_string());
            if body.len() < DECODE_INLINE_MAX {
                decode::decompress(body, &codings, limit)?
            } else {
                blocking(move || decode::decompress(body, &codings, limit)).await?
            }
        }
    };
    if body.is_empty() && arriving.purpose == Purpose::Inbox {
        return Ok((Decoded::Json(Bytes::from_static(b"{}")), Vec::new()));
    }
    let content_type = arriving.content_type.unwrap_or_default();
    let parts = form::multipart(body, content_type, arriving.purpose, limit).await?;
    Ok((Decoded::Value(parts.value), parts.attachments))
}

/// Runs `work` on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, DecodeError> + Send + 'static,
) -> Result<T, DecodeError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(DecodeError::Internal(format!("decoding failed: {e}"))))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn plugin_bodies_take_the_same_decoding_step() {
        let body = |s: &str| Bytes::from(s.to_string());
        assert_eq!(
            decode_plugin_body(body("\u{feff}{\"a\":1}"), &[], 1024).unwrap(),
            json!({"a": 1})
        );
        assert_eq!(decode_plugin_body(body(""), &[], 1024).unwrap(), json!({}));
        let xml = meta(&[("file", "f.xml"), ("Content-Type", "text/xml")]);
        assert_eq!(
            decode_plugin_body(body("<f><a>1</a></f>"), &xml, 1024).unwrap(),
            json!({"f": {"a": "1"}})
        );
        let form = meta(&[("content-type", "application/x-www-form-urlencoded")]);
        assert_eq!(
            decode_plugin_body(body("a=1&a=2"), &form, 1024).unwrap(),
            json!({"a": ["1", "2"]})
        );
        let e = decode_plugin_body(body("{"), &[], 1024).unwrap_err();
        assert_eq!(e.status(), 400, "{e}");
        let multi = meta(&[("content-type", "multipart/form-data; boundary=x")]);
        assert_eq!(
            decode_plugin_body(body(""), &multi, 1024)
                .unwrap_err()
                .status(),
            415
        );
    }
}
