//! Shipping: the Dockerfile, docker-compose.yml, kubernetes.yaml and the
//! Instant OpenHIE package agree with each other and with what the binary
//! really does.
//!
//! No Docker engine or cluster runs here, so the files are read (the
//! Dockerfile with a small reader, the YAML with a YAML parser) and checked
//! against each other; then the real binary is started the way each of them
//! starts it (its environment, its folder layout, its project, with the
//! container paths mapped into a temp dir) and asked on the probe paths
//! they name. Credentials taken from environment variables are checked to
//! reach the job and to stay out of every log, state and answer.

mod dockerfile;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::harness::{Launch, Service, log_lines, wait_for_runs, wasm_plugins};

use dockerfile::{Stage, exec_form, options};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

/// Every document of a multi-document YAML file.
fn yaml_docs(path: &str) -> Vec<Value> {
    let text = read(path);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            <Value as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
        })
        .filter(|doc| !doc.is_null())
        .collect()
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {v}"))
}

// ---------------------------------------------------------------------------
// What the files say
// ---------------------------------------------------------------------------

/// The runtime stage of the Dockerfile and the facts the other files must
/// agree with.
struct Image {
    stages: Vec<Stage>,
    env: BTreeMap<String, String>,
    uid: u32,
    port: u16,
    entry: Vec<String>,
    /// Where the first-party plugins are copied to.
    plugins_dir: String,
}

