//! What a plugin may touch, and the stores that enforce it.
//!
//! Deny by default: a plugin with no `[plugins.<name>]` table gets no
//! directory, no network and no environment. A granted directory is opened
//! through `cap-std` inside `PROJECT_DIR` or `DATA_DIR` and judged by its
//! real path against the host's own folders (see [`super::folders`]): when
//! the plugin loads, and again each time a store opens it, so a folder
//! swapped for a symlink after the check is refused too. The store is given
//! the very directory that was checked (by its descriptor), never a path
//! looked up a second time. Plugins may not create symlinks at all. A
//! component that imports an interface the host does not provide is
//! refused at load time rather than failing on first use; `wasi:http` and
//! `wasi:sockets` are linked for every plugin, but a request to an origin
//! not in `allowed_hosts` is refused when it is made, and so is every
//! socket call (no TCP, no UDP, no name lookup), so toolchains that always
//! import them load. [`capabilities`] says which of these a plugin imports
//! and what its table grants it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use tracing::{Level, warn};
use wasmtime::component::{Component, Linker, Resource, ResourceTable};
use wasmtime::{Engine, Store, StoreLimitsBuilder};
use wasmtime_wasi::p2::bindings::filesystem::types::ErrorCode;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};
use wasmtime_wasi_http::WasiHttpCtx;

use super::folders::{Fences, HostFolders, real_path};
use super::runtime::{MAX_PLUGIN_MEMORY, ticks};
use super::state::{LogStream, OriginGate, PluginState, StderrTail};
use crate::project::plugins::{DEFAULT_MEMORY, DEFAULT_TIMEOUT};
use crate::project::{DirBase, PluginSpec};

/// The `wasi:filesystem/types` instance wasmtime-wasi 48 defines, whose
/// `symlink-at` [`deny_symlinks`] replaces.
const FILESYSTEM_TYPES: &str = "wasi:filesystem/types@0.2.12";

/// A plugin's resolved grants and limits.
#[derive(Debug, Clone)]
pub struct Grants {
    pub config: Arc<Vec<(String, String)>>,
    pub allowed_hosts: Arc<Vec<String>>,
    pub dirs: Vec<GrantedDir>,
    pub timeout: Duration,
    pub memory_bytes: usize,
    /// The host's folders as resolved at load, which every opening of a
    /// granted folder is checked against again.
    pub(super) fences: Arc<Fences>,
    /// The plugin's last stderr lines, to say why a call trapped.
    pub stderr: Arc<StderrTail>,
}

/// A granted folder, checked at load; [`GrantedDir::open`] checks it again.
#[derive(Debug, Clone)]
pub struct GrantedDir {
    /// `PROJECT_DIR` or `DATA_DIR`, resolved when the plugin loaded.
    base: PathBuf,
    /// As configured, relative to `base`.
    relative: String,
    pub guest: String,
    pub writable: bool,
}

impl Grants {
    /// Resolves a plugin table's grants, creating granted folders that do
    /// not exist yet; `None` (no table) grants nothing.
    pub fn resolve(spec: Option<&PluginSpec>, folders: &HostFolders) -> Result<Grants, String> {
        Grants::build(spec, folders, true)
    }

    /// The grants `resolve` would give, checked without creating anything:
    /// a granted folder that does not exist yet is judged by its path alone
    /// (for `microservice check` and `plugin inspect`, which write nothing).
    pub fn preview(spec: Option<&PluginSpec>, folders: &HostFolders) -> Result<Grants, String> {
        Grants::build(spec, folders, false)
    }

