//! `microservice run <job>`: one run of one job, through the configured
//! engine, for writing and debugging jobs at the command line.
//!
//! The initial state is `--state` (default `{"data": {}}`), with `data`
//! replaced by `--data` when given; `configuration` is always the job's
//! credential, as in the service (one in `--state` is ignored). The job's
//! log goes to stderr with credentials masked, its final state (without
//! `configuration`) to stdout as JSON, and the exit code says how it went.
//!
//! It is a dry run: it installs missing packages like `serve`, but never
//! opens the service's store, so no run record or job state is written and
//! no flow fires. Scratch files (the state, which holds the credential) live
//! in a private folder under `DATA_DIR/tmp`, removed when the run ends.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use serde_json::{Value, json};

use crate::engine::{FailureKind, RunRequest};
use crate::packages::Progress;
use crate::project::{Project, TriggerKind};
use crate::redact::{Redactor, strip_configuration};
use crate::service::{EngineDirs, engine, install_packages, package_specs};
use crate::settings::Settings;

/// Exit code of a run killed at its timeout, as `timeout(1)` uses.
const TIMED_OUT: u8 = 124;
/// Exit code after Ctrl-C or SIGTERM, as a shell reports SIGINT.
const INTERRUPTED: u8 = 130;

pub async fn run(
    settings: &Settings,
    name: &str,
    data: Option<PathBuf>,
    state: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let stdin = Path::new("-");
    if data.as_deref() == Some(stdin) && state.as_deref() == Some(stdin) {
        bail!("--data and --state cannot both read stdin (`-`)");
    }
    let project = Project::load(&settings.project_dir)?;
    let job = project.jobs.get(name).cloned().ok_or_else(|| {
        let names: Vec<&str> = project.jobs.keys().map(String::as_str).collect();
        anyhow!(
            "{}: no job named `{name}`; defined: {}",
            project.file.display(),
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        )
    })?;

    // Inputs are read before any slow install, so a typo fails at once.
    let mut input = match &state {
        Some(path) => read_json(path, "--state")?,
        None => json!({ "data": {} }),
    };
    if !input.is_object() {
        bail!("--state must be a JSON object, such as {{\"data\": {{}}}}");
    }
    if input.get("configuration").is_some() {
        eprintln!(
            "note: the `configuration` in --state is ignored; the job runs with its own credential, as in the service"
        );
        strip_configuration(&mut input);
    }
    if let Some(path) = &data {
        input["data"] = read_json(path, "--data")?;
    }
    if state.is_none() {
        for trigger in &job.triggers {
            explain_default_state(&project, trigger, name);
        }
    }

    install_packages(settings, &package_specs(&project), |p| {
        if !matches!(p, Progress::Present { .. }) {
            eprintln!("{p}");
        }
    })
    .await?;

    let tmp = settings.tmp_dir();
    std::fs::create_dir_all(&tmp).with_context(|| format!("could not create {}", tmp.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix("cli-run-")
        .tempdir_in(&tmp)
        .with_context(|| format!("could not create a scratch folder in {}", tmp.display()))?;
    let engine = engine(
        settings,
        &project,
        EngineDirs {
            tmp: scratch.path().to_path_buf(),
            worker: scratch.path().to_path_buf(),
            warm: 0,
        },
    )?;

    let mut initial = input;
    if let Some(configuration) = project.configuration_of(&job) {
        initial["configuration"] = configuration.clone();
    }
    let redactor = Redactor::new(project.credentials.values());
    let run_id = uuid::Uuid::now_v7().to_string();
    let request = RunRequest {
        run_id: &run_id,
        job: &job,
        state: &initial,
        timeout: project.timeout_of(&job),
    };
    let outcome = tokio::select! {
        outcome = engine.run(request, |line| eprintln!("{}", redactor.redact(&line))) => outcome,
        _ = interrupted() => {
            engine.kill_all();
            eprintln!("interrupted; the run was killed");
            return Ok(ExitCode::from(INTERRUPTED));
        }
    };

    match outcome.failure {
        None => {
            let mut final_state = outcome.final_state.unwrap_or(Value::Null);
            strip_configuration(&mut final_state);
            let mut stdout = std::io::stdout().lock();
            match writeln!(stdout, "{}", serde_json::to_string_pretty(&final_state)?)
                .and_then(|()| stdout.flush())
            {
                // The reader went away (`| head`): the run still succeeded.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(anyhow!("could not write the final state to stdout: {e}"))
                }
                _ => Ok(ExitCode::SUCCESS),
            }
        }
        Some(failure) => {
            eprintln!(
                "error: job `{name}` failed: {}",
                redactor.redact(&failure.reason)
            );
            Ok(ExitCode::from(match (failure.kind, outcome.exit_code) {
                (FailureKind::Timeout, _) => TIMED_OUT,
                (_, Some(code)) if (1..=255).contains(&code) => code as u8,
                _ => 1,
            }))
        }
    }
}

/// A JSON document from a file, or from stdin for `-`.
fn read_json(path: &Path, flag: &str) -> anyhow::Result<Value> {
    let (text, what) = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .with_context(|| format!("{flag}: cannot read stdin"))?;
        (text, "stdin".to_string())
    } else {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{flag}: cannot read {}", path.display()))?;
        (text, path.display().to_string())
    };
    serde_json::from_str(&text).map_err(|e| anyhow!("{flag}: {what} is not valid JSON: {e}"))
}

/// Says what the service would have started this job from, when that is
/// not what a bare `run` starts from.
fn explain_default_state(project: &Project, trigger: &str, job: &str) {
    let Some(trigger) = project.triggers.get(trigger) else {
        return;
    };
    match &trigger.kind {
        TriggerKind::Criteria(_) | TriggerKind::Webhook { .. } => {}
        TriggerKind::Cron { .. } => eprintln!(
            "note: `{job}` is a cron job; the service starts each run from its last successful state. This run starts from {{\"data\": {{}}}}; to continue from the stored one: curl -s <service>/api/jobs/{job}/state > s.json, then --state s.json"
        ),
        TriggerKind::Success(up) => eprintln!(
            "note: `{job}` runs after `{up}` succeeds, from `{up}`'s final state; e.g. microservice run {up} | microservice run {job} --state -"
        ),
        TriggerKind::Failure(up) => eprintln!(
            "note: `{job}` runs after `{up}` fails, from `{up}`'s input state plus an `errors` list; give such a state with --state"
        ),
        TriggerKind::Always(up) => eprintln!(
            "note: `{job}` runs after every run of `{up}`: from its final state when it succeeds, from its input state plus an `errors` list when it fails; give such a state with --state"
        ),
    }
}

async fn interrupted() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
