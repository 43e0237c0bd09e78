//! How a receipt arrived, kept beside it: the runs it starts find it in
//! their initial state under `receipt` (beside `data`, so criteria, which
//! look at `data` only, never see it), and the durable queue stores it with
//! the message so that a delivery after a restart carries it too.
//!
//! It is written out only when something keeps it: as JSON text, straight
//! from the request's parts ([`HttpArrival`]), when the store keeps the
//! receipt; as a value when a job runs. A receipt that matches no job and
//! is not stored never has it built.
//!
//! It holds what a job may need to tell receipts apart (the path, the
//! content type and encoding, the sender's address, a trigger plugin's
//! metadata, an OpenRosa submission's attachments) and never a header
//! that could carry a secret (no `Authorization`, no API key, no query
//! string).

use std::collections::BTreeMap;

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
        serde_json::to_string(self).unwrap_or_else(|_| "null".to_string())
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
}
