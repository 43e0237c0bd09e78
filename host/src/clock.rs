//! Wall-clock time in the two forms the service uses: Unix milliseconds (the
//! plugin interfaces) and RFC 3339 text (run records and the API).

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{SecondsFormat, Utc};

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn now_rfc3339() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}
