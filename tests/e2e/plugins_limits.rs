//! Plugins that take the CPU or memory they are given, through the real
//! binary (issue 16, parts 2 and 3):
//! - as many notification plugins spinning until a 10 s deadline as the
//!   service has worker threads, beside a logging plugin busy on every
//!   batch, and `/inbox` keeps answering meanwhile;
//! - 100 calls of a plugin that fills 60 MiB (and a memory bomb trapped at
//!   its cap): the memory comes back, the process's RSS returns to where it
//!   started, and the calls never hold more than `[plugins] max_memory` at
//!   once; a plugin whose cap is over that budget is refused at load, and
//!   by `microservice check`.
//!
//! Bounds here are generous (the machine running the tests is shared); the
//! tight figures are measured by `bench/plugin_limits.py`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{Launch, Service, wait_for_runs};
use crate::plugins_support::{count, last_error, plugin, plugins, wait_plugin, wasm};

const SPIN_PROJECT: &str = include_str!("../projects/plugins-spin/project.toml");
const MEMORY_PROJECT: &str = include_str!("../projects/plugins-memory/project.toml");
/// Each spinner's deadline: how long the probes run against them.
const SPIN: Duration = Duration::from_secs(10);
/// The slowest answer tolerated while the plugins spin. Before plugin calls
/// had threads of their own, requests waited for the whole deadline.
const MAX_LATENCY: Duration = Duration::from_secs(3);

