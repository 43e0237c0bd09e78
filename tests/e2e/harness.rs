//! Test harness: installs the OpenFn packages once per test process, starts
//! the real `microservice` binary on a throw-away project and data directory,
//! captures its output, and offers small HTTP and polling helpers.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tempfile::TempDir;

/// Path of the binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_microservice");

/// How long a service may take to print its `listening on` line. Start-up
/// compiles every plugin in the folder (six for the hostile-plugin test) and
/// may start warm node workers: on a two-core machine with a load of 10 that
/// takes tens of seconds, not the two or three it takes when idle.
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// How long `microservice install` may take (it runs `npm install`).
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);
/// How long building one plugin workspace for wasm32-wasip2 may take: a
/// cold release build on a busy two-core machine, possibly queued behind
/// another cargo's lock on the package cache.
const BUILD_TIMEOUT: Duration = Duration::from_secs(1800);
/// How long a service that must refuse to start may take to exit: it may
/// start warm node workers and compile plugins before the fault shows.
const FAILURE_TIMEOUT: Duration = Duration::from_secs(120);
/// Generous default for waiting on runs to finish: one run costs about a
/// second on an idle machine (node starting @openfn/core), several on a
/// loaded one, and some tests wait for a handful in a row. Kept under ureq's
/// 120 s `timeout_global`, which bounds a sync `/inbox` request waiting for
/// the same runs, so both kinds of wait give up at about the same point.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(110);
/// How long the service may take to exit on SIGTERM: its shutdown waits up
/// to `[engine] shutdown_grace` (30 s by default) for runs in flight, then
/// kills them and flushes acknowledgements (up to 5 s more).
const STOP_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a line the service printed may take to reach the test through
/// the reader threads, on a machine where they wait to be scheduled.
pub const LOG_LAG: Duration = Duration::from_secs(30);
/// How long reader threads may take to reach the end of an exited child's
/// pipes (they only need to be scheduled, which on a loaded machine can
/// take a while).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The receipt used by the original OpenFn microservice test suite.
pub const RECEIPT: &str = include_str!("../projects/fixtures/receipt.json");

/// Scratch directory that cargo provides for integration tests.
pub fn scratch_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&dir).expect("create CARGO_TARGET_TMPDIR");
    dir
}

/// A fresh temporary directory under the scratch dir.
pub fn temp_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(scratch_dir())
        .expect("create temp dir")
}

// ---------------------------------------------------------------------------
// Package installation
// ---------------------------------------------------------------------------

static PACKAGES: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The shared `PACKAGES_DIR`, installed once per test process with
/// `microservice install` (npm install of @openfn/core and the adaptor).
///
/// It also installs `@openfn/language-common@3.3.4`, which the example
/// project (deploy tests) and a queue test pin: otherwise the first service
/// naming it runs npm before listening, and two such services starting at
/// once each install it, the later one replacing the folder the earlier one
/// is already running jobs from.
pub fn packages_dir() -> PathBuf {
    PACKAGES
        .get_or_init(install_packages)
        .clone()
        .unwrap_or_else(|err| panic!("installing packages failed:\n{err}"))
}

fn install_packages() -> Result<PathBuf, String> {
    let packages = scratch_dir().join("e2e-packages");
    std::fs::create_dir_all(&packages).map_err(|e| e.to_string())?;
    let project = temp_dir("e2e-install-project-");
    std::fs::write(
        project.path().join("project.toml"),
        r#"
[jobs.install]
adaptor = "@openfn/language-common"
trigger = "never"
expression = "fn(state => state)"

[jobs.install-pinned]
adaptor = "@openfn/language-common@3.3.4"
trigger = "never"
expression = "fn(state => state)"

[triggers.never]
criteria = { install = "never" }
"#,
    )
    .map_err(|e| e.to_string())?;
    let data = temp_dir("e2e-install-data-");

    let mut child = Command::new(BIN)
        .arg("install")
        .env("PROJECT_DIR", project.path())
        .env("PACKAGES_DIR", &packages)
        .env("DATA_DIR", data.path())
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawning {BIN} install: {e}"))?;
    let output = Output::capture(&mut child);
    let status = wait_exit(&mut child, INSTALL_TIMEOUT);
    output.drain();
    match status {
        Some(status) if status.success() => Ok(packages),
        Some(status) => Err(format!(
            "`microservice install` exited with {status}; output:\n{}",
            output.text()
        )),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "`microservice install` did not finish within {INSTALL_TIMEOUT:?}; output:\n{}",
                output.text()
            ))
        }
    }
}

