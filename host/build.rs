//! Builds the first-party `journal` plugin (plugins/journal, for
//! wasm32-wasip2) so the binary can embed it as the default message store.
//! It gets its own target directory, so it never waits on the outer build.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("..");
    for watched in [
        "plugins/journal/src",
        "plugins/journal/Cargo.toml",
        "plugins/sdk",
        "plugins/Cargo.toml",
        "wit",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let target_dir = out.join("wasm-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip2",
        "-p",
        "journal",
        "--manifest-path",
    ])
    .arg(root.join("plugins/Cargo.toml"))
    .env("CARGO_TARGET_DIR", &target_dir);
    // Flags meant for the host build must not leak into the wasm build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("running cargo to build the journal plugin");
    if !status.success() {
        panic!(
            "building plugins/journal for wasm32-wasip2 failed; is the target installed? (rustup target add wasm32-wasip2)"
        );
    }
    let wasm = target_dir.join("wasm32-wasip2/release/journal.wasm");
    std::fs::copy(&wasm, out.join("journal.wasm")).expect("copying journal.wasm");
}
