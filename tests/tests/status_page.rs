//! `GET /status` and `GET /` of `healthprobe run --metrics-addr`: the built
//! binary over a scripted fleet of real engines on loopback (healthy,
//! failing, flapping, recovering, recovered, slow, refused, and a record of
//! hostile text), held still after tick 6 by one gated probe. The JSON is
//! checked field by field; its counters against the state file and a replay
//! of the journal; the page in headless Chromium, through its DOM.

use std::collections::BTreeMap;
use std::time::Duration;

use healthprobe_core::{HealthStates, Policy};
use healthprobe_shell::StateFile;
use healthprobe_shell::codec::journal::parse_line;
use healthprobe_shell::driver::ports::StateStore;
use healthprobe_tests::{
    Behaviour, Gate, HealthprobeProcess, RefusedPort, Runtime, RuntimeRecord, ScratchDir,
    TestEngine, both_runtimes, dump_dom, http_get, metrics_addr, scrape_metrics, wait_until,
    write_records_file,
};
use serde_json::Value;

/// Bound on any wait in these tests; reached only when something is broken.
const PATIENCE: Duration = Duration::from_secs(30);

/// Ticks before the gated probe holds the run still.
const TICKS: usize = 6;

const HOSTILE_ID: &str = "<script>alert(\"g\")</script>";

fn statuses(statuses: &[u16]) -> Behaviour {
    Behaviour::Script(statuses.iter().map(|s| Behaviour::Status(*s)).collect())
}

/// The run held still after [`TICKS`] ticks, its files and its server.
struct HeldRun {
    process: HealthprobeProcess,
    addr: std::net::SocketAddr,
    dir: ScratchDir,
    gate: Gate,
    endpoints: BTreeMap<String, String>,
    _engines: Vec<TestEngine>,
    _refused: RefusedPort,
}

fn held_run(runtime: Runtime) -> HeldRun {
    let gate = Gate::new();
    let mut gated = vec![Behaviour::Status(200); TICKS];
    gated.push(Behaviour::Gated {
        gate: gate.clone(),
        status: 200,
    });
    let behaviours = [
        ("g0", Behaviour::Status(200)),
        ("g1", Behaviour::Status(503)),
        ("g2", statuses(&[200, 503, 200, 503, 200, 503, 200])),
        ("g3", statuses(&[503, 503, 503, 503, 503, 200])),
        ("g4", statuses(&[503, 503, 200])),
        (
            "g5",
            Behaviour::Delayed {
                delay: Duration::from_millis(150),
                status: 502,
            },
        ),
        ("g6", Behaviour::Script(gated)),
        (HOSTILE_ID, Behaviour::Status(503)),
    ];
    let mut engines = Vec::new();
    let mut records = Vec::new();
    let mut endpoints = BTreeMap::new();
    for (i, (game, behaviour)) in behaviours.into_iter().enumerate() {
        let engine = TestEngine::start(behaviour).expect("start an engine");
        let mut endpoint = engine.url();
        let mut container = format!("c{i}");
        if game == HOSTILE_ID {
            endpoint.push_str("\"><img src=x onerror=alert(1)>");
            container = format!("{}'\"&<b>", "x".repeat(3000));
        }
        records.push(RuntimeRecord::running(game, container, &endpoint));
        endpoints.insert(game.to_owned(), endpoint);
        engines.push(engine);
    }
    let refused = RefusedPort::new();
    records.push(RuntimeRecord::running("g7", "c7", refused.url()));
    endpoints.insert("g7".to_owned(), refused.url());

    let dir = ScratchDir::new("status-page").expect("scratch dir");
    let path = |name: &str| dir.join(name).to_str().expect("UTF-8 path").to_owned();
    write_records_file(&dir.join("records.json"), &records).expect("records file");
    let process = HealthprobeProcess::spawn(&[
        "run",
        "--records",
        &path("records.json"),
        "--events",
        &path("events.jsonl"),
        "--state",
        &path("state.json"),
        "--journal",
        &path("journal.jsonl"),
        "--runtime",
        runtime.name(),
        "--interval",
        "100ms",
        // Long enough for the gated probe to hold tick 7 while the test looks.
        "--probe-timeout",
        "60s",
        "--failures-threshold",
        "2",
        "--recovery-threshold",
        "2",
        "--metrics-addr",
        "127.0.0.1:0",
    ])
    .expect("start healthprobe");
    let addr = metrics_addr(&process, PATIENCE);
    let mut ticks = Value::Null;
    assert!(
        wait_until(PATIENCE, || {
            ticks = status(addr, "")["run"]["ticks"].clone();
            ticks == TICKS
        }),
        "never reached tick {TICKS} ({ticks}):\n{}",
        process.stderr()
    );
    HeldRun {
        process,
        addr,
        dir,
        gate,
        endpoints,
        _engines: engines,
        _refused: refused,
    }
}

