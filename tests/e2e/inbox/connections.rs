//! No client can hold a connection hostage: headers that stop half-way, a
//! body trickled a byte at a time and an idle keep-alive connection are each
//! closed when their `[http]` timeout runs out, the idle and header phases
//! timed apart; past `max_connections`, new connections wait for a free
//! slot. HEAD is answered on every GET route. All through raw sockets.

use std::time::{Duration, Instant};

use crate::harness::Launch;
use crate::raw::{connect, read_response, read_response_after, send, wait_closed};

/// Long enough to tell a timeout from a prompt close on a loaded machine.
const SHORT: &str = "1s";
/// The deadline for a close that should come after `SHORT`.
const GENEROUS: Duration = Duration::from_secs(20);

fn project(http: &str) -> String {
    format!(
        r#"
[http]
{http}

[jobs.never]
trigger = "never"
expression = "fn(state => state)"

[triggers.never]
criteria = {{ kind = "never-sent" }}
"#
    )
}

#[test]
fn headers_that_stop_half_way_are_cut_off_at_the_header_timeout() {
    let svc = Launch::new(&project(&format!(
        "header_timeout = \"{SHORT}\"\nidle_timeout = \"60s\""
    )))
    .start();
    let mut conn = connect(svc.addr(), GENEROUS);
    send(&mut conn, b"POST /inbox HTTP/1.1\r\nHost: x\r\n");
    let sent = Instant::now();
    let (took, answer) = wait_closed(&mut conn, sent, GENEROUS);
    assert!(
        took >= Duration::from_millis(900),
        "closed after {took:?}, before the 1 s header timeout"
    );
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
    // A head that arrives in parts within the timeout is served.
    let mut conn = connect(svc.addr(), GENEROUS);
    send(&mut conn, b"GET /healthz HTTP/1.1\r\n");
    std::thread::sleep(Duration::from_millis(300));
    send(&mut conn, b"Host: x\r\n\r\n");
    assert_eq!(read_response(&mut conn).status(), 200);
}

#[test]
fn a_trickled_body_gets_408_at_the_body_timeout() {
    let svc = Launch::new(&project(&format!("body_timeout = \"{SHORT}\""))).start();
    let mut conn = connect(svc.addr(), GENEROUS);
    send(
        &mut conn,
        b"POST /inbox HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"a\":\"",
    );
    let started = Instant::now();
    let mut writer = conn.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        use std::io::Write;
        // One byte every 100 ms would take 100 s for the whole body.
        for _ in 0..600 {
            if writer.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let answer = read_response(&mut conn);
    let took = started.elapsed();
    assert_eq!(answer.status(), 408, "{answer:?}");
    let errors = answer.json()["errors"].clone();
    assert!(
        errors[0].as_str().unwrap().contains("body_timeout"),
        "{errors}"
    );
    assert_eq!(answer.header("connection"), Some("close"), "{answer:?}");
    assert!(
        took >= Duration::from_millis(900) && took < GENEROUS,
        "answered after {took:?}"
    );
    wait_closed(&mut conn, Instant::now(), GENEROUS);
    trickle.join().unwrap();
}

#[test]
fn idle_connections_close_at_the_idle_timeout_and_only_then() {
    let svc = Launch::new(&project(&format!(
        "idle_timeout = \"{SHORT}\"\nheader_timeout = \"30s\""
    )))
    .start();
    // A keep-alive connection after its answer.
    let mut conn = connect(svc.addr(), GENEROUS);
    send(&mut conn, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(read_response(&mut conn).status(), 200);
    let answered = Instant::now();
    let (took, rest) = wait_closed(&mut conn, answered, GENEROUS);
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    // A connection that never sends a byte.
    let mut silent = connect(svc.addr(), GENEROUS);
    let opened = Instant::now();
    let (took, _) = wait_closed(&mut silent, opened, GENEROUS);
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    // Requests every 400 ms keep a connection open well past the timeout.
    let mut busy = connect(svc.addr(), GENEROUS);
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2500) {
        send(&mut busy, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(read_response(&mut busy).status(), 200);
        std::thread::sleep(Duration::from_millis(400));
    }
}

#[test]
fn idle_time_does_not_count_against_the_header_timeout() {
    let svc = Launch::new(&project("header_timeout = \"1s\"\nidle_timeout = \"30s\"")).start();
    let mut conn = connect(svc.addr(), GENEROUS);
    send(&mut conn, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(read_response(&mut conn).status(), 200);
    // Idle for twice the header timeout, then a request in one piece.
    std::thread::sleep(Duration::from_secs(2));
    send(&mut conn, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(read_response(&mut conn).status(), 200);
}

#[test]
fn connections_past_the_limit_wait_for_a_free_slot() {
    let svc = Launch::new(&project("max_connections = 2\nidle_timeout = \"60s\"")).start();
    let mut first = connect(svc.addr(), GENEROUS);
    let mut second = connect(svc.addr(), GENEROUS);
    for conn in [&mut first, &mut second] {
        send(conn, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(read_response(conn).status(), 200);
    }
    // The third is not served while both slots are held...
    let mut third = connect(svc.addr(), Duration::from_millis(1500));
    send(&mut third, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = [0u8; 64];
    let waited = std::io::Read::read(&mut third, &mut buf);
    assert!(
        waited.is_err(),
        "the third connection was answered while the limit was reached: {waited:?}"
    );
    // ...and is once one of them closes.
    drop(first);
    third.set_read_timeout(Some(GENEROUS)).unwrap();
    assert_eq!(read_response(&mut third).status(), 200);
    // The operator is told (once a minute at most).
    svc.wait_until("the limit's warning", GENEROUS, || {
        svc.logs()
            .contains("all connection slots are taken ([http] max_connections)")
            .then_some(())
    });
}

#[test]
fn head_is_answered_on_every_get_route_without_a_body() {
    let svc = Launch::new(&project("")).start();
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/jobs",
        "/api/runs",
        "/api/plugins",
        "/api/stats",
        "/api/messages",
        "/",
        "/dashboard/app.js",
    ] {
        let mut conn = connect(svc.addr(), GENEROUS);
        // HEAD then GET on one connection: had the HEAD answer carried a
        // body, the GET answer would not start where it ends.
        send(
            &mut conn,
            format!(
                "HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\nGET {path} HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            .as_bytes(),
        );
        let (head, rest) = read_response_after(&mut conn, Vec::new(), true);
        let (get, _) = read_response_after(&mut conn, rest, false);
        assert_eq!(head.status(), get.status(), "{path}: {head:?} / {get:?}");
        assert_eq!(get.status(), 200, "{path}: {get:?}");
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "{path}"
        );
        assert!(head.header("content-length").is_some(), "{path}: {head:?}");
        // (The figures of those two change between the two requests.)
        if path != "/metrics" && path != "/api/stats" {
            assert_eq!(
                head.header("content-length"),
                get.header("content-length"),
                "{path}"
            );
        }
    }
    // HEAD on a POST-only route is refused like any other method.
    let mut conn = connect(svc.addr(), GENEROUS);
    send(&mut conn, b"HEAD /inbox HTTP/1.1\r\nHost: x\r\n\r\n");
    let (refused, _) = read_response_after(&mut conn, Vec::new(), true);
    assert_eq!(refused.status(), 405, "{refused:?}");
}
