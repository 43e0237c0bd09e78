//! How a receipt arrived, kept beside it: the runs it starts find it in
//! their initial state under `receipt` (beside `data`, so criteria, which
//! look at `data` only, never see it), and the durable queue stores it with
//! the message so that a delivery after a restart carries it too.
//!
//! It is written out only when something keeps it: as JSON text, straight
//! from the request's parts ([`HttpArrival`]), when the store keeps the
//! receipt; as a value when a job runs. A receipt that matches no job and
//! is not stored never has it built. The requests of one connection reuse
//! its last written record while its fields stay the same ([`Written`]).
//!
//! It holds what a job may need to tell receipts apart (the path, the
//! content type and encoding, the sender's address, a trigger plugin's
//! metadata, an OpenRosa submission's attachments) and never a header
//! that could carry a secret (no `Authorization`, no API key, no query
//! string).

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The key of the run's initial state that holds the [`Arrival`].
pub const STATE_KEY: &str = "receipt";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Arrival {
    /// `inbox`, `submission`, or the trigger plugin's source (`plugin:<name>`).
    pub source: String,
    /// The request path, without its query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// The peer's address and port, as the socket saw it (a proxy's, when
    /// there is one in front).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_addr: Option<String>,
    /// A trigger plugin's message metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// An OpenRosa submission's parts besides the instance, described.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Value>,
}

impl Arrival {
    /// A trigger plugin's message, with its metadata.
    pub fn plugin(source: &str, metadata: &[(String, String)]) -> Arrival {
        Arrival {
            source: source.to_string(),
            metadata: metadata.iter().cloned().collect(),
            ..Default::default()
        }
    }
}

/// A request's [`Arrival`], borrowed from the request: the same fields,
/// written out as JSON without first copying each into a `String` of its
/// own (the durable inbox writes one for every receipt it stores).
#[derive(Debug, Serialize)]
pub struct HttpArrival<'a> {
    /// `inbox` or `submission`.
    pub source: &'a str,
    /// The request path, without its query.
    pub path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<&'a str>,
    /// As `SocketAddr`'s `Display` writes it (`127.0.0.1:5000`, `[::1]:5000`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_addr: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Value>,
    /// The connection's last record, reused when the fields are the same.
    #[serde(skip)]
    pub written: Option<&'a Written>,
}

impl HttpArrival<'_> {
    fn to_json(&self) -> String {
        match self.written {
            Some(written) if self.attachments.is_empty() => written.json(self),
            _ => written_out(self),
        }
    }
}

/// A record as JSON text (`null` if it cannot be written, which a record
/// of strings and JSON values never is).
fn written_out(record: &impl Serialize) -> String {
    serde_json::to_string(record).unwrap_or_else(|_| "null".to_string())
}

/// One connection's last [`HttpArrival`] as JSON text, kept so that the
/// next request on the connection with the same fields takes a copy
/// instead of writing it out again. A sender that keeps its connection
/// open sends the same path, content type and encoding each time, and
/// writing the record out was the largest part of what keeping it costs a
/// stored receipt (about 1,600 instructions of a durable receipt's 96,000
/// in a callgrind profile; a copy is about 100). Records with attachments
/// (an OpenRosa submission's) are always written afresh.
#[derive(Debug, Default)]
pub struct Written(Mutex<Option<LastWritten>>);

#[derive(Debug)]
struct LastWritten {
    source: String,
    path: String,
    content_type: Option<String>,
    content_encoding: Option<String>,
    remote_addr: Option<String>,
    json: String,
}

impl LastWritten {
    fn is_of(&self, a: &HttpArrival<'_>) -> bool {
        self.path == a.path
            && self.content_type.as_deref() == a.content_type
            && self.content_encoding.as_deref() == a.content_encoding
            && self.source == a.source
            && self.remote_addr.as_deref() == a.remote_addr
    }
}

impl Written {
    fn json(&self, a: &HttpArrival<'_>) -> String {
        // Requests on one connection are served one at a time: never contended.
        let mut last = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(last) = last.as_ref().filter(|last| last.is_of(a)) {
            return last.json.clone();
        }
        let json = written_out(a);
        *last = Some(LastWritten {
            source: a.source.to_string(),
            path: a.path.to_string(),
            content_type: a.content_type.map(str::to_string),
            content_encoding: a.content_encoding.map(str::to_string),
            remote_addr: a.remote_addr.map(str::to_string),
            json: json.clone(),
        });
        json
    }
}

