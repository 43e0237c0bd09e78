//! What the deploy files say: the Dockerfile's runtime stage and the
//! Kubernetes manifest's objects, read into the few facts the tests compare
//! (port, user, paths, probes, the project and the Secret). Only reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::dockerfile::{self, Stage, exec_form, options};

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

pub fn yaml(path: &str) -> Value {
    serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

/// Every document of a multi-document YAML file.
pub fn yaml_docs(path: &str) -> Vec<Value> {
    let text = read(path);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            <Value as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
        })
        .filter(|doc| !doc.is_null())
        .collect()
}

pub fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {v}"))
}

/// The runtime stage of the Dockerfile and the facts the other files must
/// agree with.
pub struct Image {
    pub stages: Vec<Stage>,
    pub env: BTreeMap<String, String>,
    pub uid: u32,
    pub port: u16,
    pub entry: Vec<String>,
    /// Where the first-party plugins are copied to.
    pub plugins_dir: String,
}

pub fn image() -> Image {
    let stages = dockerfile::parse(&read("Dockerfile"));
    let runtime = stages.last().expect("the Dockerfile has no FROM");
    let user = &runtime
        .last("USER")
        .expect("the runtime stage sets no USER")
        .args;
    let uid: u32 = user.split(':').next().unwrap().parse().unwrap_or_else(|_| {
        panic!("USER {user}: give a numeric UID, so Kubernetes' runAsNonRoot can check it")
    });
    let expose = &runtime.last("EXPOSE").expect("no EXPOSE").args;
    let port = expose
        .trim_end_matches("/tcp")
        .parse()
        .unwrap_or_else(|_| panic!("EXPOSE {expose}"));
    let mut entry = exec_form(&runtime.last("ENTRYPOINT").expect("no ENTRYPOINT").args);
    entry.extend(exec_form(&runtime.last("CMD").expect("no CMD").args));
    let plugins_dir = runtime
        .all("COPY")
        .iter()
        .find(|c| c.args.contains("/out/plugins"))
        .map(|c| {
            let (opts, rest) = options(&c.args);
            assert_eq!(opts.get("from").map(String::as_str), Some("build"), "{c:?}");
            rest.split_whitespace()
                .last()
                .unwrap()
                .trim_end_matches('/')
                .to_string()
        })
        .expect("the runtime stage does not copy the plugins from the build stage");
    Image {
        env: runtime.env(),
        stages,
        uid,
        port,
        entry,
        plugins_dir,
    }
}

/// The Deployment's container, the Deployment itself, and the manifest's
/// objects by kind.
pub struct Kube {
    pub objects: BTreeMap<String, Value>,
}

impl Kube {
    pub fn load(path: &str) -> Kube {
        let mut objects = BTreeMap::new();
        for doc in yaml_docs(path) {
            let kind = str_of(&doc["kind"], "kind").to_string();
            assert!(
                objects.insert(kind.clone(), doc).is_none(),
                "{path}: two objects of kind {kind}"
            );
        }
        Kube { objects }
    }

    pub fn get(&self, kind: &str) -> &Value {
        self.objects
            .get(kind)
            .unwrap_or_else(|| panic!("kubernetes.yaml has no {kind}"))
    }

    pub fn pod(&self) -> &Value {
        &self.get("Deployment")["spec"]["template"]["spec"]
    }

    pub fn container(&self) -> &Value {
        let containers = self.pod()["containers"].as_array().expect("containers");
        assert_eq!(containers.len(), 1, "one container expected");
        &containers[0]
    }

    /// The container's `env` as a map (values only; no `valueFrom` here).
    pub fn env(&self) -> BTreeMap<String, String> {
        self.container()["env"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    str_of(&e["name"], "env name").to_string(),
                    str_of(&e["value"], "env value (use the Secret for secrets)").to_string(),
                )
            })
            .collect()
    }

    /// A probe's path and port number (a named port resolved).
    pub fn probe(&self, name: &str) -> (String, u16) {
        let get = &self.container()[name]["httpGet"];
        let path = str_of(&get["path"], name).to_string();
        (path, self.port(&get["port"]))
    }

    pub fn port(&self, port: &Value) -> u16 {
        match port {
            Value::Number(n) => n.as_u64().unwrap() as u16,
            Value::String(name) => self.container()["ports"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name.as_str())
                .unwrap_or_else(|| panic!("no container port named {name}"))["containerPort"]
                .as_u64()
                .unwrap() as u16,
            other => panic!("port {other}"),
        }
    }

    /// The volume mounted at `path`.
    pub fn volume_at(&self, path: &str) -> &Value {
        let mount = self.container()["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("nothing is mounted at {path}"));
        self.pod()["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap_or_else(|| panic!("no volume named {}", mount["name"]))
    }

    /// The project the ConfigMap holds, as (path inside /project, text),
    /// following the volume's `items`.
    pub fn project_files(&self) -> Vec<(String, String)> {
        let volume = &self.volume_at("/project")["configMap"];
        assert_eq!(volume["name"], self.get("ConfigMap")["metadata"]["name"]);
        let data = &self.get("ConfigMap")["data"];
        volume["items"]
            .as_array()
            .expect("the ConfigMap volume lists its items, to lay out jobs/")
            .iter()
            .map(|item| {
                let key = str_of(&item["key"], "item key");
                (
                    str_of(&item["path"], "item path").to_string(),
                    str_of(&data[key], key).to_string(),
                )
            })
            .collect()
    }

    pub fn secret(&self) -> BTreeMap<String, String> {
        let secret = self.get("Secret");
        assert!(
            secret.get("data").is_none(),
            "keep the example Secret readable: stringData"
        );
        secret["stringData"]
            .as_object()
            .expect("Secret stringData")
            .iter()
            .map(|(k, v)| (k.clone(), str_of(v, k).to_string()))
            .collect()
    }
}

/// `{ env = "NAME" }` references in a project.toml, at any depth.
pub fn env_references(project_toml: &str) -> Vec<String> {
    pub fn walk(v: &toml::Value, out: &mut Vec<String>) {
        match v {
            toml::Value::Table(t) => match t.get("env") {
                Some(toml::Value::String(name)) if t.len() == 1 => out.push(name.clone()),
                _ => t.values().for_each(|v| walk(v, out)),
            },
            toml::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let doc: toml::Value = toml::from_str(project_toml).expect("project.toml parses");
    let mut out = Vec::new();
    walk(&doc, &mut out);
    out
}