// ---------------------------------------------------------------------------
// WebAssembly plugins
// ---------------------------------------------------------------------------

static WASM_PLUGINS: OnceLock<Result<(PathBuf, PathBuf), String>> = OnceLock::new();

/// The plugins built from source, once per test process: the release
/// directories holding the `.wasm` files of the first-party plugins
/// (`plugins/`) and of the test plugins (`tests/plugins/`). A plugin's file
/// is its crate name with `_`, e.g. `webhook_notify.wasm`.
pub fn wasm_plugins() -> (PathBuf, PathBuf) {
    WASM_PLUGINS
        .get_or_init(build_wasm_plugins)
        .clone()
        .unwrap_or_else(|err| panic!("building the wasm plugins failed:\n{err}"))
}

fn build_wasm_plugins() -> Result<(PathBuf, PathBuf), String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let targets = scratch_dir().join("wasm-target");
    // Both workspaces at once: separate target dirs, so no lock contention
    // between them or with the outer cargo.
    let builds: Vec<_> = [("first-party", "plugins"), ("test", "tests/plugins")]
        .into_iter()
        .map(|(name, workspace)| {
            let workspace = repo.join(workspace);
            let target_dir = targets.join(name);
            thread::spawn(move || build_wasm_workspace(&workspace, &target_dir))
        })
        .collect();
    let mut dirs = Vec::new();
    for build in builds {
        dirs.push(
            build
                .join()
                .map_err(|_| "the build thread panicked".to_string())??,
        );
    }
    let test = dirs.pop().unwrap();
    let first_party = dirs.pop().unwrap();
    Ok((first_party, test))
}

/// `cargo build --release` of one plugin workspace for wasm32-wasip2;
/// returns its `wasm32-wasip2/release` directory.
fn build_wasm_workspace(workspace: &Path, target_dir: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let manifest = workspace.join("Cargo.toml");
    let mut build = Command::new(&cargo);
    build
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(&manifest)
        // The workspace's own .cargo/config.toml applies (it is found from
        // the working directory, not from --manifest-path).
        .current_dir(workspace)
        .env("CARGO_TARGET_DIR", target_dir)
        .env_remove("CARGO_BUILD_TARGET")
        .stdin(Stdio::null());
    let output = output_within(&mut build, None, BUILD_TIMEOUT)?;
    if !output.status.success() {
        return Err(format!(
            "`{cargo} build --release --manifest-path {}` exited with {}:\n{}\n{}",
            manifest.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        ));
    }
    let release = target_dir.join("wasm32-wasip2").join("release");
    if !release.is_dir() {
        return Err(format!(
            "the build succeeded but {} is missing",
            release.display()
        ));
    }
    Ok(release)
}

// ---------------------------------------------------------------------------
// Output capture
// ---------------------------------------------------------------------------

/// All lines a child printed on stdout and stderr, collected by two threads.
#[derive(Default)]
pub struct Output {
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<thread::JoinHandle<()>>,
}

impl Output {
    /// Takes the child's piped stdout and stderr and starts reader threads.
    fn capture(child: &mut Child) -> Output {
        let mut output = Output::default();
        if let Some(out) = child.stdout.take() {
            output.spawn_reader(out);
        }
        if let Some(err) = child.stderr.take() {
            output.spawn_reader(err);
        }
        output
    }

