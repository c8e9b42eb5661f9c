//! Events to a Redis stream (D4 through a broker): one `XADD` per event with
//! the envelope's fields, nothing lost or repeated across a Redis outage,
//! the lost-reply case, trimming, and errors that name the destination.
//!
//! Every test runs its own `redis-server` on loopback ([`TestRedis`]);
//! library tests drive a [`Worker`] tick by tick, the CLI test runs the built
//! `healthprobe` against it.

use std::collections::HashMap;
use std::time::Duration;

use healthprobe_core::HealthEvent;
use healthprobe_core::lease::ShardLease;
use healthprobe_shell::adapters::{
    CountingTelemetry, ManualClock, MemoryStore, RedisStreamPublisher, RedisTarget,
};
use healthprobe_shell::codec::wire::write_event_line;
use healthprobe_shell::driver::ports::{HealthEventPublisher, PublishError};
use healthprobe_shell::driver::worker::{Ports, Worker};
use healthprobe_shell::replay::replay_journal;
use healthprobe_shell::tls::TlsClient;
use healthprobe_tests::{
    Behaviour, Fleet, HealthprobeProcess, ScrapedMetrics, ScratchDir, TestRedis, at, by_game,
    expected_events, metrics_addr, scrape_metrics, script, test_config, wait_until, with_id,
};

/// Bound on any wait in these tests; reached only when something is broken.
const PATIENCE: Duration = Duration::from_secs(20);

const STREAM: &str = "health-events";

/// A publisher to `stream` on `redis`.
fn publisher(redis: &TestRedis, stream: &str, maxlen: u64) -> RedisStreamPublisher {
    let target = RedisTarget::parse(&redis.url(stream)).expect("a valid URL");
    RedisStreamPublisher::new(target, maxlen, &TlsClient::system()).expect("a client")
}

/// A worker on threads over `records` publishing to `publisher`; its clock
/// starts at `at(0)`.
fn worker(
    records: Vec<healthprobe_tests::RuntimeRecord>,
    publisher: RedisStreamPublisher,
) -> (Worker, ManualClock) {
    let clock = ManualClock::new(at(0));
    let ports = Ports::new(
        MemoryStore::with_records(records),
        publisher,
        CountingTelemetry::new(),
        clock.clone(),
    );
    let worker = Worker::new(test_config(2, 1), ports).expect("a valid config");
    (worker, clock)
}

/// A distinct event: a recovery of `g1` at `at(second)`.
fn recovered_at(second: u64) -> HealthEvent {
    healthprobe_tests::probe_recovered("g1", "c1", at(second), 2)
}

#[test]
fn d4_each_event_is_one_stream_entry_with_the_envelope_fields_then_its_event_id() {
    let redis = TestRedis::start();
    let statuses = [500, 500, 500, 200];
    let fleet = Fleet::start([script(&statuses)]).expect("start fleet");
    let (mut worker, clock) = worker(fleet.records(), publisher(&redis, STREAM, 1000));
    for _ in 0..statuses.len() {
        let report = worker.tick();
        assert_eq!(report.publish_failures, 0, "{report:?}");
        clock.advance(Duration::from_secs(5));
    }
    let policy = test_config(2, 1).policy().expect("valid");
    let expected = expected_events(0, &statuses, statuses.len(), policy);
    assert_eq!(expected.len(), 2, "probe_failed then probe_recovered");

    let entries = redis.entries(STREAM);
    assert_eq!(entries.len(), expected.len(), "{entries:?}");
    for (entry, event) in entries.iter().zip(&expected) {
        assert_eq!(
            entry.names(),
            [
                "game_id",
                "container_id",
                "event_type",
                "occurred_at",
                "details",
                "event_id"
            ]
        );
        assert_eq!(entry.event().as_ref(), Ok(event));
        // Both events of the streak name its first failure, at(0).
        let id = format!(
            "{}:{}:{}",
            at(0).as_nanosecond(),
            event.event_type(),
            event.game_id
        );
        assert_eq!(entry.get("event_id"), Some(id.as_str()));
        // The values are the JSON line's: occurred_at's text, details' JSON.
        let mut line = Vec::new();
        write_event_line(&mut line, event).expect("encodes");
        let line = String::from_utf8(line).expect("utf-8");
        let occurred_at = entry.get("occurred_at").expect("occurred_at");
        let details = entry.get("details").expect("details");
        assert!(
            line.contains(&format!(
                r#""occurred_at":"{occurred_at}","details":{details}}}"#
            )),
            "{line} vs {entry:?}"
        );
        assert_eq!(entry.get("event_type"), Some(event.event_type().as_str()));
    }
    assert_eq!(
        entries[0].get("details"),
        Some(
            r#"{"consecutive_failures":2,"last_status":500,"last_error":"unexpected status 500"}"#
        )
    );
}

