//! End-to-end tests of the `microservice` binary: every test starts the real
//! service on a small project, talks to it over HTTP and lets it run real
//! `@openfn/core` jobs with `@openfn/language-common` from npm.
//!
//! The npm packages are installed once per test process (see
//! [`harness::packages_dir`]); projects live in `tests/projects/`.

mod bad_input;
mod config;
mod credentials;
mod cron;
mod engine;
mod flows;
mod harness;
mod inbox;
mod shutdown;
mod sync;

/// The project shared by the inbox, flow, credential and engine tests.
pub const INBOX_PROJECT: &str = include_str!("../projects/inbox/project.toml");
