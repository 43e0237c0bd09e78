//! The command line, through the real binary: `run` in a shell-style
//! pipeline with the real `@openfn/core`, `check` on broken and good
//! projects, `import` of every fixture of the original microservice (then
//! `check`, then a served receipt running the imported job), `install`
//! idempotence, `plugin inspect`/`list` on the first-party plugins, and an
//! OpenFn Lightning project imported then served (its webhooks, edges and
//! reply modes).
//! This file holds the helpers, `--help` and `install`; one file per
//! other command.

mod check;
mod import;
mod lightning;
mod plugin;
mod run;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{BIN, output_within, packages_dir, temp_dir};

/// How long one command may take: `run` starts node with @openfn/core and
/// `check` compiles plugins, seconds when idle, tens of seconds on a busy
/// two-core machine; a command still going after this is hung.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(180);

/// The original microservice's fixtures (tests/projects/fixtures/openfn-microservice).
pub fn fixtures() -> PathBuf {
    // Copied into the repository (see its README): CI runs on a bare clone.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/projects/fixtures/openfn-microservice")
}

/// A command of the binary with a project's environment; runs in `dir` so
/// no stray `.env` is read.
pub fn microservice(dir: &Path, project: &Path, data: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env("PROJECT_DIR", project)
        .env("DATA_DIR", data)
        .env("PACKAGES_DIR", packages_dir())
        .env("NO_COLOR", "1")
        .env_remove("LOG_LEVEL")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs `cmd`, feeding `stdin` when given; fails the test with what it
/// printed if it does not finish within [`CLI_TIMEOUT`].
pub fn output(mut cmd: Command, stdin: Option<&str>) -> Output {
    output_within(&mut cmd, stdin.map(str::as_bytes), CLI_TIMEOUT)
        .unwrap_or_else(|e| panic!("{BIN} {:?}: {e}", cmd.get_args().collect::<Vec<_>>()))
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn describe(out: &Output) -> String {
    format!(
        "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// A project folder holding `toml` (and a data folder), in a temp root.
pub struct Scratch {
    root: tempfile::TempDir,
}

impl Scratch {
    pub fn new(toml: Option<&str>) -> Scratch {
        let root = temp_dir("e2e-cli-");
        std::fs::create_dir_all(root.path().join("project")).unwrap();
        if let Some(toml) = toml {
            std::fs::write(root.path().join("project/project.toml"), toml).unwrap();
        }
        Scratch { root }
    }
    pub fn dir(&self) -> &Path {
        self.root.path()
    }
    pub fn project(&self) -> PathBuf {
        self.root.path().join("project")
    }
    pub fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = microservice(self.dir(), &self.project(), &self.data());
        cmd.args(args);
        cmd
    }
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        output(self.cmd(args), stdin)
    }
}

/// Four processes installing into one empty PACKAGES_DIR at once (replicas
/// starting on shared storage) all succeed: one installs, the others wait
/// for it and find the packages there. Before the lock, npm
/// runs raced: "could not prepare …/@openfn+core@1.5.1: Directory not
/// empty".
#[test]
fn concurrent_installs_into_one_packages_dir_all_succeed() {
    let s = Scratch::new(Some(
        "[jobs.a]\nadaptor = \"@openfn/language-common@3.3.4\"\ntrigger = \"t\"\nexpression = \"fn(s => s)\"\n[triggers.t]\ncriteria = {}\n",
    ));
    let packages = s.dir().join("shared-packages");
    let installs: Vec<_> = (0..4)
        .map(|_| {
            let mut cmd = s.cmd(&["install"]);
            cmd.env("PACKAGES_DIR", &packages);
            std::thread::spawn(move || output(cmd, None))
        })
        .collect();
    let outs: Vec<Output> = installs.into_iter().map(|t| t.join().unwrap()).collect();
    for out in &outs {
        assert!(out.status.success(), "{}", describe(out));
    }
    for package in ["@openfn+core@1.5.1", "@openfn+language-common@3.3.4"] {
        assert!(packages.join(package).is_dir(), "{package} is missing");
    }
}

#[test]
fn install_is_idempotent() {
    // The harness installed the packages with `microservice install`; a
    // second install finds everything and runs no npm.
    let packages = packages_dir();
    let s = Scratch::new(Some(
        "[jobs.a]\ntrigger = \"t\"\nexpression = \"fn(s => s)\"\n[triggers.t]\ncriteria = {}\n",
    ));
    let marker = packages.join("@openfn+language-common");
    let before = std::fs::metadata(&marker).unwrap().modified().unwrap();
    let started = Instant::now();
    let out = s.run(&["install"], None);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stdout).contains("nothing to install")
            && text(&out.stdout).contains("npm was not run"),
        "{}",
        describe(&out)
    );
    // Not a terminal: plain lines, one per package.
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("@openfn/core 1.5.1 already installed"),
        "{}",
        describe(&out)
    );
    assert!(
        stderr.contains("@openfn/language-common"),
        "{}",
        describe(&out)
    );
    // "npm was not run" above is the proof that nothing was installed; this
    // only catches a check that became very slow. Looking at the folders
    // takes well under a second when idle, but a busy machine stretches
    // starting a process and reading package.json files to seconds.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        std::fs::metadata(&marker).unwrap().modified().unwrap(),
        before
    );
}

#[test]
fn every_command_has_help_with_an_example_and_there_is_a_version() {
    let s = Scratch::new(None);
    let out = s.run(&["--version"], None);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).starts_with("microservice "),
        "{}",
        describe(&out)
    );
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["run", "--help"],
        &["check", "--help"],
        &["import", "--help"],
        &["install", "--help"],
        &["plugin", "--help"],
        &["plugin", "list", "--help"],
        &["plugin", "inspect", "--help"],
    ] {
        let out = s.run(args, None);
        assert!(out.status.success(), "{args:?}: {}", describe(&out));
        assert!(
            text(&out.stdout).contains("Example"),
            "{args:?}: {}",
            describe(&out)
        );
    }
}
