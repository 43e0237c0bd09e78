//! A Rust re-implementation of the OpenFn microservice.
//!
//! It receives JSON receipts over HTTP, matches them against the project's
//! triggers, runs the matching OpenFn jobs with the real `@openfn/core`, keeps
//! each job's last successful state, runs cron jobs and chains jobs with
//! success/failure flows.
//!
//! # Layout
//! The data path, in the order a receipt travels it:
//! - [`settings`]: the process environment (`PORT`, `PROJECT_DIR`, ...).
//! - [`project`]: `project.toml`, parsed and validated before anything serves.
//! - [`http`]: the hyper server, `/inbox`, the JSON API and the dashboard.
//! - [`receipt`]: the one door every receipt takes (`/inbox`, `/submission`,
//!   trigger plugins): decode the body (JSON, forms, XML, compression),
//!   match it, then store it or start its runs.
//! - [`queue`]: receipts kept in the message store before the 202, then
//!   delivered, retried or dead-lettered.
//! - [`criteria`]: deep-containment matching of receipts against criteria.
//! - [`dispatch`]: turns a receipt, a cron tick or a finished run into runs,
//!   builds their initial state and fires flows.
//! - [`cron`]: cron triggers: reading expressions, their ticks in a time
//!   zone, and the scheduler.
//! - [`engine`]: one run of `@openfn/core` in its own process group.
//! - [`packages`]: installs core and the adaptors with npm.
//! - [`redact`]: keeps credentials out of logs and stored states.
//! - [`storage`]: where receipts, run records, job states and cron ticks
//!   are kept: one interface, the embedded implementation (journal plugin
//!   and SQLite) and, for many replicas, PostgreSQL.
//! - [`plugins`]: WebAssembly plugins (triggers, notifications, logging,
//!   persistence): loading, grants, limits, hot reload.
//! - [`metrics`]: the Prometheus registry behind `/metrics`.
//! - [`clock`]: the two forms of "now" the service uses.
//! - [`service`]: wires it all together and shuts it down cleanly.
//! - [`cli`] and [`commands`]: the binary's subcommands (`run`, `check`,
//!   `import` of the original's `project.yaml`, `install`, `plugin`).
//! - [`import`]: converting the original's `project.yaml` to `project.toml`.
//! - [`expression`]: job expressions parsed as JavaScript (syntax errors,
//!   the helpers they call), and the compile step that makes a job written
//!   for OpenFn's current runtime into code core 1.5.1 runs.
//! - [`library`]: the jobs library, `GET /api/library` and `library` commands.

pub mod cli;
pub mod clock;
pub mod commands;
pub mod criteria;
pub mod cron;
pub mod dispatch;
pub mod engine;
pub mod expression;
pub mod http;
pub mod import;
pub mod library;
pub mod logging;
pub mod metrics;
pub mod packages;
pub mod plugins;
pub mod project;
pub mod queue;
pub mod receipt;
pub mod redact;
pub mod service;
pub mod settings;
pub mod storage;