/// How a receipt arrived: a request, or a trigger plugin's message.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Arrived<'a> {
    Http(HttpArrival<'a>),
    Plugin(Arrival),
}

impl Arrived<'_> {
    /// The JSON text a stored receipt keeps.
    pub fn to_json(&self) -> String {
        match self {
            Arrived::Http(http) => http.to_json(),
            Arrived::Plugin(_) => written_out(self),
        }
    }

    /// The value a run's initial state holds under [`STATE_KEY`].
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_what_is_known_is_written() {
        let peer = "127.0.0.1:5000";
        let a = Arrived::Http(HttpArrival {
            source: "inbox",
            path: "/inbox",
            content_type: Some("text/xml"),
            content_encoding: None,
            remote_addr: Some(peer),
            attachments: Vec::new(),
            written: None,
        });
        let expected = json!({"source": "inbox", "path": "/inbox", "content_type": "text/xml", "remote_addr": "127.0.0.1:5000"});
        assert_eq!(a.to_value(), expected);
        let text = a.to_json();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), expected);
        // Read back as the owned form, field by field.
        let back: Arrival = serde_json::from_str(&text).unwrap();
        assert_eq!(back.remote_addr.as_deref(), Some("127.0.0.1:5000"));
        assert_eq!(back.path.as_deref(), Some("/inbox"));
        let v6 = "[::1]:80";
        let b = Arrived::Http(HttpArrival {
            source: "submission",
            path: "/submission",
            content_type: None,
            content_encoding: Some("gzip"),
            remote_addr: Some(v6),
            attachments: vec![json!({"name": "a.jpg"})],
            written: None,
        });
        assert_eq!(
            b.to_value(),
            json!({"source": "submission", "path": "/submission", "content_encoding": "gzip", "remote_addr": "[::1]:80", "attachments": [{"name": "a.jpg"}]})
        );
        let p = Arrival::plugin("plugin:file-drop", &[("file".into(), "a.json".into())]);
        let plugin = Arrived::Plugin(p.clone());
        assert_eq!(
            plugin.to_value(),
            json!({"source": "plugin:file-drop", "metadata": {"file": "a.json"}})
        );
        let back: Arrival = serde_json::from_str(&plugin.to_json()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn a_connection_reuses_its_record_only_while_the_fields_are_the_same() {
        let written = Written::default();
        let arrival = |path, content_type, attachments: Vec<Value>| HttpArrival {
            source: "inbox",
            path,
            content_type,
            content_encoding: None,
            remote_addr: Some("127.0.0.1:5000"),
            attachments,
            written: Some(&written),
        };
        let value = |a: HttpArrival<'_>| {
            let json = Arrived::Http(a).to_json();
            serde_json::from_str::<Value>(&json).unwrap()
        };
        let first = value(arrival("/inbox", Some("application/json"), Vec::new()));
        assert_eq!(
            first,
            json!({"source": "inbox", "path": "/inbox", "content_type": "application/json", "remote_addr": "127.0.0.1:5000"})
        );
        assert_eq!(
            value(arrival("/inbox", Some("application/json"), Vec::new())),
            first
        );
        // Any field that differs is written afresh, and becomes the one kept.
        assert_eq!(
            value(arrival("/inbox", Some("text/xml"), Vec::new()))["content_type"],
            "text/xml"
        );
        assert_eq!(
            value(arrival("/i/hook", Some("text/xml"), Vec::new()))["path"],
            "/i/hook"
        );
        assert!(
            value(arrival("/i/hook", None, Vec::new()))
                .get("content_type")
                .is_none()
        );
        // Attachments are never taken from, nor kept as, the last record.
        let with = value(arrival("/i/hook", None, vec![json!({"name": "a.jpg"})]));
        assert_eq!(with["attachments"], json!([{"name": "a.jpg"}]));
        assert!(
            value(arrival("/i/hook", None, Vec::new()))
                .get("attachments")
                .is_none()
        );
    }
}
