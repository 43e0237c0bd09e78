//! Plugin-call and plugin start-up costs, side by side in one run.
//!
//! ```sh
//! cd tests/plugins && cargo build --release && cd ../..      # noop-notify, recorder
//! (cd plugins && cargo build --release)                      # the four first-party plugins
//! cargo run --release --example plugin_bench -- [NOTIFY_WASM...] [options]
//! ```
//!
//! `bench/plugin_templates.sh` builds the Rust, Python and JavaScript
//! notification templates (`microservice plugin new notification … --lang X`
//! and each one's `build.sh`) and runs this with the three of them.
//!
//! 1. Notification plugins, each on its own (default: the `noop-notify`
//!    test plugin, whose `notify` returns `Ok` at once, so the figure is the
//!    host's cost; a plugin whose file name contains "recorder", or any with
//!    `--grant-out`, is granted a writable `/out` and config `dir = "/out"`,
//!    others nothing):
//!    - cold compile: a `PluginHost` started on a fresh DATA_DIR (an empty
//!      `plugin-cache`), timed until the plugin is compiled and loaded;
//!    - warm load: a second start on the same DATA_DIR (from the cache);
//!    - calls, on one of the host's plugin threads (as the service's
//!      notification loop calls), in alternating blocks:
//!      `notify::notify_one` (what the service does: the plugin's kept
//!      instance, see `plugins/reuse.rs`) and `notify::notify_fresh` (a
//!      fresh store and instance per call, as every call was before). Every
//!      call is timed on its own; medians, means and tails are printed, with
//!      the ratio of the medians.
//!
//!    Goals: a call to a Python or JavaScript plugin ≤ 1 ms (median); the
//!    noop-notify plugin: fresh ≤ 20 µs, kept ≤ 5 µs.
//!
//! 2. Start-up with the four first-party plugins (journal, jsonl-logger,
//!    file-drop, webhook-notify, with the grants `project/project.toml`
//!    gives them), timed from `PluginHost::start` until every plugin is
//!    compiled: cold (a fresh DATA_DIR, so an empty `plugin-cache`: every
//!    plugin is compiled) and then warm (a second start on the same
//!    DATA_DIR: every plugin comes from the cache), in alternating pairs.
//!    Goal: warm <= 150 ms (median).
//!
//! Options: `--calls N` (timed calls per variant, default 5000), `--warmup N`
//! (untimed calls per variant first, default 500), `--blocks N` (alternating
//! blocks the calls are split into, default 10), `--load-rounds N` (cold +
//! warm loads of each notification plugin, default 3), `--startup-rounds N`
//! (cold + warm pairs of part 2, default 3; 0 skips part 2), `--first-party
//! DIR` (where the first-party `.wasm` files are; default
//! `plugins/target/wasm32-wasip2/release`), `--grant-out` (grant every
//! notification plugin a writable `/out`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use microservice::plugins::notify;
use microservice::plugins::{
    Kind, MessageSink, Options, Plugin, PluginHost, Report, RunEvent, RunStatus,
};
use microservice::project::{DirBase, DirGrant, PluginSpec, PollSchedule, Project};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const FIRST_PARTY: [&str; 4] = [
    "journal.wasm",
    "jsonl_logger.wasm",
    "file_drop.wasm",
    "webhook_notify.wasm",
];
/// The four first-party plugins' tables, as `project/project.toml` and the
/// built-in journal (`service.rs`) configure them. The webhook points at a
/// port nobody listens on; it is only loaded, never called.
const FIRST_PARTY_TABLES: &str = r#"
[plugins.journal]
file = "journal.wasm"
dirs = [{ data = "journal", guest = "/journal" }]
config = { dir = "/journal" }
timeout = "10s"
memory = "512MiB"

[plugins.jsonl-logger]
file = "jsonl_logger.wasm"
dirs = [{ data = "logs", guest = "/logs" }]
config = { max_bytes = 1048576, max_files = 3 }