/// `GET /status{query}` as JSON.
fn status(addr: std::net::SocketAddr, query: &str) -> Value {
    let (code, content_type, body) = http_get(addr, &format!("/status{query}"));
    assert_eq!(
        (code, content_type.as_str()),
        (200, "application/json"),
        "{body}"
    );
    serde_json::from_str(&body).unwrap_or_else(|err| panic!("{err}: {body}"))
}

fn game<'a>(json: &'a Value, id: &str) -> &'a Value {
    json["games"]
        .as_array()
        .expect("games")
        .iter()
        .find(|game| game["game_id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {json:#}"))
}

fn recent_statuses(game: &Value) -> Vec<u64> {
    game["recent"]
        .as_array()
        .expect("recent")
        .iter()
        .map(|outcome| outcome["status"].as_u64().expect("status"))
        .collect()
}

/// Check one game's counters and state, field by field; it is in `state`
/// since its outcome `since` (0 = the oldest shown).
fn check_game(json: &Value, id: &str, state: &str, counters: (u64, u64, bool), since: usize) {
    let game = game(json, id);
    assert_eq!(game["state"], state, "{id}: {game:#}");
    assert_eq!(
        (
            game["consecutive_failures"].as_u64(),
            game["consecutive_successes"].as_u64(),
            game["failure_published"].as_bool()
        ),
        (Some(counters.0), Some(counters.1), Some(counters.2)),
        "{id}: {game:#}"
    );
    assert_eq!(game["failures_threshold"], 2, "{id}");
    assert_eq!(game["recovery_threshold"], 2, "{id}");
    assert_eq!(game["pending_events"], serde_json::json!([]), "{id}");
    let recent = game["recent"].as_array().expect("recent");
    assert_eq!(game["since"], recent[since]["observed_at"], "{id}");
    for outcome in recent {
        let latency = outcome["latency_ms"].as_f64().expect("latency");
        assert!((0.0..60_000.0).contains(&latency), "{id}: {outcome}");
        let ok = outcome["status"] == 200;
        assert_eq!(outcome["error"] == "", ok, "{id}: {outcome}");
    }
}

/// The state file's hysteresis state and the journal's length it recorded.
fn state_file(dir: &ScratchDir) -> (HealthStates, u64) {
    let snapshot = StateStore::load(&mut StateFile::new(dir.join("state.json")))
        .expect("a valid state file")
        .expect("a state file");
    let len = snapshot
        .journal_len
        .expect("the journal is on (a write error, such as a full disk, stops it)");
    (snapshot.states, len)
}

/// The journal's first `len` bytes folded through the core.
fn replayed(dir: &ScratchDir, len: u64) -> HealthStates {
    let bytes = std::fs::read(dir.join("journal.jsonl")).expect("journal");
    let upto = usize::try_from(len).expect("small");
    let inputs: Vec<_> = bytes[..upto]
        .split(|&byte| byte == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| parse_line(line).expect("a valid journal line"))
        .collect();
    let policy = Policy::new(2, 2).expect("valid");
    healthprobe_core::replay(policy, inputs).0
}

