//! What a plugin may touch, and the stores that enforce it.
//!
//! Deny by default: a plugin with no `[plugins.<name>]` table gets no
//! directory, no network and no environment. Granted directories are opened
//! through `cap-std` inside `PROJECT_DIR` or `DATA_DIR` (never the host's own
//! folders there: the plugin cache, run temp dirs, packages, plugins folder),
//! and a component that imports something its table does not grant is refused
//! at load time rather than failing on first use.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use tracing::Level;
use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Engine, Store, StoreLimitsBuilder};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};
use wasmtime_wasi_http::WasiHttpCtx;

use super::runtime::{MAX_PLUGIN_MEMORY, ticks};
use super::state::{LogStream, OriginGate, PluginState};
use crate::project::plugins::{DEFAULT_MEMORY, DEFAULT_TIMEOUT};
use crate::project::{DirBase, PluginSpec};

/// Folders of `DATA_DIR` and `PROJECT_DIR` no plugin may be granted.
const RESERVED: &[&str] = &[
    "plugin-cache",
    "tmp",
    "packages",
    "plugins",
    ".microservice",
];

/// A plugin's resolved grants and limits.
#[derive(Debug, Clone)]
pub struct Grants {
    pub config: Arc<Vec<(String, String)>>,
    pub allowed_hosts: Arc<Vec<String>>,
    /// Host path (resolved, inside its base), guest path, writable.
    pub dirs: Vec<(PathBuf, String, bool)>,
    pub timeout: Duration,
    pub memory_bytes: usize,
}

impl Grants {
    /// Resolves a plugin table's grants; `None` (no table) grants nothing.
    pub fn resolve(
        spec: Option<&PluginSpec>,
        project_dir: &Path,
        data_dir: &Path,
    ) -> Result<Grants, String> {
        let Some(spec) = spec else {
            return Ok(Grants {
                config: Arc::default(),
                allowed_hosts: Arc::default(),
                dirs: Vec::new(),
                timeout: DEFAULT_TIMEOUT,
                memory_bytes: DEFAULT_MEMORY,
            });
        };
        let mut dirs = Vec::new();
        for grant in &spec.dirs {
            let base = match grant.base {
                DirBase::Project => project_dir,
                DirBase::Data => data_dir,
            };
            dirs.push((
                open_inside(base, &grant.path)?,
                grant.guest.clone(),
                grant.writable,
            ));
        }
        Ok(Grants {
            config: Arc::new(spec.config.clone()),
            allowed_hosts: Arc::new(spec.allowed_hosts.clone()),
            dirs,
            timeout: spec.timeout,
            memory_bytes: spec.memory_bytes.min(MAX_PLUGIN_MEMORY),
        })
    }

    /// The grants `resolve` would give, checked without creating anything:
    /// a granted folder that does not exist yet is judged by its path alone
    /// (for `microservice check` and `plugin inspect`, which write nothing).
    pub fn preview(
        spec: Option<&PluginSpec>,
        project_dir: &Path,
        data_dir: &Path,
    ) -> Result<Grants, String> {
        let mut grants = Grants::resolve(None, project_dir, data_dir)?;
        let Some(spec) = spec else {
            return Ok(grants);
        };
        for grant in &spec.dirs {
            let base = match grant.base {
                DirBase::Project => project_dir,
                DirBase::Data => data_dir,
            };
            grants.dirs.push((
                check_inside(base, &grant.path)?,
                grant.guest.clone(),
                grant.writable,
            ));
        }
        grants.config = Arc::new(spec.config.clone());
        grants.allowed_hosts = Arc::new(spec.allowed_hosts.clone());
        grants.timeout = spec.timeout;
        grants.memory_bytes = spec.memory_bytes.min(MAX_PLUGIN_MEMORY);
        Ok(grants)
    }

    /// Refuses a component that imports what these grants do not allow.
    pub fn check_imports(&self, component: &Component, engine: &Engine) -> Result<(), String> {
        for (name, _) in component.component_type().imports(engine) {
            let package = name.split('/').next().unwrap_or(name);
            match package {
                "openfn:microservice" | "wasi:io" | "wasi:clocks" | "wasi:random" | "wasi:cli" => {}
                // Without a preopened directory there is no path to open, so
                // the filesystem interfaces grant nothing by themselves (and
                // Rust's standard library always imports them).
                "wasi:filesystem" => {}
                "wasi:http" if !self.allowed_hosts.is_empty() => {}
                "wasi:http" => {
                    return Err(format!(
                        "it imports {name} but its table grants no network access; add allowed_hosts = [\"https://host\"] to its [plugins.<name>] table"
                    ));
                }
                "wasi:sockets" => {
                    return Err(format!(
                        "it imports {name}; raw sockets are never granted (use wasi:http with allowed_hosts)"
                    ));
                }
                _ => {
                    return Err(format!(
                        "it imports {name}, which this host does not provide"
                    ));
                }
            }
        }
        Ok(())
    }