    fn build(
        spec: Option<&PluginSpec>,
        folders: &HostFolders,
        create: bool,
    ) -> Result<Grants, String> {
        let mut grants = Grants {
            config: Arc::default(),
            allowed_hosts: Arc::default(),
            dirs: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            memory_bytes: DEFAULT_MEMORY,
            fences: Arc::new(folders.fences()),
            stderr: Arc::default(),
        };
        let Some(spec) = spec else {
            return Ok(grants);
        };
        for grant in &spec.dirs {
            let (base, label) = match grant.base {
                DirBase::Project => (&folders.project_dir, "PROJECT_DIR"),
                DirBase::Data => (&folders.data_dir, "DATA_DIR"),
            };
            let dir = GrantedDir {
                base: real_path(base),
                relative: grant.path.clone(),
                guest: grant.guest.clone(),
                writable: grant.writable,
            };
            dir.prepare(&grants.fences, create)
                .map_err(|why| format!("dirs: `{}` (inside {label}): {why}", grant.path))?;
            grants.dirs.push(dir);
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
                // Linked whether or not the table grants a host: a request
                // to an origin not in `allowed_hosts` (all of them, when it
                // names none) is refused when it is made (see `state.rs`),
                // as standard toolchains import the interface regardless.
                "wasi:http" => {}
                // Standard toolchains' output imports the socket interfaces
                // whether or not the plugin uses them (componentize-py's
                // libc always does). They are linked, and every operation
                // is refused at run time: the store allows no TCP, no UDP
                // and no name lookup (see `store_with`).
                "wasi:sockets" => {}
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
            tail: None,
        })
        .stderr(LogStream {
            plugin: plugin.clone(),
            level: Level::WARN,
            tail: Some(self.stderr.clone()),
        })
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
        for dir in &self.dirs {
            let perms = if dir.writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            // Checked now, as it is opened: it may have changed since load.
            let (handle, path) = dir.open(&self.fences).map_err(|why| {
                anyhow::anyhow!(
                    "granted folder `{}` (mounted at {}) refused: {why}",
                    dir.relative,
                    dir.guest
                )
            })?;
            wasi.preopened_dir(&path, &dir.guest, perms)
                .map_err(anyhow::Error::from)?;
            drop(handle);
        }
        let limits = super::state::Limits::new(
            StoreLimitsBuilder::new()
                .memory_size(self.memory_bytes)
                .trap_on_grow_failure(true)
                .build(),
        );
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

impl GrantedDir {
    /// Checks the folder's real path against `base` and the host's folders,
    /// creating it first when `create` (and the check allows it).
    fn prepare(&self, fences: &Fences, create: bool) -> Result<(), String> {
        let target = real_path(&self.base.join(&self.relative));
        if !target.starts_with(&self.base) {
            return Err(format!(
                "leads outside {} (to {})",
                self.base.display(),
                target.display()
            ));
        }
        fences.check(&target)?;
        if create {
            std::fs::create_dir_all(&self.base)
                .map_err(|e| format!("cannot create {}: {e}", self.base.display()))?;
            let root = Dir::open_ambient_dir(&self.base, ambient_authority())
                .map_err(|e| format!("cannot open {}: {e}", self.base.display()))?;
            root.create_dir_all(&self.relative)
                .map_err(|e| format!("cannot be created inside {}: {e}", self.base.display()))?;
        } else if !target.exists() {
            // Judged by its path alone; the project parser has already
            // refused absolute paths and `..`.
            return Ok(());
        }
        self.open(fences).map(drop)
    }

    /// Opens the folder through a capability handle on its base (which
    /// refuses symlinks and `..` leading out), then checks where the opened
    /// folder really is. Returns the handle and the path to hand to WASI:
    /// on Linux, the handle's own `/proc/self/fd` entry, so WASI opens the
    /// folder that was checked even if its path changes in between.
    fn open(&self, fences: &Fences) -> Result<(Dir, PathBuf), String> {
        let root = Dir::open_ambient_dir(&self.base, ambient_authority())
            .map_err(|e| format!("cannot open {}: {e}", self.base.display()))?;
        let dir = root.open_dir(&self.relative).map_err(|e| {
            format!(
                "is not a folder inside {} (symlinks and `..` may not lead out): {e}",
                self.base.display()
            )
        })?;
        let (real, path) = match handle_path(&dir) {
            Some((real, path)) => (real, path),
            None => {
                let real = real_path(&self.base.join(&self.relative));
                (real.clone(), real)
            }
        };
        if !real.starts_with(&self.base) {
            return Err(format!(
                "leads outside {} (to {})",
                self.base.display(),
                real.display()
            ));
        }
        fences.check(&real)?;
        Ok((dir, path))
    }
}

/// Where an open folder really is, and a path that opens that same folder.
#[cfg(target_os = "linux")]
fn handle_path(dir: &Dir) -> Option<(PathBuf, PathBuf)> {
    use std::os::fd::AsRawFd;
    let path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let real = std::fs::read_link(&path).ok()?;
    Some((real, path))
}

/// Without `/proc`, the folder is handed to WASI by its resolved path.
#[cfg(not(target_os = "linux"))]
fn handle_path(_: &Dir) -> Option<(PathBuf, PathBuf)> {
    None
}

/// Replaces `wasi:filesystem`'s `symlink-at` with a refusal. A link's
/// target is free text: a plugin could leave `../../..` in its folder for
/// the host, an operator's tools or another plugin to follow. Following a
/// link out of a grant is refused anyway (cap-std); making one is refused
/// here, whatever it points at.
pub fn deny_symlinks(linker: &mut Linker<PluginState>) -> anyhow::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker
        .instance(FILESYSTEM_TYPES)
        .map_err(anyhow::Error::from)?;
    types
        .func_wrap_async(
            "[method]descriptor.symlink-at",
            |store,
             (_, target, link): (
                Resource<wasmtime_wasi::filesystem::Descriptor>,
                String,
                String,
            )| {
                let plugin = store.data().plugin.clone();
                Box::new(async move {
                    warn!(target: "plugin", plugin = &*plugin, link = %link, points_to = %target, "refused: plugins may not create symlinks");
                    Ok((Err::<(), ErrorCode>(ErrorCode::NotPermitted),))
                })
            },
        )
        .map_err(anyhow::Error::from)?;
    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn folders(root: &Path) -> HostFolders {
        HostFolders {
            project_dir: root.join("project"),
            data_dir: root.join("project/.microservice"),
            packages_dir: root.join("project/.microservice/packages"),
            plugins_dir: root.join("project/plugins"),
            job_files: Vec::new(),
        }
    }