both_runtimes! {
    fn the_status_json_shows_each_game_as_the_state_file_and_the_journal_do(runtime) {
        let run = held_run(runtime);
        let json = status(run.addr, "");

        let runinfo = &json["run"];
        assert_eq!(runinfo["ticks"], TICKS);
        assert_eq!(runinfo["runtime"], runtime.name());
        assert_eq!((runinfo["interval_ms"].as_u64(), runinfo["probe_timeout_ms"].as_u64()), (Some(100), Some(60_000)));
        assert_eq!((runinfo["failures_threshold"].as_u64(), runinfo["recovery_threshold"].as_u64()), (Some(2), Some(2)));
        assert_eq!(runinfo["shard"], "0/1");
        assert_eq!(runinfo["pending_events"], 0);
        let last = &runinfo["last_tick"];
        assert_eq!((last["games"].as_u64(), last["probes"].as_u64(), last["skipped"].as_bool()), (Some(9), Some(9), Some(false)));
        assert_eq!(last["failed_probes"], 5, "g1, g2, g5, g7 and the hostile record at tick 6");

        let totals = &json["totals"];
        assert_eq!(totals["games"], 9);
        assert_eq!(totals["tracked_games"], 6);
        assert_eq!(totals["failing"], 4);
        assert_eq!(totals["recovering"], 1);
        assert_eq!(totals["suspect"], 1);
        assert_eq!(totals["healthy"], 3, "g0, g4, g6");

        // Failing (by id), recovering, suspect, then the recovered game;
        // g0 and g6 never failed: only counted.
        let order: Vec<&str> = json["games"].as_array().expect("games").iter()
            .map(|game| game["game_id"].as_str().expect("id")).collect();
        assert_eq!(order, [HOSTILE_ID, "g1", "g5", "g7", "g3", "g2", "g4"]);
        assert_eq!(json["matched"], 7);
        assert_eq!(json["next_offset"], Value::Null);

        // Since: when the game entered its state (failing: at probe_failed).
        check_game(&json, "g1", "failing", (6, 0, true), 1);
        check_game(&json, "g3", "recovering", (5, 1, true), 5);
        check_game(&json, "g2", "suspect", (1, 0, false), 4);
        check_game(&json, "g4", "healthy", (0, 0, false), 3);
        check_game(&json, "g5", "failing", (6, 0, true), 1);
        check_game(&json, "g7", "failing", (6, 0, true), 1);
        assert_eq!(recent_statuses(game(&json, "g1")), [503; TICKS]);
        // A game's outcomes are kept from its first failure on (D7).
        assert_eq!(recent_statuses(game(&json, "g2")), [503, 200, 503, 200, 503]);
        assert_eq!(recent_statuses(game(&json, "g3")), [503, 503, 503, 503, 503, 200]);
        assert_eq!(recent_statuses(game(&json, "g4")), [503, 503, 200, 200, 200, 200]);
        let g1 = game(&json, "g1");
        assert_eq!((&g1["container_id"], &g1["engine_endpoint"]), (&Value::from("c1"), &Value::from(run.endpoints["g1"].as_str())));
        let last = &g1["recent"][5];
        assert_eq!((&last["error"], &last["result"]), (&Value::from("unexpected status 503"), &Value::from("bad_status")));
        let g7 = &game(&json, "g7")["recent"][0];
        assert_eq!((&g7["status"], &g7["error"], &g7["result"]), (&Value::from(0), &Value::from("connection refused"), &Value::from("connect_error")));
        // The probe latency is measured where the probe runs, on both runtimes.
        for outcome in game(&json, "g5")["recent"].as_array().expect("recent") {
            assert!(outcome["latency_ms"].as_f64().expect("latency") >= 150.0, "{outcome}");
        }
        let hostile = game(&json, HOSTILE_ID);
        assert_eq!(hostile["engine_endpoint"], run.endpoints[HOSTILE_ID].as_str());
        assert!(hostile["container_id"].as_str().expect("text").ends_with("'\"&<b>"));

        // The counters are the state file's, and a replay of the journal
        // up to the length that snapshot recorded gives the same state.
        let (states, journal_len) = state_file(&run.dir);
        assert_eq!(replayed(&run.dir, journal_len), states);
        assert_eq!(states.len(), 6);
        for game in json["games"].as_array().expect("games") {
            let id = game["game_id"].as_str().expect("id");
            match states.game(id) {
                Some(counters) => {
                    assert_eq!(game["consecutive_failures"], counters.consecutive_failures(), "{id}");
                    assert_eq!(game["consecutive_successes"], counters.consecutive_successes(), "{id}");
                    assert_eq!(game["failure_published"], counters.failure_published(), "{id}");
                }
                None => assert_eq!(game["state"], "healthy", "{id}"),
            }
        }

        // Filters, pages, and a query that is not understood.
        let failing = status(run.addr, "?state=failing");
        assert_eq!(failing["matched"], 4);
        assert!(failing["games"].as_array().expect("games").iter().all(|g| g["state"] == "failing"));
        let two = status(run.addr, "?state=failing,recovering&limit=2&offset=3");
        assert_eq!((two["matched"].as_u64(), two["next_offset"].as_u64()), (Some(5), None));
        assert_eq!(two["games"][0]["game_id"], "g7");
        assert_eq!(two["games"][1]["game_id"], "g3");
        let one = status(run.addr, "?game=%3Cscript%3Ealert(%22g%22)%3C%2Fscript%3E");
        assert_eq!((one["matched"].as_u64(), &one["games"][0]["game_id"]), (Some(1), &Value::from(HOSTILE_ID)));
        let (code, _, body) = http_get(run.addr, "/status?state=down");
        assert_eq!((code, body.as_str()), (400, "state=\"down\": not failing, recovering, suspect or healthy\n"));

        // Probe latency in Prometheus: one observation per probe, by class.
        let scraped = scrape_metrics(run.addr);
        for class in ["ok", "bad_status", "connect_error"] {
            let key = format!("healthprobe_probe_duration_seconds_count{{result=\"{class}\"}}");
            let probes = scraped.value(&format!("healthprobe_probes_total{{result=\"{class}\"}}"));
            assert_eq!(scraped.value(&key), probes, "{class}");
        }
        let bad = &scraped.histograms["healthprobe_probe_duration_seconds{result=\"bad_status\"}"];
        let below = |bound: f64| bad.iter().find(|(le, _)| *le == bound).map(|(_, n)| *n);
        assert_eq!(bad.first().map(|(le, _)| *le), Some(0.001), "{bad:?}");
        assert!(bad.iter().any(|(le, _)| *le == 60.0), "the timeout is a bound: {bad:?}");
        // g5's six 150 ms probes are above 100 ms; the instant 503s mostly are not.
        assert!(below(f64::INFINITY).unwrap_or_default() - below(0.1).unwrap_or_default() >= 6.0, "{bad:?}");

        run.gate.open();
        run.process.terminate().expect("SIGTERM");
        let finished = run.process.wait(PATIENCE).expect("healthprobe stops");
        assert!(finished.status.success(), "{}", finished.stderr);
    }
}

