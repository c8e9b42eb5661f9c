//! `cargo xtask test`: the README's one test command.
//!
//! The suite starts real PostgreSQL and Redis servers of its own on
//! 127.0.0.1 (`tests/src/postgres.rs`, `tests/src/redis.rs`), checks the
//! systemd unit with `systemd-analyze` (`tests/tests/deploy.rs`) and opens
//! the status page in headless Chromium (`tests/tests/status_page.rs`). This
//! finds them exactly where those tests look (it compiles the tests' own
//! `tests/src/servers.rs`); when one is missing and this is Debian or
//! Ubuntu (`apt-get` exists) run as root or with passwordless `sudo`, it
//! installs Debian's `postgresql`, `redis-server`, `systemd` and `chromium` packages;
//! otherwise it says exactly what to install and exits 1. Then it runs
//! `cargo test --workspace --no-fail-fast`, with any further arguments
//! passed on, and exits with its status.
//!
//! std only, so it builds in a second or two on a fresh clone.

#[path = "../../tests/src/servers.rs"]
mod servers;

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  test [ARGS...]  find PostgreSQL, redis-server, systemd-analyze and chromium (installing
                  Debian's packages when root or passwordless sudo allows),
                  then run `cargo test --workspace --no-fail-fast ARGS...`
  servers         only find or install them, and say where they are
  help            this text
";

/// The Debian packages the suite's servers and programs come from.
const POSTGRES_PACKAGE: &str = "postgresql";
const REDIS_PACKAGE: &str = "redis-server";
const SYSTEMD_PACKAGE: &str = "systemd";
const CHROMIUM_PACKAGE: &str = "chromium";

/// What checks the systemd unit (`tests/tests/deploy.rs` runs it from `PATH`).
const SYSTEMD_ANALYZE: &str = "systemd-analyze";

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let task = args.next();
    let rest: Vec<OsString> = args.collect();
    match task.as_ref().and_then(|task| task.to_str()) {
        Some("test") => match ensure_servers() {
            Ok(()) => run_tests(&rest),
            Err(message) => fail(&message),
        },
        Some("servers") if rest.is_empty() => match ensure_servers() {
            Ok(()) => ExitCode::SUCCESS,
            Err(message) => fail(&message),
        },
        Some("help" | "--help" | "-h") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprint!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("xtask: {message}");
    ExitCode::FAILURE
}

/// What the suite needs, as found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    /// The directory with `initdb` and `postgres`.
    postgres: Option<PathBuf>,
    /// Whether the `postgres` system user exists (needed only as root:
    /// PostgreSQL refuses to run as root, so the tests run it as that user).
    postgres_user: bool,
    /// The `redis-server` program.
    redis: Option<PathBuf>,
    /// The `systemd-analyze` program.
    systemd_analyze: Option<PathBuf>,
    /// The headless browser of the status page's test.
    chromium: Option<PathBuf>,
}

impl Found {
    fn on_this_machine() -> Self {
        Self {
            postgres: servers::postgres_bin_dir(),
            postgres_user: servers::system_user("postgres").is_some(),
            redis: servers::redis_server_path(),
            systemd_analyze: servers::resolve_program(
                Path::new(SYSTEMD_ANALYZE),
                std::env::var_os("PATH"),
            ),
            chromium: servers::chromium_path(),
        }
    }

