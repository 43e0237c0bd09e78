//! `microservice install`: `@openfn/core` and every adaptor the project
//! names, into `PACKAGES_DIR`, with a spinner per package on a terminal and
//! one plain line per step otherwise (a Docker build, CI, a pipe).
//!
//! Only what is missing is installed (see [`crate::packages`]), so a second
//! run does no npm work, and says so. Progress goes to stderr, the summary
//! to stdout.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::packages::Progress;
use crate::project::{CredentialEnv, Project};
use crate::service::{install_packages, package_specs};
use crate::settings::Settings;

pub async fn install(settings: &Settings) -> anyhow::Result<ExitCode> {
    let project = Project::load_with(&settings.project_dir, CredentialEnv::Skip)?;
    let specs = package_specs(&project);
    let display = Display::new(std::io::stderr().is_terminal());
    let installed = install_packages(settings, &specs, |p| display.show(p)).await;
    display.finish();
    let installed = installed?;
    let dir = settings.packages_dir.display();
    if installed == 0 {
        println!(
            "nothing to install: all {} package{} are already in {dir} (npm was not run)",
            specs.len(),
            if specs.len() == 1 { "" } else { "s" }
        );
    } else {
        println!(
            "installed {installed} of {} packages into {dir}",
            specs.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Spinners on a terminal, plain lines elsewhere.
struct Display {
    bars: Option<MultiProgress>,
    /// A spinner per package being installed, and when it started.
    running: Mutex<HashMap<String, (ProgressBar, Instant)>>,
}

impl Display {
    fn new(terminal: bool) -> Display {
        Display {
            bars: terminal.then(MultiProgress::new),
            running: Mutex::default(),
        }
    }

    fn show(&self, progress: Progress<'_>) {
        let Some(bars) = &self.bars else {
            eprintln!("{progress}");
            return;
        };
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        match progress {
            Progress::Present { .. } => {
                let _ = bars.println(format!("✓ {progress}"));
            }
            Progress::Installing(spec) => {
                let bar = bars.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_message(format!("npm install {spec}"));
                bar.enable_steady_tick(Duration::from_millis(120));
                running.insert(spec.to_string(), (bar, Instant::now()));
            }
            Progress::Installed(spec) => {
                if let Some((bar, started)) = running.remove(&spec.to_string()) {
                    bar.finish_and_clear();
                    let _ = bars.println(format!(
                        "✓ installed {spec} in {:.1} s",
                        started.elapsed().as_secs_f64()
                    ));
                }
            }
        }
    }

    /// Clears spinners left by a failed install, so the error reads cleanly.
    fn finish(&self) {
        for (_, (bar, _)) in self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
        {
            bar.finish_and_clear();
        }
    }
}