    /// A fresh store with these grants, its deadline armed.
    pub fn store(&self, engine: &Engine, plugin: &Arc<str>) -> anyhow::Result<Store<PluginState>> {
        self.store_with(engine, plugin, false)
    }

    /// As [`Self::store`]; with `file_io_on_thread`, the plugin's file reads,
    /// writes and syncs run on the calling thread instead of a hop to
    /// tokio's blocking pool and back for each one.
    pub fn store_with(
        &self,
        engine: &Engine,
        plugin: &Arc<str>,
        file_io_on_thread: bool,
    ) -> anyhow::Result<Store<PluginState>> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.allow_blocking_current_thread(file_io_on_thread);
        wasi.stdout(LogStream {
            plugin: plugin.clone(),
            level: Level::INFO,
        })
        .stderr(LogStream {
            plugin: plugin.clone(),
            level: Level::WARN,
        })
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
        for (host, guest, writable) in &self.dirs {
            let perms = if *writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            wasi.preopened_dir(host, guest, perms)
                .map_err(anyhow::Error::from)?;
        }
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.memory_bytes)
            .trap_on_grow_failure(true)
            .build();
        let state = PluginState {
            plugin: plugin.clone(),
            config: self.config.clone(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            gate: OriginGate {
                plugin: plugin.clone(),
                allowed: self.allowed_hosts.clone(),
            },
            table: ResourceTable::new(),
            limits,
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(ticks(self.timeout));
        Ok(store)
    }
}

/// `relative` inside `base`, as [`open_inside`] would accept it, without
/// creating it: an existing folder is opened through a capability handle,
/// a missing one must be a plain relative path.
fn check_inside(base: &Path, relative: &str) -> Result<PathBuf, String> {
    reserved(relative)?;
    let rel = Path::new(relative);
    if let Ok(root) = Dir::open_ambient_dir(base, ambient_authority()) {
        match root.open_dir(rel) {
            Ok(_) => return Ok(base.join(rel)),
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!(
                    "`{relative}` is not a folder inside {}: {e}",
                    base.display()
                ));
            }
            Err(_) => {}
        }
    }
    if rel
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
    {
        Ok(base.join(rel))
    } else {
        Err(format!("`{relative}` leads outside {}", base.display()))
    }
}

fn reserved(relative: &str) -> Result<(), String> {
    let first = Path::new(relative)
        .components()
        .next()
        .and_then(|c| c.as_os_str().to_str())
        .unwrap_or("");
    if first.is_empty() || first == "." || RESERVED.contains(&first) {
        return Err(format!(
            "`{relative}` may not be granted: give a folder of its own, not one of {}",
            RESERVED.join(", ")
        ));
    }
    Ok(())
}

/// Opens (creating if needed) `relative` inside `base` through a capability
/// handle, and returns its real path, which is inside `base`.
fn open_inside(base: &Path, relative: &str) -> Result<PathBuf, String> {
    reserved(relative)?;
    std::fs::create_dir_all(base).map_err(|e| format!("cannot create {}: {e}", base.display()))?;
    let root = Dir::open_ambient_dir(base, ambient_authority())
        .map_err(|e| format!("cannot open {}: {e}", base.display()))?;
    root.create_dir_all(relative).map_err(|e| {
        format!(
            "`{relative}` cannot be created inside {}: {e}",
            base.display()
        )
    })?;
    root.open_dir(relative).map_err(|e| {
        format!(
            "`{relative}` is not a folder inside {}: {e}",
            base.display()
        )
    })?;
    let real_base = base.canonicalize().map_err(|e| e.to_string())?;
    let real = real_base
        .join(relative)
        .canonicalize()
        .map_err(|e| e.to_string())?;
    if !real.starts_with(&real_base) {
        return Err(format!("`{relative}` leads outside {}", base.display()));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granted_dirs_stay_inside_and_avoid_host_folders() {
        let outer = tempfile::tempdir().unwrap();
        let base = outer.path().join("data");
        std::fs::create_dir_all(&base).unwrap();
        assert!(
            open_inside(&base, "journal")
                .unwrap()
                .ends_with("data/journal")
        );
        assert!(open_inside(&base, "plugin-cache").is_err());
        assert!(open_inside(&base, "tmp/x").is_err());
        assert!(open_inside(&base, ".").is_err());
        std::os::unix::fs::symlink(outer.path(), base.join("sneaky")).unwrap();
        assert!(open_inside(&base, "sneaky").is_err());
    }

    #[test]
    fn previewed_dirs_are_judged_without_being_created() {
        let outer = tempfile::tempdir().unwrap();
        let base = outer.path().join("data");
        assert!(check_inside(&base, "new/folder").is_ok());
        assert!(!base.exists(), "a preview must not create anything");
        assert!(check_inside(&base, "../out").is_err());
        assert!(check_inside(&base, "plugin-cache").is_err());
        std::fs::create_dir_all(&base).unwrap();
        std::os::unix::fs::symlink(outer.path(), base.join("sneaky")).unwrap();
        assert!(check_inside(&base, "sneaky").is_err());
    }
}
