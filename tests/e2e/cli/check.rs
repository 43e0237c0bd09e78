//! `microservice check` on broken and good projects, and the invalid
//! project fixtures (tests/projects/invalid/): each `<case>.toml` beside the
//! exact output `check` must print for it, which `serve` must print too.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::run::RUN_PROJECT;
use super::{Scratch, describe, text};
use crate::harness::{BIN, temp_dir};

#[test]
fn check_passes_a_good_project() {
    let good = Scratch::new(Some(RUN_PROJECT));
    let out = good.run(&["check"], None);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stdout).contains("3 jobs, 2 triggers, 1 credential"),
        "{}",
        describe(&out)
    );
}

fn invalid_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/projects/invalid")
}

/// The binary with `args` on `toml` as `PROJECT_DIR/project.toml`, with no
/// packages (nothing here gets as far as needing them); `{project}` stands
/// for the project directory in what it prints.
fn on_project(toml: &Path, args: &[&str], extra_env: &[(&str, &str)]) -> (Output, String) {
    let root = temp_dir("e2e-invalid-");
    let project = root.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::copy(toml, project.join("project.toml")).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.current_dir(root.path())
        .args(args)
        .env("PROJECT_DIR", &project)
        .env("DATA_DIR", root.path().join("data"))
        .env("PACKAGES_DIR", root.path().join("packages"))
        .env("NO_COLOR", "1")
        .env_remove("LOG_LEVEL")
        .env_remove("RUST_LOG")
        .envs(extra_env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr).replace(&project.display().to_string(), "{project}");
    (out, stderr)
}

#[test]
fn every_invalid_project_fixture_prints_its_exact_errors_in_check_and_serve() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(invalid_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 20, "fixtures: {cases:?}");
    let mut problems = Vec::new();
    for case in &cases {
        let name = case.file_stem().unwrap().to_string_lossy().into_owned();
        let Ok(expected) = std::fs::read_to_string(case.with_extension("err")) else {
            problems.push(format!("[{name}] has no {name}.err beside it"));
            continue;
        };

        let (out, stderr) = on_project(case, &["check"], &[]);
        if out.status.code() != Some(1) || stderr != expected || !out.stdout.is_empty() {
            problems.push(format!(
                "[{name}] check: exit {}\n--- expected stderr ---\n{expected}--- got ---\n{stderr}--- stdout ---\n{}",
                out.status,
                text(&out.stdout)
            ));
        }

        // `serve` refuses to start with the same list, after its log's.
        let serve_env = [
            ("PORT", "0"),
            ("HOST_URL", "127.0.0.1"),
            ("RUST_LOG", "info"),
        ];
        let (out, stderr) = on_project(case, &[], &serve_env);
        if out.status.success() || !stderr.ends_with(&expected) || stderr.contains("listening on") {
            problems.push(format!(
                "[{name}] serve: exit {}\n--- expected to end with ---\n{expected}--- got ---\n{stderr}",
                out.status
            ));
        }
    }
    for err in std::fs::read_dir(invalid_dir()).unwrap() {
        let err = err.unwrap().path();
        if err.extension().is_some_and(|e| e == "err") && !err.with_extension("toml").exists() {
            problems.push(format!("{} has no .toml beside it", err.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) in {} fixtures:\n\n{}",
        problems.len(),
        cases.len(),
        problems.join("\n\n")
    );
}
