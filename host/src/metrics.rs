//! Prometheus metrics: what `/metrics` reports, in the OpenMetrics text format.
//!
//! One process-wide registry (the service is one per process). The hot paths
//! (`/inbox`, plugin calls) only touch counters and histograms created ahead
//! of time, so recording is an atomic add, never an allocation or a map
//! look-up. Values that live elsewhere (queue depth, idle workers) are read
//! when `/metrics` is scraped. Labels carry job and plugin names only: never
//! a receipt's content, a credential or a key.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// How an `/inbox` request ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    /// Accepted (202, or 200/201/206 in sync style).
    accepted,
    /// A re-sent receipt with a known idempotency key.
    duplicate,
    /// Bad input: 400, 413, 415.
    rejected,
    /// No or wrong API key.
    unauthorized,
    /// The message store refused or was down: 503.
    unavailable,
    /// The service failed: 5xx other than 503.
    failed,
}

impl Outcome {
    const ALL: [Outcome; 6] = [
        Outcome::accepted,
        Outcome::duplicate,
        Outcome::rejected,
        Outcome::unauthorized,
        Outcome::unavailable,
        Outcome::failed,
    ];
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    job: String,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    job: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    receipts: Family<OutcomeLabels, Counter>,
    /// `receipts`' counters, one per outcome, looked up once.
    by_outcome: [Counter; 6],
    runs: Family<RunLabels, Counter>,
    run_seconds: HistogramFamily<JobLabels>,
    runs_in_flight: Gauge,
    queue: Family<StatusLabels, Gauge>,
    plugin_calls: Family<PluginLabels, Counter>,
    plugin_failures: Family<PluginLabels, Counter>,
    plugin_seconds: HistogramFamily<PluginLabels>,
    workers_idle: Gauge,
    engine_slots: Gauge,
    cron_missed: Family<JobLabels, Counter>,
}

/// The counters and histogram of one plugin, made once and then shared.
#[derive(Clone)]
pub struct PluginMetrics {
    calls: Counter,
    failures: Counter,
    seconds: Histogram,
}

impl PluginMetrics {
    pub fn record(&self, took: Duration, failed: bool) {
        self.calls.inc();
        if failed {
            self.failures.inc();
        }
        self.seconds.observe(took.as_secs_f64());
    }

    /// A call already recorded whose answer the host then refused.
    pub fn failed(&self) {
        self.failures.inc();
    }
}

