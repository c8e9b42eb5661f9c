//! `healthprobe run` with its URLs and passwords from the environment and
//! password files (never on the command line): they are used, and no
//! password ever shows on stderr, stdout or `--help`.

use std::process::Command;
use std::time::Duration;

use healthprobe_tests::{
    Behaviour, Finished, Fleet, HealthprobeProcess, ScratchDir, TestRedis, free_port, wait_until,
    write_records_file,
};

const PATIENCE: Duration = Duration::from_secs(20);

fn run(command: Command) -> Finished {
    HealthprobeProcess::spawn_command(command)
        .expect("start healthprobe")
        .wait(PATIENCE)
        .expect("exits")
}

fn assert_hidden(finished: &Finished, secret: &str) {
    assert!(!finished.stderr.contains(secret), "{finished:?}");
    assert!(!finished.stdout.contains(secret), "{finished:?}");
}

#[test]
fn help_names_the_environment_variables_but_never_their_values() {
    let mut command = HealthprobeProcess::command();
    command
        .args(["run", "--help"])
        .env(
            "HEALTHPROBE_RECORDS",
            "postgres://alice:Help-s3cret@db/fleet",
        )
        .env("HEALTHPROBE_EVENTS", "redis://:Help-s3cret@h/s");
    let finished = run(command);
    assert_eq!(finished.status.code(), Some(0), "{finished:?}");
    for name in [
        "HEALTHPROBE_RECORDS",
        "HEALTHPROBE_EVENTS",
        "HEALTHPROBE_RECORDS_PASSWORD_FILE",
        "HEALTHPROBE_EVENTS_PASSWORD_FILE",
    ] {
        assert!(
            finished.stdout.contains(name),
            "{name}: {}",
            finished.stdout
        );
    }
    assert_hidden(&finished, "Help-s3cret");
}

#[test]
fn a_records_url_from_the_environment_is_used_and_its_password_never_shows() {
    let port = free_port();
    let mut command = HealthprobeProcess::command();
    command.args(["run", "--ticks", "1"]).env(
        "HEALTHPROBE_RECORDS",
        format!("postgresql://alice:Env-s3cret@127.0.0.1:{port}/fleet"),
    );
    let finished = run(command);
    // The URL was used: the server it names was tried, and is down.
    assert_eq!(finished.status.code(), Some(1), "{finished:?}");
    assert_eq!(
        finished.stderr,
        format!(
            "healthprobe: postgres postgres://alice@127.0.0.1:{port}/fleet: \
             error connecting to server: Connection refused (os error 111)\n"
        )
    );
    assert_hidden(&finished, "Env-s3cret");
}

#[test]
fn malformed_records_urls_from_the_environment_exit_2_without_the_password() {
    let hostile = [
        "postgres://h:not-a-port/db?password=Env-s3cret",
        "postgres://h/db?sslmode=disable&password=Env-s3cret&port=x",
        "postgres://alice:Env-s3cret/fleet:x",
        "postgres://alice:Env@s3cret@h:x/db",
        "postgresql://alice:Env-s3cret@[::1/db",
    ];
    for url in hostile {
        let mut command = HealthprobeProcess::command();
        command
            .args(["run", "--ticks", "1"])
            .env("HEALTHPROBE_RECORDS", url);
        let finished = run(command);
        assert_eq!(finished.status.code(), Some(2), "{url}: {finished:?}");
        assert!(
            finished
                .stderr
                .starts_with("healthprobe: --records: invalid PostgreSQL URL "),
            "{url}: {finished:?}"
        );
        assert_hidden(&finished, "s3cret");
    }
}

#[test]
fn a_password_file_that_cannot_be_read_exits_2_naming_it() {
    let dir = ScratchDir::new("secrets").expect("scratch dir");
    let missing = dir.join("no-such-password");
    let mut command = HealthprobeProcess::command();
    command
        .args(["run", "--ticks", "1"])
        .env("HEALTHPROBE_RECORDS", "postgres://alice@127.0.0.1:1/fleet")
        .env("HEALTHPROBE_RECORDS_PASSWORD_FILE", &missing);
    let finished = run(command);
    assert_eq!(finished.status.code(), Some(2), "{finished:?}");
    assert_eq!(
        finished.stderr,
        format!(
            "healthprobe: --records-password-file {}: cannot read the password: \
             No such file or directory (os error 2)\n",
            missing.display()
        )
    );

    // The flag form, for --events: the same message.
    let records = dir.join("records.json");
    write_records_file(&records, &[]).expect("write records");
    let finished = run({
        let mut command = HealthprobeProcess::command();
        command
            .args(["run", "--ticks", "1", "--records"])
            .arg(&records)
            .arg("--events")
            .arg("redis://prober@127.0.0.1:1/s")
            .arg("--events-password-file")
            .arg(&missing);
        command
    });
    assert_eq!(finished.status.code(), Some(2), "{finished:?}");
    assert!(
        finished.stderr.starts_with(&format!(
            "healthprobe: --events-password-file {}: cannot read the password: ",
            missing.display()
        )),
        "{finished:?}"
    );
}

