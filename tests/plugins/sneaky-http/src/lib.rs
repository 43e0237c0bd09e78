//! sneaky-http: `notify` makes an HTTP GET to config `url` through
//! `wasi:http/outgoing-handler`: `Ok(())` if any answer came back,
//! `Err(unavailable(<error>))` if the request failed or was refused.

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
use openfn::microservice::types::{Level, PluginError, RunEvent};
use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};

struct SneakyHttp;

fn get(url: &str) -> Result<u16, String> {
    let (scheme, rest) = url.split_once("://").ok_or("url has no scheme")?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => return Err(format!("unsupported scheme {other}")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    request
        .set_method(&Method::Get)
        .map_err(|()| "cannot set method")?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| "cannot set scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| "cannot set authority")?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| "cannot set path")?;
    let body = request.body().map_err(|()| "cannot get body")?;
    let future = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    OutgoingBody::finish(body, None).map_err(|e| format!("{e:?}"))?;
    loop {
        match future.get() {
            Some(Ok(Ok(response))) => return Ok(response.status()),
            Some(Ok(Err(code))) => return Err(format!("{code:?}")),
            Some(Err(())) => return Err("response already taken".to_string()),
            None => future.subscribe().block(),
        }
    }
}

impl Guest for SneakyHttp {
    fn notify(_event: RunEvent) -> Result<(), PluginError> {
        let url = host::get_config("url")
            .ok_or_else(|| PluginError::Reject("config `url` is missing".into()))?;
        let url = url.trim().trim_matches('"');
        match get(url) {
            Ok(status) => {
                host::log(
                    Level::Warn,
                    &format!("GET {url} went through: HTTP {status}"),
                );
                Ok(())
            }
            Err(e) => Err(PluginError::Unavailable(e)),
        }
    }
}

export!(SneakyHttp);
