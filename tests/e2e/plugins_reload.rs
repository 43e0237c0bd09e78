//! Hot reload of the plugins folder: a plugin dropped in while the service
//! runs is loaded, a broken new version leaves the old one serving, a
//! different valid version replaces it, a removed file unloads it; and
//! swapping a plugin while receipts pour in never disturbs `/inbox`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crate::harness::{RUN_TIMEOUT, Service, run_id, wait_for_runs};
use crate::plugins_support::{count, last_error, plugin, plugins, replace_file, wait_plugin, wasm};

const PROJECT: &str = include_str!("../projects/plugins-reload/project.toml");
/// The folder is scanned every 2 s; loading may compile the component,
/// which takes seconds on an idle machine and can take tens of seconds on a
/// busy two-core one.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the recorder plugin may take to write a run down: it is told
/// as the run ends, on a fresh instance, behind other notifications.
const RECORD_TIMEOUT: Duration = Duration::from_secs(60);

/// Run ids recorded by the recorder plugin in `DATA_DIR/out/events.jsonl`.
fn recorded(svc: &Service) -> Vec<String> {
    let path = svc.data_dir().join("out").join("events.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {l}", path.display()));
            assert_eq!(v["job"], "echo", "{l}");
            assert_eq!(v["status"], "success", "{l}");
            v["run_id"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

/// Starts one `echo` run and waits until the recorder plugin wrote it down.
fn echo_run_is_recorded(svc: &Service) -> String {
    let before: HashSet<String> = svc.runs("echo").iter().map(run_id).collect();
    let reply = svc.post_json("/inbox", r#"{"kind":"echo"}"#);
    assert_eq!(reply.status, 202, "{reply:?}");
    let run = svc.poll_until("the new echo run to finish", RUN_TIMEOUT, || {
        let runs = svc.runs("echo");
        runs.iter()
            .find(|r| !before.contains(&run_id(r)) && r["status"] == "success")
            .cloned()
            .ok_or_else(|| format!("echo runs: {runs:?}"))
    });
    let id = run_id(&run);
    svc.poll_until(
        &format!("run {id} in out/events.jsonl"),
        RECORD_TIMEOUT,
        || {
            let ids = recorded(svc);
            if ids.contains(&id) {
                Ok(())
            } else {
                Err(format!("recorded run ids {ids:?}"))
            }
        },
    );
    id
}

fn plugin_file(svc: &Service) -> std::path::PathBuf {
    svc.project_dir().join("plugins").join("recorder.wasm")
}

#[test]
fn plugins_folder_is_hot_reloaded() {
    let svc = Service::start(PROJECT, &[]);
    // (The service may list built-in plugins of its own.)
    assert!(
        !plugins(&svc)
            .iter()
            .any(|p| p["name"] == "recorder" || p["file"] == "recorder.wasm"),
        "no plugin file yet: {:?}",
        plugins(&svc)
    );

    // A new file is picked up.
    let file = plugin_file(&svc);
    replace_file(&file, &wasm("recorder.wasm"));
    let first = wait_plugin(&svc, "recorder", "loaded", RELOAD_TIMEOUT, |p| {
        p["status"] == "active"
    });
    assert_eq!(first["kind"], "notification", "{first}");
    assert_eq!(first["file"], "recorder.wasm", "{first}");
    assert_eq!(count(&first, "reloads"), 0, "{first}");
    let hash = first["hash"].as_str().expect("a hash").to_string();
    echo_run_is_recorded(&svc);

    // A broken new version is refused; the old one keeps serving.
    replace_file(&file, b"this is not a WebAssembly component");
    let refused = wait_plugin(
        &svc,
        "recorder",
        "last_error `new version refused`",
        RELOAD_TIMEOUT,
        |p| last_error(p).contains("new version refused"),
    );
    assert_eq!(refused["status"], "active", "{refused}");
    assert_eq!(refused["hash"], hash.as_str(), "{refused}");
    assert_eq!(count(&refused, "reloads"), 0, "{refused}");
    echo_run_is_recorded(&svc);

    // A different valid plugin of the same kind replaces it.
    replace_file(&file, &wasm("panicker.wasm"));
    let replaced = wait_plugin(&svc, "recorder", "a new hash", RELOAD_TIMEOUT, |p| {
        p["hash"] != hash.as_str()
    });
    assert_eq!(count(&replaced, "reloads"), 1, "{replaced}");
    assert_eq!(replaced["kind"], "notification", "{replaced}");
    assert_eq!(replaced["status"], "active", "{replaced}");

    // Removing the file unloads it.
    std::fs::remove_file(&file).unwrap();
    svc.poll_until("recorder to be unloaded", RELOAD_TIMEOUT, || {
        match plugin(&svc, "recorder") {
            None => Ok(()),
            Some(entry) => Err(entry),
        }
    });
    let left: Vec<_> = plugins(&svc)
        .into_iter()
        .filter(|p| p["file"] == "recorder.wasm")
        .collect();
    assert!(left.is_empty(), "still listed: {left:?}");
}

#[test]
fn swapping_a_plugin_under_load_keeps_the_inbox_answering() {
    let recorder = wasm("recorder.wasm");
    let svc = crate::harness::Launch::new(PROJECT)
        .file_bytes("plugins/recorder.wasm", &recorder)
        .start();
    let first = wait_plugin(&svc, "recorder", "loaded", RELOAD_TIMEOUT, |p| {
        p["status"] == "active"
    });
    let hash = first["hash"].as_str().expect("a hash").to_string();
    let file = plugin_file(&svc);

    let done = AtomicBool::new(false);
    let (statuses, echoes) = thread::scope(|s| {
        // Stops the sender however this closure ends: if a swap is never
        // seen, the panic must not wait forever for a sender still waiting
        // for `done` (the scope joins it first).
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let finish = Done(&done);
        let sender = s.spawn(|| {
            let mut statuses = Vec::new();
            let mut echoes = 0;
            // At least 50 receipts, and on until both swaps are through; a
            // few of them start runs, so notifications happen meanwhile.
            while statuses.len() < 50 || !done.load(Ordering::SeqCst) {
                let n = statuses.len();
                let body = if n % 10 == 0 && n < 50 {
                    echoes += 1;
                    r#"{"kind":"echo"}"#.to_string()
                } else {
                    format!(r#"{{"kind":"load","n":{n}}}"#)
                };
                statuses.push(svc.post_json("/inbox", &body).status);
                thread::sleep(Duration::from_millis(50));
            }
            (statuses, echoes)
        });

        replace_file(&file, &wasm("panicker.wasm"));
        wait_plugin(&svc, "recorder", "first swap", RELOAD_TIMEOUT, |p| {
            p["hash"] != hash.as_str() && p["reloads"] == 1
        });
        replace_file(&file, &recorder);
        wait_plugin(&svc, "recorder", "second swap", RELOAD_TIMEOUT, |p| {
            p["hash"] == hash.as_str() && p["reloads"] == 2
        });
        drop(finish);
        sender.join().expect("the sender thread panicked")
    });

    assert!(statuses.len() >= 50, "{} receipts sent", statuses.len());
    let refused: Vec<(usize, u16)> = statuses
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, s)| *s != 202)
        .collect();
    assert!(
        refused.is_empty(),
        "receipts not accepted during the swaps (index, status): {refused:?}"
    );
    wait_for_runs(&svc, "echo", "success", echoes);

    // The version swapped back in serves.
    echo_run_is_recorded(&svc);
    let last = plugin(&svc, "recorder").expect("recorder is listed");
    assert_eq!(last["status"], "active", "{last}");
    assert_eq!(count(&last, "reloads"), 2, "{last}");
}

/// A restart on the same data directory loads unchanged plugins from the
/// compile cache instead of compiling them again.
#[test]
fn restarts_load_plugins_from_the_compile_cache() {
    let data = crate::harness::temp_dir("e2e-plugin-cache-");
    let launch = || {
        crate::harness::Launch::new(PROJECT)
            .file_bytes("plugins/recorder.wasm", &wasm("recorder.wasm"))
            .data_dir(data.path())
            .start()
    };
    let mut first = launch();
    let entry = wait_plugin(&first, "recorder", "recorder active", RELOAD_TIMEOUT, |p| {
        p["status"] == "active"
    });
    assert_eq!(
        entry["from_cache"], false,
        "the first start compiles: {entry}"
    );
    assert!(first.stop().success());
    let second = launch();
    let entry = wait_plugin(
        &second,
        "recorder",
        "recorder active",
        RELOAD_TIMEOUT,
        |p| p["status"] == "active",
    );
    assert_eq!(
        entry["from_cache"], true,
        "the restart must reuse the compiled plugin: {entry}"
    );
    assert_eq!(count(&entry, "failures"), 0, "{entry}");
}
