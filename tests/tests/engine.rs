//! Self-tests of the test engine, with a raw `TcpStream` client: each
//! behaviour answers what it should, a hang holds, a stop is clean.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use healthprobe_tests::{
    Behaviour, EventFleet, Fleet, Gate, HUGE_BODY_BYTES, HUGE_HEADER_BYTES, MAX_REQUEST_HEAD,
    RuntimeRecord, ScratchDir, TestEngine, wait_until,
};

/// Generous bound for anything that should happen "at once" on loopback.
const SOON: Duration = Duration::from_secs(5);

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect to the engine");
    stream
        .set_read_timeout(Some(SOON))
        .expect("set a read timeout");
    stream
}

fn send_get(stream: &mut TcpStream, path: &str) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: probe.test\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .expect("send the request");
}

/// `GET path` on a fresh connection; everything the engine sent until it closed.
fn get(addr: SocketAddr, path: &str) -> Vec<u8> {
    let mut stream = connect(addr);
    send_get(&mut stream, path);
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("read the response to its end");
    response
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn status_line(response: &[u8]) -> String {
    text(response).lines().next().unwrap_or_default().to_owned()
}

/// Read until the end of the response head; the head, without the body.
fn read_head(stream: &mut TcpStream, limit: usize) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0_u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < limit {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => head.push(byte[0]),
            Err(err) => panic!("reading the head failed after {} bytes: {err}", head.len()),
        }
    }
    head
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

/// Resident set size of this process in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

#[test]
fn status_200_answers_ok_and_records_the_request() {
    let engine = TestEngine::start(Behaviour::Status(200)).unwrap();
    let response = text(&get(engine.addr(), "/healthz"));
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.contains("Connection: close\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nok\n"), "{response}");

    assert_eq!(engine.requests(), 1);
    assert_eq!(engine.connections(), 1);
    assert_eq!(engine.paths(), ["/healthz"]);
    let seen = &engine.seen()[0];
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.host.as_deref(), Some("probe.test"));
    assert!(
        seen.head.starts_with("GET /healthz HTTP/1.1\r\n"),
        "{seen:?}"
    );
}

#[test]
fn any_status_is_answered_as_set() {
    let engine = TestEngine::start(Behaviour::Status(200)).unwrap();
    for status in [201, 204, 301, 404, 500, 503, 599] {
        engine.set(Behaviour::Status(status));
        let response = get(engine.addr(), "/healthz");
        let line = status_line(&response);
        assert!(line.starts_with(&format!("HTTP/1.1 {status} ")), "{line}");
        let response = text(&response);
        if status == 204 {
            assert!(response.ends_with("Content-Length: 0\r\nConnection: close\r\n\r\n"));
        }
    }
    assert_eq!(engine.requests(), 7);
}

#[test]
fn paths_are_recorded_exactly_as_sent() {
    let engine = TestEngine::start(Behaviour::Status(404)).unwrap();
    get(engine.addr(), "/healthz");
    get(engine.addr(), "//healthz");
    get(engine.addr(), "/other?x=1");
    assert_eq!(engine.paths(), ["/healthz", "//healthz", "/other?x=1"]);
}

#[test]
fn script_answers_in_order_and_repeats_its_last_step() {
    let engine = TestEngine::start(Behaviour::Script(vec![
        Behaviour::Status(503),
        Behaviour::Close,
        Behaviour::Status(200),
    ]))
    .unwrap();
    let lines: Vec<String> = (0..5)
        .map(|_| status_line(&get(engine.addr(), "/healthz")))
        .collect();
    assert_eq!(
        lines,
        [
            "HTTP/1.1 503 Service Unavailable",
            "",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 200 OK"
        ]
    );

    // `set` starts a script over.
    engine.set(Behaviour::Script(vec![
        Behaviour::Status(500),
        Behaviour::Status(201),
    ]));
    assert!(status_line(&get(engine.addr(), "/healthz")).contains(" 500 "));
    assert!(status_line(&get(engine.addr(), "/healthz")).contains(" 201 "));

    // An empty script closes without answering.
    engine.set(Behaviour::Script(Vec::new()));
    assert!(get(engine.addr(), "/healthz").is_empty());
    assert_eq!(engine.requests(), 8);
}

#[test]
fn hang_holds_the_connection_until_the_client_closes() {
    let engine = TestEngine::start(Behaviour::Hang).unwrap();
    let mut client = connect(engine.addr());
    send_get(&mut client, "/healthz");
    assert!(engine.wait_for_requests(1, SOON));
    assert!(wait_until(SOON, || engine.hung() == 1));
    assert_eq!(engine.serving(), 0, "a hung connection holds no thread");

    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut byte = [0_u8; 1];
    let err = client.read(&mut byte).expect_err("a hang answers nothing");
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "{err}"
    );

    drop(client);
    assert!(wait_until(SOON, || engine.hung() == 0));
    assert_eq!(engine.gauge().peak(), 1);
    assert_eq!(engine.gauge().total(), 1);
}