    fn spawn_reader(&mut self, stream: impl Read + Send + 'static) {
        let lines = Arc::clone(&self.lines);
        self.readers.push(thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        let line = line.trim_end_matches(['\n', '\r']).to_string();
                        lines.lock().unwrap().push(line);
                    }
                }
            }
        }));
    }

    /// Waits (up to [`DRAIN_TIMEOUT`]) for the readers to reach the end of
    /// both pipes, so that everything an exited child printed has been
    /// collected.
    fn drain(&self) {
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while !self.readers.iter().all(|r| r.is_finished()) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub fn text(&self) -> String {
        self.lines().join("\n")
    }
}

/// Polls `child` until it exits or `timeout` passes.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait on child") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Extracts `127.0.0.1:PORT` from a line containing `listening on http://`.
fn parse_listen_address(line: &str) -> Option<String> {
    const MARKER: &str = "listening on http://";
    let start = line.find(MARKER)? + MARKER.len();
    let addr: String = line[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']' | '-'))
        .collect();
    let addr = addr.trim_end_matches(['.', ':']).to_string();
    addr.contains(':').then_some(addr)
}

// ---------------------------------------------------------------------------
// Launching a service
// ---------------------------------------------------------------------------

/// Describes how to start a service: the project, extra files, environment
/// and (optionally) a data directory shared with a previous run.
pub struct Launch {
    toml: String,
    files: Vec<(String, Vec<u8>)>,
    env: Vec<(String, String)>,
    data_dir: Option<PathBuf>,
    /// Start the binary in the temporary root (so relative paths in the
    /// environment resolve against it) instead of the test's directory.
    in_root: bool,
}

/// The directories a launch writes: `root/project` is `PROJECT_DIR`.
struct Dirs {
    _root: TempDir,
    project: PathBuf,
    data: PathBuf,
    _data_guard: Option<TempDir>,
}

impl Launch {
    /// A project whose `project.toml` is `toml`. The text `{root}` is replaced
    /// by the absolute path of the temporary directory holding the project
    /// (the project itself is `{root}/project`).
    pub fn new(toml: &str) -> Launch {
        Launch {
            toml: toml.to_string(),
            files: Vec::new(),
            env: Vec::new(),
            data_dir: None,
            in_root: false,
        }
    }

    /// Runs the binary with the temporary root as its working directory.
    pub fn in_root(mut self) -> Launch {
        self.in_root = true;
        self
    }

    /// An extra file, path relative to the project directory (may use `..`
    /// to land in the temporary root next to the project).
    pub fn file(mut self, path: &str, contents: &str) -> Launch {
        self.files
            .push((path.to_string(), contents.as_bytes().to_vec()));
        self
    }

    /// An extra file with binary contents (e.g. a `.wasm` plugin), path
    /// relative to the project directory.
    pub fn file_bytes(mut self, path: &str, contents: &[u8]) -> Launch {
        self.files.push((path.to_string(), contents.to_vec()));
        self
    }

