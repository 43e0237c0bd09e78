//! The real binary, started the way each deploy file starts it (its
//! environment, the container's folders mapped into a temp dir, its
//! project), answering the probe paths they name; and credentials taken
//! from environment variables reaching the job and nothing else.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::harness::{Launch, Service, log_lines, wait_for_runs, wasm_plugins};

use super::manifests::*;

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
/// language-common@3.3.4; the harness installs it with the shared packages,
/// and the services of this module still start one at a time, so that were
/// it missing only one of them would install it.
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
        .env("PACKAGES_DIR", &packages)
        .stdin(Stdio::null());
    for name in kube.secret().keys() {
        cmd.env_remove(name);
    }
    let out = crate::harness::output_within(&mut cmd, None, crate::harness::INSTALL_TIMEOUT)
        .unwrap_or_else(|e| panic!("microservice install: {e}"));
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

    // As compose runs it: its single-node service has no DATABASE_URL, so
    // the embedded store (the journal under DATA_DIR) even with STORAGE=postgres.
    let mut launch = Launch::new(&read("project/project.toml")).embedded();
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
            "project.toml: [credentials.upstream] password (line 11): environment variable `MICROSERVICE_TEST_UNSET_VARIABLE` is not set"
        ),
        "{out}"
    );
}
