//! What a plugin's `Store` holds: its WASI context (only what was granted),
//! the outgoing-HTTP gate, memory limits, and the `host` imports.
//!
//! Outbound HTTP is checked here, in the hook that sends every request: a
//! request whose origin is not in the plugin's `allowed_hosts` is refused
//! with `HttpRequestDenied` before any connection is made. A guest's stderr
//! goes to the service's log, and its last lines are kept to explain a
//! trap (a Rust panic prints its message there just before it aborts).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use tracing::{Level, debug, error, info, trace, warn};
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::bindings::{host, types};

pub struct PluginState {
    pub plugin: Arc<str>,
    pub config: Arc<Vec<(String, String)>>,
    pub wasi: WasiCtx,
    pub http: WasiHttpCtx,
    pub gate: OriginGate,
    pub table: ResourceTable,
    pub limits: Limits,
}

/// The store's limits (the plugin's memory cap, a trap when a memory or
/// table may not grow), counting the bytes of linear memory the store's
/// instances hold: what decides whether an instance is kept for another
/// call (see `reuse`).
pub struct Limits {
    inner: StoreLimits,
    memory: usize,
}

impl Limits {
    pub fn new(inner: StoreLimits) -> Limits {
        Limits { inner, memory: 0 }
    }

    /// Bytes of linear memory of every instance in the store, as grown so far.
    pub fn memory(&self) -> usize {
        self.memory
    }
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        if allowed {
            // A memory is created by growing it from 0 to its minimum.
            self.memory = self.memory.saturating_add(desired.saturating_sub(current));
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for PluginState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            hooks: &mut self.gate,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

impl types::Host for PluginState {}

impl host::Host for PluginState {
    async fn log(&mut self, level: types::Level, message: String) {
        let plugin = &*self.plugin;
        match level {
            types::Level::Trace => trace!(target: "plugin", plugin, "{message}"),
            types::Level::Debug => debug!(target: "plugin", plugin, "{message}"),
            types::Level::Info => info!(target: "plugin", plugin, "{message}"),
            types::Level::Warn => warn!(target: "plugin", plugin, "{message}"),
            types::Level::Error => error!(target: "plugin", plugin, "{message}"),
        }
    }

    async fn get_config(&mut self, key: String) -> Option<String> {
        self.config
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }

    async fn get_all_config(&mut self) -> Vec<(String, String)> {
        self.config.to_vec()
    }
}

/// The allow-list for outgoing requests: normalized `scheme://host:port` origins.
pub struct OriginGate {
    pub plugin: Arc<str>,
    pub allowed: Arc<Vec<String>>,
}

impl WasiHttpHooks for OriginGate {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        let origin = origin_of(request.uri());
        if !origin.as_ref().is_some_and(|o| self.allowed.contains(o)) {
            warn!(target: "plugin", plugin = &*self.plugin, uri = %request.uri(), "outgoing request refused: not in allowed_hosts");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        drop(fut);
        Box::new(async move {
            use http_body_util::BodyExt;
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

fn origin_of(uri: &http::Uri) -> Option<String> {
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let host = uri.host()?.to_ascii_lowercase();
    let port = uri.port_u16().or(match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    })?;
    Some(format!("{scheme}://{host}:{port}"))
}

/// A guest's stdout or stderr, forwarded line by line to the service's log.
pub struct LogStream {
    pub plugin: Arc<str>,
    pub level: Level,
    /// Where stderr's recent lines are kept, if anywhere.
    pub tail: Option<Arc<StderrTail>>,
}

/// The last lines a plugin wrote to stderr, with when, across its stores.
#[derive(Debug, Default)]
pub struct StderrTail {
    lines: Mutex<VecDeque<(Instant, String)>>,
}

/// Lines kept, and characters kept of each.
const TAIL_LINES: usize = 16;
const TAIL_LINE_CHARS: usize = 500;

impl StderrTail {
    fn push(&self, line: &str) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back((Instant::now(), line.chars().take(TAIL_LINE_CHARS).collect()));
    }

    /// The lines written since `start`, oldest first.
    pub fn since(&self, start: Instant) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(at, _)| *at >= start)
            .map(|(_, line)| line.clone())
            .collect()
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            plugin: self.plugin.clone(),
            level: self.level,
            tail: self.tail.clone(),
            buf: Vec::new(),
        })
    }
}

struct LineWriter {
    plugin: Arc<str>,
    level: Level,
    tail: Option<Arc<StderrTail>>,
    buf: Vec<u8>,
}

const MAX_GUEST_LINE: usize = 8 * 1024;

impl LineWriter {
    fn emit(&mut self, upto: usize) {
        let line: Vec<u8> = self.buf.drain(..upto).collect();
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if let Some(tail) = &self.tail {
            tail.push(text);
        }
        let plugin = &*self.plugin;
        if self.level == Level::WARN {
            warn!(target: "plugin", plugin, stream = "stderr", "{text}");
        } else {
            info!(target: "plugin", plugin, stream = "stdout", "{text}");
        }
    }
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.buf.extend_from_slice(data);
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            self.emit(pos + 1);
        }
        if self.buf.len() > MAX_GUEST_LINE {
            let n = self.buf.len();
            self.emit(n);
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if !self.buf.is_empty() {
            let n = self.buf.len();
            self.emit(n);
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn origins_include_default_ports() {
        let o = |u: &str| super::origin_of(&u.parse().unwrap());
        assert_eq!(
            o("http://127.0.0.1:9000/hook").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(
            o("https://API.example.org/x").as_deref(),
            Some("https://api.example.org:443")
        );
        assert_eq!(o("/relative"), None);
    }
}
