//! How a receipt arrived, kept beside it: the runs it starts find it in
//! their initial state under `receipt` (beside `data`, so criteria, which
//! look at `data` only, never see it), and the durable queue stores it with
//! the message so that a delivery after a restart carries it too.
//!
//! It holds what a job may need to tell receipts apart (the path, the
//! content type and encoding, the sender's address, a trigger plugin's
//! metadata, an OpenRosa submission's attachments) and never a header
//! that could carry a secret (no `Authorization`, no API key, no query
//! string).

use std::collections::BTreeMap;
use std::net::SocketAddr;

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
    /// A request to `path` from `peer`.
    pub fn http(
        source: &str,
        path: &str,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
        peer: Option<SocketAddr>,
    ) -> Arrival {
        Arrival {
            source: source.to_string(),
            path: Some(path.to_string()),
            content_type: content_type.map(str::to_string),
            content_encoding: content_encoding.map(str::to_string),
            remote_addr: peer.map(|p| p.to_string()),
            ..Default::default()
        }
    }

    /// A trigger plugin's message, with its metadata.
    pub fn plugin(source: &str, metadata: &[(String, String)]) -> Arrival {
        Arrival {
            source: source.to_string(),
            metadata: metadata.iter().cloned().collect(),
            ..Default::default()
        }
    }

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
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let a = Arrival::http("inbox", "/inbox", Some("text/xml"), None, Some(peer));
        assert_eq!(
            a.to_value(),
            json!({"source": "inbox", "path": "/inbox", "content_type": "text/xml", "remote_addr": "127.0.0.1:5000"})
        );
        let p = Arrival::plugin("plugin:file-drop", &[("file".into(), "a.json".into())]);
        assert_eq!(
            p.to_value(),
            json!({"source": "plugin:file-drop", "metadata": {"file": "a.json"}})
        );
        let back: Arrival = serde_json::from_value(p.to_value()).unwrap();
        assert_eq!(back, p);
    }
}
