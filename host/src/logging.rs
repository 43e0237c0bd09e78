//! The service's own log output: `tracing` to stderr, pretty or JSON.
//!
//! `LOG_FORMAT=json|pretty` (pretty by default) and `LOG_LEVEL` or `RUST_LOG`
//! (by default `info` for the service, `warn` for one-shot commands). Job log lines arrive with target `job` inside the run's
//! span, so each carries the run id and job name; they are shown at info
//! level, so a job's output is visible on the service's output by default.
//! A plugin's own lines (`host.log`, its stdout and stderr) have target
//! `plugin` and a `plugin` field naming it.
//! Whatever reaches here has already been redacted by the dispatcher.
//!
//! A bare level (`LOG_LEVEL=debug`) applies to the service's own targets
//! ([`OWN_TARGETS`]) only; every other crate stays at `info` (or the level
//! given, if stricter), so wasmtime's and cranelift's compiler logs do not
//! flood the output. Naming a target turns it on:
//! `LOG_LEVEL=debug,cranelift_codegen=debug`, or `RUST_LOG` syntax in full.

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
    let filter = EnvFilter::try_new(scoped(&level)).unwrap_or_else(|_| EnvFilter::new("info"));
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

/// The service's own tracing targets: its modules, jobs' output, plugins'.
pub const OWN_TARGETS: [&str; 3] = ["microservice", "job", "plugin"];

/// `LOG_LEVEL` as an `EnvFilter` directive: a bare level given first (as
/// in `debug` or `debug,hyper=trace`) applies to [`OWN_TARGETS`], while
/// other crates stay at `info` or the given level, whichever is stricter.
/// Directives naming targets are kept as they are, after these, so they win.
fn scoped(spec: &str) -> String {
    let mut parts = spec.split(',').map(str::trim).filter(|p| !p.is_empty());
    let Some(first) = parts.next() else {
        return "info".into();
    };
    let Ok(level) = first.parse::<tracing::level_filters::LevelFilter>() else {
        return spec.into();
    };
    let rest: Vec<&str> = parts.collect();
    let named = |target: &str| {
        rest.iter()
            .any(|p| p.split(['=', '[']).next() == Some(target))
    };
    let others = level.min(tracing::level_filters::LevelFilter::INFO);
    let mut out = vec![others.to_string().to_lowercase()];
    out.extend(
        OWN_TARGETS
            .iter()
            .filter(|t| !named(t))
            .map(|t| format!("{t}={first}")),
    );
    out.extend(rest.iter().map(|p| p.to_string()));
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::scoped;

    #[test]
    fn a_bare_level_is_scoped_to_the_services_own_targets() {
        assert_eq!(
            scoped("debug"),
            "info,microservice=debug,job=debug,plugin=debug"
        );
        assert_eq!(
            scoped("trace,cranelift_codegen=debug"),
            "info,microservice=trace,job=trace,plugin=trace,cranelift_codegen=debug"
        );
        assert_eq!(
            scoped("warn"),
            "warn,microservice=warn,job=warn,plugin=warn"
        );
        assert_eq!(
            scoped("warn,job=info"),
            "warn,microservice=warn,plugin=warn,job=info"
        );
        assert_eq!(scoped("microservice=debug"), "microservice=debug");
        assert_eq!(scoped(""), "info");
    }
}