#[test]
fn d4_redis_down_for_several_ticks_loses_and_repeats_no_event_and_keeps_the_order() {
    let mut redis = TestRedis::start();
    let scripts: Vec<Vec<u16>> = vec![
        vec![500, 500, 200, 500, 500, 500, 200, 200],
        vec![503, 503, 503, 200, 503, 503, 200],
        vec![200, 500, 500, 200, 200, 500, 500, 200],
        vec![500, 200, 500, 500, 200],
    ];
    let ticks = 12;
    let fleet = Fleet::start(scripts.iter().map(|s| script(s))).expect("start fleet");
    let policy = test_config(2, 1).policy().expect("valid");
    let expected: Vec<HealthEvent> = scripts
        .iter()
        .enumerate()
        .flat_map(|(i, s)| expected_events(i, s, ticks, policy))
        .collect();
    let (mut worker, clock) = worker(fleet.records(), publisher(&redis, STREAM, 0));

    let mut emitted = 0;
    let mut tick = |worker: &mut Worker| {
        let report = worker.tick();
        clock.advance(Duration::from_secs(5));
        emitted += report.events;
        report
    };
    // Ticks 0–1 with Redis up: their events are in the stream.
    for _ in 0..2 {
        let report = tick(&mut worker);
        assert_eq!(
            (report.publish_failures, report.pending),
            (0, 0),
            "{report:?}"
        );
    }
    let mut stream = redis.events(STREAM);
    assert!(!stream.is_empty(), "ticks 0 and 1 emit events");

    // Ticks 2–6 with Redis down: one refused attempt per tick, events wait.
    redis.stop();
    let mut pending_during_outage = 0;
    for _ in 2..7 {
        let report = tick(&mut worker);
        assert_eq!(
            report.publish_failures,
            usize::from(report.pending > 0),
            "{report:?}"
        );
        assert_eq!(report.published, 0, "{report:?}");
        pending_during_outage = report.pending;
    }
    assert!(
        pending_during_outage >= 4,
        "the outage's ticks emit events: {pending_during_outage} pending"
    );

    // Redis back (empty: no persistence): the first tick delivers them all.
    redis.restart().expect("restart on the same port");
    for _ in 7..ticks {
        let report = tick(&mut worker);
        assert_eq!(report.publish_failures, 0, "{report:?}");
    }
    assert!(worker.pending().is_empty(), "{:?}", worker.pending());
    stream.extend(redis.events(STREAM));

    assert_eq!(emitted, expected.len());
    assert_eq!(stream.len(), expected.len(), "each event once");
    assert_eq!(by_game(&stream), by_game(&expected), "per game, in order");
    // Nothing overtook an older event: the stream's instants never go back.
    assert!(
        stream
            .windows(2)
            .all(|pair| pair[0].occurred_at <= pair[1].occurred_at),
        "{stream:#?}"
    );
}