[plugins.file-drop]
file = "file_drop.wasm"
dirs = [{ host = "inbox", guest = "/inbox" }]
interval = "2s"

[plugins.ops-alerts]
file = "webhook_notify.wasm"
config = { url = "http://127.0.0.1:9/hook", on = "failure" }
allowed_hosts = ["http://127.0.0.1:9"]
"#;

struct Args {
    wasms: Vec<PathBuf>,
    calls: usize,
    load_rounds: usize,
    warmup: usize,
    blocks: usize,
    startup_rounds: usize,
    first_party: PathBuf,
    grant_out: bool,
}

fn args() -> anyhow::Result<Args> {
    let root = Path::new(ROOT).canonicalize()?;
    let mut a = Args {
        wasms: Vec::new(),
        calls: 5000,
        load_rounds: 3,
        warmup: 500,
        blocks: 10,
        startup_rounds: 3,
        first_party: root.join("plugins/target/wasm32-wasip2/release"),
        grant_out: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut num = |name: &str| -> anyhow::Result<usize> {
            it.next()
                .with_context(|| format!("{name} needs a value"))?
                .parse()
                .with_context(|| format!("{name} needs a number"))
        };
        match arg.as_str() {
            "--calls" => a.calls = num("--calls")?.max(1),
            "--warmup" => a.warmup = num("--warmup")?,
            "--blocks" => a.blocks = num("--blocks")?.max(1),
            "--startup-rounds" => a.startup_rounds = num("--startup-rounds")?,
            "--load-rounds" => a.load_rounds = num("--load-rounds")?.max(1),
            "--grant-out" => a.grant_out = true,
            "--first-party" => {
                a.first_party = it.next().context("--first-party needs a folder")?.into()
            }
            "-h" | "--help" => {
                println!(
                    "usage: plugin_bench [NOTIFY_WASM...] [--calls N] [--warmup N] [--blocks N] [--load-rounds N] [--startup-rounds N] [--first-party DIR] [--grant-out]"
                );
                std::process::exit(0);
            }
            other if other.starts_with("--") => bail!("unknown option {other}"),
            path => a.wasms.push(path.into()),
        }
    }
    if a.wasms.is_empty() {
        a.wasms
            .push(root.join("tests/plugins/target/wasm32-wasip2/release/noop_notify.wasm"));
    }
    Ok(a)
}

fn main() -> anyhow::Result<()> {
    let filter = std::env::var("LOG_LEVEL").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
    let args = args()?;
    // The service's own runtime: multi-thread, one worker per core.
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        println!(
            "plugin_bench {}",
            chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
        );
        notification_plugins(&args).await?;
        if args.startup_rounds > 0 {
            startup(&args).await?;
        }
        Ok(())
    })
}

fn no_messages() -> MessageSink {
    Arc::new(|_| Box::pin(async {}) as Pin<Box<dyn Future<Output = ()> + Send>>)
}

/// The notification plugin's table: nothing granted, or with `out` a
/// writable `/out` (what `recorder` writes to). A granted directory costs
/// every fresh instance an open(2) of it, so it is only there when needed.
fn notify_spec(name: &str, file: &str, out: bool) -> PluginSpec {
    PluginSpec {
        name: name.into(),
        file: file.into(),
        config: if out {
            vec![("dir".into(), "/out".into())]
        } else {
            Vec::new()
        },
        allowed_hosts: Vec::new(),
        dirs: if out {
            vec![DirGrant {
                base: DirBase::Data,
                path: "out".into(),
                guest: "/out".into(),
                writable: true,
            }]
        } else {
            Vec::new()
        },
        timeout: Duration::from_secs(1),
        memory_bytes: 64 << 20,
        schedule: PollSchedule::Every(Duration::from_secs(10)),
        enabled: true,
    }
}