    /// An environment variable; `{root}` in the value is replaced like in
    /// the project text (e.g. `DATA_DIR={root}/data`).
    pub fn env(mut self, key: &str, value: &str) -> Launch {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn envs(mut self, vars: &[(&str, &str)]) -> Launch {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    /// Keeps the embedded store even with `STORAGE=postgres`: for the
    /// tests of the message-store plugin and the journal, which only the
    /// embedded store uses (with PostgreSQL the receipts are a table).
    pub fn embedded(self) -> Launch {
        self.env("DATABASE_URL", "")
    }

    /// Reuses an existing `DATA_DIR` (for restart tests).
    pub fn data_dir(mut self, dir: &Path) -> Launch {
        self.data_dir = Some(dir.to_path_buf());
        self
    }

    fn prepare(&self) -> Dirs {
        let root = temp_dir("e2e-project-");
        let project = root.path().join("project");
        std::fs::create_dir_all(&project).unwrap();
        let toml = self
            .toml
            .replace("{root}", &root.path().display().to_string());
        std::fs::write(project.join("project.toml"), toml).unwrap();
        for (path, contents) in &self.files {
            let path = project.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents).unwrap();
        }
        let (data, data_guard) = match &self.data_dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let guard = temp_dir("e2e-data-");
                (guard.path().to_path_buf(), Some(guard))
            }
        };
        Dirs {
            _root: root,
            project,
            data,
            _data_guard: data_guard,
        }
    }

    fn spawn(&self, dirs: &Dirs) -> Child {
        let mut cmd = Command::new(BIN);
        cmd.env("PROJECT_DIR", &dirs.project)
            .env("DATA_DIR", &dirs.data)
            .env("PACKAGES_DIR", packages_dir())
            .env("PORT", "0")
            .env("HOST_URL", "127.0.0.1")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("ENDPOINT_STYLE")
            .env_remove("DATABASE_URL")
            .env_remove("API_KEY")
            .env_remove("ADMIN_API_KEY")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let root = dirs._root.path().display().to_string();
        // STORAGE=postgres: the whole suite on PostgreSQL, one database per
        // DATA_DIR (a test that sets DATABASE_URL itself keeps its own).
        if crate::postgres::enabled() && !self.env.iter().any(|(k, _)| k == "DATABASE_URL") {
            cmd.env(
                "DATABASE_URL",
                crate::postgres::database_url_for(&dirs.data),
            );
        }
        for (k, v) in &self.env {
            cmd.env(k, v.replace("{root}", &root));
        }
        if self.in_root {
            cmd.current_dir(dirs._root.path());
        }
        cmd.spawn()
            .unwrap_or_else(|e| panic!("spawning {BIN}: {e}"))
    }

    /// Starts the service and waits for it to listen.
    pub fn start(self) -> Service {
        let dirs = self.prepare();
        let mut child = self.spawn(&dirs);
        let output = Output::capture(&mut child);
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = loop {
            if let Some(addr) = output.lines().iter().find_map(|l| parse_listen_address(l)) {
                break addr;
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "service exited with {status} before listening; output:\n{}",
                    output.text()
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "service did not print `listening on http://` within {START_TIMEOUT:?}; output:\n{}",
                    output.text()
                );
            }
            thread::sleep(Duration::from_millis(50));
        };
        Service {
            child,
            addr,
            output,
            agent: agent(),
            exited: None,
            data_dir: dirs.data.clone(),
            _dirs: dirs,
        }
    }

    /// Runs the service expecting it to refuse to start: it must exit with a
    /// non-zero status within [`FAILURE_TIMEOUT`]. Returns everything it
    /// printed.
    pub fn expect_failure(self) -> Result<String, String> {
        let dirs = self.prepare();
        let mut child = self.spawn(&dirs);
        let output = Output::capture(&mut child);
        let status = wait_exit(&mut child, FAILURE_TIMEOUT);
        output.drain();
        match status {
            Some(status) if !status.success() => Ok(output.text()),
            Some(status) => Err(format!(
                "exited with {status} (expected failure); output:\n{}",
                output.text()
            )),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                output.drain();
                Err(format!(
                    "still running after {FAILURE_TIMEOUT:?} (expected it to exit non-zero); output:\n{}",
                    output.text()
                ))
            }
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// A response: status, raw body and the body parsed as JSON (`Null` if the
/// body is not JSON; see `is_json`).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub json: Value,
    /// Response headers, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
}

impl Reply {
    pub(crate) fn from(
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Reply, ureq::Error> {
        let response = result?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response.into_body().read_to_string()?;
        let json = serde_json::from_str(&body).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            body,
            json,
            headers,
        })
    }

    pub fn is_json(&self) -> bool {
        serde_json::from_str::<Value>(&self.body).is_ok()
    }

    /// The first value of header `name` (any case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

// ---------------------------------------------------------------------------
// A running service
// ---------------------------------------------------------------------------

/// A running `microservice` process. Killed on drop.
pub struct Service {
    child: Child,
    addr: String,
    output: Output,
    agent: ureq::Agent,
    exited: Option<ExitStatus>,
    data_dir: PathBuf,
    _dirs: Dirs,
}

