//! Writing a microservice plugin in Rust: a trait impl and one macro.
//!
//! ```ignore
//! use openfn_plugin_sdk::{Notifier, PluginError, RunEvent, config, log};
//!
//! struct Hello;
//!
//! impl Notifier for Hello {
//!     fn notify(event: RunEvent) -> Result<(), PluginError> {
//!         let greeting = config::string("greeting").unwrap_or_else(|| "hello".into());
//!         log::info(&format!("{greeting}: run {} of {}", event.run_id, event.job));
//!         Ok(())
//!     }
//! }
//!
//! openfn_plugin_sdk::export!(Hello as notification);
//! ```
//!
//! Build the crate (`crate-type = ["cdylib"]`) with
//! `cargo build --release --target wasm32-wasip2`: the `.wasm` is the plugin.
//!
//! The bindings are generated here from the repository's `wit/` (package
//! `openfn:microservice@0.1.0`), once per world, sharing the `types` and
//! `host` interfaces, so a plugin crate needs no `wit_bindgen::generate!`
//! of its own. Each world's bindings carry only its imports; the exports
//! are declared by [`export!`] in the plugin's crate, so a plugin exports
//! exactly one kind.
//!
//! | kind | trait | `export!(T as ...)` |
//! |---|---|---|
//! | trigger | [`Trigger`] (`poll`) | `trigger` |
//! | notification | [`Notifier`] (`notify`) | `notification` |
//! | logging | [`LogSink`] (`write_batch`) | `logging` |
//! | persistence | [`MessageStore`] (`open`, `enqueue`, `lease`, ...) | `persistence` |
//!
//! [`manifest!`] declares the grants and config keys the plugin needs, so
//! the host refuses it at load, saying what to add, when its table lacks
//! them. [`config`] reads the plugin's `[plugins.<name>.config]` values, [`log`]
//! writes to the service's log (target `plugin`, tagged with the plugin's
//! name), and [`PluginError`] has constructors for each way a call fails.

// The generated code names its runtime by this crate's name, inside this
// crate and in the plugin crates that expand `export!`.
extern crate self as openfn_plugin_sdk;

#[doc(hidden)]
pub use wit_bindgen;

pub mod config;
pub mod error;

/// The notification world; its `types` and `host` are the ones every other
/// world shares.
pub mod notification {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "notification",
        pub_export_macro: true,
        export_macro_name: "__export_notification",
        default_bindings_module: "openfn_plugin_sdk::notification",
        runtime_path: "openfn_plugin_sdk::wit_bindgen::rt",
        additional_derives: [PartialEq],
    });
}

/// The trigger world.
pub mod trigger {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "trigger",
        pub_export_macro: true,
        export_macro_name: "__export_trigger",
        default_bindings_module: "openfn_plugin_sdk::trigger",
        runtime_path: "openfn_plugin_sdk::wit_bindgen::rt",
        additional_derives: [PartialEq],
        with: {
            "openfn:microservice/types@0.1.0": crate::notification::openfn::microservice::types,
            "openfn:microservice/host@0.1.0": crate::notification::openfn::microservice::host,
        },
    });
}

/// The logging world.
pub mod logging {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "logging",
        pub_export_macro: true,
        export_macro_name: "__export_logging",
        default_bindings_module: "openfn_plugin_sdk::logging",
        runtime_path: "openfn_plugin_sdk::wit_bindgen::rt",
        additional_derives: [PartialEq],
        with: {
            "openfn:microservice/types@0.1.0": crate::notification::openfn::microservice::types,
            "openfn:microservice/host@0.1.0": crate::notification::openfn::microservice::host,
        },
    });
}

/// The persistence world.
pub mod persistence {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "persistence",
        pub_export_macro: true,
        export_macro_name: "__export_persistence",
        default_bindings_module: "openfn_plugin_sdk::persistence",
        runtime_path: "openfn_plugin_sdk::wit_bindgen::rt",
        additional_derives: [PartialEq],
        with: {
            "openfn:microservice/types@0.1.0": crate::notification::openfn::microservice::types,
            "openfn:microservice/host@0.1.0": crate::notification::openfn::microservice::host,
        },
    });
}

