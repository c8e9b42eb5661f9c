//! `MetricsServer` under a flood of idle connections: a fixed number of
//! threads, a bounded number of open connections, timeouts that close idle
//! clients, and a scrape that still answers at once.
//!
//! Its own test binary, so `/proc/self/task` counts only this test's threads.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use healthprobe_shell::metrics::{Metrics, MetricsServer};
use healthprobe_tests::{HANG_GUARD, wait_until};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

/// Whether the server has closed `stream` (a read sees end of file or a reset).
fn closed_by_server(mut stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).expect("nonblocking");
    let mut byte = [0_u8; 1];
    let closed = match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(err) => err.kind() != ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).expect("blocking");
    closed
}

fn scrape(addr: std::net::SocketAddr) -> (Duration, String) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(MetricsServer::TIMEOUT))
        .expect("read timeout");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("a whole response");
    (started.elapsed(), response)
}

#[test]
fn a_thousand_idle_connections_cost_no_threads_and_a_scrape_still_answers() {
    let before = threads();
    let metrics = Arc::new(Metrics::new(Duration::from_secs(1), Duration::from_secs(2)));
    let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), metrics, Arc::default())
        .expect("start the metrics server");
    let addr = server.local_addr();

    // 1,000 clients that connect and never finish a request: most send
    // nothing, every tenth half a request line.
    let idle: Vec<TcpStream> = (0..1000)
        .map(|i| {
            let mut stream = TcpStream::connect(addr).expect("connect an idle client");
            if i % 10 == 0 {
                stream.write_all(b"GET /metr").expect("half a request");
            }
            stream
        })
        .collect();
    // The server has taken them all in once it closed the oldest to let the
    // last ones in: it closes one only when it holds the most it may.
    assert!(
        wait_until(HANG_GUARD, || {
            let closed = idle
                .iter()
                .filter(|stream| closed_by_server(stream))
                .count();
            closed >= 1000 - MetricsServer::MAX_CONNECTIONS
        }),
        "the server never took the 1,000 connections in"
    );

    let during = threads();
    assert!(
        during <= before + 16,
        "{during} threads with 1,000 idle connections (before the server: {before})"
    );

    // A scrape after the flood answers, whole, without waiting for an idle
    // connection's time to run out (16 ms at most seen at a load of 9).
    let (took, response) = scrape(addr);
    assert!(
        response.starts_with("HTTP/1.1 200 OK\r\n"),
        "{response:.200}"
    );
    assert!(
        response.contains("healthprobe_ticks_total"),
        "{response:.400}"
    );
    assert!(response.ends_with("# EOF\n"), "{response:.400}");
    assert!(took < MetricsServer::TIMEOUT, "the scrape took {took:?}");

    // Open connections are bounded: the oldest were closed to let new ones in.
    let open = idle
        .iter()
        .filter(|stream| !closed_by_server(stream))
        .count();
    assert!(
        open <= MetricsServer::MAX_CONNECTIONS,
        "{open} of 1,000 idle connections open"
    );

    // And the rest are closed once their time to send a request is up.
    assert!(
        wait_until(MetricsServer::TIMEOUT + HANG_GUARD, || {
            idle.iter().all(closed_by_server)
        }),
        "idle connections still open long after {:?}",
        MetricsServer::TIMEOUT
    );
    assert!(threads() <= before + 16);
    assert!(scrape(addr).1.starts_with("HTTP/1.1 200 OK\r\n"));

    drop(idle);
    drop(server);
    // (The other test of this binary may be running its own server.)
    assert!(
        threads() <= before + 4,
        "the server's thread ends with it: {} threads, {before} before",
        threads()
    );
}

#[test]
fn a_request_head_over_the_cap_is_refused_and_the_server_keeps_serving() {
    let metrics = Arc::new(Metrics::new(Duration::from_secs(1), Duration::from_secs(2)));
    let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), metrics, Arc::default())
        .expect("start the metrics server");
    let addr = server.local_addr();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut request = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
    request.resize(MetricsServer::MAX_HEAD + 100, b'a');
    let _ = stream.write_all(&request);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 431 "), "{response:.200}");
    assert!(scrape(addr).1.starts_with("HTTP/1.1 200 OK\r\n"));
}
