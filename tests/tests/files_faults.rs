//! Faults on the files themselves (issue 11): a full disk under the events
//! file, a state file shared by two processes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use healthprobe_core::{EventDetails, HealthEvent, Timestamp};
use healthprobe_shell::adapters::JsonlPublisher;
use healthprobe_shell::driver::ports::HealthEventPublisher;
use healthprobe_shell::driver::ports::StateError;
use healthprobe_shell::durability::durable::StateFile;
use healthprobe_tests::{
    Behaviour, Fleet, ScratchDir, healthprobe_binary, missing_capability, with_id,
};

fn event(index: u32) -> HealthEvent {
    HealthEvent {
        game_id: format!("game-{index:04}"),
        container_id: format!("container-{index:04}"),
        occurred_at: Timestamp::from_second(1_795_842_030).expect("valid"),
        details: EventDetails::ProbeFailed {
            consecutive_failures: 3,
            last_status: 503,
            last_error: "unexpected status 503".into(),
        },
    }
}

/// Unmounts the tmpfs when the test ends, however it ends.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// `healthprobe` whose writes stop at `bytes` into any file (`RLIMIT_FSIZE`):
/// a write that crosses the limit is cut short, the next fails with `EFBIG`
/// (`SIGXFSZ`, which would kill the process, is ignored). A disk that fills
/// mid-write, without root or a mount.
#[allow(unsafe_code)]
fn with_file_size_limit(mut command: Command, bytes: u64) -> Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec the closure only calls setrlimit(2) and
    // signal(2), which are async-signal-safe, and allocates nothing
    // (`last_os_error` reads errno into a plain value).
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0
                || libc::signal(libc::SIGXFSZ, libc::SIG_IGN) == libc::SIG_ERR
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

/// The `game_id` of each line of an events file, each line parsed whole.
fn event_games(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read the events file")
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|err| panic!("a torn or concatenated line {line:?}: {err}"));
            value["game_id"].as_str().expect("game_id").to_owned()
        })
        .collect()
}

/// D4: the events file reaches its size limit in the middle of a line. The
/// run cuts the partial line back, keeps the events pending (in its state
/// file at exit), and the next run, with room again, writes each of them
/// once, after everything the file already held.
#[test]
fn d4_a_write_cut_short_by_a_full_file_leaves_no_torn_line_and_the_next_run_writes_each_event_once()
{
    let fleet = Fleet::uniform(3, Behaviour::Status(503)).expect("fleet");
    let dir = ScratchDir::new("file-size-limit").expect("scratch");
    let records = dir.join("records.json");
    fleet.write_records(&records).expect("records");
    let state = dir.join("state.json");
    let events = dir.join("events.jsonl");
    // Events of an earlier run fill the file to 64 bytes short of the
    // limit, less than one line: the next line is cut mid-write.
    let mut earlier = JsonlPublisher::append(&events).expect("open");
    for index in 0..20 {
        earlier.publish(&with_id(event(index))).expect("written");
    }
    drop(earlier);
    let held = std::fs::read(&events).expect("read");
    let limit = held.len() as u64 + 64;
    let run = |command: Command| {
        let mut command = command;
        let out = command
            .arg("run")
            .arg("--records")
            .arg(&records)
            .arg("--state")
            .arg(&state)
            .arg("--events")
            .arg(&events)
            // One probe at a time: the events come in listing order.
            .args(["--failures-threshold", "1", "--max-concurrency", "1"])
            .args(["--ticks", "2"])
            .stdin(Stdio::null())
            .output()
            .expect("run healthprobe");
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (status, stderr) = run(with_file_size_limit(
        Command::new(healthprobe_binary()),
        limit,
    ));
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains("File too large"),
        "the write failed: {stderr}"
    );
    assert!(
        stderr.contains("undelivered events are kept in the state file"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&events).expect("read"),
        held,
        "the partial line was not cut back"
    );

    let (status, stderr) = run(Command::new(healthprobe_binary()));
    assert!(status.success(), "{status}: {stderr}");
    let mut expected: Vec<String> = (0..20).map(|index| format!("game-{index:04}")).collect();
    expected.extend((0..3).map(Fleet::game_id));
    assert_eq!(event_games(&events), expected);
}

