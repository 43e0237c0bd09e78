//! socket-probe: a notification plugin that imports `wasi:sockets`, as
//! componentize-py's output always does, and uses it on every `notify`:
//! a TCP connection to `127.0.0.1:<port>` (config `port`) and a name lookup
//! of `localhost`.
//!
//! - `Err(other("sockets refused: tcp: <code>; lookup: <code>"))`: both
//!   were refused, which is what the host must do;
//! - `Err(other("connected to ..."))` or `Err(other("resolved ..."))`: the
//!   host let one through.
//!
//! It never answers `Ok`, so every call is counted as a failure.

#[cfg(not(any(target_arch = "wasm32", test)))]
compile_error!(
    "this crate is a WebAssembly component: build it with `--target wasm32-wasip2` \
     (tests/plugins/.cargo/config.toml names that target only when cargo runs inside tests/plugins/)"
);

wit_bindgen::generate!({
    path: "../../../wit",
    world: "notification",
});

use exports::openfn::microservice::notifier::Guest;
use openfn::microservice::host;
use openfn::microservice::types::{PluginError, RunEvent};
use wasi::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
use wasi::sockets::{instance_network, ip_name_lookup, tcp_create_socket};

struct SocketProbe;

fn tcp(port: u16) -> Result<String, String> {
    let network = instance_network::instance_network();
    let socket = tcp_create_socket::create_tcp_socket(IpAddressFamily::Ipv4)
        .map_err(|e| format!("create: {e:?}"))?;
    let address = IpSocketAddress::Ipv4(Ipv4SocketAddress {
        port,
        address: (127, 0, 0, 1),
    });
    socket
        .start_connect(&network, address)
        .map_err(|e| format!("{e:?}"))?;
    socket.subscribe().block();
    socket
        .finish_connect()
        .map(|_| format!("connected to 127.0.0.1:{port}"))
        .map_err(|e| format!("{e:?}"))
}

fn lookup() -> Result<String, String> {
    let network = instance_network::instance_network();
    let stream =
        ip_name_lookup::resolve_addresses(&network, "localhost").map_err(|e| format!("{e:?}"))?;
    stream.subscribe().block();
    stream
        .resolve_next_address()
        .map(|a| format!("resolved localhost to {a:?}"))
        .map_err(|e| format!("{e:?}"))
}

impl Guest for SocketProbe {
    fn notify(_: RunEvent) -> Result<(), PluginError> {
        let port = host::get_config("port")
            .and_then(|p| p.trim_matches('"').parse().ok())
            .unwrap_or(9);
        match (tcp(port), lookup()) {
            (Err(tcp), Err(lookup)) => Err(PluginError::Other(format!(
                "sockets refused: tcp: {tcp}; lookup: {lookup}"
            ))),
            (Ok(done), _) | (_, Ok(done)) => Err(PluginError::Other(done)),
        }
    }
}

export!(SocketProbe);
