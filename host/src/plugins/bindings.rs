//! Host bindings generated from the root `wit/` folder, one module per world.
//!
//! The `notification` world's generated `types` and `host` interfaces are
//! reused by the other worlds (`with`), so there is one Rust type per WIT
//! type and one `Host` trait to implement. Only generated code lives here.

pub mod notification {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "notification",
        imports: { default: async },
        exports: { default: async },
    });
}

pub mod trigger {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "trigger",
        imports: { default: async },
        exports: { default: async },
        with: {
            "openfn:microservice/types": super::notification::openfn::microservice::types,
            "openfn:microservice/host": super::notification::openfn::microservice::host,
        },
    });
}

pub mod logging {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "logging",
        imports: { default: async },
        exports: { default: async },
        with: {
            "openfn:microservice/types": super::notification::openfn::microservice::types,
            "openfn:microservice/host": super::notification::openfn::microservice::host,
        },
    });
}

pub mod persistence {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "persistence",
        imports: { default: async },
        exports: { default: async },
        with: {
            "openfn:microservice/types": super::notification::openfn::microservice::types,
            "openfn:microservice/host": super::notification::openfn::microservice::host,
        },
    });
}

pub use notification::openfn::microservice::host;
pub use notification::openfn::microservice::types;