    /// The Debian packages that would provide what is missing.
    fn missing_packages(&self, root: bool) -> Vec<&'static str> {
        let mut packages = Vec::new();
        if self.postgres.is_none() || (root && !self.postgres_user) {
            packages.push(POSTGRES_PACKAGE);
        }
        if self.redis.is_none() {
            packages.push(REDIS_PACKAGE);
        }
        if self.systemd_analyze.is_none() {
            packages.push(SYSTEMD_PACKAGE);
        }
        if self.chromium.is_none() {
            packages.push(CHROMIUM_PACKAGE);
        }
        packages
    }

    /// What is missing and exactly what to install, for a machine where
    /// this cannot install it.
    fn what_to_install(&self, root: bool, why_not: &str) -> String {
        let mut text = String::from(
            "the PostgreSQL, Redis, deploy and status page tests need programs this machine does not have:\n",
        );
        if self.postgres.is_none() {
            let _ = writeln!(
                text,
                "  - PostgreSQL's initdb and postgres: not on PATH nor under {}/*/bin",
                servers::DEBIAN_POSTGRES_ROOT
            );
        } else if root && !self.postgres_user {
            text.push_str(
                "  - the `postgres` system user: PostgreSQL refuses to run as root, so as root \
                 the tests run it as that user, which does not exist\n",
            );
        }
        if self.redis.is_none() {
            let _ = writeln!(
                text,
                "  - redis-server: `{}` not found (on PATH, or REDIS_SERVER)",
                servers::redis_server_program().display()
            );
        }
        if self.systemd_analyze.is_none() {
            let _ = writeln!(text, "  - {SYSTEMD_ANALYZE}: not on PATH");
        }
        if self.chromium.is_none() {
            let _ = writeln!(
                text,
                "  - chromium: `{}` not found (on PATH, or CHROMIUM)",
                servers::chromium_program().display()
            );
        }
        let packages = self.missing_packages(root).join(" ");
        let _ = write!(
            text,
            "{why_not}, so install them and run `cargo xtask test` again:\n  \
             on Debian or Ubuntu: sudo apt-get install {packages}\n  \
             elsewhere: PostgreSQL's server programs `initdb` and `postgres` on PATH, \
             `redis-server` on PATH (or REDIS_SERVER=/path/to/redis-server), \
             systemd's `{SYSTEMD_ANALYZE}` on PATH, \
             and Chromium on PATH (or CHROMIUM=/path/to/chromium)"
        );
        text
    }
}

/// How packages can be installed here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Installer {
    /// apt-get as root.
    AptRoot,
    /// apt-get through `sudo -n` (passwordless).
    AptSudo,
}

impl Installer {
    /// The commands that install `packages`, in order.
    fn commands(self, packages: &[&str]) -> Vec<Vec<String>> {
        let prefix: &[&str] = match self {
            Self::AptRoot => &["env", "DEBIAN_FRONTEND=noninteractive"],
            Self::AptSudo => &["sudo", "-n", "env", "DEBIAN_FRONTEND=noninteractive"],
        };
        let update: &[&str] = &["apt-get", "update", "-q"];
        let install: &[&str] = &["apt-get", "install", "-y", "-q", "--no-install-recommends"];
        let command = |words: &[&str], extra: &[&str]| {
            let all = prefix.iter().chain(words).chain(extra);
            all.map(|word| (*word).to_owned()).collect()
        };
        vec![command(update, &[]), command(install, packages)]
    }
}

/// Find the servers; install what is missing when this machine allows.
fn ensure_servers() -> Result<(), String> {
    let root = effective_uid() == Some(0);
    let found = Found::on_this_machine();
    let missing = found.missing_packages(root);
    if missing.is_empty() {
        report(&found);
        return Ok(());
    }
    let installer = match installer(root) {
        Ok(installer) => installer,
        Err(why_not) => return Err(found.what_to_install(root, &why_not)),
    };
    eprintln!(
        "xtask: installing Debian's {} for the PostgreSQL, Redis, deploy and status page tests",
        missing.join(" ")
    );
    for command in installer.commands(&missing) {
        eprintln!("xtask: {}", command.join(" "));
        let status = Command::new(&command[0])
            .args(&command[1..])
            .stdin(Stdio::null())
            .status()
            .map_err(|err| format!("cannot run {}: {err}", command[0]))?;
        if !status.success() {
            return Err(format!("`{}` failed ({status})", command.join(" ")));
        }
    }
    let found = Found::on_this_machine();
    if !found.missing_packages(root).is_empty() {
        return Err(found.what_to_install(root, "they are still missing after the install"));
    }
    report(&found);
    Ok(())
}

/// Say where the servers and programs are.
fn report(found: &Found) {
    let shown = |path: &Option<PathBuf>| {
        path.as_deref()
            .map_or_else(|| "(missing)".into(), |p| p.display().to_string())
    };
    eprintln!(
        "xtask: PostgreSQL in {}, redis-server at {}, {SYSTEMD_ANALYZE} at {}, chromium at {}",
        shown(&found.postgres),
        shown(&found.redis),
        shown(&found.systemd_analyze),
        shown(&found.chromium)
    );
}