fn event(i: usize) -> RunEvent {
    RunEvent {
        run_id: format!("0196b2b0-0000-7000-8000-{i:012}"),
        job: "bench-job".into(),
        trigger: "bench-trigger".into(),
        status: RunStatus::Success,
        exit_code: Some(0),
        started_at_ms: 1_764_000_000_000,
        finished_at_ms: 1_764_000_000_900,
        duration_ms: 900,
        error: None,
    }
}

/// Warm-up calls, then `blocks` blocks of `per_block` timed calls of each
/// variant, alternating which goes first: (kept, fresh) call times.
async fn timed_calls(
    host: PluginHost,
    plugin: Arc<Plugin>,
    warmup: usize,
    per_block: usize,
    blocks: usize,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let failed =
        |f: microservice::plugins::CallFailure| anyhow::anyhow!("notify failed: {}", f.message);
    for i in 0..warmup {
        notify::notify_one(&host, &plugin, &event(i))
            .await
            .map_err(failed)?;
        notify::notify_fresh(&host, &plugin, &event(i))
            .await
            .map_err(failed)?;
    }
    let (mut kept, mut fresh) = (
        Vec::with_capacity(per_block * blocks),
        Vec::with_capacity(per_block * blocks),
    );
    for block in 0..blocks {
        // Alternate which variant goes first, so drift hits both alike.
        for variant in if block % 2 == 0 { [0, 1] } else { [1, 0] } {
            for i in 0..per_block {
                let ev = event(i);
                let t = Instant::now();
                if variant == 0 {
                    notify::notify_one(&host, &plugin, &ev)
                        .await
                        .map_err(failed)?;
                    kept.push(t.elapsed());
                } else {
                    notify::notify_fresh(&host, &plugin, &ev)
                        .await
                        .map_err(failed)?;
                    fresh.push(t.elapsed());
                }
            }
        }
    }
    Ok((kept, fresh))
}

/// What one notification plugin cost.
struct PluginFigures {
    name: String,
    wasm_bytes: u64,
    cold_ms: Vec<f64>,
    warm_ms: Vec<f64>,
    kept: Stats,
    fresh: Stats,
    calls: usize,
}

async fn notification_plugins(args: &Args) -> anyhow::Result<()> {
    let mut all = Vec::new();
    for wasm in &args.wasms {
        all.push(notification_plugin(args, wasm).await?);
    }
    println!();
    println!(
        "notification plugins: cold compile and warm load ({} of each, alternating), then {} timed calls per variant in {} alternating blocks after {} warm-up calls",
        args.load_rounds, all[0].calls, args.blocks, args.warmup
    );
    println!(
        "| plugin | .wasm | cold compile, median ms (all) | warm load, median ms (all) | call, kept instance (the service): median µs (p90, p99) | call, fresh instance (before): median µs (p90, p99) | fresh / kept |"
    );
    println!("|---|---|---|---|---|---|---|");
    for f in &all {
        println!(
            "| {} | {:.1} MiB | {:.0} ({}) | {:.1} ({}) | {:.1} ({:.1}, {:.1}) | {:.1} ({:.1}, {:.1}) | {:.1} |",
            f.name,
            f.wasm_bytes as f64 / (1 << 20) as f64,
            median(&f.cold_ms),
            list0(&f.cold_ms),
            median(&f.warm_ms),
            list(&f.warm_ms),
            f.kept.median,
            f.kept.p90,
            f.kept.p99,
            f.fresh.median,
            f.fresh.p90,
            f.fresh.p99,
            f.fresh.median / f.kept.median,
        );
    }
    for f in &all {
        if f.name.contains("noop") {
            // The host's own cost: the plugin does nothing.
            println!(
                "{}: kept {:.1} µs, goal ≤ 5 µs: {}; fresh {:.1} µs, goal ≤ 20 µs: {}",
                f.name,
                f.kept.median,
                verdict(f.kept.median <= 5.0),
                f.fresh.median,
                verdict(f.fresh.median <= 20.0)
            );
        } else {
            println!(
                "{}: call median {:.3} ms, goal (issue 20, Python and JavaScript) ≤ 1 ms: {}",
                f.name,
                f.kept.median / 1e3,
                verdict(f.kept.median <= 1000.0)
            );
        }
    }
    Ok(())
}

