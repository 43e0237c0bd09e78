//! Process settings from the environment (and `.env`, loaded by the binary).
//!
//! The names are the original microservice's (`PORT`, `HOST_URL`,
//! `ENDPOINT_STYLE`, `PROJECT_DIR`) plus `DATA_DIR`, `PACKAGES_DIR`,
//! `PLUGINS_DIR`, `ENGINE_MODE`, the API keys (`API_KEY`, `ADMIN_API_KEY`,
//! kept only as digests; see [`crate::http::ApiKeys`]) and `DATABASE_URL`
//! (PostgreSQL instead of the embedded store; never printed).
//! Settings are read through a lookup function so tests pass a map instead of
//! mutating the process environment. This module never reads `project.toml`.

use std::path::{Path, PathBuf};

use crate::http::ApiKeys;
use crate::project::EngineMode;
use crate::storage::postgres::DatabaseUrl;

/// How `/inbox` answers: at once (`async`) or after the matched runs (`sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointStyle {
    Async,
    Sync,
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// TCP port; 0 asks the OS for a free one (the bound address is logged).
    pub port: u16,
    /// Host name or address to bind.
    pub host: String,
    pub endpoint_style: EndpointStyle,
    pub project_dir: PathBuf,
    /// Where job state, run records and per-run temp dirs live.
    pub data_dir: PathBuf,
    /// Where npm installs `@openfn/core` and the adaptors; separate from
    /// `data_dir` so an image can bake packages in and tests can share them.
    pub packages_dir: PathBuf,
    /// Folder of `.wasm` plugins, watched for changes.
    pub plugins_dir: PathBuf,
    /// `ENGINE_MODE`, overriding `[engine] mode` (e.g. to run a test suite
    /// against both modes).
    pub engine_mode: Option<EngineMode>,
    /// `API_KEY` and `ADMIN_API_KEY`, as digests.
    pub api_keys: ApiKeys,
    /// `DATABASE_URL`: keep receipts, runs, job states and cron ticks in
    /// this PostgreSQL database (shared by replicas) instead of `DATA_DIR`.
    /// Wins over `[cluster] database_url`.
    pub database_url: Option<DatabaseUrl>,
}

#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}={value:?} is invalid: {why}")]
/// `value` is `***` for a variable that may hold a secret.
pub struct SettingsError {
    name: &'static str,
    value: String,
    why: String,
}