#[test]
fn close_and_garbage_send_no_http() {
    let engine = TestEngine::start(Behaviour::Close).unwrap();
    assert!(get(engine.addr(), "/healthz").is_empty());

    engine.set(Behaviour::Garbage);
    let garbage = get(engine.addr(), "/healthz");
    assert!(garbage.len() >= 1024, "{} bytes", garbage.len());
    assert!(!garbage.starts_with(b"HTTP/"));
    assert_eq!(engine.requests(), 2);
}

#[test]
fn redirect_points_at_another_engine_and_the_loop_at_itself() {
    let target = TestEngine::start(Behaviour::Status(200)).unwrap();
    let engine = TestEngine::start(Behaviour::Redirect(target.healthz_url())).unwrap();
    let response = text(&get(engine.addr(), "/healthz"));
    assert!(response.starts_with("HTTP/1.1 302 Found\r\n"), "{response}");
    assert_eq!(
        header(&response, "location"),
        Some(target.healthz_url()),
        "{response}"
    );

    engine.set(Behaviour::RedirectLoop);
    let response = text(&get(engine.addr(), "/healthz"));
    assert_eq!(header(&response, "location"), Some(engine.healthz_url()));
    assert_eq!(
        target.requests(),
        0,
        "the engine itself never calls the target"
    );
}

#[test]
fn huge_header_is_one_200_kb_header() {
    let engine = TestEngine::start(Behaviour::HugeHeader).unwrap();
    let response = get(engine.addr(), "/healthz");
    assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(
        response.len() > HUGE_HEADER_BYTES,
        "{} bytes",
        response.len()
    );
    let padding = header(&text(&response), "x-padding").expect("an X-Padding header");
    assert_eq!(padding.len(), HUGE_HEADER_BYTES);
    assert!(wait_until(SOON, || engine.serving() == 0));
}

#[test]
fn padded_head_is_exactly_the_size_asked_for() {
    let engine = TestEngine::start(Behaviour::PaddedHead(16 * 1024)).unwrap();
    let response = get(engine.addr(), "/healthz");
    assert_eq!(response.len(), 16 * 1024);
    assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(response.ends_with(b"aaaa\r\n\r\n"));
}

#[test]
fn huge_body_streams_lazily_and_ends_when_the_client_closes() {
    let engine = TestEngine::start(Behaviour::HugeBody).unwrap();
    let mut client = connect(engine.addr());
    send_get(&mut client, "/healthz");
    let head = text(&read_head(&mut client, 4096));
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(
        header(&head, "content-length"),
        Some(HUGE_BODY_BYTES.to_string())
    );

    // Read 16 MiB of the body: the engine must not have allocated it.
    let before = rss_kib();
    let mut chunk = vec![0_u8; 1 << 20];
    let mut body = 0_usize;
    while body < 16 << 20 {
        let read = client.read(&mut chunk).expect("read the body");
        assert_ne!(read, 0, "the body ended after {body} bytes");
        assert!(chunk[..read].iter().all(|&byte| byte == 0));
        body += read;
    }
    let grown = rss_kib().saturating_sub(before);
    assert!(grown < 32 * 1024, "RSS grew by {grown} KiB");
    assert_eq!(engine.serving(), 1);

    drop(client);
    assert!(
        wait_until(SOON, || engine.serving() == 0),
        "the body thread ends once the client closed"
    );
}

#[test]
fn trickle_sends_its_head_a_byte_at_a_time_until_the_client_closes() {
    let engine = TestEngine::start(Behaviour::Trickle).unwrap();
    let mut client = connect(engine.addr());
    send_get(&mut client, "/healthz");
    let mut received = Vec::new();
    let mut reads = 0;
    let mut buffer = [0_u8; 1024];
    while received.len() < 32 {
        let read = client.read(&mut buffer).expect("read a trickle");
        assert_ne!(read, 0, "the trickle ended");
        received.extend_from_slice(&buffer[..read]);
        reads += 1;
    }
    assert!(received.starts_with(b"HTTP/1.1 200 OK\r\nX-Trickle: "));
    assert!(reads >= 4, "32 bytes came in only {reads} reads");
    assert_eq!(engine.serving(), 1);

    drop(client);
    assert!(wait_until(SOON, || engine.serving() == 0));
}