/// Cold and warm loads of the notification plugin `wasm`, then its calls
/// on the last warm host.
async fn notification_plugin(args: &Args, wasm: &Path) -> anyhow::Result<PluginFigures> {
    if !wasm.is_file() {
        bail!(
            "{} is not there; build it: cd tests/plugins && cargo build --release",
            wasm.display()
        );
    }
    let file = wasm.file_name().unwrap().to_string_lossy().to_string();
    let name = "bench-notify";
    let out = args.grant_out || file.contains("recorder");
    let specs = BTreeMap::from([(name.to_string(), notify_spec(name, &file, out))]);
    let (mut cold_ms, mut warm_ms) = (Vec::new(), Vec::new());
    let mut last = None;
    for round in 0..args.load_rounds {
        // A fresh DATA_DIR per round: its first start is cold, the second warm.
        let work = tempfile::tempdir()?;
        let (project, data, plugins_dir) = dirs_in(work.path())?;
        std::fs::copy(wasm, plugins_dir.join(&file))?;
        for (times, cached) in [(&mut cold_ms, false), (&mut warm_ms, true)] {
            let (stop, tracker) = (CancellationToken::new(), TaskTracker::new());
            let t = Instant::now();
            let host = PluginHost::start(
                options(&project, &data, &plugins_dir, specs.clone()),
                no_messages(),
                stop.clone(),
                tracker.clone(),
            )?;
            host.settled_all(Duration::from_secs(600)).await;
            let elapsed = t.elapsed();
            let plugin = match host.get(name) {
                Some(p) if p.current().kind == Kind::Notification => p,
                _ => bail!(
                    "{} did not load as a notification plugin: {}",
                    wasm.display(),
                    reports(&host)
                ),
            };
            if plugin.current().from_cache != cached {
                bail!(
                    "{}: a {} load did not {} the cache",
                    wasm.display(),
                    if cached { "warm" } else { "cold" },
                    if cached { "come from" } else { "bypass" }
                );
            }
            times.push(elapsed.as_secs_f64() * 1e3);
            if cached && round + 1 == args.load_rounds {
                last = Some((host, plugin, stop, tracker, work));
                break;
            }
            stop.cancel();
            tracker.close();
            tracker.wait().await;
        }
    }
    let (host, plugin, stop, tracker, _work) = last.expect("at least one round");
    // On a plugin thread, where the service's notification loop makes its
    // calls (from elsewhere, each call would add a hop there and back).
    let on_pool = timed_calls(
        host.clone(),
        plugin,
        args.warmup,
        args.calls.div_ceil(args.blocks),
        args.blocks,
    );
    let (mut kept, mut fresh) = host.pool().handle().spawn(on_pool).await??;
    stop.cancel();
    tracker.close();
    tracker.wait().await;
    let calls = kept.len();
    Ok(PluginFigures {
        name: file,
        wasm_bytes: std::fs::metadata(wasm)?.len(),
        cold_ms,
        warm_ms,
        kept: Stats::of(&mut kept),
        fresh: Stats::of(&mut fresh),
        calls,
    })
}

fn options(
    project: &Path,
    data: &Path,
    plugins_dir: &Path,
    specs: BTreeMap<String, PluginSpec>,
) -> Options {
    Options {
        plugins_dir: plugins_dir.to_path_buf(),
        project_dir: project.to_path_buf(),
        packages_dir: data.join("packages"),
        data_dir: data.to_path_buf(),
        job_files: Vec::new(),
        max_message_bytes: 10 << 20,
        specs,
        default_specs: BTreeMap::new(),
        max_memory: microservice::project::plugins::DEFAULT_MAX_MEMORY,
        trigger_leases: std::sync::Arc::new(microservice::storage::embedded::OneProcess),
    }
}

