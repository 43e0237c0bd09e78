//! End-to-end tests of the `microservice` binary: every test starts the real
//! service on a small project, talks to it over HTTP and lets it run real
//! `@openfn/core` jobs with `@openfn/language-common` from npm.
//!
//! The npm packages are installed once per test process (see
//! [`harness::packages_dir`]); projects live in `tests/projects/`. The
//! `plugins_*` tests also build the WebAssembly plugins from source once per
//! test process (see [`harness::wasm_plugins`]).

mod bad_input;
mod cli;
mod cluster;
mod cluster_recovery;
mod config;
mod credentials;
mod cron;
mod dashboard;
mod deploy;
mod engine;
mod flows;
mod harness;
mod inbox;
mod library;
mod metrics;
mod openapi;
mod plugins_authoring;
mod plugins_hostile;
mod plugins_limits;
mod plugins_logging;
mod plugins_manifest;
mod plugins_new;
mod plugins_notify;
mod plugins_reload;
mod plugins_sandbox;
mod plugins_startup;
mod plugins_support;
mod plugins_trigger;
mod postgres;
mod queue;
mod queue_crash;
mod raw;
mod security;
mod service_log;
mod shutdown;
mod sync;
mod worker;

/// The project shared by the inbox, flow, credential and engine tests.
pub const INBOX_PROJECT: &str = include_str!("../projects/inbox/project.toml");