impl Service {
    /// Starts the binary on `project_toml` with extra environment variables.
    pub fn start(project_toml: &str, extra_env: &[(&str, &str)]) -> Service {
        Launch::new(project_toml).envs(extra_env).start()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The service's `PROJECT_DIR`.
    pub fn project_dir(&self) -> &Path {
        &self._dirs.project
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// POSTs `body`; `content_type = None` sends no Content-Type header.
    pub fn post(&self, path: &str, body: &str, content_type: Option<&str>) -> Reply {
        let mut request = self.agent.post(self.url(path));
        if let Some(ct) = content_type {
            request = request.content_type(ct);
        }
        self.reply(Reply::from(request.send(body)), &format!("POST {path}"))
    }

    /// POSTs `body` as `application/json`.
    pub fn post_json(&self, path: &str, body: &str) -> Reply {
        self.post(path, body, Some("application/json"))
    }

    /// POSTs `body` as `application/json` with extra request headers.
    pub fn post_json_with(&self, path: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = self
            .agent
            .post(self.url(path))
            .content_type("application/json");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        self.reply(Reply::from(request.send(body)), &format!("POST {path}"))
    }

    pub fn get(&self, path: &str) -> Reply {
        self.reply(
            Reply::from(self.agent.get(self.url(path)).call()),
            &format!("GET {path}"),
        )
    }

    /// GETs `path` with extra request headers.
    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.agent.get(self.url(path));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        self.reply(Reply::from(request.call()), &format!("GET {path}"))
    }

    /// Unwraps a reply, or panics with the service's state and output.
    fn reply(&self, reply: Result<Reply, ureq::Error>, what: &str) -> Reply {
        reply.unwrap_or_else(|e| {
            let state = if process_is_gone(self.child.id()) {
                "has exited"
            } else {
                "is running"
            };
            panic!(
                "{what}: request failed: {e} (the service {state})\n{}",
                self.log_tail()
            )
        })
    }

    /// GETs `path` and returns its JSON, asserting a 200.
    pub fn get_json(&self, path: &str) -> Value {
        let reply = self.get(path);
        assert_eq!(
            reply.status,
            200,
            "GET {path}: {reply:?}\n{}",
            self.log_tail()
        );
        reply.json
    }

    /// Everything the service printed so far.
    pub fn logs(&self) -> String {
        self.output.text()
    }

    /// The last lines of the service output, for failure messages.
    pub fn log_tail(&self) -> String {
        let lines = self.output.lines();
        let from = lines.len().saturating_sub(60);
        format!(
            "--- service output (last {} lines) ---\n{}",
            lines.len() - from,
            lines[from..].join("\n")
        )
    }

    /// Polls `probe` every 200 ms until it yields `Some`, or panics after
    /// `timeout` with `what` and the service output.
    pub fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl FnMut() -> Option<T>,
    ) -> T {
        wait_for(timeout, &mut probe).unwrap_or_else(|| {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                self.log_tail()
            )
        })
    }

    /// Polls `probe` every 200 ms until it yields `Ok`, or panics after
    /// `timeout` with `what`, the last `Err` it gave (what it saw instead)
    /// and the service output.
    pub fn poll_until<T, E: std::fmt::Display>(
        &self,
        what: &str,
        timeout: Duration,
        probe: impl FnMut() -> Result<T, E>,
    ) -> T {
        poll_for(timeout, probe).unwrap_or_else(|last| {
            panic!(
                "timed out after {timeout:?} waiting for {what}; last seen: {last}\n{}",
                self.log_tail()
            )
        })
    }

    /// The service output's lines containing `needle`, waiting up to
    /// [`LOG_LAG`] for the first: the output is collected by reader threads,
    /// so a line the service printed a moment ago may not be there yet.
    /// Empty if none came; the caller asserts, with its own message.
    pub fn log_lines_with(&self, needle: &str) -> Vec<String> {
        let matching = || -> Vec<String> {
            self.output
                .lines()
                .into_iter()
                .filter(|l| l.contains(needle))
                .collect()
        };
        wait_for(LOG_LAG, || Some(matching()).filter(|l| !l.is_empty())).unwrap_or_default()
    }

    /// Runs of `job` (newest first), as returned by `GET /api/runs?job=`.
    pub fn runs(&self, job: &str) -> Vec<Value> {
        self.runs_query(&format!("job={job}&limit=1000"))
    }

    pub fn runs_query(&self, query: &str) -> Vec<Value> {
        let path = format!("/api/runs?{query}");
        match self.get_json(&path) {
            Value::Array(runs) => runs,
            other => panic!("GET {path}: expected an array, got {other}"),
        }
    }

    /// A run's details (`GET /api/runs/{id}`).
    pub fn run(&self, run: &Value) -> Value {
        self.get_json(&format!("/api/runs/{}", run_id(run)))
    }

    /// The stored state of `job`, if any (`GET /api/jobs/{job}/state`).
    pub fn job_state(&self, job: &str) -> Option<Value> {
        let reply = self.get(&format!("/api/jobs/{job}/state"));
        match reply.status {
            200 => Some(reply.json),
            404 => None,
            _ => panic!("GET /api/jobs/{job}/state: unexpected {reply:?}"),
        }
    }

    /// `127.0.0.1:PORT`, where the service listens.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends SIGKILL (a crash: no shutdown at all) and reaps the process.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.exited {
            return status;
        }
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL).expect("send SIGKILL");
        let status = wait_exit(&mut self.child, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("service still there 30 s after SIGKILL"));
        self.output.drain();
        self.exited = Some(status);
        status
    }

    /// Sends SIGTERM and waits up to [`STOP_TIMEOUT`] for the process to exit.
    pub fn stop(&mut self) -> ExitStatus {
        if let Some(status) = self.exited {
            return status;
        }
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).expect("send SIGTERM");
        let status = wait_exit(&mut self.child, STOP_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "service did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                self.log_tail()
            )
        });
        self.output.drain();
        self.exited = Some(status);
        status
    }
}

