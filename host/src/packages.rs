//! `@openfn/core` and the adaptors, installed with npm under `PACKAGES_DIR`.
//!
//! Each package spec gets its own npm prefix (`PACKAGES_DIR/<spec>/`), so two
//! jobs can pin different versions of one adaptor. An install goes into a
//! staging folder that is renamed into place only when npm succeeded, so a
//! killed install never looks installed. This runs before the port opens and
//! never on the request path.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::project::AdaptorSpec;

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("could not install {package} with npm: {detail}")]
    Npm { package: String, detail: String },
    #[error("could not prepare {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct Packages {
    root: PathBuf,
}

impl Packages {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Packages { root: root.into() }
    }

    /// Where `require()` finds the package.
    pub fn package_dir(&self, spec: &AdaptorSpec) -> PathBuf {
        self.root
            .join(spec.dir_name())
            .join("node_modules")
            .join(&spec.name)
    }

    /// The `core` command-line script of an installed `@openfn/core`.
    pub fn core_cli(&self, core: &AdaptorSpec) -> PathBuf {
        self.package_dir(core).join("bin").join("core")
    }

    /// Installed, and at the pinned version when the spec pins an exact one.
    pub fn installed_version(&self, spec: &AdaptorSpec) -> Option<String> {
        let text = std::fs::read_to_string(self.package_dir(spec).join("package.json")).ok()?;
        let manifest: serde_json::Value = serde_json::from_str(&text).ok()?;
        let version = manifest.get("version")?.as_str()?.to_string();
        match &spec.version {
            Some(v) if is_exact(v) && *v != version => None,
            _ => Some(version),
        }
    }

    /// Installs whichever of `specs` is missing, in parallel; `progress`
    /// hears about each package. Returns how many were installed (0 when
    /// all were there already: npm did not run).
    pub async fn ensure(
        &self,
        specs: &[AdaptorSpec],
        progress: impl Fn(Progress<'_>),
    ) -> Result<usize, InstallError> {
        // Another process on this PACKAGES_DIR (a second replica, a second
        // service started at once) may be installing the same packages:
        // npm runs in one folder one process at a time, and what the other
        // installed meanwhile is found below and not installed again.
        let _lock = if specs.iter().all(|s| self.installed_version(s).is_some()) {
            None
        } else {
            Some(self.lock().await?)
        };
        let mut pending = tokio::task::JoinSet::new();
        for spec in specs {
            if let Some(version) = self.installed_version(spec) {
                progress(Progress::Present {
                    spec,
                    version: &version,
                });
                continue;
            }
            progress(Progress::Installing(spec));
            let (root, spec) = (self.root.clone(), spec.clone());
            pending.spawn(async move { install(&root, &spec).await.map(|()| spec) });
        }
        let mut installed = 0;
        while let Some(done) = pending.join_next().await {
            let spec = done.map_err(|e| InstallError::Npm {
                package: "?".into(),
                detail: e.to_string(),
            })??;
            installed += 1;
            progress(Progress::Installed(&spec));
        }
        Ok(installed)
    }
}

impl Packages {
    /// An exclusive lock on `PACKAGES_DIR/.install.lock` (flock: released
    /// when the file is closed, or when the process dies).
    async fn lock(&self) -> Result<std::fs::File, InstallError> {
        let path = self.root.join(".install.lock");
        let io = |source| InstallError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.root).map_err(io)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        tokio::task::spawn_blocking(move || file.lock().map(|()| file))
            .await
            .map_err(|e| io(std::io::Error::other(e)))?
            .map_err(io)
    }
}

/// What [`Packages::ensure`] reports as it goes.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    /// Already installed (at this version): nothing to do.
    Present {
        spec: &'a AdaptorSpec,
        version: &'a str,
    },
    /// npm has started on it.
    Installing(&'a AdaptorSpec),
    Installed(&'a AdaptorSpec),
}

impl std::fmt::Display for Progress<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Progress::Present { spec, version } => {
                write!(f, "{} {version} already installed", spec.name)
            }
            Progress::Installing(spec) => write!(f, "installing {spec} ..."),
            Progress::Installed(spec) => write!(f, "installed {spec}"),
        }
    }
}

fn is_exact(version: &str) -> bool {
    version.chars().all(|c| c.is_ascii_digit() || c == '.') && version.matches('.').count() == 2
}

async fn install(root: &Path, spec: &AdaptorSpec) -> Result<(), InstallError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InstallError::Io { path, source }
    };
    let target = root.join(spec.dir_name());
    let staging = root.join(format!(
        ".staging-{}-{}",
        spec.dir_name(),
        std::process::id()
    ));
    tokio::fs::create_dir_all(&staging)
        .await
        .map_err(io(&staging))?;
    let output = tokio::process::Command::new("npm")
        .arg("install")
        .arg("--prefix")
        .arg(&staging)
        .args([
            "--no-save",
            "--no-audit",
            "--no-fund",
            "--omit=dev",
            "--loglevel=error",
            "--no-update-notifier",
        ])
        .arg(spec.to_string())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| InstallError::Npm {
            package: spec.to_string(),
            detail: if e.kind() == std::io::ErrorKind::NotFound {
                "npm was not found on PATH; install Node.js and npm".into()
            } else {
                e.to_string()
            },
        })?;
    if !output.status.success() {
        let _ = tokio::fs::remove_dir_all(&staging).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
        return Err(InstallError::Npm {
            package: spec.to_string(),
            detail: format!(
                "npm exited with {}: {}",
                output.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ),
        });
    }
    if target.exists() {
        tokio::fs::remove_dir_all(&target)
            .await
            .map_err(io(&target))?;
    }
    tokio::fs::rename(&staging, &target)
        .await
        .map_err(io(&target))
}