#[test]
fn d4_an_acl_user_publishes_and_a_wrong_password_is_refused_without_showing_it() {
    let redis = TestRedis::start();
    redis.command(&[
        "ACL",
        "SETUSER",
        "prober",
        "on",
        ">p@ss:word",
        "~*",
        "+@all",
    ]);
    let url = |password: &str| {
        format!(
            "redis://prober:{password}@127.0.0.1:{}/{STREAM}",
            redis.port()
        )
    };
    // `@` and `:` in the password are percent-encoded in the URL.
    let target = RedisTarget::parse(&url("p%40ss%3Aword")).expect("a valid URL");
    let mut publisher =
        RedisStreamPublisher::new(target, 0, &TlsClient::system()).expect("a client");
    publisher
        .publish(&with_id(recovered_at(0)))
        .expect("AUTH as prober");
    assert_eq!(redis.events(STREAM), [recovered_at(0)]);

    let target = RedisTarget::parse(&url("nope-123")).expect("a valid URL");
    let mut refused = RedisStreamPublisher::new(target, 0, &TlsClient::system()).expect("a client");
    let err = refused
        .publish(&with_id(recovered_at(5)))
        .expect_err("a wrong password");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!("redis 127.0.0.1:{}/{STREAM}: ", redis.port())),
        "{message}"
    );
    assert!(!message.contains("nope-123"), "{message}");
    assert_eq!(redis.events(STREAM), [recovered_at(0)], "nothing sent");
}

#[test]
fn d4_a_publish_while_redis_is_down_is_refused_naming_the_destination_and_sends_nothing() {
    let mut redis = TestRedis::start();
    let mut publisher = publisher(&redis, STREAM, 0);
    publisher
        .publish(&with_id(recovered_at(0)))
        .expect("Redis is up");
    redis.stop();
    for _ in 0..3 {
        let err = publisher
            .publish(&with_id(recovered_at(5)))
            .expect_err("Redis is down");
        assert_eq!(
            err.to_string(),
            format!(
                "redis 127.0.0.1:{}/{STREAM}: connection refused",
                redis.port()
            )
        );
    }
    redis.restart().expect("restart on the same port");
    // The connection kept from before the outage is dead: the publisher
    // notices, reconnects and delivers within the same call.
    publisher
        .publish(&with_id(recovered_at(5)))
        .expect("Redis is back");
    assert_eq!(redis.events(STREAM), [recovered_at(5)]);
}

#[test]
fn d4_an_xadd_whose_reply_was_lost_is_not_added_twice() {
    let redis = TestRedis::start();
    let mut publisher = publisher(&redis, STREAM, 0).with_timeout(Duration::from_millis(300));
    publisher
        .publish(&with_id(recovered_at(0)))
        .expect("Redis is up");

    // Redis stops answering (SIGSTOP) until the test lets it go on: the
    // XADD sent meanwhile waits in its socket, is applied when Redis goes
    // on, and its reply goes nowhere.
    redis.pause();
    let err = publisher
        .publish(&with_id(recovered_at(5)))
        .expect_err("no reply while Redis is stopped");
    let port = redis.port();
    assert_eq!(
        err.to_string(),
        format!("redis 127.0.0.1:{port}/{STREAM}: timed out")
    );
    redis.resume();
    assert!(
        wait_until(PATIENCE, || redis.len(STREAM) == 2),
        "the XADD without a reply was applied"
    );

    // The retry finds its entry among the newest and does not add it again.
    publisher
        .publish(&with_id(recovered_at(5)))
        .expect("Redis answers");
    publisher
        .publish(&with_id(recovered_at(10)))
        .expect("Redis answers");
    assert_eq!(
        redis.events(STREAM),
        [recovered_at(0), recovered_at(5), recovered_at(10)]
    );
}

#[test]
fn d4_maxlen_trims_the_stream_approximately_and_zero_never_trims() {
    let redis = TestRedis::start();
    let mut trimmed = publisher(&redis, "trimmed", 10);
    let mut untrimmed = publisher(&redis, "untrimmed", 0);
    for second in 0..300 {
        trimmed
            .publish(&with_id(recovered_at(second)))
            .expect("published");
        untrimmed
            .publish(&with_id(recovered_at(second)))
            .expect("published");
    }
    let kept = redis.len("trimmed");
    // `MAXLEN ~` trims whole radix-tree nodes (100 entries by default).
    assert!((10..300).contains(&kept), "{kept} entries kept");
    assert_eq!(
        redis.events("trimmed").last(),
        Some(&recovered_at(299)),
        "trimming drops the oldest"
    );
    assert_eq!(redis.len("untrimmed"), 300);
}

