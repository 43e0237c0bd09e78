//! The plugin sandbox against the host's own files and against trigger
//! plugins that overreach (issue 16, parts 1 and 4), with hostile plugins
//! built from source:
//!
//! - grants that reach DATA_DIR, PLUGINS_DIR, PACKAGES_DIR, the compile
//!   cache, the temp folder, PROJECT_DIR or a job file's folder (by name,
//!   through a symlink, with DATA_DIR and PLUGINS_DIR inside the project)
//!   are refused by `check` and by `serve`; a granted folder swapped for a
//!   symlink to DATA_DIR after load is refused when it is next opened; a
//!   plugin cannot make symlinks (dir-prober);
//! - a compile-cache entry altered on disk, or another plugin's entry put
//!   in its place, is recompiled, not run;
//! - a trigger's oversized message and the messages past a poll's cap are
//!   refused with a plugin error; the host names a message's source; a
//!   panicking plugin's last_error carries its panic message
//!   (greedy-trigger).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::{describe, microservice, output, text};
use crate::harness::{Launch, Service, packages_dir, temp_dir, wait_for};
use crate::plugins_support::{count, last_error, plugin, replace_file, wait_plugin, wasm};

const GRANTS: &str = include_str!("../projects/plugins-sandbox/grants.toml");
const TRIGGERS: &str = include_str!("../projects/plugins-sandbox/triggers.toml");
const LOAD: Duration = Duration::from_secs(20);

/// Each refused plugin of `grants.toml`, and what its refusal must say.
const REFUSED: &[(&str, &str)] = &[
    ("via-symlink", "is DATA_DIR"),
    ("data-dir", "is DATA_DIR"),
    ("data-root", "is DATA_DIR"),
    ("cache-dir", "is the compile cache"),
    ("temp-dir", "lies inside the run temp folder"),
    ("plugins-dir", "is PLUGINS_DIR"),
    ("plugins-link", "is PLUGINS_DIR"),
    ("packages-link", "leads outside"),
    ("project-root", "is PROJECT_DIR"),
    ("job-folder", "is the folder of the job file `jobs/noop.js`"),
];

/// Every file under `dir` whose name starts with `probe-`.
fn probes_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            found.extend(probes_under(&path));
        } else if entry.file_name().to_string_lossy().starts_with("probe-") {
            found.push(path);
        }
    }
    found
}

/// Symlinks directly in `dir`.
fn symlinks_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_symlink()))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn grants_that_reach_the_host_folders_are_refused_by_check_serve_and_at_open() {
    let prober = wasm("dir_prober.wasm");
    let svc = Launch::new(GRANTS)
        .env("DATA_DIR", "{root}/project/state")
        .env("PLUGINS_DIR", "{root}/project/wasm")
        .file("jobs/noop.js", "fn(state => state)")
        .file_bytes("wasm/control.wasm", &prober)
        .start();
    let project = svc.project_dir().to_path_buf();
    let (state, plugins_dir) = (project.join("state"), project.join("wasm"));

    // The control plugin loads and writes into its own folder, and its
    // attempts at symlinks (out, absolute, and inside) are all refused.
    let control = wait_plugin(&svc, "control", "writing", LOAD, |p| count(p, "calls") >= 2);
    assert_eq!(count(&control, "failures"), 0, "{control}");
    let boxed = project.join("box");
    assert!(boxed.join("probe-1.txt").is_file(), "{}", svc.log_tail());
    assert_eq!(
        symlinks_in(&boxed),
        Vec::<String>::new(),
        "a plugin made a symlink"
    );
    assert!(
        svc.logs()
            .contains("refused: plugins may not create symlinks"),
        "{}",
        svc.log_tail()
    );

    // The folders the refused grants reach through symlinks, made before
    // their plugins arrive (a grant of a missing folder creates it).
    std::os::unix::fs::symlink("state", project.join("shortcut")).unwrap();
    std::os::unix::fs::symlink("wasm", project.join("code")).unwrap();
    std::os::unix::fs::symlink(packages_dir(), project.join("pkgs")).unwrap();
    for (name, _) in REFUSED {
        replace_file(&plugins_dir.join(format!("{name}.wasm")), &prober);
    }
    for (name, why) in REFUSED {
        let entry = wait_plugin(&svc, name, "listed", LOAD, |_| true);
        assert_eq!(
            entry["status"], "failed",
            "{name} should be refused: {entry}"
        );
        assert!(
            last_error(&entry).contains(why),
            "{name}'s refusal should say `{why}`: {entry}"
        );
    }

    // `check` on the same folders says the same, for each plugin, and
    // writes nothing.
    let mut cmd = microservice(&project, &project, &state);
    cmd.env("PLUGINS_DIR", &plugins_dir).arg("check");
    let out = output(cmd, None);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = text(&out.stderr);
    for (name, why) in REFUSED {
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!("plugin `{name}` would not load")))
            .unwrap_or_else(|| panic!("check said nothing of {name}:\n{}", describe(&out)));
        assert!(line.contains(why), "{name}: `{why}` missing from: {line}");
    }
    assert!(
        text(&out.stdout).contains("control.wasm: trigger plugin `control`"),
        "{}",
        describe(&out)
    );

    // The control plugin's folder, swapped for a link to DATA_DIR after it
    // was checked: refused when it is next opened, and nothing is written.
    let calls = count(&plugin(&svc, "control").unwrap(), "calls");
    std::fs::remove_dir_all(&boxed).unwrap();
    std::os::unix::fs::symlink("state", &boxed).unwrap();
    let swapped = wait_plugin(&svc, "control", "refusing its swapped folder", LOAD, |p| {
        count(p, "calls") > calls && last_error(p).contains("is DATA_DIR")
    });
    assert!(
        last_error(&swapped).contains("granted folder `box`"),
        "{swapped}"
    );
    // Back to a folder of its own, it works again.
    std::fs::remove_file(&boxed).unwrap();
    std::fs::create_dir(&boxed).unwrap();
    svc.wait_until("a probe in the recreated box", LOAD, || {
        (!probes_under(&boxed).is_empty()).then_some(())
    });

    let written: Vec<PathBuf> = [&state, &plugins_dir, &packages_dir()]
        .iter()
        .flat_map(|d| probes_under(d))
        .collect();
    assert!(
        written.is_empty(),
        "a plugin wrote into the host's folders: {written:?}"
    );
}