/// The page as Chromium parses it: failing and recovering games first, each
/// row's counters those of the state file, hostile text shown as text.
#[test]
fn the_page_in_a_browser_lists_failing_games_first_and_renders_hostile_text_as_text() {
    let run = held_run(Runtime::Threads);
    let url = format!("http://{}/", run.addr);
    let Some(dom) = dump_dom(&url) else {
        return;
    };
    let (states, _) = state_file(&run.dir);
    let rows = rows(&dom);
    let order: Vec<(&str, &str)> = rows
        .iter()
        .map(|row| (row.game.as_str(), row.state.as_str()))
        .collect();
    assert_eq!(
        order,
        [
            (HOSTILE_ID, "failing"),
            ("g1", "failing"),
            ("g5", "failing"),
            ("g7", "failing"),
            ("g3", "recovering"),
            ("g2", "suspect"),
            ("g4", "healthy"),
        ],
        "{dom}"
    );
    for row in &rows {
        let (failures, successes) = states.game(&row.game).map_or((0, 0), |g| {
            (
                g.consecutive_failures(),
                u64::from(g.consecutive_successes()),
            )
        });
        assert_eq!(
            (row.failures, row.successes),
            (failures, successes),
            "{}",
            row.game
        );
    }
    // Totals at the top, as the browser shows them.
    for (id, count) in [
        ("total-failing", 4),
        ("total-recovering", 1),
        ("total-suspect", 1),
        ("total-healthy", 3),
        ("total-pending", 0),
    ] {
        let at = dom
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("{id}: {dom}"));
        assert!(
            dom[at..].contains(&format!("><b>{count}</b>")),
            "{id}: {}",
            &dom[at..at + 80]
        );
    }
    // Positions between the thresholds.
    assert!(
        dom.contains("1 / 2 successes before probe_recovered"),
        "{dom}"
    );
    assert!(dom.contains("1 / 2 failures before probe_failed"), "{dom}");
    // No element came from a record: only the page's own, no script, no image.
    let tags = tag_names(&dom);
    let own = [
        "html", "head", "meta", "style", "title", "body", "header", "h1", "p", "b", "time",
        "section", "div", "small", "table", "thead", "tbody", "tr", "th", "td", "span", "i",
        "meter", "footer", "a", "code",
    ];
    assert!(
        tags.iter().all(|tag| own.contains(&tag.as_str())),
        "{tags:?}"
    );
    assert!(
        dom.contains("&lt;script&gt;alert(\"g\")&lt;/script&gt;"),
        "{dom}"
    );
    assert!(
        dom.contains("\"&gt;&lt;img src=x onerror=alert(1)&gt;"),
        "{dom}"
    );
    assert!(
        dom.contains(&format!("{}'\"&amp;&lt;b&gt;", "x".repeat(3000))),
        "{dom}"
    );
    assert!(
        dom.contains("<meta http-equiv=\"refresh\" content=\"5\">"),
        "{dom}"
    );

    run.gate.open();
    run.process.terminate().expect("SIGTERM");
    let finished = run.process.wait(PATIENCE).expect("healthprobe stops");
    assert!(finished.status.success(), "{}", finished.stderr);
}