#[test]
fn d4_cli_redis_outage_while_running_every_event_once_in_order_and_sigterm_exits_0() {
    let mut redis = TestRedis::start();
    let fleet = Fleet::uniform(4, Behaviour::Status(200)).expect("start fleet");
    let dir = ScratchDir::new("redis-cli").expect("scratch dir");
    let records = dir.join("records.json");
    let state = dir.join("state.json");
    let journal = dir.join("journal.jsonl");
    fleet.write_records(&records).expect("write records");
    let url = redis.url(STREAM);
    let policy = test_config(2, 1).policy().expect("valid");
    let process = HealthprobeProcess::spawn(&[
        "run",
        "--records",
        records.to_str().expect("utf-8 path"),
        "--events",
        &url,
        "--state",
        state.to_str().expect("utf-8 path"),
        "--journal",
        journal.to_str().expect("utf-8 path"),
        "--interval",
        "200ms",
        "--probe-timeout",
        "1s",
        "--failures-threshold",
        "2",
        "--recovery-threshold",
        "1",
        "--metrics-addr",
        "127.0.0.1:0",
    ])
    .expect("spawn healthprobe");
    let metrics = metrics_addr(&process, PATIENCE);
    let published = |scraped: &ScrapedMetrics| {
        scraped.value("healthprobe_events_published_total{event_type=\"probe_failed\"}")
            + scraped.value("healthprobe_events_published_total{event_type=\"probe_recovered\"}")
    };

    // Before the outage: engine 0 fails and recovers; both events arrive.
    let before = [500, 500, 200];
    fleet.engine(0).set(script(&before));
    assert!(
        wait_until(PATIENCE, || redis.len(STREAM) == 2),
        "events before the outage: {}",
        process.stderr()
    );
    let mut stream = redis.events(STREAM);

    // The outage: engines 1–3 flap while Redis is down.
    redis.stop();
    let during: Vec<Vec<u16>> = vec![
        vec![503, 503, 503, 200],
        vec![500, 500, 200, 500, 500, 200],
        vec![500, 200, 500, 500, 200],
    ];
    let base: Vec<usize> = (1..4).map(|i| fleet.engine(i).requests()).collect();
    for (i, statuses) in during.iter().enumerate() {
        fleet.engine(i + 1).set(script(statuses));
    }
    assert!(
        wait_until(PATIENCE, || {
            during
                .iter()
                .enumerate()
                .all(|(i, s)| fleet.engine(i + 1).requests() > base[i] + s.len())
        }),
        "the engines were probed through their scripts"
    );
    assert!(
        process.wait_for_stderr(PATIENCE, |err| err.contains("cannot publish probe event")
            && err.contains(&format!("redis 127.0.0.1:{}/{STREAM}", redis.port()))),
        "{}",
        process.stderr()
    );

    // The metrics see the outage: refused publishes, events pending, and
    // only the two events delivered before it counted as published.
    let mut scraped = scrape_metrics(metrics);
    assert!(
        wait_until(PATIENCE, || {
            scraped = scrape_metrics(metrics);
            scraped.value("healthprobe_pending_events") > 0.0
        }),
        "pending events during the outage: {scraped:?}"
    );
    assert!(scraped.value("healthprobe_publish_failures_total") >= 1.0);
    assert_eq!(published(&scraped), 2.0, "{scraped:?}");

    // Redis back: every event of the outage arrives, once, in order.
    redis.restart().expect("restart on the same port");
    let mut expected: Vec<HealthEvent> = expected_events(0, &before, 10, policy);
    for (i, statuses) in during.iter().enumerate() {
        expected.extend(expected_events(i + 1, statuses, 10, policy));
    }
    let outage_events = expected.len() - 2;
    assert!(
        wait_until(PATIENCE, || redis.len(STREAM) >= outage_events),
        "outage events delivered: {}",
        process.stderr()
    );
    // The metrics agree with the stream: every entry counted as published
    // once (the restarted Redis, without persistence, holds only the
    // outage's entries; the two before it were read above), nothing pending.
    assert!(
        wait_until(PATIENCE, || {
            scraped = scrape_metrics(metrics);
            scraped.value("healthprobe_pending_events") == 0.0
                && published(&scraped) == (stream.len() + redis.len(STREAM)) as f64
        }),
        "metrics {scraped:?} against {} + {} stream entries",
        stream.len(),
        redis.len(STREAM)
    );
    process.terminate().expect("SIGTERM");
    let finished = process.wait(PATIENCE).expect("exits");
    assert!(finished.status.success(), "{finished:?}");
    stream.extend(redis.events(STREAM));

    // Exactly the events the core emitted, in the order it emitted them:
    // replaying the run's journal gives them, wall-clock instants included.
    // (Within a tick, instants need not be sorted: outcomes are folded as
    // they arrive, not in the order they were stamped.)
    let journal = std::fs::File::open(&journal).expect("journal");
    let mut replayed = Vec::new();
    replay_journal(
        policy,
        std::io::BufReader::new(journal),
        "journal",
        &mut replayed,
    )
    .expect("replay");
    let emitted: Vec<HealthEvent> = String::from_utf8(replayed)
        .expect("utf-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("an event line"))
        .collect();
    assert_eq!(stream, emitted, "each event once, in emission order");
    // And they are the events the scripts cause (instants aside).
    let strip = |events: &[HealthEvent]| -> HashMap<String, Vec<_>> {
        by_game(events)
            .into_iter()
            .map(|(game, events)| {
                let kinds = events
                    .into_iter()
                    .map(|e| (e.container_id, e.details))
                    .collect();
                (game, kinds)
            })
            .collect()
    };
    assert_eq!(strip(&stream), strip(&expected), "per game, in order");
    assert!(
        finished
            .stderr
            .contains("publishing events to a Redis stream"),
        "{}",
        finished.stderr
    );
}

/// A fleet of `engines` answering `behaviour` and its records file, and a
/// state file path, for `healthprobe run` to `STREAM` (threshold 2).
struct Cli {
    fleet: Fleet,
    _dir: ScratchDir,
    args: Vec<String>,
    state: std::path::PathBuf,
}

impl Cli {
    fn new(redis: &TestRedis, engines: usize, behaviour: Behaviour, label: &str) -> Self {
        let fleet = Fleet::uniform(engines, behaviour).expect("start fleet");
        let dir = ScratchDir::new(label).expect("scratch dir");
        let (records, state) = (dir.join("records.json"), dir.join("state.json"));
        fleet.write_records(&records).expect("write records");
        let args = [
            "run",
            "--records",
            records.to_str().expect("utf-8 path"),
            "--events",
            &redis.url(STREAM),
            "--state",
            state.to_str().expect("utf-8 path"),
            "--failures-threshold",
            "2",
        ];
        let args = args.map(str::to_owned).to_vec();
        Self {
            fleet,
            _dir: dir,
            args,
            state,
        }
    }

    /// `healthprobe run` with these settings and `extra`.
    fn spawn(&self, extra: &[&str]) -> HealthprobeProcess {
        let mut args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        args.extend(extra);
        HealthprobeProcess::spawn(&args).expect("spawn healthprobe")
    }

    /// [`Cli::spawn`] for `ticks` ticks, which must end with exit 0.
    fn run_ticks(&self, ticks: &str) -> String {
        let finished = self
            .spawn(&["--interval", "100ms", "--ticks", ticks])
            .wait(PATIENCE)
            .expect("runs to the end");
        assert_eq!(finished.status.code(), Some(0), "{}", finished.stderr);
        finished.stderr
    }
}

/// `id`'s marker key, which makes a re-send of `id` add nothing.
fn marker(id: &str) -> String {
    format!("hp:event:{STREAM}:{id}")
}

/// The `event_id` of every entry of the stream, oldest first.
fn event_ids(redis: &TestRedis) -> Vec<String> {
    let entries = redis.entries(STREAM);
    let ids = entries
        .iter()
        .map(|entry| entry.get("event_id").map(str::to_owned));
    ids.collect::<Option<_>>()
        .unwrap_or_else(|| panic!("an entry without event_id: {entries:?}"))
}

#[test]
fn d5_a_resent_id_is_not_added_again_by_any_publisher_and_its_marker_lasts_7_days() {
    let redis = TestRedis::start();
    let first = with_id(recovered_at(5));
    publisher(&redis, STREAM, 0).publish(&first).expect("added");
    // A re-send, by this process after a restart or by another one.
    publisher(&redis, STREAM, 0)
        .publish(&first)
        .expect("a repeat is delivered");
    publisher(&redis, STREAM, 10)
        .publish(&first)
        .expect("a repeat is delivered");
    assert_eq!(event_ids(&redis), [first.id.to_string()]);
    let ttl = match redis.command(&["TTL", &marker(first.id.as_str())]) {
        redis::Value::Int(ttl) => ttl,
        other => panic!("TTL: {other:?}"),
    };
    assert!((7 * 24 * 3600 - 60..=7 * 24 * 3600).contains(&ttl), "{ttl}");
    // The same game and type in another episode is another event.
    let later = with_id(recovered_at(10));
    publisher(&redis, STREAM, 0).publish(&later).expect("added");
    assert_eq!(
        event_ids(&redis),
        [first.id.to_string(), later.id.to_string()]
    );
    assert_eq!(redis.events(STREAM), [first.event, later.event]);
}

#[test]
fn d4_a_stream_key_of_another_type_refuses_the_publish_and_leaves_no_marker() {
    // An operator's slip: the stream's key holds a string.
    let redis = TestRedis::start();
    redis.command(&["SET", STREAM, "not a stream"]);
    let event = with_id(recovered_at(5));
    let mut publisher = publisher(&redis, STREAM, 0);
    let err = publisher.publish(&event).expect_err("WRONGTYPE");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("redis 127.0.0.1:{}/{STREAM}: ", redis.port()))
            && text.contains("WRONGTYPE"),
        "{text}"
    );
    assert_eq!(
        redis.command(&["EXISTS", &marker(event.id.as_str())]),
        redis::Value::Int(0),
        "a marker would make the retry skip an event never added"
    );
    redis.command(&["DEL", STREAM]);
    publisher.publish(&event).expect("the key fixed");
    assert_eq!(event_ids(&redis), [event.id.to_string()]);
}