/// The cache entry of the plugin whose sha256 is `hash`.
fn cache_entry(data: &Path, hash: &str) -> PathBuf {
    let cache = data.join("plugin-cache");
    let entries: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap_or_else(|e| panic!("{}: {e}", cache.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(hash))
        .collect();
    match entries.as_slice() {
        [one] => one.clone(),
        _ => panic!(
            "expected one cache entry for {hash} in {}: {entries:?}",
            cache.display()
        ),
    }
}

#[test]
fn a_tampered_compile_cache_entry_is_recompiled_not_run() {
    const PROJECT: &str = "[plugins.counter-trigger]\ninterval = \"1s\"\n";
    let data = temp_dir("e2e-cache-");
    let start = || {
        // The built-in journal is one of the compiled plugins compared here:
        // the embedded store, even with STORAGE=postgres.
        let svc = Launch::new(PROJECT)
            .embedded()
            .data_dir(data.path())
            .file_bytes(
                "plugins/counter-trigger.wasm",
                &wasm("counter_trigger.wasm"),
            )
            .start();
        let entry = wait_plugin(&svc, "counter-trigger", "polled", LOAD, |p| {
            count(p, "calls") >= 1
        });
        (svc, entry)
    };

    let (mut svc, first) = start();
    assert_eq!(first["from_cache"], false, "{first}");
    let journal = plugin(&svc, "journal").expect("the built-in journal is listed");
    svc.stop();
    let hash = first["hash"].as_str().unwrap().to_string();
    let entry = cache_entry(data.path(), &hash);
    let journal_entry = cache_entry(data.path(), journal["hash"].as_str().unwrap());
    // The key sits beside the cache, not in it, readable by the owner only.
    let key = data.path().join("plugin-cache.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "{}", key.display());

    // Unchanged, the entry is used.
    let (mut svc, warm) = start();
    assert_eq!(warm["from_cache"], true, "{warm}");
    svc.stop();

    /// Alters the entry (first path), maybe from the journal's (second).
    type Tamper = fn(&Path, &Path);
    let tampers: [(&str, Tamper); 2] = [
        ("one byte flipped", |entry, _| {
            let mut bytes = std::fs::read(entry).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x55;
            std::fs::write(entry, bytes).unwrap();
        }),
        (
            "the journal's own (valid) entry in its place",
            |entry, journal| {
                std::fs::copy(journal, entry).unwrap();
            },
        ),
    ];
    for (what, tamper) in tampers {
        tamper(&entry, &journal_entry);
        let (mut svc, entry_seen) = start();
        let logs = svc.logs();
        assert!(
            logs.contains("does not match its seal"),
            "{what}: no warning about the cache entry\n{}",
            svc.log_tail()
        );
        assert_eq!(entry_seen["from_cache"], false, "{what}: {entry_seen}");
        assert_eq!(
            entry_seen["kind"], "trigger",
            "{what}: it must run as itself: {entry_seen}"
        );
        assert_eq!(count(&entry_seen, "failures"), 0, "{what}: {entry_seen}");
        svc.stop();
        // The recompiled entry replaced the bad one and is used again.
        let (mut svc, again) = start();
        assert_eq!(
            again["from_cache"], true,
            "{what}, after recompiling: {again}"
        );
        svc.stop();
    }
}

/// `microservice_queue_messages` summed over its statuses.
fn stored_messages(svc: &Service) -> u64 {
    let metrics = svc.get("/metrics").body;
    metrics
        .lines()
        .filter(|l| l.starts_with("microservice_queue_messages{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Stored messages of every status (at most 1000 of each).
fn messages(svc: &Service) -> Vec<Value> {
    ["pending", "leased", "done", "dead"]
        .iter()
        .flat_map(|status| {
            match svc.get_json(&format!("/api/messages?status={status}&limit=1000")) {
                Value::Array(list) => list,
                other => panic!("/api/messages: {other}"),
            }
        })
        .collect()
}

/// A process's `VmHWM` or `VmRSS`, in MiB.
fn memory_mib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|kib| kib / 1024)
        .unwrap_or(0)
}

#[test]
fn a_triggers_oversized_and_excess_messages_are_refused_with_a_plugin_error() {
    let greedy = wasm("greedy_trigger.wasm");
    let svc = Launch::new(TRIGGERS)
        .file_bytes("plugins/flood.wasm", &greedy)
        .file_bytes("plugins/huge.wasm", &greedy)
        .start();
    let peak_before = memory_mib(svc.pid(), "VmHWM:");

    // While the floods come in, /inbox keeps answering.
    let (mut accepted, mut slowest) = (0u64, Duration::ZERO);
    let started = Instant::now();
    loop {
        let t = Instant::now();
        let reply = svc.post_json("/inbox", r#"{"kind":"probe"}"#);
        slowest = slowest.max(t.elapsed());
        assert_eq!(reply.status, 202, "{reply:?}");
        accepted += 1;
        let done = ["flood", "huge"]
            .iter()
            .all(|n| plugin(&svc, n).is_some_and(|p| count(&p, "failures") >= 1));
        if done {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the floods were not refused within 90 s\n{}",
            svc.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let flood = plugin(&svc, "flood").unwrap();
    let why = last_error(&flood);
    for said in [
        "the poll returned 100001 messages",
        "the first 1000 were taken, 99001 refused",
        "1 message refused for size (the largest 67108864 bytes)",
        "[inbox] max_body_bytes",
    ] {
        assert!(
            why.contains(said),
            "flood's last_error lacks `{said}`: {flood}"
        );
    }
    let huge = plugin(&svc, "huge").unwrap();
    assert!(
        last_error(&huge).contains("1 message refused for size (the largest 125829120 bytes)"),
        "{huge}"
    );

    // Exactly the 999 tiny messages within the cap are stored (the 1000th
    // place in the poll's answer was the refused big one), and the probes.
    let expected = 999 + accepted;
    let mut seen = 0;
    let stored = wait_for(Duration::from_secs(30), || {
        seen = stored_messages(&svc);
        (seen >= expected).then_some(seen)
    })
    .unwrap_or_else(|| {
        panic!(
            "{seen} messages stored, expected {expected}\n{}",
            svc.log_tail()
        )
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(stored_messages(&svc), stored, "more messages arrived");
    assert_eq!(
        stored, expected,
        "stored messages (999 from flood, {accepted} probes)"
    );
    for m in messages(&svc) {
        let source = m["source"].as_str().unwrap_or_default();
        assert!(
            source == "plugin:flood" || (source == "inbox" && m["body"]["kind"] == "probe"),
            "unexpected message: {m}"
        );
    }
    let peak = memory_mib(svc.pid(), "VmHWM:");
    eprintln!(
        "flood and huge refused; /inbox slowest {slowest:?} over {accepted} probes; service peak RSS {peak_before} MiB before, {peak} MiB after; RSS now {} MiB",
        memory_mib(svc.pid(), "VmRSS:")
    );
    assert!(
        slowest < Duration::from_secs(3),
        "/inbox took {slowest:?} while the floods were refused"
    );
}

#[test]
fn the_host_names_a_trigger_messages_source_and_a_panic_is_told() {
    let greedy = wasm("greedy_trigger.wasm");
    let svc = Launch::new(TRIGGERS)
        .file_bytes("plugins/liar.wasm", &greedy)
        .file_bytes("plugins/panics.wasm", &greedy)
        .start();

    // liar claims `inbox` and `plugin:flood`; the store records it as itself.
    let mut last = Vec::new();
    wait_for(LOAD, || {
        last = messages(&svc);
        (last.len() >= 2).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "liar's messages were not stored: {last:?}\n{}",
            svc.log_tail()
        )
    });
    std::thread::sleep(Duration::from_secs(2));
    let stored = messages(&svc);
    assert_eq!(stored.len(), 2, "{stored:?}");
    for m in &stored {
        assert_eq!(m["source"], "plugin:liar", "{m}");
    }
    let logs = svc.logs();
    let logged: Vec<&str> = logs
        .lines()
        // The receipt door's line for each receipt names its source.
        .filter(|l| l.contains("receipt source="))
        .collect();
    assert!(
        !logged.is_empty() && logged.iter().all(|l| l.contains("plugin:liar")),
        "the log should name liar as the source: {logged:?}"
    );

    // panics: its last_error carries the panic message, not just the trap.
    let panics = wait_plugin(&svc, "panics", "failing", LOAD, |p| {
        count(p, "failures") >= 1
    });
    let why = last_error(&panics);
    assert!(
        why.contains("panicked at") && why.contains("the flood gate broke"),
        "panics' last_error should carry its panic message: {panics}"
    );
}