#[test]
fn a_password_file_given_for_a_records_file_is_refused() {
    let mut command = HealthprobeProcess::command();
    command
        .args(["run", "--ticks", "1", "--records", "records.json"])
        .env("HEALTHPROBE_RECORDS_PASSWORD_FILE", "/dev/null");
    let finished = run(command);
    assert_eq!(finished.status.code(), Some(2), "{finished:?}");
    assert_eq!(
        finished.stderr,
        "healthprobe: invalid setting: --records-password-file is only used with \
         a postgres:// URL in --records\n"
    );
}

#[test]
fn a_password_file_with_a_down_database_never_shows_the_password() {
    let dir = ScratchDir::new("secrets").expect("scratch dir");
    let password = dir.join("pg-password");
    std::fs::write(&password, "F1le-s3cret\n").expect("write");
    let port = free_port();
    let mut command = HealthprobeProcess::command();
    command
        .args(["run", "--ticks", "1", "--records-password-file"])
        .arg(&password)
        .env(
            "HEALTHPROBE_RECORDS",
            format!("postgres://alice@127.0.0.1:{port}/fleet"),
        );
    let finished = run(command);
    assert_eq!(finished.status.code(), Some(1), "{finished:?}");
    assert!(
        finished.stderr.starts_with(&format!(
            "healthprobe: postgres postgres://alice@127.0.0.1:{port}/fleet: "
        )),
        "{finished:?}"
    );
    assert_hidden(&finished, "F1le-s3cret");
}

#[test]
fn redis_events_from_the_environment_authenticate_with_a_password_file() {
    let redis = TestRedis::start();
    redis.command(&[
        "ACL",
        "SETUSER",
        "prober",
        "on",
        ">F1le-s3cret",
        "~*",
        "+@all",
    ]);
    let fleet = Fleet::uniform(1, Behaviour::Status(500)).expect("start fleet");
    let dir = ScratchDir::new("secrets").expect("scratch dir");
    let records = dir.join("records.json");
    fleet.write_records(&records).expect("write records");
    let password = dir.join("redis-password");
    std::fs::write(&password, "F1le-s3cret\nignored second line\n").expect("write");
    let url = format!("redis://prober@127.0.0.1:{}/events", redis.port());

    let mut command = HealthprobeProcess::command();
    command
        .args(["run", "--ticks", "2", "--interval", "50ms"])
        .args(["--failures-threshold", "2", "--probe-timeout", "1s"])
        .env("HEALTHPROBE_RECORDS", &records)
        .env("HEALTHPROBE_EVENTS", &url)
        .env("HEALTHPROBE_EVENTS_PASSWORD_FILE", &password);
    let finished = run(command);
    assert_eq!(finished.status.code(), Some(0), "{finished:?}");
    assert!(
        wait_until(PATIENCE, || redis.len("events") == 1),
        "the probe_failed event is in the stream: {finished:?}"
    );
    let events = redis.events("events");
    assert_eq!(events[0].game_id, Fleet::game_id(0));
    assert_hidden(&finished, "F1le-s3cret");

    // A wrong password: the publish is refused (events pending), and the
    // warnings name the destination without any password.
    std::fs::write(&password, "Wr0ng-s3cret\n").expect("write");
    let mut command = HealthprobeProcess::command();
    command
        .args(["run", "--ticks", "2", "--interval", "50ms"])
        .args(["--failures-threshold", "2", "--probe-timeout", "1s"])
        .env("HEALTHPROBE_RECORDS", &records)
        .env("HEALTHPROBE_EVENTS", &url)
        .env("HEALTHPROBE_EVENTS_PASSWORD_FILE", &password);
    let finished = run(command);
    assert_eq!(finished.status.code(), Some(0), "{finished:?}");
    assert!(
        finished
            .stderr
            .contains(&format!("redis 127.0.0.1:{}/events", redis.port())),
        "{finished:?}"
    );
    assert!(finished.stderr.contains("pending"), "{finished:?}");
    assert_hidden(&finished, "Wr0ng-s3cret");
    assert_eq!(redis.len("events"), 1, "nothing more was added");
}