/// D4 on a real full disk (`ENOSPC`): events to an 8 KiB tmpfs until it is
/// full, then the disk grows: no torn or concatenated line, and the file
/// holds exactly the accepted events, in order. Mounting needs root.
#[test]
fn d4_a_full_disk_leaves_no_torn_line_and_the_retry_writes_each_event_once() {
    let dir = ScratchDir::new("full-disk").expect("scratch");
    let mount_point = dir.join("tmpfs");
    std::fs::create_dir(&mount_point).expect("mount point");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8k", "tmpfs"])
        .arg(&mount_point)
        .stderr(Stdio::piped())
        .output();
    let why = match mounted {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        Err(err) => Some(format!("cannot run mount: {err}")),
    };
    if let Some(why) = why {
        return missing_capability(
            &format!("cannot mount a tmpfs: {why}"),
            "Run the tests as root (CAP_SYS_ADMIN), as CI does",
        );
    }
    let _mount = Mount(mount_point.clone());
    let path = mount_point.join("events.jsonl");
    let mut publisher = JsonlPublisher::append(&path).expect("open");
    let mut accepted = Vec::new();
    let mut refused = 0;
    let mut next = 0;
    while refused < 3 && next < 1_000 {
        match publisher.publish(&with_id(event(next))) {
            Ok(()) => {
                accepted.push(next);
                next += 1;
            }
            Err(err) => {
                assert!(!err.is_permanent(), "a full disk heals: {err}");
                refused += 1;
                let bytes = std::fs::read(&path).expect("read");
                assert!(bytes.ends_with(b"\n"), "torn line left after {err}");
            }
        }
    }
    assert_eq!(refused, 3, "the 8 KiB disk never filled");
    publisher.sync().expect("synced");
    let grown = Command::new("mount")
        .args(["-o", "remount,size=64k"])
        .arg(&mount_point)
        .status()
        .expect("remount");
    assert!(grown.success(), "remount failed");
    for index in next..next + 20 {
        publisher
            .publish(&with_id(event(index)))
            .expect("the disk grew");
        accepted.push(index);
    }
    publisher.sync().expect("synced");
    let games = event_games(&path);
    let expected: Vec<String> = accepted
        .iter()
        .map(|index| format!("game-{index:04}"))
        .collect();
    assert_eq!(games, expected);
}

/// A running `healthprobe run --state S` holds the lock; a second holder is
/// refused with the running process's PID, and accepted once it has exited.
#[test]
fn a_state_file_in_use_by_a_running_worker_is_refused_naming_its_pid() {
    let fleet = Fleet::uniform(1, Behaviour::Status(200)).expect("fleet");
    let dir = ScratchDir::new("state-lock").expect("scratch");
    let records = dir.join("records.json");
    fleet.write_records(&records).expect("records");
    let state = dir.join("state.json");
    let mut child = Command::new(healthprobe_binary())
        .arg("run")
        .arg("--records")
        .arg(&records)
        .arg("--state")
        .arg(&state)
        .args(["--interval", "1h", "--events"])
        .arg(dir.join("events.jsonl"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    // The snapshot is written under the lock: once it exists, the worker holds it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !state.exists() {
        assert!(
            Instant::now() < deadline,
            "the worker never wrote its state file"
        );
        assert!(
            child.try_wait().expect("wait").is_none(),
            "the worker exited"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = StateFile::new(&state)
        .lock()
        .expect_err("held by the worker");
    let holder = match &err {
        StateError::Locked { holder, .. } => *holder,
        _ => None,
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(holder, Some(pid), "{err}");
    assert!(err.to_string().contains(&format!("process {pid}")), "{err}");
    StateFile::new(&state)
        .lock()
        .expect("free once the holder exited");
}

/// `healthprobe run >&-`: the runtime's `/dev/null` stand-in for the closed
/// fd 1 is seen through, and the run is refused before its first probe
/// (exit 2) rather than counting events delivered to nowhere.
#[test]
fn a_run_with_a_closed_stdout_is_refused_at_start() {
    let dir = ScratchDir::new("closed-stdout").expect("scratch");
    let records = dir.join("records.json");
    let refused = healthprobe_tests::RefusedPort::new();
    std::fs::write(
        &records,
        format!(
            r#"[{{"game_id":"g1","current_container_id":"c1","engine_endpoint":"{}","status":"running"}}]"#,
            refused.url()
        ),
    )
    .expect("records");
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"exec "$0" run --records "$1" --failures-threshold 1 --ticks 2 >&-"#)
        .arg(healthprobe_binary())
        .arg(&records)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--events -: standard output (fd 1) is not open"),
        "{stderr}"
    );
    assert!(!stderr.contains("event published"), "{stderr}");
    assert!(!stderr.contains("tick finished"), "no tick ran: {stderr}");
    // With stdout open, the same run starts.
    let open = Command::new(healthprobe_binary())
        .args(["run", "--records"])
        .arg(&records)
        .args(["--failures-threshold", "1", "--ticks", "1"])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(open.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&open.stdout).contains("probe_failed"));
}