/// Bytes Redis has not read yet from its clients' sockets (the
/// `rx_queue` of its established sockets in `/proc/net/tcp`): a command
/// sent while it is stopped.
fn unread_by_redis(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(1) != Some(&local.as_str()) || fields.get(3) != Some(&"01") {
                return None;
            }
            let (_, unread) = fields.get(4)?.split_once(':')?;
            u64::from_str_radix(unread, 16).ok()
        })
        .sum()
}

/// The ids of the events the state file holds as pending.
fn pending_ids(state: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(state).expect("a state file");
    let snapshot: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let pending = snapshot["pending"].as_array().expect("pending").iter();
    pending
        .map(|entry| entry["id"].as_str().expect("an id").to_owned())
        .collect()
}

#[test]
fn d5_a_worker_killed_after_publishing_before_recording_it_resends_the_same_id_added_once() {
    let redis = TestRedis::start();
    let cli = Cli::new(&redis, 2, Behaviour::Status(200), "redis-kill");
    let first = cli.spawn(&["--interval", "200ms", "--probe-timeout", "1s"]);
    // Engine 0 fails: its probe_failed is added (the worker is connected).
    cli.fleet.engine(0).set(Behaviour::Status(500));
    assert!(
        wait_until(PATIENCE, || redis.len(STREAM) == 1),
        "{}",
        first.stderr()
    );
    // Redis stops reading; engine 1 fails. The worker writes its
    // probe_failed to the state file, then sends it: the script waits
    // unread in Redis's socket, and the worker is killed waiting for the reply.
    redis.pause();
    cli.fleet.engine(1).set(Behaviour::Status(500));
    assert!(
        wait_until(PATIENCE, || unread_by_redis(redis.port()) > 0),
        "the publish reached Redis: {}",
        first.stderr()
    );
    first.kill().expect("SIGKILL");
    let killed = first.wait(PATIENCE).expect("dies");
    assert_eq!(killed.status.code(), None, "{}", killed.stderr);
    redis.resume();
    assert!(
        wait_until(PATIENCE, || redis.len(STREAM) == 2),
        "the script sent before the kill is applied"
    );
    let added = event_ids(&redis);
    // The delivery was never recorded: the state file still holds the
    // event, under the id the stream has.
    let resent = pending_ids(&cli.state);
    assert_eq!(resent, added[1..], "{added:?}");

    // The restart sends it again with its id; Redis adds nothing.
    let stderr = cli.run_ticks("2");
    assert!(
        stderr.contains("probe event published") && stderr.contains(&resent[0]),
        "re-sent: {stderr}"
    );
    assert!(
        pending_ids(&cli.state).is_empty(),
        "the delivery is recorded"
    );
    // A consumer reading the stream sees each event once.
    assert_eq!(event_ids(&redis), added);
    let events = redis.events(STREAM);
    let records = cli.fleet.records();
    let games: Vec<&str> = events.iter().map(|e| e.game_id.as_str()).collect();
    assert_eq!(
        games,
        [records[0].game_id.as_str(), records[1].game_id.as_str()]
    );
    for (id, event) in added.iter().zip(&events) {
        assert!(
            id.ends_with(&format!(":probe_failed:{}", event.game_id)),
            "{id} for {event:?}"
        );
    }
}