fn image() -> Image {
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
struct Kube {
    objects: BTreeMap<String, Value>,
}

impl Kube {
    fn load(path: &str) -> Kube {
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

    fn get(&self, kind: &str) -> &Value {
        self.objects
            .get(kind)
            .unwrap_or_else(|| panic!("kubernetes.yaml has no {kind}"))
    }

    fn pod(&self) -> &Value {
        &self.get("Deployment")["spec"]["template"]["spec"]
    }

    fn container(&self) -> &Value {
        let containers = self.pod()["containers"].as_array().expect("containers");
        assert_eq!(containers.len(), 1, "one container expected");
        &containers[0]
    }

    /// The container's `env` as a map (values only; no `valueFrom` here).
    fn env(&self) -> BTreeMap<String, String> {
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
    fn probe(&self, name: &str) -> (String, u16) {
        let get = &self.container()[name]["httpGet"];
        let path = str_of(&get["path"], name).to_string();
        (path, self.port(&get["port"]))
    }

    fn port(&self, port: &Value) -> u16 {
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
    fn volume_at(&self, path: &str) -> &Value {
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
    fn project_files(&self) -> Vec<(String, String)> {
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

    fn secret(&self) -> BTreeMap<String, String> {
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
fn env_references(project_toml: &str) -> Vec<String> {
    fn walk(v: &toml::Value, out: &mut Vec<String>) {
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

// ---------------------------------------------------------------------------
// The files agree
// ---------------------------------------------------------------------------

#[test]
fn dockerfile_builds_host_and_plugins_and_runs_them_unprivileged() {
    let img = image();
    let [build, runtime] = img.stages.as_slice() else {
        panic!(
            "expected two stages (build, runtime), got {}",
            img.stages.len()
        );
    };

    // Build stage: the workspace's Rust version, the wasm target, both builds.
    let cargo_toml: toml::Value = toml::from_str(&read("Cargo.toml")).unwrap();
    let rust_version = cargo_toml["workspace"]["package"]["rust-version"]
        .as_str()
        .unwrap();
    assert!(
        build.image.starts_with(&format!("rust:{rust_version}")),
        "build stage FROM {} does not match rust-version {rust_version}",
        build.image
    );
    assert_eq!(build.name.as_deref(), Some("build"));
    let runs: Vec<&str> = build.all("RUN").iter().map(|r| r.args.as_str()).collect();
    assert!(
        runs.iter()
            .any(|r| r.contains("rustup target add wasm32-wasip2")),
        "{runs:?}"
    );
    assert!(
        runs.iter()
            .any(|r| r.contains("cargo build --release --locked --bin microservice")),
        "{runs:?}"
    );
    assert!(
        runs.iter().any(|r| r.contains("--target wasm32-wasip2")
            && r.contains("--manifest-path plugins/Cargo.toml")),
        "{runs:?}"
    );
    // Everything the build stage copies is in the build context.
    let ignore = read(".dockerignore");
    for copy in build.all("COPY") {
        let (_, rest) = options(&copy.args);
        let words: Vec<&str> = rest.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            assert!(
                ignore
                    .lines()
                    .any(|l| l.trim() == format!("!{source}") || l.trim() == format!("!{source}/")),
                ".dockerignore leaves out `{source}`, which the build copies"
            );
            assert!(repo().join(source).exists(), "{source} is missing");
        }
    }

    // Runtime stage: Debian slim with node and npm, the service as non-root.
    assert!(
        runtime.image.starts_with("debian:") && runtime.image.ends_with("-slim"),
        "{}",
        runtime.image
    );
    let install = runtime
        .all("RUN")
        .into_iter()
        .find(|r| r.args.contains("apt-get install"))
        .expect("the runtime stage installs no packages");
    for package in ["nodejs", "npm", "ca-certificates"] {
        assert!(
            install.args.split_whitespace().any(|w| w == package),
            "{package} is not installed: {}",
            install.args
        );
    }
    assert_ne!(img.uid, 0, "the service must not run as root");
    assert!(
        runtime
            .all("RUN")
            .iter()
            .any(|r| r.args.contains(&format!("--uid {}", img.uid))),
        "USER {} is not created with useradd --uid",
        img.uid
    );
    assert_eq!(img.port, 4001);
    assert_eq!(img.entry, ["microservice", "serve"]);
    assert!(
        runtime
            .all("COPY")
            .iter()
            .any(|c| c.args.starts_with("--from=build")
                && c.args.ends_with("/usr/local/bin/microservice")),
        "the binary is not copied onto PATH"
    );
    let volumes = exec_form(&runtime.last("VOLUME").expect("no VOLUME").args);
    assert_eq!(volumes, ["/project", "/data"]);
    assert_eq!(img.env["PROJECT_DIR"], "/project");
    assert_eq!(img.env["DATA_DIR"], "/data");
    assert_eq!(img.env["PORT"], img.port.to_string());
    assert_eq!(img.env["HOST_URL"], "0.0.0.0");

    // HEALTHCHECK: an exec-form command of a program the image has, on /healthz.
    let (opts, cmd) = options(&runtime.last("HEALTHCHECK").expect("no HEALTHCHECK").args);
    assert!(opts.contains_key("start-period"), "{opts:?}");
    let cmd = exec_form(cmd.strip_prefix("CMD").expect("HEALTHCHECK CMD").trim());
    assert_eq!(cmd[0], "node", "{cmd:?}");
    assert!(cmd.iter().any(|a| a.contains("/healthz")), "{cmd:?}");
}

#[test]
fn compose_runs_the_image_with_the_example_project() {
    let img = image();
    let compose = yaml("docker-compose.yml");
    let svc = &compose["services"]["microservice"];
    assert_eq!(svc["build"], ".");
    assert_eq!(svc["command"], json!(["serve"]));
    assert_eq!(svc["init"], true);
    assert_eq!(
        svc["ports"],
        json!([format!("{0}:{0}", img.port)]),
        "the published port is the one the image exposes"
    );
    let env = &svc["environment"];
    assert_eq!(env["PORT"], img.port.to_string());
    assert_eq!(env["PROJECT_DIR"], img.env["PROJECT_DIR"]);
    assert_eq!(env["DATA_DIR"], img.env["DATA_DIR"]);
    assert_eq!(
        env["PLUGINS_DIR"], img.plugins_dir,
        "compose points at the plugins the image bakes in"
    );
    let volumes: Vec<&str> = svc["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| str_of(v, "volume"))
        .collect();
    assert!(volumes.contains(&"./project:/project"), "{volumes:?}");
    let data = volumes
        .iter()
        .find_map(|v| v.strip_suffix(":/data"))
        .expect("nothing is mounted at /data");
    assert!(
        compose["volumes"].get(data).is_some(),
        "/data is not a named volume"
    );
    assert!(repo().join("project/project.toml").is_file());
    let test: Vec<&str> = svc["healthcheck"]["test"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| str_of(v, "test"))
        .collect();
    assert_eq!(test[..2], ["CMD", "node"]);
    assert!(
        test.iter()
            .any(|t| t.contains(&format!("127.0.0.1:{}/healthz", img.port))),
        "{test:?}"
    );
    // The user is the image's, or one with group 0 (the writable group).
    let user = str_of(&svc["user"], "user");
    assert!(user.ends_with(&format!(":-{}}}:0", img.uid)), "user {user}");
}

#[test]
fn kubernetes_manifest_matches_the_image_and_keeps_secrets_in_the_secret() {
    let img = image();
    let kube = Kube::load("kubernetes.yaml");
    let kinds: Vec<&str> = kube.objects.keys().map(String::as_str).collect();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "Deployment",
            "Namespace",
            "PersistentVolumeClaim",
            "Secret",
            "Service"
        ]
    );
    let namespace = &kube.get("Namespace")["metadata"]["name"];
    for (kind, object) in &kube.objects {
        if kind != "Namespace" {
            assert_eq!(&object["metadata"]["namespace"], namespace, "{kind}");
        }
    }

    let container = kube.container();
    assert_eq!(container["args"], json!([img.entry[1]]));
    let env = kube.env();
    assert_eq!(env["PORT"], img.port.to_string());
    assert_eq!(env["PROJECT_DIR"], img.env["PROJECT_DIR"]);
    assert_eq!(env["DATA_DIR"], img.env["DATA_DIR"]);
    assert_eq!(kube.probe("livenessProbe"), ("/healthz".into(), img.port));
    assert_eq!(kube.probe("startupProbe"), ("/healthz".into(), img.port));
    assert_eq!(kube.probe("readinessProbe"), ("/readyz".into(), img.port));
    for part in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"][part][resource].is_string(),
                "resources.{part}.{resource} is missing"
            );
        }
    }
    let pod_security = &kube.pod()["securityContext"];
    assert_eq!(pod_security["runAsNonRoot"], true);
    assert_eq!(pod_security["runAsUser"], img.uid);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );

    // /project from the ConfigMap (read-only), /data from the claim.
    let pvc = &kube.get("PersistentVolumeClaim")["metadata"]["name"];
    assert_eq!(
        &kube.volume_at("/data")["persistentVolumeClaim"]["claimName"],
        pvc
    );
    let files = kube.project_files();
    assert!(files.iter().any(|(p, _)| p == "project.toml"), "{files:?}");

    // The Service reaches the container's port.
    let service = &kube.get("Service")["spec"];
    assert_eq!(service["ports"][0]["port"], img.port);
    assert_eq!(kube.port(&service["ports"][0]["targetPort"]), img.port);
    assert_eq!(
        service["selector"],
        kube.get("Deployment")["spec"]["template"]["metadata"]["labels"]
    );

    // Secrets: the Secret holds the API keys and every variable the project
    // takes a credential value from, and reaches the container; the
    // ConfigMap holds none of the Secret's values and no literal credential.
    let secret = kube.secret();
    for key in ["API_KEY", "ADMIN_API_KEY"] {
        assert!(secret.contains_key(key), "the Secret has no {key}");
    }
    let (_, project_toml) = files.iter().find(|(p, _)| p == "project.toml").unwrap();
    let references = env_references(project_toml);
    assert!(
        !references.is_empty(),
        "the example takes no credential from the environment"
    );
    for name in &references {
        assert!(secret.contains_key(name), "the Secret has no {name}");
    }
    assert_eq!(
        container["envFrom"][0]["secretRef"]["name"],
        kube.get("Secret")["metadata"]["name"]
    );
    let config_map = kube.get("ConfigMap").to_string();
    for (key, value) in &secret {
        assert!(
            !config_map.contains(value.as_str()),
            "the ConfigMap holds {key}'s value"
        );
    }
    let doc: toml::Value = toml::from_str(project_toml).unwrap();
    for (name, credential) in doc["credentials"].as_table().unwrap() {
        for (key, value) in credential.as_table().unwrap() {
            if key.contains("password") || key.contains("token") || key.contains("secret") {
                assert!(
                    value.is_table(),
                    "[credentials.{name}] {key} is written in the ConfigMap; use {{ env = \"...\" }}"
                );
            }
        }
    }
}

#[test]
fn instant_openhie_package_has_its_metadata_and_entry_points() {
    let base = "examples/instant-openhie";
    let meta: Value =
        serde_json::from_str(&read(&format!("{base}/instant.json"))).expect("instant.json is JSON");
    for key in ["id", "name", "description", "version"] {
        assert!(
            meta[key].as_str().is_some_and(|s| !s.is_empty()),
            "instant.json {key}"
        );
    }
    assert!(meta["dependencies"].is_array());

    // The entry points the tooling runs: docker/compose.sh and
    // kubernetes/main/k8s.sh, each taking init|up|down|destroy.
    for script in ["docker/compose.sh", "kubernetes/main/k8s.sh"] {
        let path = repo().join(base).join(script);
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{script}: {e}"))
            .permissions()
            .mode();
        assert!(mode & 0o111 != 0, "{script} is not executable ({mode:o})");
        let check = Command::new("bash").arg("-n").arg(&path).output().unwrap();
        assert!(
            check.status.success(),
            "bash -n {script}: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        // An unknown action is refused before any docker or kubectl call.
        let run = Command::new(&path).arg("sideways").output().unwrap();
        assert_eq!(run.status.code(), Some(64), "{script} sideways");
        let usage = String::from_utf8_lossy(&run.stderr);
        assert!(usage.contains("init|up|down|destroy"), "{usage}");
        let text = read(&format!("{base}/{script}"));
        for action in ["init | up)", "down)", "destroy)"] {
            assert!(text.contains(action), "{script} does not handle {action}");
        }
    }

    // The Kubernetes entry point applies a copy of the root manifest.
    assert_eq!(
        read(&format!("{base}/kubernetes/main/kubernetes.yaml")),
        read("kubernetes.yaml"),
        "the package's kubernetes.yaml differs from the root one; copy it over"
    );
    // The package's project is the one the ConfigMap carries.
    for (path, text) in Kube::load("kubernetes.yaml").project_files() {
        assert_eq!(
            read(&format!("{base}/project/{path}")),
            text,
            "{base}/project/{path} differs from the ConfigMap"
        );
    }

    // The package's compose file: its project, the image's paths, and every
    // variable instant.json gives a default for.
    let img = image();
    let compose_text = read(&format!("{base}/docker/docker-compose.yml"));
    let compose = yaml(&format!("{base}/docker/docker-compose.yml"));
    let svc = &compose["services"]["microservice"];
    assert_eq!(svc["environment"]["PROJECT_DIR"], img.env["PROJECT_DIR"]);
    assert_eq!(svc["environment"]["DATA_DIR"], img.env["DATA_DIR"]);
    assert!(
        svc["volumes"]
            .as_array()
            .unwrap()
            .contains(&json!("../project:/project:ro")),
        "{}",
        svc["volumes"]
    );
    for name in meta["environmentVariables"].as_object().unwrap().keys() {
        assert!(
            compose_text.contains(&format!("${{{name}:-")),
            "instant.json's {name} is not used by docker/docker-compose.yml"
        );
    }
}

// ---------------------------------------------------------------------------
// The binary, started the way each file starts it
// ---------------------------------------------------------------------------

/// The container's environment with its paths moved into the test's temp
/// root: `/project` → `{root}/project` and so on. Binding stays on loopback
/// and the port is picked free; every other path must be one the test
/// knows, so a new path in the Dockerfile is noticed here.
fn container_env(vars: &BTreeMap<String, String>) -> Vec<(String, String)> {
    vars.iter()
        .filter(|(k, _)| !matches!(k.as_str(), "PORT" | "HOST_URL"))
        .map(|(k, v)| {
            let mapped = match v.as_str() {
                p if p.starts_with('/') => {
                    let known = [
                        "/project",
                        "/data",
                        "/opt/microservice",
                        "/home/microservice",
                        "/tmp",
                    ];
                    assert!(
                        known
                            .iter()
                            .any(|k| p == *k || p.starts_with(&format!("{k}/"))),
                        "{k}={p}: a container path the test does not map"
                    );
                    format!("{{root}}{p}")
                }
                other => other.to_string(),
            };
            (k.clone(), mapped)
        })
        .collect()
}

/// Starts `launch` with `env`. The example projects pin
/// language-common@3.3.4, which the shared packages folder may not hold yet:
/// the services of this module start one at a time, so only one of them
/// installs it.
fn start_with(launch: Launch, env: &[(String, String)]) -> Service {
    let _turn = one_at_a_time();
    env.iter().fold(launch, |l, (k, v)| l.env(k, v)).start()
}

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// A derived image runs `microservice install` at build time, where the
/// Secret's variables are not set: install reads the ConfigMap's project
/// without resolving its `{ env = ... }` credentials, and succeeds.
#[test]
fn install_needs_no_secrets() {
    let kube = Kube::load("kubernetes.yaml");
    let root = crate::harness::temp_dir("deploy-install-");
    let project = root.path().join("project");
    for (path, text) in kube.project_files() {
        let path = project.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let packages = crate::harness::packages_dir();
    let _turn = one_at_a_time();
    let mut cmd = Command::new(crate::harness::BIN);
    cmd.arg("install")
        .env("PROJECT_DIR", &project)
        .env("DATA_DIR", root.path().join("data"))
        .env("PACKAGES_DIR", &packages);
    for name in kube.secret().keys() {
        cmd.env_remove(name);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "install failed:\n{text}");
    assert!(
        packages
            .join("@openfn+language-common@3.3.4/node_modules/@openfn/language-common/package.json")
            .is_file(),
        "{text}"
    );
}

/// Asks the running service on every probe path the deploy files name.
fn probes_answer(svc: &Service, paths: &[String]) {
    for path in paths {
        let reply = svc.get(path);
        assert_eq!(
            reply.status,
            200,
            "GET {path}: {reply:?}\n{}",
            svc.log_tail()
        );
    }
    let ready = svc.get("/readyz");
    assert_eq!(ready.json["status"], "ready", "{ready:?}");
}

/// The probe paths of the Dockerfile, compose and Kubernetes, each once.
fn probe_paths() -> Vec<String> {
    let mut paths = vec![];
    let img = image();
    let health = img
        .stages
        .last()
        .unwrap()
        .last("HEALTHCHECK")
        .unwrap()
        .args
        .clone();
    let compose = yaml("docker-compose.yml");
    let compose_test = compose["services"]["microservice"]["healthcheck"]["test"].to_string();
    for text in [health, compose_test] {
        let at = text.find("/healthz").expect("healthcheck path");
        let end = text[at..].find(['\'', '"']).unwrap();
        paths.push(text[at..at + end].to_string());
    }
    let kube = Kube::load("kubernetes.yaml");
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        paths.push(kube.probe(probe).0);
    }
    paths.sort();
    paths.dedup();
    paths
}

/// The image's command (`microservice serve`) on a copy of ./project laid
/// out as in the container: /project, /data, the baked plugins, with the
/// Dockerfile's and compose's environment. It answers the probes, runs a
/// receipt through a flow, loads the baked plugins, and stops cleanly on
/// SIGTERM as `docker stop` sends it.
#[test]
fn the_image_command_serves_the_example_project_as_compose_runs_it() {
    let img = image();
    assert_eq!(
        img.entry[0], "microservice",
        "the harness runs BIN as the entrypoint"
    );
    let compose = yaml("docker-compose.yml");
    let mut vars = img.env.clone();
    for (k, v) in compose["services"]["microservice"]["environment"]
        .as_object()
        .unwrap()
    {
        vars.insert(k.clone(), str_of(v, k).to_string());
    }
    let mut env = container_env(&vars);
    // Installed once per test process instead of on the first start.
    env.push((
        "PACKAGES_DIR".into(),
        crate::harness::packages_dir().display().to_string(),
    ));

    let mut launch = Launch::new(&read("project/project.toml"));
    for job in std::fs::read_dir(repo().join("project/jobs")).unwrap() {
        let job = job.unwrap().path();
        let name = job.file_name().unwrap().to_str().unwrap().to_string();
        launch = launch.file(
            &format!("jobs/{name}"),
            &std::fs::read_to_string(&job).unwrap(),
        );
    }
    // The build stage copies every first-party plugin but the journal.
    let (first_party, _) = wasm_plugins();
    let mut baked = Vec::new();
    for entry in std::fs::read_dir(&first_party).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name.ends_with(".wasm") && name != "journal.wasm" {
            launch = launch.file_bytes(
                &format!("..{}/{name}", img.plugins_dir),
                &std::fs::read(&path).unwrap(),
            );
            baked.push(name);
        }
    }
    assert!(baked.len() >= 3, "first-party plugins: {baked:?}");
    let mut svc = start_with(launch, &env);

    probes_answer(&svc, &probe_paths());

    let reply = svc.post_json("/inbox", r#"{"number": 2}"#);
    assert_eq!(reply.status, 202, "{reply:?}");
    assert_eq!(reply.json["data"], json!(["double"]));
    wait_for_runs(&svc, "triple-after-double", "success", 1);
    assert_eq!(
        svc.job_state("triple-after-double").unwrap()["data"]["number"],
        12
    );

    // The plugins the project configures load from the baked folder.
    let plugins = svc.get_json("/api/plugins");
    for name in ["jsonl-logger", "file-drop"] {
        let plugin = plugins
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{name} is not loaded: {plugins}"));
        assert_eq!(plugin["status"], "active", "{plugin}");
    }
    assert!(
        svc.project_dir().join("../data/journal").is_dir(),
        "the journal is not under DATA_DIR={{root}}/data"
    );

    let status = svc.stop();
    assert!(status.success(), "SIGTERM: {status}");
}

/// The Kubernetes Deployment's container on the ConfigMap's project with
/// the Secret's values in its environment: the probes answer, and the
/// credential built from the Secret reaches the job but no answer or log.
#[test]
fn the_kubernetes_pod_serves_the_configmap_project_with_the_secret() {
    let kube = Kube::load("kubernetes.yaml");
    let mut vars = image().env;
    vars.extend(kube.env());
    let mut env = container_env(&vars);
    env.push((
        "PACKAGES_DIR".into(),
        crate::harness::packages_dir().display().to_string(),
    ));
    // API_KEY and ADMIN_API_KEY belong to the API-key feature; this test
    // calls /inbox without a key, so they are left out.
    let secret: BTreeMap<String, String> = kube
        .secret()
        .into_iter()
        .filter(|(k, _)| !k.ends_with("API_KEY"))
        .collect();
    env.extend(secret.iter().map(|(k, v)| (k.clone(), v.clone())));

    let files = kube.project_files();
    let (_, project_toml) = files.iter().find(|(p, _)| p == "project.toml").unwrap();
    let mut launch = Launch::new(project_toml);
    for (path, text) in files.iter().filter(|(p, _)| p != "project.toml") {
        launch = launch.file(path, text);
    }
    let svc = start_with(launch, &env);
    probes_answer(&svc, &probe_paths());

    let patient = json!({
        "resourceType": "Patient",
        "id": "p-1",
        "name": [{"given": ["Ada"], "family": "Lovelace"}],
        "birthDate": "1815-12-10"
    });
    let reply = svc.post_json("/inbox", &patient.to_string());
    assert_eq!(reply.status, 202, "{reply:?}");
    assert_eq!(reply.json["data"], json!(["patient-summary"]));
    let runs = wait_for_runs(&svc, "patient-summary", "success", 1);
    let state = svc.job_state("patient-summary").unwrap();
    assert_eq!(
        state["data"],
        json!({
            "id": "p-1",
            "name": "Ada Lovelace",
            "birthDate": "1815-12-10",
            "forward_to": "http://openhim-core:5001",
            "authenticated": true
        })
    );
    let seen = format!("{}{}{}", svc.run(&runs[0]), state, svc.logs());
    for (key, value) in &secret {
        assert!(
            !seen.contains(value.as_str()),
            "{key}'s value leaked:\n{seen}"
        );
    }
}

/// A credential value written `{ env = "NAME" }` reaches the job as
/// `state.configuration` (the job stores only its length and a checksum),
/// and the value never shows in the run's log, its state, the API or the
/// service's output, even when the job logs it.
#[test]
fn env_sourced_credentials_reach_the_job_and_nothing_else() {
    const PASSWORD: &str = "env-s3cret-Zq81!";
    const TOKEN: &str = "tok-from-env-4417";
    let project = r#"
[jobs.probe]
expression = """
fn(state => {
  const pw = state.configuration.password;
  let sum = 0;
  for (let i = 0; i < pw.length; i++) { sum = (sum * 31 + pw.charCodeAt(i)) % 1000003; }
  console.log('password is ' + pw);
  console.log('configuration ' + JSON.stringify(state.configuration));
  state.data.length = pw.length;
  state.data.checksum = sum;
  state.data.token_length = state.configuration.auth.token.length;
  state.data.user = state.configuration.user;
  return state;
});
"""
trigger = "t"
credential = "upstream"

[triggers.t]
criteria = { kind = "probe" }

[credentials.upstream]
user = "plain-user"
password = { env = "UPSTREAM_PASSWORD" }
auth = { token = { env = "UPSTREAM_TOKEN" } }
"#;
    let svc = Service::start(
        project,
        &[("UPSTREAM_PASSWORD", PASSWORD), ("UPSTREAM_TOKEN", TOKEN)],
    );
    let reply = svc.post_json("/inbox", r#"{"kind":"probe"}"#);
    assert_eq!(reply.status, 202, "{reply:?}");
    let runs = wait_for_runs(&svc, "probe", "success", 1);

    let checksum = PASSWORD
        .chars()
        .fold(0u64, |sum, c| (sum * 31 + c as u64) % 1_000_003);
    let state = svc.job_state("probe").unwrap();
    assert_eq!(state["data"]["length"], PASSWORD.len());
    assert_eq!(state["data"]["checksum"], checksum);
    assert_eq!(state["data"]["token_length"], TOKEN.len());
    assert_eq!(state["data"]["user"], "plain-user");

    let detail = svc.run(&runs[0]);
    let log = log_lines(&detail);
    let line = log
        .iter()
        .find(|l| l.contains("password is "))
        .unwrap_or_else(|| panic!("the job's log line is missing: {log:?}"));
    assert!(line.contains("password is ***"), "{line}");
    let seen = format!("{detail}{state}{}{}", svc.get("/api/jobs").body, svc.logs());
    for secret in [PASSWORD, TOKEN] {
        assert!(!seen.contains(secret), "{secret} leaked:\n{seen}");
    }
}

/// A project naming a variable that is not set does not start, and says
/// which file, table, key and variable.
#[test]
fn a_missing_credential_variable_stops_the_start() {
    let project = r#"
[jobs.a]
expression = "fn(state => state)"
trigger = "t"
credential = "upstream"

[triggers.t]
criteria = { kind = "a" }

[credentials.upstream]
password = { env = "MICROSERVICE_TEST_UNSET_VARIABLE" }
"#;
    let out = Launch::new(project).expect_failure().unwrap();
    assert!(
        out.contains(
            "project.toml: [credentials.upstream] password (line 10): environment variable `MICROSERVICE_TEST_UNSET_VARIABLE` is not set"
        ),
        "{out}"
    );
}
