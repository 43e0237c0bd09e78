//! Graceful shutdown: SIGTERM while a run is in progress lets the run finish,
//! the service exits 0, and the finished run and its state are there after a
//! restart on the same data directory. A request open at SIGTERM gets its
//! answer; idle keep-alive connections are closed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use crate::harness::{Launch, RUN_TIMEOUT, Service, temp_dir};

const SLOW_PROJECT: &str = include_str!("../projects/slow/project.toml");

/// Waits until the `slow` job has a run in progress.
fn wait_running(svc: &Service) {
    svc.poll_until("the slow run to start", RUN_TIMEOUT, || {
        let runs = svc.runs("slow");
        runs.iter()
            .find(|r| r["status"] == "running")
            .map(|_| ())
            .ok_or_else(|| format!("runs of slow: {runs:?}"))
    });
}

#[test]
fn sigterm_lets_running_runs_finish() {
    let data = temp_dir("e2e-shutdown-");

    let mut svc = Launch::new(SLOW_PROJECT).data_dir(data.path()).start();
    let reply = svc.post_json("/inbox", r#"{"kind":"slow","n":1}"#);
    assert_eq!(reply.json["data"], serde_json::json!(["slow"]), "{reply:?}");
    wait_running(&svc);

    let status = svc.stop();
    assert!(
        status.success(),
        "SIGTERM should give a clean exit, got {status}\n{}",
        svc.log_tail()
    );
    drop(svc);

    let svc = Launch::new(SLOW_PROJECT).data_dir(data.path()).start();
    let runs = svc.runs("slow");
    assert_eq!(runs.len(), 1, "runs after restart: {runs:?}");
    assert_eq!(
        runs[0]["status"], "success",
        "the interrupted run: {}",
        runs[0]
    );
    assert_eq!(runs[0]["exit_code"], 0);
    let state = svc
        .job_state("slow")
        .expect("state of the run that finished during shutdown");
    assert_eq!(state["data"]["n"], 1, "{state}");
}

/// Reads one HTTP/1.1 response (headers and a `content-length` body) from `conn`.
fn read_response(conn: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return text;
            }
        }
        // Bounded by the connection's read timeout, which the callers set.
        let n = conn
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("reading a response: {e}; got so far {text:?}"));
        assert!(n > 0, "the connection closed mid-response after {text:?}");
        got.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn sigterm_answers_the_open_request_and_closes_idle_connections() {
    let mut svc = Launch::new(SLOW_PROJECT)
        .env("ENDPOINT_STYLE", "sync")
        .start();
    let addr = svc.addr().to_string();

    // A keep-alive connection that has had its answer and now sits idle.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.set_read_timeout(Some(RUN_TIMEOUT)).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        .unwrap();
    assert!(read_response(&mut idle).starts_with("HTTP/1.1 200"));

    // A sync receipt whose run takes three seconds: open when SIGTERM comes.
    let open = std::thread::spawn(move || {
        let body = r#"{"kind":"slow","n":2}"#;
        let mut conn = TcpStream::connect(&addr).unwrap();
        conn.set_read_timeout(Some(RUN_TIMEOUT)).unwrap();
        write!(
            conn,
            "POST /inbox HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let answer = read_response(&mut conn);
        (answer, Instant::now())
    });
    wait_running(&svc);

    let idle_closed = std::thread::spawn(move || {
        let mut rest = Vec::new();
        let unread = idle.read_to_end(&mut rest).unwrap_or_else(|e| {
            panic!(
                "the idle keep-alive connection was not closed within {RUN_TIMEOUT:?} \
                 (its read timeout) of SIGTERM: {e}; read so far {:?}",
                String::from_utf8_lossy(&rest)
            )
        });
        (unread, Instant::now())
    });
    let status = svc.stop();
    assert!(
        status.success(),
        "exit after SIGTERM: {status}\n{}",
        svc.log_tail()
    );
    let (answer, answered) = open.join().unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 201"),
        "the open request's answer: {answer}"
    );
    assert!(answer.contains(r#""n":2"#), "{answer}");
    // The idle connection was closed when shutdown began, while the open
    // request was still running, not when the process went away. The two
    // moments are the job's three seconds apart, far more than a busy
    // machine takes to wake a thread blocked in read.
    let (unread, closed) = idle_closed.join().unwrap();
    assert_eq!(unread, 0);
    assert!(
        closed < answered,
        "the idle connection closed only after the open request's answer"
    );
}

#[test]
fn sigterm_closes_half_received_and_idle_connections_at_once() {
    // A grace period far longer than the test allows for the exit.
    let project = format!("{SLOW_PROJECT}\n[engine]\nshutdown_grace = \"120s\"\n");
    let mut svc = Launch::new(&project).env("ENDPOINT_STYLE", "sync").start();
    let addr = svc.addr().to_string();

    // Headers that stopped half-way, and a connection that never sent a byte.
    let mut half = crate::raw::connect(&addr, RUN_TIMEOUT);
    crate::raw::send(&mut half, b"POST /inbox HTTP/1.1\r\nHost: x\r\n");
    let mut silent = crate::raw::connect(&addr, RUN_TIMEOUT);
    // A sync receipt whose run takes three seconds, open when SIGTERM comes.
    let open = std::thread::spawn(move || {
        let body = r#"{"kind":"slow","n":3}"#;
        let mut conn = crate::raw::connect(&addr, RUN_TIMEOUT);
        crate::raw::send(
            &mut conn,
            format!(
                "POST /inbox HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        (crate::raw::read_response(&mut conn), Instant::now())
    });
    svc.wait_until("the slow run to start", RUN_TIMEOUT, || {
        svc.runs("slow")
            .into_iter()
            .find(|r| r["status"] == "running")
    });
    let closes = std::thread::spawn(move || {
        let since = Instant::now();
        let limit = std::time::Duration::from_secs(30);
        let half = crate::raw::wait_closed(&mut half, since, limit);
        let silent = crate::raw::wait_closed(&mut silent, since, limit);
        (half, silent, Instant::now())
    });
    let signalled = Instant::now();
    let status = svc.stop();
    let exited = signalled.elapsed();
    assert!(
        status.success(),
        "exit after SIGTERM: {status}\n{}",
        svc.log_tail()
    );
    let (answer, answered) = open.join().unwrap();
    assert_eq!(
        answer.status(),
        201,
        "the open request's answer: {answer:?}"
    );
    let ((_, half_got), (_, silent_got), closed) = closes.join().unwrap();
    assert!(half_got.is_empty() && silent_got.is_empty());
    assert!(
        closed < answered,
        "the half-received and silent connections closed only after the open request's answer"
    );
    // The run takes 3 s; the 120 s grace was not waited out for the others.
    assert!(
        exited < std::time::Duration::from_secs(40),
        "the exit took {exited:?}\n{}",
        svc.log_tail()
    );
}