async fn startup(args: &Args) -> anyhow::Result<()> {
    for file in FIRST_PARTY {
        let p = args.first_party.join(file);
        if !p.is_file() {
            bail!(
                "{} is not there; build the first-party plugins: cd plugins && cargo build --release",
                p.display()
            );
        }
    }
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for _ in 0..args.startup_rounds {
        // A fresh DATA_DIR per round: its first start is cold, the second warm.
        let work = tempfile::tempdir()?;
        let (project, data, plugins_dir) = dirs_in(work.path())?;
        for file in FIRST_PARTY {
            std::fs::copy(args.first_party.join(file), plugins_dir.join(file))?;
        }
        let specs = Project::parse(&project, &project.join("project.toml"), FIRST_PARTY_TABLES)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .plugins;
        for (times, expect_cached) in [(&mut cold, false), (&mut warm, true)] {
            let (stop, tracker) = (CancellationToken::new(), TaskTracker::new());
            let options = options(&project, &data, &plugins_dir, specs.clone());
            let t = Instant::now();
            let host = PluginHost::start(options, no_messages(), stop.clone(), tracker.clone())?;
            host.settled_all(Duration::from_secs(600)).await;
            let elapsed = t.elapsed();
            let loaded: Vec<_> = host
                .reports()
                .into_iter()
                .filter_map(|r| match r {
                    Report::Loaded(s) => Some(s),
                    Report::Failed(_) | Report::Loading(_) => None,
                })
                .collect();
            if loaded.len() != FIRST_PARTY.len() {
                bail!("expected 4 plugins loaded, got: {}", reports(&host));
            }
            if loaded.iter().any(|s| s.from_cache != expect_cached) {
                bail!(
                    "a {} start did not {} the cache: {}",
                    if expect_cached { "warm" } else { "cold" },
                    if expect_cached { "load from" } else { "bypass" },
                    reports(&host)
                );
            }
            times.push(elapsed);
            stop.cancel();
            tracker.close();
            tracker.wait().await;
            drop(host);
        }
    }
    let ms = |v: &[Duration]| -> Vec<f64> { v.iter().map(|d| d.as_secs_f64() * 1e3).collect() };
    let (c, w) = (ms(&cold), ms(&warm));
    let (cm, wm) = (median(&c), median(&w));
    println!();
    println!(
        "start-up with the four first-party plugins ({}), {} cold/warm pairs, alternating",
        FIRST_PARTY.join(", "),
        args.startup_rounds
    );
    println!("| start | median ms | all runs ms | goal |");
    println!("|---|---|---|---|");
    println!(
        "| cold (empty plugin-cache: compile) | {cm:.1} | {} | |",
        list(&c)
    );
    println!(
        "| warm (same DATA_DIR: from cache) | {wm:.1} | {} | ≤ 150 ms {} |",
        list(&w),
        verdict(wm <= 150.0)
    );
    println!("ratio cold / warm (medians): {:.1}", cm / wm);
    Ok(())
}

/// PROJECT_DIR, DATA_DIR and the plugins folder inside `root`.
fn dirs_in(root: &Path) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let (project, data) = (root.join("project"), root.join("data"));
    let plugins = project.join("plugins");
    std::fs::create_dir_all(&plugins)?;
    std::fs::create_dir_all(&data)?;
    Ok((project, data, plugins))
}

fn reports(host: &PluginHost) -> String {
    serde_json::to_string(&host.reports()).unwrap_or_default()
}

struct Stats {
    median: f64,
    p90: f64,
    p99: f64,
}

impl Stats {
    fn of(samples: &mut [Duration]) -> Stats {
        samples.sort();
        let us: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e6).collect();
        let at = |q: f64| us[((us.len() - 1) as f64 * q).round() as usize];
        Stats {
            median: median(&us),
            p90: at(0.90),
            p99: at(0.99),
        }
    }
}

fn median(sorted_or_not: &[f64]) -> f64 {
    let mut v = sorted_or_not.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn list0(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn list(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}
