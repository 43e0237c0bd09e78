//! The service's own log output: `tracing` to stderr, pretty or JSON.
//!
//! `LOG_FORMAT=json|pretty` (pretty by default) and `LOG_LEVEL` or `RUST_LOG`
//! (by default `info` for the service, `warn` for one-shot commands). Job log lines arrive with target `job` inside the run's
//! span, so each carries the run id and job name; they are shown at info
//! level, so a job's output is visible on the service's output by default.
//! Whatever reaches here has already been redacted by the dispatcher.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the subscriber; `default_level` applies when neither
/// `LOG_LEVEL` nor `RUST_LOG` is set.
pub fn init(default_level: &str) {
    let level = std::env::var("LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default_level.into());
    let filter = EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    // Logging plugins get the same filtered events as the service's output.
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(crate::plugins::log_sink::Layer);
    if json {
        registry
            .with(fmt.json().with_current_span(true).with_span_list(false))
            .init();
    } else {
        registry
            .with(fmt.with_ansi(std::io::stderr().is_terminal()))
            .init();
    }
}
