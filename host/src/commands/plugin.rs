//! `microservice plugin list` and `plugin inspect <file.wasm>`: what a
//! plugin file is and whether the service would load it under the
//! project's grants ([`crate::plugins::inspect`] does the judging).
//!
//! Both only read: a plugin is instantiated once, with no folders granted, to check
//! its functions' types, never called; nothing is written to the project.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::project_if_any;
use crate::plugins::inspect::{Inspection, Inspector};
use crate::project::plugins::DEFAULT_MAX_MEMORY;
use crate::settings::Settings;

pub async fn list(settings: &Settings, json: bool) -> anyhow::Result<ExitCode> {
    let project = project_if_any(settings)?;
    let inspector = inspector(settings, project.as_ref())?;
    let files = wasm_files(&settings.plugins_dir)?;
    let mut rows = Vec::new();
    for file in &files {
        rows.push(match inspector.inspect(file).await {
            Ok(i) => i,
            Err(why) => unreadable(file, why),
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("plugins folder: {}", settings.plugins_dir.display());
    if rows.is_empty() {
        println!("(no .wasm files)");
    } else {
        println!("{:<20} {:<13} {:>10}  WOULD LOAD", "NAME", "KIND", "SIZE");
        for row in &rows {
            let kind = row
                .kind
                .map(|k| format!("{k:?}").to_lowercase())
                .unwrap_or_else(|| "-".into());
            let verdict = verdict(row);
            println!(
                "{:<20} {:<13} {:>10}  {verdict}",
                row.name,
                kind,
                human_size(row.size)
            );
        }
    }
    for spec in project.iter().flat_map(|p| p.plugins.values()) {
        if spec.enabled && !files.iter().any(|f| f.ends_with(&spec.file)) {
            println!(
                "[plugins.{}] names {}, which is not in the folder",
                spec.name, spec.file
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn inspect(settings: &Settings, file: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let project = project_if_any(settings)?;
    let inspector = inspector(settings, project.as_ref())?;
    let i = inspector.inspect(file).await.map_err(anyhow::Error::msg)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&i)?);
        return Ok(ExitCode::SUCCESS);
    }
    match &i.project {
        Some(file) => println!("project:    {file}"),
        None => println!(
            "project:    none ({} does not exist; set PROJECT_DIR to judge the plugin under a project's grants)",
            grants_source(settings)
        ),
    }
    println!("file:       {}", i.file);
    println!("name:       {}", i.name);
    println!("size:       {} bytes ({})", i.size, human_size(i.size));
    println!("sha256:     {}", i.sha256);
    match (i.kind, &i.world) {
        (Some(kind), Some(world)) => {
            println!("kind:       {}", format!("{kind:?}").to_lowercase());
            println!("world:      {world}");
        }
        _ => println!("kind:       none (it is not a plugin of any kind)"),
    }
    for (title, items) in [("exports", &i.exports), ("imports", &i.imports)] {
        println!("{title}:");
        for item in items.iter() {
            if item.functions.is_empty() {
                println!("  {} ({})", item.name, item.item);
            } else {
                println!(
                    "  {} ({}: {})",
                    item.name,
                    item.item,
                    item.functions.join(", ")
                );
            }
        }
    }
    println!("capabilities:");
    for c in &i.capabilities {
        let mark = if c.granted { "yes" } else { "NO " };
        println!("  {mark} {:<12} {}", c.name, c.detail);
    }
    match &i.manifest {
        None => println!("manifest:   none (the plugin does not say what it needs)"),
        Some(m) => {
            println!("manifest:   what the plugin says it needs");
            for d in &m.dirs {
                let access = if d.writable {
                    "read-write"
                } else {
                    "read-only"
                };
                println!("  folder     {} ({access})", d.guest);
            }
            for h in &m.hosts {
                let any = if h == "*" {
                    " (any origin the table grants)"
                } else {
                    ""
                };
                println!("  host       {h}{any}");
            }
            for (key, c) in &m.config {
                let ty = format!("{:?}", c.ty).to_lowercase();
                match &c.default {
                    Some(d) => println!("  config     {key}: {ty}, default {d}"),
                    None => println!("  config     {key}: {ty}, required"),
                }
            }
        }
    }
    match (&i.table, &project) {
        (Some(table), _) => println!(
            "grants:     [plugins.{table}] in {}",
            grants_source(settings)
        ),
        (None, Some(_)) => println!(
            "grants:     none (no [plugins.{}] table in {}: it would run with no folders, no network and no config)",
            i.name,
            grants_source(settings)
        ),
        (None, None) => println!(
            "grants:     none (no project, so no [plugins.{}] table: deny by default)",
            i.name
        ),
    }
    println!("would load: {}", verdict(&i));
    Ok(ExitCode::SUCCESS)
}

fn verdict(i: &Inspection) -> String {
    match (&i.refusal, i.disabled) {
        (None, false) => "yes".into(),
        (None, true) => "no: disabled (enabled = false); it would load otherwise".into(),
        (Some(why), false) => format!("no: {why}"),
        (Some(why), true) => format!("no: disabled (enabled = false), and {why}"),
    }
}

fn grants_source(settings: &Settings) -> String {
    settings
        .project_dir
        .join("project.toml")
        .display()
        .to_string()
}

/// The `.wasm` files of the plugins folder, sorted; none if it is missing.
/// The judge of plugins under `project`'s grants (none without a project).
pub(super) fn inspector(
    settings: &Settings,
    project: Option<&crate::project::Project>,
) -> anyhow::Result<Inspector> {
    let specs = project.map(|p| p.plugins.clone()).unwrap_or_default();
    let folders = crate::plugins::HostFolders {
        project_dir: settings.project_dir.clone(),
        data_dir: settings.data_dir.clone(),
        packages_dir: settings.packages_dir.clone(),
        plugins_dir: settings.plugins_dir.clone(),
        job_files: project.map(|p| p.job_files()).unwrap_or_default(),
    };
    let max_memory = project.map_or(DEFAULT_MAX_MEMORY, |p| p.plugin_memory);
    Inspector::new(
        folders,
        specs,
        max_memory,
        project.map(|p| p.file.display().to_string()),
    )
}

pub(super) fn wasm_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// A row for a file that is not a component at all.
pub(super) fn unreadable(file: &Path, why: String) -> Inspection {
    Inspection {
        file: file.display().to_string(),
        name: file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        size: std::fs::metadata(file).map(|m| m.len()).unwrap_or(0),
        sha256: String::new(),
        from_cache: false,
        kind: None,
        world: None,
        exports: Vec::new(),
        imports: Vec::new(),
        capabilities: Vec::new(),
        manifest: None,
        table: None,
        project: None,
        disabled: false,
        would_load: false,
        refusal: Some(why),
    }
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}
