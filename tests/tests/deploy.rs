//! The systemd unit and environment file in `deploy/` work with this build.
//!
//! - `systemd-analyze verify` accepts the unit without a single warning
//!   (Debian's `systemd` package has it; without it the test fails saying so).
//! - The unit's `ExecStart` command line, with the environment file's
//!   settings, runs a tick and writes its journal in the state directory.
//! - Every variable the environment file names is one the binary reads.

use std::path::{Path, PathBuf};
use std::process::Command;

use healthprobe_tests::{
    RuntimeRecord, ScratchDir, healthprobe_binary, missing_capability, write_records_file,
};

fn deploy(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(name)
}

fn read(name: &str) -> String {
    let path = deploy(name);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// Where the unit expects the binary to be installed.
const INSTALLED: &str = "/usr/local/bin/healthprobe";

/// The unit's `ExecStart` words, with `%S` (the state directories' root) as given.
fn exec_start(unit: &str, state_root: &Path) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|line| line.strip_prefix("ExecStart="))
        .expect("the unit has an ExecStart line");
    let state_root = state_root.to_str().expect("UTF-8 path");
    line.split_whitespace()
        .map(|word| word.replace("%S", state_root))
        .collect()
}

/// The environment file's settings: `(name, value, commented out)`.
fn env_file_settings() -> Vec<(String, String, bool)> {
    read("healthprobe.env")
        .lines()
        .filter_map(|line| {
            let (commented, setting) = match line.strip_prefix('#') {
                Some(rest) => (true, rest),
                None => (false, line),
            };
            let (name, value) = setting.split_once('=')?;
            let is_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            is_name.then(|| (name.to_owned(), value.to_owned(), commented))
        })
        .collect()
}

#[test]
fn systemd_analyze_verify_accepts_the_unit_without_a_warning() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        return missing_capability(
            "systemd-analyze is not installed",
            "Install Debian's `systemd` package (`cargo xtask test` does, as root)",
        );
    };
    assert!(version.status.success(), "systemd-analyze --version failed");
    let dir = ScratchDir::new("deploy-verify").expect("scratch dir");
    let unit = read("healthprobe.service");
    assert!(unit.contains(&format!("ExecStart={INSTALLED} ")), "{unit}");
    // verify checks that the binary exists: point it at this build.
    let binary = healthprobe_binary().to_str().expect("UTF-8 path");
    let copy = dir.join("healthprobe.service");
    std::fs::write(&copy, unit.replace(INSTALLED, binary)).expect("write the unit");
    let output = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .expect("run systemd-analyze");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // An unknown or malformed setting is only a warning ("…, ignoring"), exit 0: any output fails.
    assert!(
        output.status.success() && said.trim().is_empty(),
        "systemd-analyze verify ({}):\n{said}",
        output.status
    );
}

#[test]
fn the_units_command_line_with_the_env_files_settings_runs_a_tick() {
    let dir = ScratchDir::new("deploy-run").expect("scratch dir");
    let state_dir = dir.join("healthprobe"); // StateDirectory=healthprobe under %S
    std::fs::create_dir(&state_dir).expect("state dir");
    let records = dir.join("records.json");
    write_records_file(
        &records,
        &[RuntimeRecord::running("g1", "c1", "http://127.0.0.1:9/")],
    )
    .expect("records");
    let events = dir.join("events.jsonl");

    let words = exec_start(&read("healthprobe.service"), dir.path());
    assert_eq!(words[0], INSTALLED);
    let mut command = Command::new(healthprobe_binary());
    command.args(&words[1..]).args(["--ticks", "1"]).env_clear();
    let mut settings = 0;
    for (name, value, commented) in env_file_settings() {
        if !commented && name.starts_with("RTMANAGER_") {
            command.env(name, value);
            settings += 1;
        }
    }
    assert!(settings >= 5, "the env file sets the probing policy");
    // Its records and events name this machine's files instead.
    command
        .env("HEALTHPROBE_RECORDS", &records)
        .env("HEALTHPROBE_EVENTS", &events);
    let output = command.output().expect("run healthprobe");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}:\n{stderr}", output.status);
    // JSON logs, as the unit asks for (journald keeps them structured).
    assert!(stderr.lines().all(|line| line.starts_with('{')), "{stderr}");
    let journal = std::fs::read_to_string(state_dir.join("journal.jsonl")).expect("the journal");
    assert!(journal.contains(r#""game_id":"g1""#), "{journal}");
}

#[test]
fn every_variable_of_the_env_file_is_one_the_binary_reads() {
    let help = Command::new(healthprobe_binary())
        .args(["run", "--help"])
        .output()
        .expect("run healthprobe run --help");
    let help = String::from_utf8_lossy(&help.stdout);
    let settings = env_file_settings();
    assert!(settings.len() >= 10, "{settings:?}");
    for (name, _, _) in settings {
        if name == "RUST_LOG" {
            continue; // the log filter, read by tracing rather than a flag
        }
        assert!(
            // `[env: NAME=]`, or `[env: NAME]` for the settings whose value may hold a password.
            help.contains(&format!("[env: {name}=")) || help.contains(&format!("[env: {name}]")),
            "{name} is not a variable of `healthprobe run`:\n{help}"
        );
    }
}
