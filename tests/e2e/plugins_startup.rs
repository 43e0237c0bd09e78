//! Start-up does not wait for slow plugins (issue 20): the port opens once
//! the message store is ready while a plugin that takes seconds to compile
//! is still compiling; `/readyz` and `/api/plugins` say it is loading,
//! `/inbox` takes receipts and runs them meanwhile, and the plugin becomes
//! active (and is called) as soon as it is compiled.
//!
//! The slow plugin is the `recorder` test plugin with a large unused core
//! module added to its component: wasmtime compiles every module of a
//! component, so the compile takes seconds, and nothing else changes.

use std::time::Duration;

use serde_json::{Value, json};
use wasm_encoder::{
    CodeSection, ComponentSection, Function, FunctionSection, Instruction, Module, ModuleSection,
    TypeSection, ValType,
};

use crate::harness::{Launch, RUN_TIMEOUT, run_id, wait_for_runs};
use crate::plugins_support::{plugin, wait_plugin, wasm};

const PROJECT: &str = include_str!("../projects/plugins-startup/project.toml");
/// The slow plugin's compile: seconds on an idle machine, minutes under load.
const LOAD: Duration = Duration::from_secs(300);
/// Functions and instructions per function of the added module: about
/// 24 MB of code, several seconds of compiling on two idle cores.
const FUNCTIONS: u32 = 3_000;
const STEPS: u32 = 1_000;

/// `component` with an unused core module of `FUNCTIONS` functions added.
fn slow_to_compile(component: &[u8]) -> Vec<u8> {
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32], [ValType::I32]);
    let mut functions = FunctionSection::new();
    let mut code = CodeSection::new();
    for f in 0..FUNCTIONS {
        functions.function(0);
        let mut body = Function::new([]);
        for step in 0..STEPS {
            let k = (f.wrapping_mul(31) ^ step) as i32;
            body.instruction(&Instruction::LocalGet(0))
                .instruction(&Instruction::I32Const(k | 1))
                .instruction(&Instruction::I32Mul)
                .instruction(&Instruction::I32Const(k >> 3))
                .instruction(&Instruction::I32Xor)
                .instruction(&Instruction::LocalSet(0));
        }
        body.instruction(&Instruction::LocalGet(0))
            .instruction(&Instruction::End);
        code.function(&body);
    }
    let mut module = Module::new();
    module.section(&types).section(&functions).section(&code);
    let mut bytes = component.to_vec();
    ModuleSection(&module).append_to_component(&mut bytes);
    bytes
}

fn loading(svc: &crate::harness::Service) -> Value {
    let ready = svc.get("/readyz");
    assert_eq!(ready.status, 200, "{ready:?}");
    ready.json["checks"]["plugins_loading"].clone()
}

#[test]
fn the_port_opens_while_a_plugin_compiles_and_it_is_active_once_compiled() {
    let slow = slow_to_compile(&wasm("recorder.wasm"));
    let svc = Launch::new(PROJECT)
        .file_bytes("plugins/slow_recorder.wasm", &slow)
        .start();

    // The port is open and the service takes work while it compiles.
    assert_eq!(
        loading(&svc),
        json!(["slow-recorder"]),
        "{}",
        svc.log_tail()
    );
    let entry = plugin(&svc, "slow-recorder").expect("listed while loading");
    assert_eq!(entry["status"], "loading", "{entry}");
    assert_eq!(entry["file"], "slow_recorder.wasm", "{entry}");
    let reply = svc.post_json("/inbox", r#"{"kind":"echo"}"#);
    assert_eq!(reply.status, 202, "{reply:?}");
    wait_for_runs(&svc, "echo", "success", 1);
    let opened = svc.log_lines_with("listening on http://");
    assert_eq!(opened.len(), 1, "{}", svc.log_tail());

    // Then it becomes active, without a restart, and is called.
    let entry = wait_plugin(&svc, "slow-recorder", "active", LOAD, |p| {
        p["status"] == "active"
    });
    assert_eq!(entry["kind"], "notification", "{entry}");
    assert_eq!(loading(&svc), json!([]));
    let lines: Vec<String> = svc.logs().lines().map(str::to_string).collect();
    let at = |what: &dyn Fn(&str) -> bool| {
        lines
            .iter()
            .position(|l| what(l))
            .unwrap_or_else(|| panic!("no such line: {}", svc.log_tail()))
    };
    let listening = at(&|l| l.contains("listening on http://"));
    let loaded = at(&|l| l.contains("plugin loaded") && l.contains("slow-recorder"));
    assert!(
        listening < loaded,
        "the port should open before the slow plugin is loaded: {}",
        svc.log_tail()
    );
    let reply = svc.post_json("/inbox", r#"{"kind":"echo"}"#);
    assert_eq!(reply.status, 202, "{reply:?}");
    let runs = wait_for_runs(&svc, "echo", "success", 2);
    let ids: Vec<String> = runs.iter().map(run_id).collect();
    svc.poll_until("a run in out/events.jsonl", RUN_TIMEOUT, || {
        let recorded =
            std::fs::read_to_string(svc.data_dir().join("out/events.jsonl")).unwrap_or_default();
        if ids.iter().any(|id| recorded.contains(id.as_str())) {
            Ok(())
        } else {
            Err(format!("recorded: {recorded:?}, runs: {ids:?}"))
        }
    });
}
