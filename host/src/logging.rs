//! The service's own log output: `tracing` to stderr, pretty or JSON.
//!
//! `LOG_FORMAT=json|pretty` (pretty by default) and `LOG_LEVEL` or `RUST_LOG`
//! (info by default). Job log lines arrive with target `job` inside the run's
//! span, so each carries the run id and job name; they are shown at info
//! level, so a job's output is visible on the service's output by default.
//! Whatever reaches here has already been redacted by the dispatcher.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init() {
    let level = std::env::var("LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let filter = EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}
