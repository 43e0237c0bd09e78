//! stale-notify: a notification plugin built against another text of the
//! host's WIT package (its `notify` takes only a run id). Its names match
//! the host's, its function type does not: `plugin inspect` and `check`
//! must say it would not load, as the service would fail to instantiate it.

#[cfg(not(any(target_arch = "wasm32", test)))]
compile_error!(
    "this crate is a WebAssembly component: build it with `--target wasm32-wasip2` \
     (tests/plugins/.cargo/config.toml names that target only when cargo runs inside tests/plugins/)"
);

wit_bindgen::generate!({
    path: "wit",
    world: "notification",
});

struct StaleNotify;

impl exports::openfn::microservice::notifier::Guest for StaleNotify {
    fn notify(_run_id: String) {}
}

export!(StaleNotify);