#[test]
fn d5_a_state_file_restored_from_a_backup_resends_only_ids_already_added() {
    // An operator's slip: an older state file, whose pending events were
    // delivered since, is put back.
    let mut redis = TestRedis::start();
    let cli = Cli::new(&redis, 3, Behaviour::Status(500), "redis-backup");
    let backup = cli.state.with_extension("backup");
    // Redis down: three probe_failed wait in the state file.
    redis.stop();
    cli.run_ticks("2");
    assert_eq!(pending_ids(&cli.state).len(), 3);
    std::fs::copy(&cli.state, &backup).expect("backup");
    redis.restart().expect("restart on the same port");
    cli.run_ticks("1");
    let added = event_ids(&redis);
    assert_eq!(added.len(), 3);
    assert!(pending_ids(&cli.state).is_empty());

    std::fs::copy(&backup, &cli.state).expect("restore the backup");
    cli.run_ticks("1");
    assert!(
        pending_ids(&cli.state).is_empty(),
        "the repeats count as delivered"
    );
    assert_eq!(event_ids(&redis), added, "nothing added twice");
}

#[test]
fn d4_an_acl_user_needs_eval_and_the_markers_keys_and_is_refused_by_name_without() {
    let redis = TestRedis::start();
    let user = |name: &str, rules: &[&str]| {
        let mut command = vec!["ACL", "SETUSER", name, "on", ">pw", "+ping"];
        command.extend_from_slice(rules);
        redis.command(&command);
        let url = format!("redis://{name}:pw@127.0.0.1:{}/{STREAM}", redis.port());
        let target = RedisTarget::parse(&url).expect("a valid URL");
        RedisStreamPublisher::new(target, 0, &TlsClient::system()).expect("a client")
    };
    let event = with_id(recovered_at(5));
    // XADD alone, as before ids: refused, naming the missing right.
    let mut xadd_only = user("xadd-only", &["~*", "+xadd"]);
    let text = xadd_only.publish(&event).expect_err("no EVAL").to_string();
    assert!(
        text.ends_with("NoPerm: this user has no permissions to run the 'eval' command"),
        "{text}"
    );
    // The stream's key only: the marker's key is refused inside the script.
    let stream_only = &["+eval", "+exists", "+xadd", "+set", &format!("~{STREAM}")];
    let text = user("stream-only", stream_only)
        .publish(&event)
        .expect_err("no marker key")
        .to_string();
    assert!(text.contains("NoPerm"), "{text}");
    assert_eq!(redis.len(STREAM), 0, "nothing added without its marker");
    // What the README names is enough.
    let mut enough = user(
        "prober",
        &[
            "+eval",
            "+exists",
            "+xadd",
            "+set",
            &format!("~{STREAM}"),
            &format!("~hp:event:{STREAM}:*"),
        ],
    );
    enough.publish(&event).expect("published");
    enough.publish(&event).expect("a repeat is delivered");
    assert_eq!(event_ids(&redis), [event.id.to_string()]);
    // With --ha the fence keys too: refused without them, enough with
    // what the README adds (`+get ~hp:fence:STREAM:*`).
    let lease = ShardLease { shard: 1, epoch: 1 };
    let fenced = with_id(recovered_at(6));
    let text = enough
        .publish_fenced(&fenced, lease)
        .expect_err("no fence key")
        .to_string();
    assert!(text.contains("NoPerm"), "{text}");
    let mut ha = user(
        "prober-ha",
        &[
            "+eval",
            "+exists",
            "+xadd",
            "+set",
            "+get",
            &format!("~{STREAM}"),
            &format!("~hp:event:{STREAM}:*"),
            &format!("~hp:fence:{STREAM}:*"),
        ],
    );
    ha.raise_fence(lease).expect("the fence raised");
    ha.publish_fenced(&fenced, lease)
        .expect("published under the fence");
    assert_eq!(
        event_ids(&redis),
        [event.id.to_string(), fenced.id.to_string()]
    );
}