    fn dir(base: &Path, relative: &str) -> GrantedDir {
        GrantedDir {
            base: real_path(base),
            relative: relative.into(),
            guest: "/g".into(),
            writable: true,
        }
    }

    #[test]
    fn granted_dirs_stay_inside_and_avoid_host_folders() {
        let outer = tempfile::tempdir().unwrap();
        let f = folders(outer.path());
        let fences = f.fences();
        let data = &f.data_dir;
        std::fs::create_dir_all(data).unwrap();
        assert_eq!(dir(data, "journal").prepare(&fences, true), Ok(()));
        assert!(data.join("journal").is_dir());
        for refused in ["plugin-cache", "tmp/x", ".", "packages"] {
            let why = dir(data, refused).prepare(&fences, true).unwrap_err();
            assert!(why.contains("host's own folders"), "{refused}: {why}");
        }
        assert!(
            !data.join("tmp").exists(),
            "a refused grant must not be created"
        );
        std::os::unix::fs::symlink(outer.path(), data.join("sneaky")).unwrap();
        assert!(dir(data, "sneaky").prepare(&fences, true).is_err());
        std::fs::create_dir_all(&f.project_dir).unwrap();
        std::os::unix::fs::symlink(data, f.project_dir.join("shortcut")).unwrap();
        let why = dir(&f.project_dir, "shortcut")
            .prepare(&fences, true)
            .unwrap_err();
        assert!(why.contains("is DATA_DIR"), "{why}");
    }

    #[test]
    fn a_folder_swapped_for_a_symlink_is_refused_when_opened() {
        let outer = tempfile::tempdir().unwrap();
        let f = folders(outer.path());
        std::fs::create_dir_all(&f.data_dir).unwrap();
        let fences = f.fences();
        let granted = dir(&f.project_dir, "box");
        granted.prepare(&fences, true).unwrap();
        let (handle, path) = granted.open(&fences).unwrap();
        assert!(path.is_dir(), "{}", path.display());
        drop(handle);
        // A relative link stays inside the project, so only the fences see it...
        std::fs::remove_dir(f.project_dir.join("box")).unwrap();
        std::os::unix::fs::symlink(".microservice", f.project_dir.join("box")).unwrap();
        let why = granted.open(&fences).unwrap_err();
        assert!(why.contains("is DATA_DIR"), "{why}");
        // ...and an absolute one is refused by the capability handle.
        std::fs::remove_file(f.project_dir.join("box")).unwrap();
        std::os::unix::fs::symlink(&f.data_dir, f.project_dir.join("box")).unwrap();
        assert!(granted.open(&fences).is_err());
    }

    #[test]
    fn previewed_dirs_are_judged_without_being_created() {
        let outer = tempfile::tempdir().unwrap();
        let f = folders(outer.path());
        let fences = f.fences();
        let data = &f.data_dir;
        assert_eq!(dir(data, "new/folder").prepare(&fences, false), Ok(()));
        assert!(!data.exists(), "a preview must not create anything");
        assert!(dir(data, "../out").prepare(&fences, false).is_err());
        assert!(dir(data, "plugin-cache").prepare(&fences, false).is_err());
        std::fs::create_dir_all(data).unwrap();
        std::os::unix::fs::symlink(outer.path(), data.join("sneaky")).unwrap();
        assert!(dir(data, "sneaky").prepare(&fences, false).is_err());
    }
}