/// Whether (and how) this machine lets us install Debian packages, or why not.
fn installer(root: bool) -> Result<Installer, String> {
    let path = std::env::var_os("PATH");
    if servers::resolve_program(Path::new("apt-get"), path.clone()).is_none() {
        return Err("this is not Debian or Ubuntu (no apt-get)".into());
    }
    if root {
        return Ok(Installer::AptRoot);
    }
    let sudo_works = servers::resolve_program(Path::new("sudo"), path).is_some()
        && Command::new("sudo")
            .args(["-n", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
    if sudo_works {
        Ok(Installer::AptSudo)
    } else {
        Err("this is not root and sudo needs a password (or is missing)".into())
    }
}

/// The effective uid: from /proc/self/status, else `id -u`.
fn effective_uid() -> Option<u32> {
    if let Some(uid) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| effective_uid_in_status(&status))
    {
        return Some(uid);
    }
    let output = Command::new("id").arg("-u").output().ok()?;
    String::from_utf8(output.stdout).ok()?.trim().parse().ok()
}

/// The effective uid in the text of /proc/PID/status (`Uid: real effective saved fs`).
fn effective_uid_in_status(status: &str) -> Option<u32> {
    let line = status.lines().find_map(|line| line.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// `cargo test --workspace --no-fail-fast ARGS...` from the workspace root.
fn run_tests(args: &[OsString]) -> ExitCode {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ lies inside the workspace");
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args(["test", "--workspace", "--no-fail-fast"])
        .args(args);
    eprintln!(
        "xtask: cargo test --workspace --no-fail-fast{}",
        args.iter()
            .map(|arg| format!(" {}", arg.to_string_lossy()))
            .collect::<String>()
    );
    match command.status() {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("xtask: the tests failed ({status})");
            // A signal has no code: still a failure.
            ExitCode::from(
                status
                    .code()
                    .map_or(1, |code| u8::try_from(code).unwrap_or(1)),
            )
        }
        Err(err) => fail(&format!("cannot run cargo: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn found(postgres: bool, postgres_user: bool, redis: bool) -> Found {
        Found {
            systemd_analyze: Some(PathBuf::from("/usr/bin/systemd-analyze")),
            chromium: Some(PathBuf::from("/usr/bin/chromium")),
            postgres: postgres.then(|| PathBuf::from("/usr/lib/postgresql/15/bin")),
            postgres_user,
            redis: redis.then(|| PathBuf::from("/usr/bin/redis-server")),
        }
    }

    #[test]
    fn the_packages_for_what_is_missing() {
        assert!(found(true, true, true).missing_packages(true).is_empty());
        assert!(found(true, false, true).missing_packages(false).is_empty());
        // As root the tests run PostgreSQL as `postgres`, which the package creates.
        assert_eq!(
            found(true, false, true).missing_packages(true),
            ["postgresql"]
        );
        assert_eq!(
            found(false, true, true).missing_packages(false),
            ["postgresql"]
        );
        assert_eq!(
            found(true, true, false).missing_packages(false),
            ["redis-server"]
        );
        assert_eq!(
            found(false, false, false).missing_packages(false),
            ["postgresql", "redis-server"]
        );
    }

    #[test]
    fn what_to_install_names_each_missing_server_and_the_exact_packages() {
        let text = found(false, false, false).what_to_install(false, "no apt-get");
        assert!(
            text.contains(
                "PostgreSQL's initdb and postgres: not on PATH nor under /usr/lib/postgresql/*/bin"
            ),
            "{text}"
        );
        assert!(text.contains("redis-server: `"), "{text}");
        assert!(text.contains("no apt-get, so install them"), "{text}");
        assert!(
            text.contains("sudo apt-get install postgresql redis-server\n"),
            "{text}"
        );

        let text = found(true, false, true).what_to_install(true, "why");
        assert!(text.contains("the `postgres` system user"), "{text}");
        assert!(!text.contains("redis-server:"), "{text}");
        assert!(text.contains("sudo apt-get install postgresql\n"), "{text}");
    }

    #[test]
    fn a_missing_systemd_analyze_is_installed_from_systemd() {
        let without = Found {
            systemd_analyze: None,
            ..found(true, true, true)
        };
        assert_eq!(without.missing_packages(true), ["systemd"]);
        let text = without.what_to_install(true, "why");
        assert!(
            text.contains("  - systemd-analyze: not on PATH\n"),
            "{text}"
        );
        assert!(text.contains("sudo apt-get install systemd\n"), "{text}");
        assert!(!text.contains("redis-server:"), "{text}");
    }

    #[test]
    fn a_missing_chromium_is_installed_from_chromium() {
        let without = Found {
            chromium: None,
            ..found(true, true, true)
        };
        assert_eq!(without.missing_packages(false), ["chromium"]);
        let text = without.what_to_install(false, "why");
        assert!(text.contains("  - chromium: `"), "{text}");
        assert!(text.contains("sudo apt-get install chromium\n"), "{text}");
        assert!(!text.contains("redis-server:"), "{text}");
    }

    #[test]
    fn install_commands_update_then_install_without_prompts() {
        let commands = Installer::AptRoot.commands(&["postgresql", "redis-server"]);
        assert_eq!(
            commands,
            [
                vec![
                    "env",
                    "DEBIAN_FRONTEND=noninteractive",
                    "apt-get",
                    "update",
                    "-q"
                ],
                vec![
                    "env",
                    "DEBIAN_FRONTEND=noninteractive",
                    "apt-get",
                    "install",
                    "-y",
                    "-q",
                    "--no-install-recommends",
                    "postgresql",
                    "redis-server"
                ],
            ]
        );
        let commands = Installer::AptSudo.commands(&["redis-server"]);
        assert!(
            commands
                .iter()
                .all(|command| command[..2] == ["sudo", "-n"])
        );
        assert_eq!(commands[1].last().map(String::as_str), Some("redis-server"));
    }

    #[test]
    fn the_effective_uid_is_the_second_uid_field() {
        let status = "Name:\txtask\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(effective_uid_in_status(status), Some(0));
        assert_eq!(effective_uid_in_status("Name:\txtask\n"), None);
        assert!(effective_uid().is_some());
    }

    #[test]
    fn passwd_entries_give_uid_and_gid() {
        let passwd =
            "root:x:0:0:root:/root:/bin/bash\npostgres:x:104:110::/var/lib/postgresql:/bin/bash\n";
        assert_eq!(servers::passwd_entry(passwd, "postgres"), Some((104, 110)));
        assert_eq!(servers::passwd_entry(passwd, "postgre"), None);
        assert_eq!(servers::passwd_entry("postgres:x\n", "postgres"), None);
    }

    /// A scratch directory of fake server programs.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("scratch dir");
            Self(dir)
        }

        fn file(&self, relative: &str) -> PathBuf {
            let path = self.0.join(relative);
            fs::create_dir_all(path.parent().expect("has a parent")).expect("dirs");
            fs::write(&path, "").expect("file");
            path
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn postgres_is_found_on_path_first_then_the_newest_debian_version() {
        let scratch = Scratch::new("postgres");
        let root = scratch.0.join("lib");
        for version in ["13", "15", "9"] {
            scratch.file(&format!("lib/{version}/bin/initdb"));
            scratch.file(&format!("lib/{version}/bin/postgres"));
        }
        // A version without `postgres` (only the client) does not count.
        scratch.file("lib/17/bin/initdb");
        assert_eq!(
            servers::postgres_bin_dir_in(None, &root),
            Some(root.join("15/bin"))
        );

        scratch.file("path/initdb");
        scratch.file("path/postgres");
        let path = std::env::join_paths([scratch.0.join("empty"), scratch.0.join("path")]).ok();
        assert_eq!(
            servers::postgres_bin_dir_in(path, &root),
            Some(scratch.0.join("path"))
        );
        assert_eq!(
            servers::postgres_bin_dir_in(None, &scratch.0.join("none")),
            None
        );
    }

    #[test]
    fn a_program_is_resolved_on_path_unless_it_names_a_file() {
        let scratch = Scratch::new("program");
        let server = scratch.file("bin/redis-server");
        let path = || std::env::join_paths([scratch.0.join("nothing"), scratch.0.join("bin")]).ok();
        assert_eq!(
            servers::resolve_program(Path::new("redis-server"), path()),
            Some(server.clone())
        );
        assert_eq!(
            servers::resolve_program(Path::new("redis-cli"), path()),
            None
        );
        assert_eq!(
            servers::resolve_program(&server, None),
            Some(server.clone())
        );
        assert_eq!(
            servers::resolve_program(&scratch.0.join("bin/nope"), path()),
            None
        );
    }
}
