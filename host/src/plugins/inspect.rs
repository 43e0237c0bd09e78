//! A plugin file judged without serving it: what `microservice plugin
//! inspect` and `plugin list` print, and what `microservice check` verifies.
//!
//! It goes through the service's own runtime (engine, linker, grants, world
//! bindings), so "would load" means what loading means in the service. It
//! instantiates a plugin once, under its limits but with no folders, because
//! that is where the exported functions' types are checked (linking checks
//! their names only), and never calls it. It writes nothing to the project or `DATA_DIR`:
//! compiled code is read from the service's compile cache when the service
//! has compiled that file before (the entry's seal checked as the service
//! checks it), and otherwise compiled in memory and thrown away; granted
//! folders are checked, not created.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::component::types::{ComponentExtern, ComponentItem};

use super::capabilities::{self, Capability};
use super::folders::HostFolders;
use super::grants::Grants;
use super::manifest::{self, Manifest};
use super::plugin::{self, Kind};
use super::runtime::{Runtime, ticks};
use crate::project::PluginSpec;

/// Judges plugin files against one project's `[plugins.<name>]` tables.
pub struct Inspector {
    /// Reads the service's compile cache (`DATA_DIR/plugin-cache`), never
    /// writes it: a plugin the service has compiled is not compiled again.
    runtime: Runtime,
    folders: HostFolders,
    specs: BTreeMap<String, PluginSpec>,
    /// `[plugins] max_memory`: a plugin capped above it is refused.
    max_memory: usize,
    /// The project file the tables come from, if there is a project.
    project: Option<String>,
}

/// What one plugin file is and whether the service would load it.
#[derive(Debug, Serialize)]
pub struct Inspection {
    pub file: String,
    /// The plugin's name: the table naming the file, else the file's stem.
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// Whether its compiled form came from the service's compile cache
    /// (the service has loaded this very file before) instead of a compile.
    pub from_cache: bool,
    /// `None` when it exports no plugin interface (or more than one).
    pub kind: Option<Kind>,
    /// The WIT world it targets, with the package version, e.g.
    /// `openfn:microservice/notification@0.1.0`.
    pub world: Option<String>,
    pub exports: Vec<Item>,
    pub imports: Vec<Item>,
    /// What the imports ask for, by capability, and whether the table
    /// grants each (see [`super::capabilities`]).
    pub capabilities: Vec<Capability>,
    /// What the plugin says it needs (its manifest section), if it says.
    pub manifest: Option<Manifest>,
    /// The `[plugins.<name>]` table its grants come from; `None` means no
    /// grants at all (deny by default).
    pub table: Option<String>,
    /// The `project.toml` whose tables were read; `None` when there is no
    /// project (no tables at all, so no grants).
    pub project: Option<String>,
    /// Its table says `enabled = false`: the service skips the file.
    pub disabled: bool,
    /// Enabled, and nothing in it is refused.
    pub would_load: bool,
    /// What the service would refuse it for, were it enabled.
    pub refusal: Option<String>,
}

/// One import or export of a component.
#[derive(Debug, Serialize)]
pub struct Item {
    pub name: String,
    /// `instance`, `func`, `type`, `resource`, `module`, `component` or `core func`.
    pub item: &'static str,
    /// For an instance: the functions in it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub functions: Vec<String>,
}

impl Inspector {
    pub fn new(
        folders: HostFolders,
        specs: BTreeMap<String, PluginSpec>,
        max_memory: usize,
        project: Option<String>,
    ) -> anyhow::Result<Inspector> {
        Ok(Inspector {
            runtime: Runtime::reading_cache(folders.data_dir.join(super::folders::CACHE))?,
            folders,
            specs,
            max_memory,
            project,
        })
    }