impl Drop for Service {
    /// Asks the service to stop (so that it reaps its runs' processes and
    /// cleans up), and kills it if it is still there after [`STOP_TIMEOUT`].
    /// A shorter wait would SIGKILL a service still inside its shutdown
    /// grace on a busy machine, orphaning its node processes, which then
    /// load the machine for every test after it.
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM);
            if wait_exit(&mut self.child, STOP_TIMEOUT).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// Whether process `pid` has exited (gone, or a zombie not yet reaped).
pub fn process_is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// The `id` of a run record, as used in `/api/runs/{id}`.
pub fn run_id(run: &Value) -> String {
    match &run["id"] {
        Value::String(s) => s.clone(),
        Value::Null => panic!("run without id: {run}"),
        other => other.to_string(),
    }
}

/// Polls `probe` every 200 ms until it returns `Ok`; after `timeout`, the
/// last `Err` it returned (what it saw instead).
pub fn poll_for<T, E>(timeout: Duration, mut probe: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let deadline = Instant::now() + timeout;
    loop {
        match probe() {
            Ok(value) => return Ok(value),
            Err(last) if Instant::now() >= deadline => return Err(last),
            Err(_) => thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// `dir` (a folder of the repository with a `package-lock.json`) with its
/// locked packages installed: `npm ci`, unless `dir/node_modules/<marker>`
/// is there already. Callers keep the answer in a `OnceLock`, so one test
/// run installs once.
pub fn npm_ci(dir: &Path, marker: &str) -> Result<PathBuf, String> {
    if dir.join("node_modules").join(marker).is_file() {
        return Ok(dir.to_path_buf());
    }
    let out = output_within(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir)
            .stdin(Stdio::null()),
        None,
        INSTALL_TIMEOUT,
    )
    .map_err(|e| format!("npm ci in {}: {e}", dir.display()))?;
    if out.status.success() {
        Ok(dir.to_path_buf())
    } else {
        Err(format!(
            "`npm ci` in {} exited with {}:\n{}{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `Command::output` with a deadline: runs `cmd` with its stdout and stderr
/// piped, feeds it `stdin` when given (otherwise stdin is whatever `cmd`
/// says; `spawn` inherits it, so set it), and returns everything it printed.
/// After `timeout` it kills the child and returns an error holding what it
/// had printed, so a hung command fails the test instead of blocking it.
pub fn output_within(
    cmd: &mut Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<std::process::Output, String> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("spawning {program}: {e}"))?;
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // On its own thread: a child that never reads its stdin must not
        // block the test; the pipe closes when the thread ends.
        let bytes = bytes.to_vec();
        thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        });
    }
    let collect = |stream: Option<Box<dyn Read + Send>>| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let reader = stream.map(|mut stream| {
            let buf = Arc::clone(&buf);
            thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                while let Ok(n) = stream.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    buf.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            })
        });
        (buf, reader)
    };
    let (out, out_reader) = collect(child.stdout.take().map(|s| Box::new(s) as _));
    let (err, err_reader) = collect(child.stderr.take().map(|s| Box::new(s) as _));
    let status = wait_exit(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    // A grandchild may hold the pipes open after the child is gone: wait
    // for the readers only so long, then take what they have.
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while [&out_reader, &err_reader]
        .iter()
        .any(|r| r.as_ref().is_some_and(|r| !r.is_finished()))
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(10));
    }
    let stdout = out.lock().unwrap().clone();
    let stderr = err.lock().unwrap().clone();
    match status {
        Some(status) => Ok(std::process::Output {
            status,
            stdout,
            stderr,
        }),
        None => Err(format!(
            "{program} did not finish within {timeout:?}; killed it. What it printed:\n--- stdout ---\n{}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        )),
    }
}

/// Polls `probe` every 200 ms until it returns `Some`, or `None` after `timeout`.
pub fn wait_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// The statuses of `runs`, newest first, for failure messages.
fn statuses(runs: &[Value]) -> String {
    let all: Vec<String> = runs
        .iter()
        .map(|r| r["status"].as_str().unwrap_or("?").to_string())
        .collect();
    format!("{} run(s) [{}]", all.len(), all.join(", "))
}

/// Waits until `job` has at least `n` runs with `status`, and returns them
/// (newest first).
pub fn wait_for_runs(svc: &Service, job: &str, status: &str, n: usize) -> Vec<Value> {
    svc.poll_until(
        &format!("{n} run(s) of {job} with status {status}"),
        RUN_TIMEOUT,
        || {
            let runs: Vec<Value> = svc
                .runs_query(&format!("job={job}&status={status}&limit=1000"))
                .into_iter()
                .filter(|r| r["status"] == status)
                .collect();
            if runs.len() >= n {
                Ok(runs)
            } else {
                Err(format!("{job} has {}", statuses(&svc.runs(job))))
            }
        },
    )
}

/// Waits until `job` has a finished run and returns the newest one.
pub fn wait_for_finished_run(svc: &Service, job: &str) -> Value {
    svc.poll_until(&format!("a finished run of {job}"), RUN_TIMEOUT, || {
        let all = svc.runs(job);
        all.iter()
            .find(|r| r["status"] == "success" || r["status"] == "failure")
            .cloned()
            .ok_or_else(|| format!("{job} has {}", statuses(&all)))
    })
}

/// Parses a JSON literal, for building expected values.
pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("bad JSON in test: {e}: {text}"))
}

/// Lines of a run's `log` field, asserting that it is an array of strings.
pub fn log_lines(run_detail: &Value) -> Vec<String> {
    let log = run_detail["log"]
        .as_array()
        .unwrap_or_else(|| panic!("run log is not an array: {run_detail}"));
    log.iter()
        .map(|l| {
            l.as_str()
                .unwrap_or_else(|| panic!("log line is not a string: {l}"))
                .to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_listen_address;

    #[test]
    fn parses_listen_lines() {
        assert_eq!(
            parse_listen_address("2025 INFO microservice: listening on http://127.0.0.1:41234"),
            Some("127.0.0.1:41234".to_string())
        );
        assert_eq!(
            parse_listen_address(r#"{"message":"listening on http://127.0.0.1:80","x":1}"#),
            Some("127.0.0.1:80".to_string())
        );
        assert_eq!(
            parse_listen_address("listening on http://127.0.0.1:5."),
            Some("127.0.0.1:5".to_string())
        );
        assert_eq!(parse_listen_address("nothing here"), None);
    }
}
