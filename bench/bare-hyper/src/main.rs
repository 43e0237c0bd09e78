//! bare-hyper: the ceiling for `POST /inbox` throughput on this machine.
//!
//! A hyper 1.x HTTP/1 server on a tokio multi-thread runtime, wired the way
//! the service's `host/src/http/mod.rs` is (one task per connection,
//! `http1::Builder::serve_connection`, `service_fn`), that reads each
//! request body and answers `202` with the body the service sends for a
//! receipt that matched no job. No routing, no JSON parsing, no logging, no
//! store: whatever the service does beyond this is what the benchmark shows.
//!
//! Usage: `bare-hyper [ADDR]` (default `127.0.0.1:0`; env `PORT` sets the
//! port when no ADDR is given). Logs `listening on http://ADDR` to stderr.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const ACCEPTED: &[u8] =
    br#"{"meta":{"message":"Data accepted and processing has begun."},"data":[],"errors":[]}"#;

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read the whole body, as the service does before it answers.
    let _ = req.into_body().collect().await;
    let mut res = Response::new(Full::new(Bytes::from_static(ACCEPTED)));
    *res.status_mut() = StatusCode::ACCEPTED;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(res)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = match std::env::args().nth(1) {
        Some(a) => a.parse().expect("ADDR must look like 127.0.0.1:8080"),
        None => {
            let port = std::env::var("PORT")
                .ok()
                .and_then(|p| p.parse::<u16>().ok())
                .unwrap_or(0);
            SocketAddr::from(([127, 0, 0, 1], port))
        }
    };
    let listener = TcpListener::bind(addr).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                eprintln!("accept failed: {e}");
                continue;
            }
        };
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}
