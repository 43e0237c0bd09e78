//! Wall-clock time in the two forms the service uses: Unix milliseconds (the
//! plugin interfaces) and RFC 3339 text (run records and the API); and the
//! kernel's coarse clocks, for what is read on every request.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SecondsFormat};

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Unix minutes, on the kernel's coarse real-time clock (see [`coarse`]):
/// counted once per receipt.
pub fn unix_minute() -> u64 {
    coarse(Clock::Realtime).as_secs() / 60
}

/// Milliseconds on the kernel's coarse monotonic clock (see [`coarse`]),
/// from an arbitrary start: for timing phases of seconds.
pub fn monotonic_ms() -> u64 {
    coarse(Clock::Monotonic).as_millis() as u64
}

#[derive(Clone, Copy)]
enum Clock {
    Realtime,
    Monotonic,
}

/// A coarse clock's time. On Linux it is read from memory the kernel
/// updates every tick (1 to 10 ms), without the hardware counter a precise
/// read takes; a tick of lag is nothing to the minutes and the timeouts of
/// seconds it is compared with.
#[cfg(target_os = "linux")]
fn coarse(clock: Clock) -> std::time::Duration {
    let id = match clock {
        Clock::Realtime => libc::CLOCK_REALTIME_COARSE,
        Clock::Monotonic => libc::CLOCK_MONOTONIC_COARSE,
    };
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` only writes the `timespec` it is given; both
    // clocks exist on every Linux since 2.6.32.
    unsafe { libc::clock_gettime(id, &mut ts) };
    std::time::Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// Elsewhere, the precise clocks.
#[cfg(not(target_os = "linux"))]
fn coarse(clock: Clock) -> std::time::Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    match clock {
        Clock::Realtime => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
        Clock::Monotonic => START.get_or_init(std::time::Instant::now).elapsed(),
    }
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