#[test]
fn delayed_answers_after_its_delay() {
    let engine = TestEngine::start(Behaviour::Delayed {
        delay: Duration::from_millis(100),
        status: 503,
    })
    .unwrap();
    let started = Instant::now();
    let response = get(engine.addr(), "/healthz");
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert!(status_line(&response).starts_with("HTTP/1.1 503 "));
}

#[test]
fn connections_without_a_complete_head_are_not_requests() {
    let engine = TestEngine::start(Behaviour::Status(200)).unwrap();
    drop(connect(engine.addr()));
    let mut partial = connect(engine.addr());
    partial.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    drop(partial);
    let mut oversized = connect(engine.addr());
    let mut head = b"GET /healthz HTTP/1.1\r\nX-Long: ".to_vec();
    head.resize(MAX_REQUEST_HEAD + 10, b'a');
    // The engine may close before reading it all: a write error is fine.
    let _ = oversized.write_all(&head);
    let mut rest = Vec::new();
    let _ = oversized.read_to_end(&mut rest);
    assert!(rest.is_empty(), "an oversized head gets no answer");

    assert!(wait_until(SOON, || engine.connections() == 3));
    assert_eq!(engine.requests(), 0);
    // The engine still serves.
    assert!(status_line(&get(engine.addr(), "/healthz")).contains(" 200 "));
}

#[test]
fn wait_for_requests_times_out_without_requests() {
    let engine = TestEngine::start(Behaviour::Status(200)).unwrap();
    assert!(!engine.wait_for_requests(1, Duration::from_millis(50)));
    get(engine.addr(), "/healthz");
    assert!(engine.wait_for_requests(1, Duration::ZERO));
}

#[test]
fn stop_is_prompt_frees_the_port_and_closes_every_connection() {
    let engine = TestEngine::start(Behaviour::Script(vec![
        Behaviour::Hang,
        Behaviour::Trickle,
        Behaviour::HugeBody,
        Behaviour::Delayed {
            delay: Duration::from_secs(3600),
            status: 200,
        },
    ]))
    .unwrap();
    let addr = engine.addr();
    let [mut hung, mut trickled, mut body, mut delayed] = [(); 4].map(|()| {
        let mut client = connect(addr);
        send_get(&mut client, "/healthz");
        client
    });
    // A client that connected but never sent its request.
    let mut silent = connect(addr);
    assert!(engine.wait_for_requests(4, SOON));
    assert!(wait_until(SOON, || engine.hung() == 1 && engine.serving() == 4));

    let started = Instant::now();
    engine.stop();
    let stop_took = started.elapsed();
    assert!(
        stop_took < Duration::from_secs(2),
        "stop took {stop_took:?}"
    );

    // Every client sees its connection end (EOF or reset), none waits for a timeout.
    for (name, client) in [
        ("hung", &mut hung),
        ("trickled", &mut trickled),
        ("body", &mut body),
        ("delayed", &mut delayed),
        ("silent", &mut silent),
    ] {
        let mut sink = Vec::new();
        match client.read_to_end(&mut sink) {
            Ok(_) => {}
            Err(err) => assert!(
                !matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                "{name}: still open after the stop: {err}"
            ),
        }
    }
    let refused = TcpStream::connect(addr).expect_err("the port is closed");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
}

#[test]
fn engines_bind_loopback_only() {
    let engine = TestEngine::start(Behaviour::Status(200)).unwrap();
    assert!(engine.addr().ip().is_loopback());
    assert_eq!(
        engine.url(),
        format!("http://127.0.0.1:{}", engine.addr().port())
    );
    assert_eq!(engine.healthz_url(), format!("{}/healthz", engine.url()));
}

#[test]
fn fleet_gives_every_engine_its_record_and_counts_hangs_together() {
    let fleet = Fleet::start([
        Behaviour::Status(200),
        Behaviour::Hang,
        Behaviour::Hang,
        Behaviour::Hang,
    ])
    .unwrap();
    assert_eq!(fleet.len(), 4);
    let records = fleet.records();
    assert_eq!(
        records[1],
        RuntimeRecord::running("g1", "c1", format!("{}/", fleet.engine(1).url()))
    );

    let mut clients: Vec<TcpStream> = (1..4)
        .map(|index| {
            let mut client = connect(fleet.engine(index).addr());
            send_get(&mut client, "/healthz");
            client
        })
        .collect();
    assert!(wait_until(SOON, || fleet.gauge().open() == 3));
    assert_eq!(fleet.gauge().peak(), 3);
    assert_eq!(fleet.engine(2).hung(), 1);

    clients.pop();
    assert!(wait_until(SOON, || fleet.gauge().open() == 2));
    fleet.gauge().reset_peak();
    assert_eq!(fleet.gauge().peak(), 2);
    assert!(status_line(&get(fleet.engine(0).addr(), "/healthz")).contains(" 200 "));
    assert_eq!(fleet.requests(), 4);
}

