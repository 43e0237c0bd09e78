//! The `[http]` table: how long a client may take over each part of a
//! request, and how many connections are served at once.
//!
//! These bound what one slow or hostile client can hold: a connection that
//! dribbles its headers, trickles its body or idles between requests is
//! closed when its phase runs out, and no more than `max_connections` are
//! open. Only the values live here; `http::connections` enforces them.

use std::time::Duration;

use toml::Table;

use super::fields::*;

#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// From a request's first byte to the end of its headers.
    pub header_timeout: Duration,
    /// From the end of a request's headers to the end of its body (the
    /// whole body, so a client trickling a byte at a time is cut off too).
    pub body_timeout: Duration,
    /// A connection with no request in progress (fresh, or between two
    /// keep-alive requests) is closed after this long.
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            // Longer than the 60 s idle timeout of common load balancers,
            // so the proxy in front closes an idle connection first and
            // never sends a request down one this side is closing.
            idle_timeout: Duration::from_secs(75),
            // Well under the usual 1,024 open files per process, which the
            // journal, SQLite, plugins and node workers share.
            max_connections: 512,
        }
    }
}

/// Reads `[http]`; a bad value is reported and its default stands in.
pub(super) fn http(cx: &Ctx, t: Option<&Table>) -> HttpConfig {
    let empty = Table::new();
    let t = t.unwrap_or(&empty);
    let _ = check_keys(
        cx,
        "http",
        t,
        &[
            "header_timeout",
            "body_timeout",
            "idle_timeout",
            "max_connections",
        ],
    );
    let d = HttpConfig::default();
    let timeout = |key: &str, default: Duration| {
        cx.ok(duration(cx, "http", t, key))
            .flatten()
            .unwrap_or(default)
    };
    HttpConfig {
        header_timeout: timeout("header_timeout", d.header_timeout),
        body_timeout: timeout("body_timeout", d.body_timeout),
        idle_timeout: timeout("idle_timeout", d.idle_timeout),
        max_connections: cx
            .ok(positive(cx, "http", t, "max_connections"))
            .flatten()
            .unwrap_or(d.max_connections),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::project::Project;

    fn load(source: &str) -> Result<Project, crate::project::ProjectError> {
        let dir = tempfile::tempdir().unwrap();
        Project::parse(dir.path(), Path::new("project.toml"), source)
    }

    #[test]
    fn defaults_apply_and_each_key_can_be_set() {
        let p = load("").unwrap();
        assert_eq!(p.http, super::HttpConfig::default());
        let p = load(
            "[http]\nheader_timeout = \"2s\"\nbody_timeout = 3\nidle_timeout = \"1m\"\nmax_connections = 7\n",
        )
        .unwrap();
        assert_eq!(p.http.header_timeout.as_secs(), 2);
        assert_eq!(p.http.body_timeout.as_secs(), 3);
        assert_eq!(p.http.idle_timeout.as_secs(), 60);
        assert_eq!(p.http.max_connections, 7);
    }

    #[test]
    fn bad_values_name_the_table_key_and_line() {
        let e = load("\n[http]\nmax_connections = 0\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "project.toml: [http] max_connections (line 3): must be a whole number above zero"
        );
        let e = load("[http]\nheader_timeout = \"soon\"\n").unwrap_err();
        assert!(
            e.to_string().starts_with(
                "project.toml: [http] header_timeout (line 2): `soon` is not a duration"
            ),
            "{e}"
        );
        let e = load("[http]\nread_timeout = \"1s\"\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("[http] read_timeout (line 2): unknown key"),
            "{e}"
        );
    }

    #[test]
    fn every_bad_value_is_reported_in_one_pass() {
        let e = load("[http]\nheader_timeout = 0\nbody_timeout = \"x\"\nmax_connections = -1\n")
            .unwrap_err()
            .to_string();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 3, "{e}");
        assert!(
            lines[0].starts_with("project.toml: [http] header_timeout (line 2): "),
            "{e}"
        );
        assert!(
            lines[1].starts_with("project.toml: [http] body_timeout (line 3): "),
            "{e}"
        );
        assert!(
            lines[2].starts_with("project.toml: [http] max_connections (line 4): "),
            "{e}"
        );
    }
}
