//! Paths named in `project.toml`, resolved only inside the project directory.
//!
//! Every read goes through a `cap-std` directory handle, so an absolute path,
//! a `..` that climbs out or a symlink pointing elsewhere is refused by the
//! handle itself rather than by string checks that could be got around.

use std::path::{Component, Path};

use cap_std::ambient_authority;
use cap_std::fs::Dir;

/// Reads the text file at `relative` inside `root`.
pub fn read_inside(root: &Path, relative: &str) -> Result<String, String> {
    let rel = Path::new(relative);
    if rel.is_absolute() {
        return Err(format!(
            "`{relative}` is an absolute path; give a path relative to the project directory"
        ));
    }
    let dir = Dir::open_ambient_dir(root, ambient_authority())
        .map_err(|e| format!("cannot open the project directory {}: {e}", root.display()))?;
    dir.read_to_string(rel).map_err(|e| {
        if rel.components().any(|c| c == Component::ParentDir)
            || e.kind() == std::io::ErrorKind::PermissionDenied
        {
            format!("`{relative}` is outside the project directory ({e})")
        } else {
            format!("cannot read `{relative}`: {e}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_inside_and_refuses_escapes() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("project");
        std::fs::create_dir_all(root.join("jobs")).unwrap();
        std::fs::write(root.join("jobs/a.js"), "fn(s => s)").unwrap();
        std::fs::write(outer.path().join("secret.js"), "nope").unwrap();
        assert_eq!(read_inside(&root, "jobs/a.js").unwrap(), "fn(s => s)");
        let abs = outer.path().join("secret.js");
        assert!(
            read_inside(&root, abs.to_str().unwrap())
                .unwrap_err()
                .contains("absolute")
        );
        assert!(
            read_inside(&root, "../secret.js")
                .unwrap_err()
                .contains("outside")
        );
        std::os::unix::fs::symlink(outer.path().join("secret.js"), root.join("link.js")).unwrap();
        assert!(read_inside(&root, "link.js").is_err());
        assert!(
            read_inside(&root, "jobs/missing.js")
                .unwrap_err()
                .contains("cannot read")
        );
    }
}