#[test]
fn fleet_writes_a_records_file_in_the_design_format() {
    let fleet = Fleet::uniform(3, Behaviour::Status(200)).unwrap();
    let dir = ScratchDir::new("records").unwrap();
    let path = dir.join("records.json");
    fleet.write_records(&path).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        json[2],
        serde_json::json!({
            "game_id": "g2",
            "current_container_id": "c2",
            "engine_endpoint": format!("{}/", fleet.engine(2).url()),
            "status": "running",
        })
    );
    assert_eq!(json.as_array().map(Vec::len), Some(3));
}

#[test]
fn a_fleet_of_a_thousand_engines_starts_serves_and_stops() {
    let fleet = Fleet::uniform(1000, Behaviour::Status(200)).unwrap();
    let mut ports: Vec<u16> = fleet.engines().iter().map(|e| e.addr().port()).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 1000);
    for engine in fleet.engines().iter().step_by(97) {
        assert!(status_line(&get(engine.addr(), "/healthz")).contains(" 200 "));
    }
    let addr = fleet.engine(999).addr();
    drop(fleet);
    let refused = TcpStream::connect(addr).expect_err("the port is closed");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
}

/// An event-loop engine's address, from its record.
fn event_engine_addr(fleet: &EventFleet, index: usize) -> SocketAddr {
    let endpoint = fleet.records()[index].engine_endpoint.clone();
    endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("http://IP:PORT/")
}

#[test]
fn event_engines_keep_a_connection_for_the_next_request_and_close_when_asked() {
    let fleet = EventFleet::start(3, None).expect("start the engines");
    assert_eq!(fleet.len(), 3);
    let mut stream = connect(event_engine_addr(&fleet, 2));
    for _ in 0..3 {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: probe.test\r\n\r\n")
            .expect("send a keep-alive request");
        let head = text(&read_head(&mut stream, 1024));
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert_eq!(header(&head, "connection"), None, "{head}");
        let mut body = [0_u8; 3];
        stream.read_exact(&mut body).expect("the body");
        assert_eq!(&body, b"ok\n");
    }
    send_get(&mut stream, "/healthz");
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("read to the close");
    let rest = text(&rest);
    assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{rest}");
    assert_eq!(
        header(&rest, "connection").as_deref(),
        Some("close"),
        "{rest}"
    );
    assert!(rest.ends_with("\r\n\r\nok\n"), "{rest}");
}

#[test]
fn event_engines_stop_on_drop() {
    let fleet = EventFleet::start(1, None).expect("start the engines");
    let addr = event_engine_addr(&fleet, 0);
    let mut kept = connect(addr);
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: probe.test\r\n\r\n")
        .expect("send a keep-alive request");
    assert!(text(&read_head(&mut kept, 1024)).starts_with("HTTP/1.1 200 OK\r\n"));
    let mut body = [0_u8; 3];
    kept.read_exact(&mut body).expect("the body");
    drop(fleet);
    let mut rest = Vec::new();
    assert_eq!(
        kept.read_to_end(&mut rest).map(|_| rest.len()).ok(),
        Some(0),
        "closed, not reset or hung"
    );
    let refused = TcpStream::connect_timeout(&addr, SOON).expect_err("nothing listens");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
}

#[test]
fn gated_answers_only_once_the_gate_opens_and_a_stop_ends_the_wait() {
    let gate = Gate::new();
    let engine = TestEngine::start(Behaviour::Gated {
        gate: gate.clone(),
        status: 503,
    })
    .unwrap();
    let mut client = connect(engine.addr());
    send_get(&mut client, "/healthz");
    assert!(engine.wait_for_requests(1, SOON));
    // The gate is shut: nothing can have been sent, so nothing is there to read.
    client.set_nonblocking(true).unwrap();
    let mut byte = [0_u8; 1];
    let early = client.read(&mut byte);
    assert_eq!(
        early.map_err(|err| err.kind()),
        Err(ErrorKind::WouldBlock),
        "an answer before the gate opened"
    );
    client.set_nonblocking(false).unwrap();
    gate.open();
    let mut response = Vec::new();
    client.read_to_end(&mut response).unwrap();
    assert!(status_line(&response).starts_with("HTTP/1.1 503 "));

    // A stop does not wait for a gate nobody opens.
    let engine = TestEngine::start(Behaviour::Gated {
        gate: Gate::new(),
        status: 200,
    })
    .unwrap();
    let mut waiting = connect(engine.addr());
    send_get(&mut waiting, "/healthz");
    assert!(wait_until(SOON, || engine.serving() == 1));
    engine.stop();
    let mut rest = Vec::new();
    let _ = waiting.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no answer after a stop");
}