    /// Inspects the file at `path`. Errors only when it cannot be read or
    /// is not a WebAssembly component at all; a component the service
    /// would refuse is an [`Inspection`] with `would_load: false`.
    pub async fn inspect(&self, path: &Path) -> Result<Inspection, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let (component, _, from_cache) = self
            .runtime
            .component(&bytes)
            .map_err(|e| format!("{} is not a WebAssembly component: {e:#}", path.display()))?;
        let engine = &self.runtime.engine;
        let ty = component.component_type();
        let exports: Vec<Item> = ty
            .exports(engine)
            .map(|(n, i)| item(n, i, engine))
            .collect();
        let imports: Vec<Item> = ty
            .imports(engine)
            .map(|(n, i)| item(n, i, engine))
            .collect();
        let name = super::name_for_file(&self.specs, path);
        let spec = self.specs.get(&name);
        let kind = plugin::kind_of(&component, engine);
        let world = kind.as_ref().ok().map(|k| {
            let version = exports
                .iter()
                .find(|e| Kind::from_export(&e.name) == Some(*k))
                .and_then(|e| e.name.split_once('@'))
                .map(|(_, v)| format!("@{v}"))
                .unwrap_or_default();
            format!("openfn:microservice/{}{version}", world_name(*k))
        });
        let disabled = spec.is_some_and(|s| !s.enabled);
        // Judged against no grants when the table's own are refused.
        let grants = Grants::preview(spec, &self.folders)
            .or_else(|_| Grants::preview(None, &self.folders))?;
        let import_names: Vec<String> = imports.iter().map(|i| i.name.clone()).collect();
        let capabilities = capabilities::of(&import_names, &grants);
        // What the plugin's manifest asks for is checked against the table
        // first: what it lacks is what to add.
        let verdict = match kind.clone() {
            Ok(kind) => match manifest::applied(&bytes, spec, &name) {
                Ok(spec) => self.judge(spec.as_ref(), &component, kind, &name).await,
                Err(why) => Err(why),
            },
            Err(why) => Err(why),
        };
        Ok(Inspection {
            file: path.display().to_string(),
            name,
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
            from_cache,
            kind: kind.ok(),
            world,
            exports,
            imports,
            capabilities,
            manifest: manifest::read(&bytes).ok().flatten(),
            table: spec.map(|s| s.name.clone()),
            project: self.project.clone(),
            disabled,
            would_load: !disabled && verdict.is_ok(),
            refusal: verdict.err(),
        })
    }

    /// Whether the service would load `component` as `kind`: its grants,
    /// its imports, its links, and the types of what it exports.
    async fn judge(
        &self,
        spec: Option<&PluginSpec>,
        component: &wasmtime::component::Component,
        kind: Kind,
        name: &str,
    ) -> Result<(), String> {
        let engine = &self.runtime.engine;
        let grants = Grants::preview(spec, &self.folders)?;
        grants.check_imports(component, engine)?;
        super::budget::check_cap(kind, grants.memory_bytes, self.max_memory)?;
        let pre = plugin::link(&self.runtime.linker, component, kind)?;
        // Its limits but no folders (which may not exist yet), so
        // instantiating opens nothing; no export is called.
        let bare = Grants {
            dirs: Vec::new(),
            ..grants
        };
        let mut store = bare
            .store(engine, &Arc::from(name))
            .map_err(|e| format!("{e:#}"))?;
        store.set_epoch_deadline(ticks(bare.timeout));
        plugin::instantiate(&pre, &mut store)
            .await
            .map_err(|e| format!("does not match the {kind:?} world: {e:#}"))
    }
}

/// The world of each kind, as named in `wit/worlds.wit`.
fn world_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Trigger => "trigger",
        Kind::Notification => "notification",
        Kind::Logging => "logging",
        Kind::Persistence => "persistence",
    }
}

fn item(name: &str, item: ComponentExtern, engine: &wasmtime::Engine) -> Item {
    let (label, functions) = match item.ty {
        ComponentItem::ComponentInstance(instance) => (
            "instance",
            instance
                .exports(engine)
                .filter(|(_, i)| matches!(i.ty, ComponentItem::ComponentFunc(_)))
                .map(|(n, _)| n.to_string())
                .collect(),
        ),
        ComponentItem::ComponentFunc(_) => ("func", Vec::new()),
        ComponentItem::CoreFunc(_) => ("core func", Vec::new()),
        ComponentItem::Module(_) => ("module", Vec::new()),
        ComponentItem::Component(_) => ("component", Vec::new()),
        ComponentItem::Type(_) => ("type", Vec::new()),
        ComponentItem::Resource(_) => ("resource", Vec::new()),
    };
    Item {
        name: name.to_string(),
        item: label,
        functions,
    }
}