#[test]
fn ha_a_fenced_publish_under_an_older_epoch_is_refused_and_a_newer_one_raises_the_fence() {
    let redis = TestRedis::start();
    let url = redis.url(STREAM);
    let target = RedisTarget::parse(&url).expect("a valid URL");
    let mut publisher =
        RedisStreamPublisher::new(target, 0, &TlsClient::system()).expect("a client");
    let lease = |epoch| ShardLease { shard: 3, epoch };
    let first = with_id(recovered_at(5));
    publisher
        .publish_fenced(&first, lease(2))
        .expect("epoch 2 raises the fence");
    let entry = &redis.entries(STREAM)[0];
    assert_eq!(
        (entry.get("shard"), entry.get("epoch")),
        (Some("3"), Some("2"))
    );
    // A stale owner (epoch 1) is refused, even for an event not yet added.
    let second = with_id(recovered_at(6));
    match publisher.publish_fenced(&second, lease(1)) {
        Err(PublishError::Fenced {
            lease: refused,
            newer,
            ..
        }) => {
            assert_eq!((refused, newer), (lease(1), 2));
        }
        other => panic!("expected a fenced refusal, got {other:?}"),
    }
    assert_eq!(redis.len(STREAM), 1, "nothing added by a stale owner");
    // The same epoch, a newer one, and a re-send under it: each id added once.
    publisher
        .publish_fenced(&second, lease(2))
        .expect("epoch 2 again");
    publisher
        .publish_fenced(&second, lease(3))
        .expect("a re-send under epoch 3 is delivered");
    assert_eq!(redis.len(STREAM), 2);
    assert!(matches!(
        publisher.publish_fenced(&first, lease(2)),
        Err(PublishError::Fenced { newer: 3, .. })
    ));
    // Another shard's fence is its own; an unfenced publish passes any fence.
    publisher
        .publish_fenced(&with_id(recovered_at(7)), ShardLease { shard: 4, epoch: 1 })
        .expect("shard 4 has no fence yet");
    publisher
        .publish(&with_id(recovered_at(8)))
        .expect("unfenced");
    assert_eq!(redis.len(STREAM), 4);
    // A new owner raises the fence as it loads the shard, before publishing:
    // the old owner is refused at once; a lower raise changes nothing.
    publisher
        .raise_fence(ShardLease { shard: 4, epoch: 6 })
        .expect("raised");
    publisher
        .raise_fence(ShardLease { shard: 4, epoch: 2 })
        .expect("not lowered");
    assert!(matches!(
        publisher.publish_fenced(&with_id(recovered_at(9)), ShardLease { shard: 4, epoch: 5 }),
        Err(PublishError::Fenced { newer: 6, .. })
    ));
    assert_eq!(redis.len(STREAM), 4);
}
