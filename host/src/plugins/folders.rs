//! The host's own folders, and the check that keeps every granted folder
//! out of them.
//!
//! A grant is judged by where it really is (symlinks and `..` resolved),
//! never by its name, because a name can be reached many ways: a symlink in
//! the project, `DATA_DIR` placed inside `PROJECT_DIR`, `PLUGINS_DIR`
//! pointed into the project. Two kinds of fence:
//!
//! - closed: no grant may be, contain or lie inside `PACKAGES_DIR` (code
//!   jobs run), `PLUGINS_DIR` (plugin code), the compile cache (native code
//!   the host runs) or the run temp folder (job states with credentials);
//! - holders: no grant may be or contain `DATA_DIR` (the database, the
//!   compile cache's key), `PROJECT_DIR` (`project.toml` and its
//!   credentials) or a folder holding a job's expression file. A folder
//!   inside them is fine: that is where `data` and `host` grants live.
//!
//! This module opens nothing for a plugin: `grants` does, and asks here
//! first, when the plugin loads and again each time it opens the folder.

use std::path::{Component, Path, PathBuf};

/// The folders a service uses, as configured (not yet resolved).
#[derive(Debug, Clone, Default)]
pub struct HostFolders {
    pub project_dir: PathBuf,
    pub data_dir: PathBuf,
    pub packages_dir: PathBuf,
    pub plugins_dir: PathBuf,
    /// Job expression files (`expression_file`), relative to `project_dir`.
    pub job_files: Vec<String>,
}

/// Where the compile cache lives inside `DATA_DIR`.
pub const CACHE: &str = "plugin-cache";
/// Where per-run temp folders live inside `DATA_DIR`.
pub const TMP: &str = "tmp";

impl HostFolders {
    /// The real paths no grant may reach, as the file system stands now.
    pub fn fences(&self) -> Fences {
        let closed = vec![
            Fence::new(&self.packages_dir, "PACKAGES_DIR (the packages jobs run)"),
            Fence::new(&self.plugins_dir, "PLUGINS_DIR (plugin code)"),
            Fence::new(
                &self.data_dir.join(CACHE),
                "the compile cache (DATA_DIR/plugin-cache: native code the host runs)",
            ),
            Fence::new(
                &self.data_dir.join(TMP),
                "the run temp folder (DATA_DIR/tmp: job states and credentials)",
            ),
        ];
        let mut holders = vec![
            Fence::new(
                &self.data_dir,
                "DATA_DIR (the database, the compile cache and its key)",
            ),
            Fence::new(
                &self.project_dir,
                "PROJECT_DIR (project.toml and its credentials)",
            ),
        ];
        for file in &self.job_files {
            let path = self.project_dir.join(file);
            if let Some(folder) = path.parent() {
                holders.push(Fence::new(
                    folder,
                    &format!("the folder of the job file `{file}`"),
                ));
            }
        }
        Fences { closed, holders }
    }
}

/// The host's folders, resolved; see the module docs for the two kinds.
#[derive(Debug, Clone, Default)]
pub struct Fences {
    closed: Vec<Fence>,
    holders: Vec<Fence>,
}

#[derive(Debug, Clone)]
struct Fence {
    real: PathBuf,
    what: String,
}

impl Fence {
    fn new(path: &Path, what: &str) -> Fence {
        Fence {
            real: real_path(path),
            what: what.to_string(),
        }
    }
}

impl Fences {
    /// Refuses `real` (a resolved path) if it reaches a host folder; the
    /// error says which one and how (the closest relation first: is, lies
    /// inside, contains).
    pub fn check(&self, real: &Path) -> Result<(), String> {
        let all = || self.closed.iter().chain(&self.holders);
        if let Some(fence) = all().find(|f| real == f.real) {
            return Err(refusal(real, "is", fence));
        }
        if let Some(fence) = self.closed.iter().find(|f| real.starts_with(&f.real)) {
            return Err(refusal(real, "lies inside", fence));
        }
        if let Some(fence) = all().find(|f| f.real.starts_with(real)) {
            return Err(refusal(real, "contains", fence));
        }
        Ok(())
    }
}

fn refusal(real: &Path, how: &str, fence: &Fence) -> String {
    format!(
        "it resolves to {}, which {how} {} ({}): a plugin may never be granted the host's own folders; grant it a folder of its own",
        real.display(),
        fence.what,
        fence.real.display()
    )
}

/// `path` made absolute with every symlink and `..` resolved, as far as it
/// exists; a part that does not exist yet (so holds no symlink) is
/// appended as written, its `..` taken lexically.
pub fn real_path(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let parts: Vec<Component> = absolute.components().collect();
    for n in (1..=parts.len()).rev() {
        let prefix: PathBuf = parts[..n].iter().collect();
        if let Ok(mut real) = prefix.canonicalize() {
            for part in &parts[n..] {
                match part {
                    Component::ParentDir => {
                        real.pop();
                    }
                    Component::Normal(name) => real.push(name),
                    _ => {}
                }
            }
            return real;
        }
    }
    absolute
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folders(root: &Path) -> HostFolders {
        HostFolders {
            project_dir: root.join("project"),
            data_dir: root.join("project/.microservice"),
            packages_dir: root.join("project/.microservice/packages"),
            plugins_dir: root.join("project/plugins"),
            job_files: vec!["jobs/a.js".into()],
        }
    }

    #[test]
    fn real_paths_resolve_what_exists_and_keep_the_rest() {
        let root = tempfile::tempdir().unwrap();
        let real_root = root.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.path().join("a/b")).unwrap();
        std::os::unix::fs::symlink(root.path().join("a/b"), root.path().join("link")).unwrap();
        assert_eq!(
            real_path(&root.path().join("link/new/../x")),
            real_root.join("a/b/x")
        );
        assert_eq!(
            real_path(&root.path().join("a/./b/../b")),
            real_root.join("a/b")
        );
        assert_eq!(
            real_path(&root.path().join("missing/../a")),
            real_root.join("a")
        );
    }

    #[test]
    fn fences_refuse_host_folders_however_named() {
        let root = tempfile::tempdir().unwrap();
        let f = folders(root.path());
        std::fs::create_dir_all(&f.data_dir).unwrap();
        let fences = f.fences();
        let real = |p: &str| real_path(&root.path().join(p));
        let refused = |p: &str| fences.check(&real(p)).unwrap_err();
        assert!(refused("project").contains(" is PROJECT_DIR"));
        assert!(refused("project/.microservice").contains(" is DATA_DIR"));
        assert!(refused("project/.microservice/plugin-cache/x").contains("lies inside"));
        assert!(refused("project/.microservice/tmp").contains("temp"));
        assert!(refused("project/.microservice/packages/n").contains("PACKAGES_DIR"));
        assert!(refused("project/plugins").contains("PLUGINS_DIR"));
        assert!(refused("project/jobs").contains("jobs/a.js"));
        assert!(refused("").contains("contains"));
        for fine in [
            "project/.microservice/journal",
            "project/inbox",
            "project/jobs/sub",
        ] {
            assert_eq!(fences.check(&real(fine)), Ok(()), "{fine}");
        }
        // Reached through a symlink, DATA_DIR is still DATA_DIR.
        std::os::unix::fs::symlink(&f.data_dir, root.path().join("project/shortcut")).unwrap();
        assert!(refused("project/shortcut").contains(" is DATA_DIR"));
    }
}