impl Settings {
    /// Reads settings through `lookup` (normally `std::env::var`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let port = match get("PORT") {
            None => 4001,
            Some(v) => v.trim().parse().map_err(|_| SettingsError {
                name: "PORT",
                value: v.clone(),
                why: "expected a port number from 0 to 65535".into(),
            })?,
        };
        let api_keys = ApiKeys::from_lookup(get);
        // Without both keys something is open to whoever can connect, so only
        // an explicit HOST_URL exposes it beyond this machine.
        let secured = api_keys.inbox_configured() && api_keys.admin_configured();
        let host = match get("HOST_URL") {
            Some(v) => bind_host(&v),
            None if secured && in_container() => "0.0.0.0".into(),
            None => "127.0.0.1".into(),
        };
        let endpoint_style = match get("ENDPOINT_STYLE").as_deref().map(str::trim) {
            None | Some("async") => EndpointStyle::Async,
            Some("sync") => EndpointStyle::Sync,
            Some(other) => {
                return Err(SettingsError {
                    name: "ENDPOINT_STYLE",
                    value: other.into(),
                    why: "expected `async` or `sync`".into(),
                });
            }
        };
        let project_dir = PathBuf::from(get("PROJECT_DIR").unwrap_or_else(|| "./project".into()));
        let data_dir = get("DATA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| project_dir.join(".microservice"));
        let packages_dir = get("PACKAGES_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join("packages"));
        let plugins_dir = get("PLUGINS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| project_dir.join("plugins"));
        let engine_mode = match get("ENGINE_MODE") {
            None => None,
            Some(m) => Some(EngineMode::parse(m.trim()).ok_or_else(|| SettingsError {
                name: "ENGINE_MODE",
                value: m.clone(),
                why: "expected `worker` or `cli`".into(),
            })?),
        };
        let database_url = match get("DATABASE_URL") {
            None => None,
            Some(url) => {
                let url = DatabaseUrl::new(url.trim());
                if url.target().is_none() {
                    return Err(SettingsError {
                        name: "DATABASE_URL",
                        // It may hold a password: never repeated.
                        value: "***".into(),
                        why: "expected a PostgreSQL URL such as postgres://user:password@host:5432/database".into(),
                    });
                }
                Some(url)
            }
        };
        Ok(Settings {
            database_url,
            api_keys,
            engine_mode,
            plugins_dir,
            port,
            host,
            endpoint_style,
            project_dir,
            data_dir,
            packages_dir,
        })
    }

    /// Reads the process environment. Folders are made absolute against the
    /// working directory here, once: node resolves a relative `require` path
    /// against the requiring script, not the working directory, so a
    /// relative `PACKAGES_DIR` (the default under `./project`) would break
    /// the worker engine.
    pub fn from_env() -> Result<Self, SettingsError> {
        let mut settings = Self::from_lookup(|name| std::env::var(name).ok())?;
        for (name, dir) in [
            ("PROJECT_DIR", &mut settings.project_dir),
            ("DATA_DIR", &mut settings.data_dir),
            ("PACKAGES_DIR", &mut settings.packages_dir),
            ("PLUGINS_DIR", &mut settings.plugins_dir),
        ] {
            *dir = std::path::absolute(&*dir).map_err(|e| SettingsError {
                name,
                value: dir.display().to_string(),
                why: format!("cannot be made absolute: {e}"),
            })?;
        }
        Ok(settings)
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.data_dir.join("tmp")
    }
}

/// The original took `HOST_URL=localhost` or a URL; accept both and keep the host.
fn bind_host(value: &str) -> String {
    let v = value.trim();
    let v = v
        .strip_prefix("http://")
        .or_else(|| v.strip_prefix("https://"))
        .unwrap_or(v);
    let v = v.split('/').next().unwrap_or(v);
    // Drop a `:port` suffix, but not the colons of a bare IPv6 address.
    let host = match v.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => v,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

fn in_container() -> bool {
    Path::new("/.dockerenv").exists()
        || Path::new("/run/.containerenv").exists()
        || std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_original() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.port, 4001);
        assert_eq!(s.endpoint_style, EndpointStyle::Async);
        assert_eq!(s.project_dir, PathBuf::from("./project"));
        assert_eq!(s.data_dir, PathBuf::from("./project/.microservice"));
        assert_eq!(
            s.packages_dir,
            PathBuf::from("./project/.microservice/packages")
        );
    }

    #[test]
    fn host_url_accepts_names_and_urls() {
        assert_eq!(bind_host("localhost"), "localhost");
        assert_eq!(bind_host("http://localhost:4001/"), "localhost");
        assert_eq!(bind_host("0.0.0.0"), "0.0.0.0");
        assert_eq!(bind_host("[::1]"), "::1");
        assert_eq!(bind_host("::1"), "::1");
    }

    #[test]
    fn a_bad_database_url_is_refused_without_repeating_it() {
        let err = settings(&[("DATABASE_URL", "postgres://u:hunter2@db:port/x")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("DATABASE_URL") && !err.contains("hunter2"),
            "{err}"
        );
        let s = settings(&[("DATABASE_URL", "postgres://u:hunter2@db/x")]).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = settings(&[("PORT", "eighty")]).unwrap_err().to_string();
        assert!(err.contains("PORT"), "{err}");
        let err = settings(&[("ENDPOINT_STYLE", "later")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ENDPOINT_STYLE") && err.contains("sync"),
            "{err}"
        );
    }
}
