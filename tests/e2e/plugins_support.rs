//! Helpers shared by the plugin tests: the plugins built from source, a tiny
//! HTTP listener that records what it is sent, and `/api/plugins` lookups.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Service, wait_for, wasm_plugins};

/// The bytes of a plugin built from source, by file name (`panicker.wasm`),
/// looked up among the first-party plugins, then the test plugins.
pub fn wasm(file: &str) -> Vec<u8> {
    let (first_party, test) = wasm_plugins();
    for dir in [&first_party, &test] {
        let path = dir.join(file);
        if path.is_file() {
            return std::fs::read(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        }
    }
    panic!(
        "{file} was not built: not in {} nor in {}",
        first_party.display(),
        test.display()
    );
}

/// Replaces `path` with `bytes` in one step (write a temporary file next to
/// it, then rename), so the service's folder scan never sees half a file.
pub fn replace_file(path: &Path, bytes: &[u8]) {
    let dir = path.parent().expect("a file in a folder");
    std::fs::create_dir_all(dir).unwrap();
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("renaming to {}: {e}", path.display()));
}

// ---------------------------------------------------------------------------
// /api/plugins
// ---------------------------------------------------------------------------

/// `GET /api/plugins`, asserting it is an array.
pub fn plugins(svc: &Service) -> Vec<Value> {
    match svc.get_json("/api/plugins") {
        Value::Array(list) => list,
        other => panic!("GET /api/plugins: expected an array, got {other}"),
    }
}

/// The `/api/plugins` entry named `name`, if any.
pub fn plugin(svc: &Service, name: &str) -> Option<Value> {
    plugins(svc).into_iter().find(|p| p["name"] == name)
}

/// Polls `/api/plugins` until the entry named `name` satisfies `ok`, and
/// returns it; panics after `timeout` with the last list seen.
pub fn wait_plugin(
    svc: &Service,
    name: &str,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Vec::new();
    let found = wait_for(timeout, || {
        last = plugins(svc);
        last.iter().find(|p| p["name"] == name && ok(p)).cloned()
    });
    found.unwrap_or_else(|| {
        panic!(
            "timed out after {timeout:?} waiting for plugin {name}: {what}\nlast /api/plugins: {}\n{}",
            Value::Array(last),
            svc.log_tail()
        )
    })
}

/// A counter of an `/api/plugins` entry (`calls`, `failures`, `reloads`).
pub fn count(entry: &Value, key: &str) -> u64 {
    entry[key]
        .as_u64()
        .unwrap_or_else(|| panic!("plugin entry without a numeric {key}: {entry}"))
}

/// An entry's `last_error`, or "" when there is none.
pub fn last_error(entry: &Value) -> String {
    entry["last_error"].as_str().unwrap_or_default().to_string()
}

// ---------------------------------------------------------------------------
// A recording HTTP listener
// ---------------------------------------------------------------------------

/// One request the listener received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("request body is not JSON ({e}): {self:?}"))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP/1.1 server on `127.0.0.1:<random port>` that answers every
/// request with 200 and records it. Stops when dropped.
pub struct Listener {
    pub port: u16,
    requests: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Listener {
    pub fn start() -> Listener {
        let socket = TcpListener::bind("127.0.0.1:0").expect("bind a test listener");
        socket.set_nonblocking(true).unwrap();
        let port = socket.local_addr().unwrap().port();
        let listener = Listener {
            port,
            requests: Arc::default(),
            connections: Arc::default(),
            stop: Arc::default(),
        };
        let (requests, connections, stop) = (
            listener.requests.clone(),
            listener.connections.clone(),
            listener.stop.clone(),
        );
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match socket.accept() {
                    Ok((stream, _)) => {
                        connections.fetch_add(1, Ordering::SeqCst);
                        let requests = requests.clone();
                        thread::spawn(move || serve(stream, &requests));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        listener
    }

    /// `http://127.0.0.1:<port>`, the origin to put in `allowed_hosts`.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Received> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests received on `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// TCP connections accepted so far, whether or not a request followed.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads requests from one connection (keep-alive allowed), answers 200.
fn serve(stream: TcpStream, requests: &Mutex<Vec<Received>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
            return;
        };
        let (method, path) = (method.to_string(), path.to_string());
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            match reader.read_line(&mut h) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let mut size = String::new();
                if reader.read_line(&mut size).is_err() {
                    return;
                }
                let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                    .unwrap_or(0);
                let mut chunk = vec![0; size + 2];
                if reader.read_exact(&mut chunk).is_err() {
                    return;
                }
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body = vec![0; len];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        }
        requests.lock().unwrap().push(Received {
            method,
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        let answer = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok";
        if writer.write_all(answer.as_bytes()).is_err() || writer.flush().is_err() {
            return;
        }
    }
}
