//! The deploy files agree with each other: the Dockerfile, docker-compose.yml
//! (both profiles), kubernetes.yaml, kubernetes-cluster.yaml and the Instant
//! OpenHIE package name the same port,
//! paths, probes and user, and secrets stay in the Secret.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::dockerfile::{exec_form, options};
use super::manifests::*;
use crate::harness::output_within;

/// A shell script's syntax check or usage message is instant; this only
/// bounds a script that hangs.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);

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

/// docker-compose.yml's clustered profile: PostgreSQL, three replicas of
/// the same image pointed at it, and one port in front of them; none of it
/// starts with a plain `docker compose up`.
#[test]
fn compose_cluster_profile_runs_three_replicas_on_one_postgres() {
    let img = image();
    let compose = yaml("docker-compose.yml");
    let services = &compose["services"];
    assert!(
        services["microservice"].get("profiles").is_none(),
        "the single node is what `docker compose up` starts"
    );
    for name in ["postgres", "replica", "proxy"] {
        assert_eq!(services[name]["profiles"], json!(["cluster"]), "{name}");
    }
    let replica = &services["replica"];
    let single = &services["microservice"];
    for key in ["build", "image", "command", "init", "user"] {
        assert_eq!(replica[key], single[key], "replica.{key}");
    }
    assert_eq!(replica["deploy"]["replicas"], 3);
    assert_eq!(
        replica["depends_on"]["postgres"]["condition"],
        "service_healthy"
    );
    let env = &replica["environment"];
    assert_eq!(env["PORT"], img.port.to_string());
    assert_eq!(env["PLUGINS_DIR"], img.plugins_dir);
    let url = str_of(&env["DATABASE_URL"], "DATABASE_URL");
    let db = &services["postgres"]["environment"];
    let user = str_of(&db["POSTGRES_USER"], "POSTGRES_USER");
    let name = str_of(&db["POSTGRES_DB"], "POSTGRES_DB");
    assert!(
        url.starts_with(&format!("postgres://{user}:"))
            && url.ends_with(&format!("@postgres:5432/{name}")),
        "DATABASE_URL {url} names the postgres service's user and database"
    );
    // The password comes from .env, the same variable on both sides.
    let password = str_of(&db["POSTGRES_PASSWORD"], "POSTGRES_PASSWORD");
    assert!(password.starts_with("${POSTGRES_PASSWORD:?"), "{password}");
    assert!(url.contains("${POSTGRES_PASSWORD:?"), "{url}");
    // Nothing kept is on a replica: no /data volume; the database's is named.
    let volumes = replica["volumes"].to_string();
    assert!(!volumes.contains(":/data"), "{volumes}");
    assert!(compose["volumes"].get("pgdata").is_some());
    // Ready means the database answers: the replica's health is /readyz.
    assert!(
        replica["healthcheck"]["test"]
            .to_string()
            .contains(&format!("127.0.0.1:{}/readyz", img.port)),
        "{}",
        replica["healthcheck"]
    );
    // The proxy listens on its one port and sends everything to `replica`.
    let proxy = &services["proxy"];
    let published = str_of(&proxy["ports"][0], "proxy port");
    let listen = published.rsplit(':').next().unwrap();
    let mounted = str_of(&proxy["volumes"][0], "proxy volume");
    let conf_path = mounted.split(':').next().unwrap().trim_start_matches("./");
    let conf = read(conf_path);
    assert!(conf.contains(&format!("listen {listen};")), "{conf}");
    assert!(
        conf.contains(&format!("server replica:{}", img.port)),
        "{conf}"
    );
}

/// kubernetes-cluster.yaml: the single-node manifest's pod, three times,
/// rolling, its state in PostgreSQL whose URL is in the Secret.
#[test]
fn kubernetes_cluster_manifest_rolls_three_replicas_on_the_database_secret() {
    let img = image();
    let single = Kube::load("kubernetes.yaml");
    let kube = Kube::load("kubernetes-cluster.yaml");
    let kinds: Vec<&str> = kube.objects.keys().map(String::as_str).collect();
    assert_eq!(
        kinds,
        ["ConfigMap", "Deployment", "Namespace", "Secret", "Service"],
        "no PersistentVolumeClaim: nothing kept lives in the pods"
    );
    let spec = &kube.get("Deployment")["spec"];
    assert_eq!(spec["replicas"], 3);
    assert_eq!(spec["strategy"]["type"], "RollingUpdate");
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    assert!(kube.secret().contains_key("DATABASE_URL"));
    assert_eq!(
        kube.container()["envFrom"][0]["secretRef"]["name"],
        kube.get("Secret")["metadata"]["name"]
    );
    assert_eq!(kube.probe("readinessProbe"), ("/readyz".into(), img.port));
    assert!(kube.volume_at("/data").get("emptyDir").is_some());
    // Otherwise the same pod as the single node's.
    assert_eq!(kube.env(), single.env());
    assert_eq!(kube.project_files(), single.project_files());
    assert_eq!(kube.container()["image"], single.container()["image"]);
    assert_eq!(
        kube.pod()["securityContext"],
        single.pod()["securityContext"]
    );
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
        let check = output_within(
            Command::new("bash")
                .arg("-n")
                .arg(&path)
                .stdin(Stdio::null()),
            None,
            SCRIPT_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("bash -n {script}: {e}"));
        assert!(
            check.status.success(),
            "bash -n {script}: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        // An unknown action is refused before any docker or kubectl call.
        // With a deadline: a script that went on to call docker or kubectl
        // could wait on them for a long time.
        let run = output_within(
            Command::new(&path).arg("sideways").stdin(Stdio::null()),
            None,
            SCRIPT_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("{script} sideways: {e}"));
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