fn run_buckets() -> Histogram {
    // 5 ms to ~82 s: a warm worker run takes milliseconds, a cli run a second.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

fn call_buckets() -> Histogram {
    // 2 µs to ~33 s: a fresh-instance call takes tens of microseconds.
    Histogram::new(exponential_buckets(0.000_002, 4.0, 13))
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

pub fn get() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Metrics {
        let receipts = Family::<OutcomeLabels, Counter>::default();
        let by_outcome =
            Outcome::ALL.map(|outcome| receipts.get_or_create(&OutcomeLabels { outcome }).clone());
        let mut m = Metrics {
            registry: Registry::with_prefix("microservice"),
            by_outcome,
            receipts,
            runs: Family::default(),
            run_seconds: Family::new_with_constructor(run_buckets),
            runs_in_flight: Gauge::default(),
            queue: Family::default(),
            plugin_calls: Family::default(),
            plugin_failures: Family::default(),
            plugin_seconds: Family::new_with_constructor(call_buckets),
            workers_idle: Gauge::default(),
            engine_slots: Gauge::default(),
            cron_missed: Family::default(),
        };
        // Disjoint fields: the registry is written while the families are read.
        let registry = &mut m.registry;
        let info = Family::<VersionLabels, Gauge>::default();
        info.get_or_create(&VersionLabels {
            version: env!("CARGO_PKG_VERSION"),
        })
        .set(1);
        registry.register("build_info", "The running version", info);
        registry.register(
            "receipts",
            "POST /inbox requests, by outcome",
            m.receipts.clone(),
        );
        registry.register("runs", "Finished runs, by job and status", m.runs.clone());
        registry.register(
            "run_duration_seconds",
            "How long runs took, by job",
            m.run_seconds.clone(),
        );
        registry.register(
            "runs_in_flight",
            "Runs holding an engine slot now",
            m.runs_in_flight.clone(),
        );
        registry.register(
            "queue_messages",
            "Stored receipts by status (durable inbox only)",
            m.queue.clone(),
        );
        registry.register(
            "plugin_calls",
            "Calls into plugins, by plugin",
            m.plugin_calls.clone(),
        );
        registry.register(
            "plugin_failures",
            "Plugin calls that failed, trapped or timed out",
            m.plugin_failures.clone(),
        );
        registry.register(
            "plugin_call_duration_seconds",
            "How long plugin calls took",
            m.plugin_seconds.clone(),
        );
        registry.register(
            "engine_workers_idle",
            "Warm node workers waiting for a run (worker engine only)",
            m.workers_idle.clone(),
        );
        registry.register(
            "engine_slots",
            "Runs allowed at once ([engine] concurrency)",
            m.engine_slots.clone(),
        );
        registry.register(
            "cron_ticks_missed",
            "Cron ticks skipped, by job: the job's previous run was still going, or the scheduler woke too late",
            m.cron_missed.clone(),
        );
        m
    }

    pub fn receipt(&self, outcome: Outcome) {
        self.by_outcome[outcome as usize].inc();
    }

    pub fn run_finished(&self, job: &str, success: bool, took: Duration) {
        let status = if success { "success" } else { "failure" };
        self.runs
            .get_or_create(&RunLabels {
                job: job.to_string(),
                status,
            })
            .inc();
        self.run_seconds
            .get_or_create(&JobLabels {
                job: job.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts a run in flight until the returned guard drops.
    pub fn run_started(&self) -> InFlight {
        self.runs_in_flight.inc();
        InFlight
    }

    pub fn plugin(&self, name: &str) -> PluginMetrics {
        let labels = PluginLabels {
            plugin: name.to_string(),
        };
        PluginMetrics {
            calls: self.plugin_calls.get_or_create(&labels).clone(),
            failures: self.plugin_failures.get_or_create(&labels).clone(),
            seconds: self.plugin_seconds.get_or_create(&labels).clone(),
        }
    }

    pub fn set_engine_slots(&self, slots: usize) {
        self.engine_slots.set(slots as i64);
    }

    /// Makes sure every configured job shows up from the first scrape, at
    /// zero (receipt outcomes always do): a series that appears late breaks `rate()`.
    pub fn declare<'a>(&self, jobs: impl IntoIterator<Item = &'a str>) {
        for job in jobs {
            for status in ["success", "failure"] {
                drop(self.runs.get_or_create(&RunLabels {
                    job: job.to_string(),
                    status,
                }));
            }
        }
    }

    /// Shows a cron job's missed ticks at zero from the first scrape.
    pub fn declare_cron(&self, job: &str) {
        drop(self.cron_missed.get_or_create(&JobLabels {
            job: job.to_string(),
        }));
    }

    pub fn cron_ticks_missed(&self, job: &str, ticks: u64) {
        self.cron_missed
            .get_or_create(&JobLabels {
                job: job.to_string(),
            })
            .inc_by(ticks);
    }

    /// The text `/metrics` answers, after the point-in-time values are set.
    pub fn render(&self, snapshot: Snapshot) -> String {
        if let Some(q) = snapshot.queue {
            for (status, n) in [
                ("pending", q.pending),
                ("leased", q.leased),
                ("done", q.done),
                ("dead", q.dead),
            ] {
                self.queue
                    .get_or_create(&StatusLabels { status })
                    .set(n as i64);
            }
        }
        if let Some(idle) = snapshot.workers_idle {
            self.workers_idle.set(idle as i64);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Values read at scrape time.
#[derive(Default)]
pub struct Snapshot {
    pub queue: Option<QueueCounts>,
    pub workers_idle: Option<usize>,
}

pub struct QueueCounts {
    pub pending: u64,
    pub leased: u64,
    pub done: u64,
    pub dead: u64,
}

/// A run holding an engine slot; see [`Metrics::run_started`].
pub struct InFlight;

impl Drop for InFlight {
    fn drop(&mut self) {
        get().runs_in_flight.dec();
    }
}