/// One `<tr class="game …">` of the DOM.
#[derive(Debug)]
struct Row {
    game: String,
    state: String,
    failures: u64,
    successes: u64,
}

/// The game rows of a serialized DOM, in order.
fn rows(dom: &str) -> Vec<Row> {
    dom.split("<tr class=\"game ")
        .skip(1)
        .map(|row| {
            let head = &row[..row.find('>').expect("a tag")];
            let attr = |name: &str| {
                let key = format!("{name}=\"");
                let at = head.find(&key).unwrap_or_else(|| panic!("{name}: {head}")) + key.len();
                unescape(&head[at..at + head[at..].find('"').expect("closed")])
            };
            Row {
                game: attr("data-game"),
                state: attr("data-state"),
                failures: attr("data-failures").parse().expect("a number"),
                successes: attr("data-successes").parse().expect("a number"),
            }
        })
        .collect()
}

/// An attribute value as Chromium serializes it, decoded.
fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The names of the elements of a serialized DOM (attribute values, always
/// double-quoted by Chromium, skipped; text has its `<` escaped).
fn tag_names(dom: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let mut rest = dom;
    while let Some(open) = rest.find('<') {
        rest = &rest[open + 1..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if !name.is_empty() {
            names.insert(name);
        }
        // Skip to the tag's end, over quoted attribute values.
        let mut quoted = false;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    quoted = !quoted;
                }
                c == '>' && !quoted
            })
            .map_or(rest.len(), |(at, _)| at + 1);
        rest = &rest[end..];
    }
    names
}
