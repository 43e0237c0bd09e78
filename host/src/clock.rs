//! Wall-clock time in the two forms the service uses: Unix milliseconds (the
//! plugin interfaces) and RFC 3339 text (run records and the API).

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat};

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn now_rfc3339() -> String {
    rfc3339(now_ms())
}

/// Unix ms as the run records write times (`2026-01-01T00:00:00.000Z`), so
/// a time computed from milliseconds compares with a stored one as text.
pub fn rfc3339(ms: u64) -> String {
    DateTime::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}
