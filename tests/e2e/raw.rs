//! Raw-socket HTTP/1.1 for the tests that need what an HTTP client hides:
//! a request cut off half-way, a body trickled a byte at a time, an idle
//! keep-alive connection, several requests on one connection.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A connection to `addr` whose reads give up after `read_timeout`.
pub fn connect(addr: &str, read_timeout: Duration) -> TcpStream {
    let conn = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    conn.set_read_timeout(Some(read_timeout)).unwrap();
    conn
}

pub fn send(conn: &mut TcpStream, bytes: &[u8]) {
    conn.write_all(bytes)
        .unwrap_or_else(|e| panic!("write {:?}: {e}", String::from_utf8_lossy(bytes)));
}

/// One response: status line, headers (names in lower case) and body.
#[derive(Debug)]
pub struct Response {
    pub head: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {:?}", self.head))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?} in {self:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Reads one response from `conn`, taking `leftover` bytes already read
/// first; a response to HEAD (`head_only`) has no body whatever its
/// `content-length` says. Returns it and what was read past its end.
pub fn read_response_after(
    conn: &mut TcpStream,
    mut got: Vec<u8>,
    head_only: bool,
) -> (Response, Vec<u8>) {
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&got[..end]).into_owned();
            let mut lines = text.split("\r\n");
            let head = lines.next().unwrap_or_default().to_string();
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let length = if head_only {
                0
            } else {
                headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .map(|(_, v)| v.parse::<usize>().unwrap())
                    .unwrap_or(0)
            };
            if got.len() >= end + 4 + length {
                let body = got[end + 4..end + 4 + length].to_vec();
                let rest = got[end + 4 + length..].to_vec();
                return (
                    Response {
                        head,
                        headers,
                        body,
                    },
                    rest,
                );
            }
        }
        let n = conn.read(&mut buf).unwrap_or_else(|e| {
            panic!(
                "reading a response: {e}; got so far {:?}",
                String::from_utf8_lossy(&got)
            )
        });
        assert!(
            n > 0,
            "the connection closed mid-response after {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}

pub fn read_response(conn: &mut TcpStream) -> Response {
    read_response_after(conn, Vec::new(), false).0
}

/// Waits up to `limit` for the server to close `conn`; returns how long
/// that took from `since` and the bytes that came before the close.
/// Panics if it stays open.
pub fn wait_closed(conn: &mut TcpStream, since: Instant, limit: Duration) -> (Duration, Vec<u8>) {
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return (since.elapsed(), got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            // A close with unread request bytes is a reset.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (since.elapsed(), got),
            Err(e) => panic!("reading until close: {e}"),
        }
        assert!(
            since.elapsed() < limit,
            "the connection is still open after {limit:?}; it sent {:?}",
            String::from_utf8_lossy(&got)
        );
    }
}

/// Sends one request with `body` (and a `content-length`) on a new
/// connection and reads its answer.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut conn = connect(addr, Duration::from_secs(120));
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    head += "\r\n";
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    send(&mut conn, &bytes);
    read_response_after(&mut conn, Vec::new(), method == "HEAD").0
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}