#[test]
fn spinning_plugins_do_not_stop_http() {
    // The service's tokio runtime has one worker per CPU.
    let spinners = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(2);
    let names: Vec<String> = (1..=spinners).map(|i| format!("spin-{i}")).collect();
    let mut toml = SPIN_PROJECT.to_string();
    for name in &names {
        toml.push_str(&format!(
            "\n[plugins.{name}]\ntimeout = \"{}s\"\n",
            SPIN.as_secs()
        ));
    }
    // And a logging plugin busy for a second on every batch: the service
    // logs each receipt at info, so the probes keep it fed.
    toml.push_str("\n[plugins.slow-log]\nconfig = { busy_ms = 1000 }\ntimeout = \"5s\"\n");
    let spin = wasm("spin_forever.wasm");
    let mut launch = Launch::new(&toml).file_bytes("plugins/slow-log.wasm", &wasm("slow_log.wasm"));
    for name in &names {
        launch = launch.file_bytes(&format!("plugins/{name}.wasm"), &spin);
    }
    let svc = launch.start();
    for name in names.iter().map(String::as_str).chain(["slow-log"]) {
        wait_plugin(&svc, name, "loaded", Duration::from_secs(30), |p| {
            p["status"] == "active"
        });
    }
    let log_calls = count(&plugin(&svc, "slow-log").unwrap(), "calls");

    // One run, then one notification to each spinner.
    let posted = Instant::now();
    let reply = svc.post_json("/inbox", r#"{"kind":"spin"}"#);
    assert_eq!(reply.status, 202, "{reply:?}");
    wait_for_runs(&svc, "spin", "success", 1);

    let started = Instant::now();
    let mut latencies: Vec<(Duration, &str)> = Vec::new();
    let mut first = true;
    loop {
        let list = timed(&mut latencies, "GET /api/plugins", || (200, plugins(&svc)));
        let finished = names
            .iter()
            .filter(|n| {
                list.iter()
                    .find(|p| p["name"] == n.as_str())
                    .is_some_and(|p| count(p, "calls") > 0)
            })
            .count();
        if first {
            assert_eq!(
                finished,
                0,
                "the spinners had reached their deadline before the first probe was answered: requests were held up while they spun ({:?} since the receipt): {list:?}",
                posted.elapsed()
            );
            first = false;
        }
        if finished == names.len() {
            break;
        }
        assert!(
            started.elapsed() < SPIN * 6,
            "the spinners did not reach their deadline within {:?}: {list:?}\n{}",
            SPIN * 6,
            svc.log_tail()
        );
        timed(&mut latencies, "POST /inbox", || {
            let r = svc.post_json("/inbox", r#"{"kind":"probe"}"#);
            (r.status, ())
        });
        timed(&mut latencies, "GET /healthz", || {
            (svc.get("/healthz").status, ())
        });
        std::thread::sleep(Duration::from_millis(20));
    }
    let window = started.elapsed();

    let mut sorted: Vec<Duration> = latencies.iter().map(|(d, _)| *d).collect();
    sorted.sort();
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize];
    let slowest = latencies.iter().max().unwrap();
    eprintln!(
        "{spinners} spinners, {} requests over {window:?}: p50 {:?}, p99 {:?}, slowest {:?} ({})",
        sorted.len(),
        at(0.5),
        at(0.99),
        slowest.0,
        slowest.1
    );
    assert!(
        window >= SPIN * 7 / 10,
        "the probes ran only {window:?} against {SPIN:?} spinners"
    );
    assert!(
        slowest.0 < MAX_LATENCY,
        "{} took {:?} while {spinners} plugins spun ({} requests, p99 {:?})\n{}",
        slowest.1,
        slowest.0,
        sorted.len(),
        at(0.99),
        svc.log_tail()
    );

    // The logger was busy meanwhile, and never failed.
    let logger = plugin(&svc, "slow-log").unwrap();
    assert!(
        count(&logger, "calls") >= log_calls + 3 && count(&logger, "failures") == 0,
        "slow-log should have written batches all along: {logger}"
    );

    // Each spinner really ran until its deadline, and was stopped there.
    let metrics = svc.get("/metrics").body;
    for name in &names {
        let entry = plugin(&svc, name).unwrap();
        assert_eq!(
            (count(&entry, "calls"), count(&entry, "failures")),
            (1, 1),
            "{entry}"
        );
        assert!(
            last_error(&entry).contains("deadline"),
            "{name}'s last_error should name the deadline: {entry}"
        );
        let spent = histogram_sum(&metrics, "microservice_plugin_call_duration_seconds", name);
        assert!(
            spent >= SPIN.as_secs_f64() * 0.95,
            "{name}'s call lasted {spent} s, not until its {SPIN:?} deadline"
        );
    }
}

#[test]
fn plugin_memory_is_given_back_and_bounded() {
    const HOGS: usize = 4;
    const RUNS: usize = 25; // 4 hogs each: 100 calls of 60 MiB
    const BUDGET: u64 = 128 << 20;
    let hog = wasm("memory_hog.wasm");
    let mut launch = Launch::new(MEMORY_PROJECT)
        .file_bytes("plugins/memory-bomb.wasm", &wasm("memory_bomb.wasm"))
        .file_bytes("plugins/too-big.wasm", &hog);
    for i in 1..=HOGS {
        launch = launch.file_bytes(&format!("plugins/hog-{i}.wasm"), &hog);
    }
    let svc = launch.start();
    for name in ["hog-1", "hog-2", "hog-3", "hog-4", "memory-bomb"] {
        wait_plugin(&svc, name, "loaded", Duration::from_secs(30), |p| {
            p["status"] == "active"
        });
    }
    let refused = wait_plugin(&svc, "too-big", "listed", Duration::from_secs(30), |_| true);
    assert_eq!(refused["status"], "failed", "{refused}");
    assert!(
        last_error(&refused).contains("max_memory"),
        "the refusal should name [plugins] max_memory: {refused}"
    );

    // One run first, so what every run allocates in the host (the engine's
    // pipes, the database's cache) is in the starting point.
    assert_eq!(svc.post_json("/inbox", r#"{"kind":"heavy"}"#).status, 202);
    let hog_calls = |svc: &Service| -> u64 {
        (1..=HOGS)
            .map(|i| count(&plugin(svc, &format!("hog-{i}")).unwrap(), "calls"))
            .sum()
    };
    svc.wait_until(
        "the first run's notifications",
        Duration::from_secs(60),
        || (hog_calls(&svc) >= HOGS as u64).then_some(()),
    );
    let start = rss(svc.pid());

    let sampler = Sampler::start(svc.pid());
    for _ in 0..RUNS {
        assert_eq!(svc.post_json("/inbox", r#"{"kind":"heavy"}"#).status, 202);
    }
    let total = (RUNS + 1) * HOGS;
    svc.wait_until(
        &format!("{total} calls of the hogs"),
        Duration::from_secs(300),
        || (hog_calls(&svc) >= total as u64).then_some(()),
    );
    let peak = sampler.stop();

    // Promptly back near the start: within a few seconds, to less than
    // half of what one call used.
    let near = start + (24 << 20);
    let mut last = 0;
    let back = crate::harness::wait_for(Duration::from_secs(5), || {
        last = rss(svc.pid());
        (last <= near).then_some(())
    });
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    eprintln!(
        "RSS: {:.1} MiB at the start, {:.1} MiB at the peak of {total} calls of 60 MiB, {:.1} MiB after",
        mib(start),
        mib(peak),
        mib(last)
    );
    assert!(
        back.is_some(),
        "RSS did not come back near its start after {total} heavy calls: {:.1} MiB, was {:.1} MiB (peak {:.1} MiB)",
        mib(last),
        mib(start),
        mib(peak)
    );
    // Two hogs at most at once (the budget is 128 MiB, each is capped at 64).
    assert!(
        peak <= start + BUDGET + (48 << 20),
        "RSS peaked at {:.1} MiB from {:.1} MiB: more than the plugins' {} MiB budget",
        mib(peak),
        mib(start),
        BUDGET >> 20
    );

    for i in 1..=HOGS {
        let entry = plugin(&svc, &format!("hog-{i}")).unwrap();
        assert_eq!(count(&entry, "failures"), 0, "60 MiB fits its cap: {entry}");
    }
    let bomb = plugin(&svc, "memory-bomb").unwrap();
    assert!(count(&bomb, "calls") >= 5, "{bomb}");
    assert_eq!(count(&bomb, "failures"), count(&bomb, "calls"), "{bomb}");
    assert!(
        last_error(&bomb).contains("memory"),
        "memory-bomb's last_error should say it hit its memory cap: {bomb}"
    );
}

#[test]
fn a_bad_memory_budget_stops_the_start() {
    let out = Launch::new("[plugins]\nmax_memory = \"lots\"\n")
        .expect_failure()
        .unwrap();
    assert!(
        out.contains(
            "project.toml: [plugins] max_memory (line 2): must be a size of at least 1MiB"
        ),
        "{out}"
    );
}

#[test]
fn check_refuses_a_plugin_over_the_budget_as_serve_does() {
    let scratch = crate::cli::Scratch::new(Some(MEMORY_PROJECT));
    let plugins = scratch.project().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let hog = wasm("memory_hog.wasm");
    std::fs::write(plugins.join("hog-1.wasm"), &hog).unwrap();
    std::fs::write(plugins.join("too-big.wasm"), &hog).unwrap();
    let out = scratch.run(&["check"], None);
    let all = crate::cli::describe(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    let refusal = all
        .lines()
        .find(|l| l.contains("too-big.wasm"))
        .unwrap_or_else(|| panic!("check says nothing of too-big.wasm: {all}"));
    assert!(
        refusal.contains("max_memory = 128 MiB") && refusal.contains("256 MiB"),
        "the refusal should give the cap and the budget: {refusal}"
    );
    assert!(
        all.lines()
            .any(|l| l.contains("hog-1.wasm") && l.starts_with("ok:")),
        "hog-1 fits the budget: {all}"
    );
}

/// Runs `request`, which returns a status and a value, records how long it
/// took, and checks the status.
fn timed<T>(
    latencies: &mut Vec<(Duration, &'static str)>,
    what: &'static str,
    request: impl FnOnce() -> (u16, T),
) -> T {
    let t = Instant::now();
    let (status, value) = request();
    latencies.push((t.elapsed(), what));
    assert!(
        status == 200 || status == 202,
        "{what} answered {status} while plugins spun"
    );
    value
}

/// The `_sum` of one plugin's histogram in an OpenMetrics text.
fn histogram_sum(metrics: &str, name: &str, plugin: &str) -> f64 {
    let prefix = format!("{name}_sum{{plugin=\"{plugin}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} line in /metrics:\n{metrics}"))
}

/// A process's resident memory, in bytes (`VmRSS` of `/proc/<pid>/status`).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status:\n{status}"))
}

/// Samples a process's RSS every 20 ms on a thread, keeping the highest.
struct Sampler {
    stop: Arc<AtomicBool>,
    peak: Arc<Mutex<u64>>,
    thread: std::thread::JoinHandle<()>,
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let (stop, peak) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(0)));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let now = rss(pid);
                let mut peak = p.lock().unwrap();
                *peak = (*peak).max(now);
                drop(peak);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Sampler { stop, peak, thread }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        *self.peak.lock().unwrap()
    }
}
