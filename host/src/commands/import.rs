//! `microservice import <project.yaml>`: writes the converted project
//! ([`crate::import`]) into a project directory.
//!
//! The result is staged in a folder inside the target, validated there with
//! the service's own project parser, and only then moved into place, so a
//! failed import leaves nothing behind. An existing `project.toml` or job
//! file is never overwritten without `--force`. `project.toml` holds the
//! credentials, so it is written readable by its owner only; nothing here
//! prints a credential.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::import::convert;
use crate::project::{CredentialEnv, Project, ProjectError};

pub fn import(file: &Path, out: Option<PathBuf>, force: bool) -> anyhow::Result<ExitCode> {
    let yaml =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let base = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let source_name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "project.yaml".into());
    let imported = convert(&yaml, &source_name, &base)
        .map_err(|why| anyhow::anyhow!("{}: {why}", file.display()))?;
    for warning in &imported.warnings {
        eprintln!("warning: {}: {warning}", file.display());
    }

    let out = out.unwrap_or(base);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut targets = vec![PathBuf::from("project.toml")];
    targets.extend(imported.files.iter().map(|(path, _)| PathBuf::from(path)));
    let existing: Vec<String> = targets
        .iter()
        .filter(|t| out.join(t).exists())
        .map(|t| out.join(t).display().to_string())
        .collect();
    if !existing.is_empty() && !force {
        bail!(
            "{} already exist{}; pass --force to overwrite, or --out to import elsewhere",
            existing.join(", "),
            if existing.len() == 1 { "s" } else { "" }
        );
    }

    let staging = tempfile::Builder::new()
        .prefix(".import-")
        .tempdir_in(&out)
        .with_context(|| format!("cannot write into {}", out.display()))?;
    write_private(&staging.path().join("project.toml"), &imported.toml)?;
    std::fs::create_dir_all(staging.path().join("jobs"))?;
    for (path, text) in &imported.files {
        std::fs::write(staging.path().join(path), text)?;
    }
    // Credentials from the environment are checked by `check` and at start;
    // the import needs only the shape.
    if let Err(e) = Project::load_with(staging.path(), CredentialEnv::Skip) {
        bail!(
            "{}: the converted project is not valid: {}",
            file.display(),
            without_file(&e)
        );
    }
    std::fs::create_dir_all(out.join("jobs"))?;
    for target in &targets {
        std::fs::rename(staging.path().join(target), out.join(target))
            .with_context(|| format!("cannot write {}", out.join(target).display()))?;
    }
    println!(
        "imported {} job{}, {} trigger{} and {} credential{} from {} into {}",
        imported.jobs,
        plural(imported.jobs),
        imported.triggers,
        plural(imported.triggers),
        imported.credentials,
        plural(imported.credentials),
        file.display(),
        out.join("project.toml").display()
    );
    for note in &imported.notes {
        println!("{note}");
    }
    println!("next: PROJECT_DIR={} microservice check", out.display());
    Ok(ExitCode::SUCCESS)
}

/// The errors without the staging folder's path, which the user never sees.
fn without_file(e: &ProjectError) -> String {
    let lines: Vec<String> = e
        .problems()
        .into_iter()
        .map(|p| match p {
            ProjectError::Invalid {
                table,
                key,
                message,
                ..
            } => {
                let key = key.as_ref().map(|k| format!(" {k}")).unwrap_or_default();
                format!("[{table}]{key}: {message}")
            }
            ProjectError::Syntax { message, .. } => message.clone(),
            other => other.to_string(),
        })
        .collect();
    lines.join("; ")
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