/// The `host` interface every plugin imports (prefer [`config`] and [`log`]).
pub use notification::openfn::microservice::host;
/// The types shared by every world.
pub use notification::openfn::microservice::types::{
    self, Level, LogRecord, Message, PluginError, RunEvent, RunStatus,
};

/// A logging plugin: given batches of the service's log records, on an
/// instance the host keeps from call to call (a fresh one after a failed
/// call, a reload, or 1,000 calls): keep no state in it that a call needs.
pub use logging::exports::openfn::microservice::log_sink::Guest as LogSink;
/// A notification plugin: told about every run when it finishes, on an
/// instance the host keeps from call to call (a fresh one after a failed
/// call, a reload, or 1,000 calls): keep no state in it that a call needs.
pub use notification::exports::openfn::microservice::notifier::Guest as Notifier;
/// A persistence plugin (message store): one long-lived instance, `open`
/// first, then every other call on that same instance.
pub use persistence::exports::openfn::microservice::message_store::{
    Guest as MessageStore, MessageStatus, StoreStats, StoredMessage,
};
/// A trigger plugin: polled on the host's schedule, on a fresh instance per call.
pub use trigger::exports::openfn::microservice::trigger_source::{
    Guest as Trigger, PollResult, Tick,
};

/// Exports `$ty` as the plugin of one kind: `export!(MyPlugin as
/// notification)`; the kinds are `trigger`, `notification`, `logging` and
/// `persistence`. `$ty` implements that kind's trait ([`Trigger`],
/// [`Notifier`], [`LogSink`] or [`MessageStore`]).
#[macro_export]
macro_rules! export {
    ($ty:ident as trigger) => {
        $crate::trigger::__export_trigger!($ty with_types_in $crate::trigger);
    };
    ($ty:ident as notification) => {
        $crate::notification::__export_notification!($ty with_types_in $crate::notification);
    };
    ($ty:ident as logging) => {
        $crate::logging::__export_logging!($ty with_types_in $crate::logging);
    };
    ($ty:ident as persistence) => {
        $crate::persistence::__export_persistence!($ty with_types_in $crate::persistence);
    };
}

/// Declares what the plugin needs, as a JSON manifest the host checks
/// against the plugin's `[plugins.<name>]` table when it loads: a table
/// lacking a folder, an origin or a config key named here (or giving a
/// config value of another type) gets the plugin refused, with a message
/// saying what to add, instead of every call failing. Config defaults named
/// here are handed to the plugin when the table leaves the key out.
///
/// ```ignore
/// openfn_plugin_sdk::manifest!(r#"{
///     "manifest": 1,
///     "dirs": [{ "guest": "/out", "writable": true }],
///     "hosts": ["*"],
///     "config": { "prefix": { "type": "string", "default": "run" } }
/// }"#);
/// ```
///
/// `dirs`: guest paths, `writable` when the plugin writes there; `hosts`:
/// origins it sends requests to (`"*"`: at least one, whichever the table
/// grants); `config`: each key's `type` (`string`, `integer`, `number`,
/// `boolean`) and optional `default` (without one the key is required).
/// The JSON is written into the component as the custom section
/// `openfn:microservice/manifest`; `microservice plugin inspect` shows it.
#[macro_export]
macro_rules! manifest {
    ($json:literal) => {
        const _: () = {
            const JSON: &[u8] = $json.as_bytes();
            #[unsafe(link_section = "openfn:microservice/manifest")]
            #[used]
            static MANIFEST: [u8; JSON.len()] = *JSON.first_chunk::<{ JSON.len() }>().unwrap();
        };
    };
}

/// Writing to the service's log: each line has target `plugin` and a
/// `plugin` field with the plugin's name (`LOG_LEVEL=plugin=debug` shows a
/// plugin's debug lines alone). A logging plugin must not log this way: its
/// own lines would come back to it.
pub mod log {
    use crate::{Level, host};

    pub fn trace(message: &str) {
        host::log(Level::Trace, message);
    }
    pub fn debug(message: &str) {
        host::log(Level::Debug, message);
    }
    pub fn info(message: &str) {
        host::log(Level::Info, message);
    }
    pub fn warn(message: &str) {
        host::log(Level::Warn, message);
    }
    pub fn error(message: &str) {
        host::log(Level::Error, message);
    }
}
