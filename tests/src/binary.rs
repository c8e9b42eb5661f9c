//! Where the `healthprobe` binary is, for CLI end-to-end tests.
//!
//! `env!("CARGO_BIN_EXE_healthprobe")` exists only inside the shell
//! package, so this crate builds the binary itself, once per test process:
//! `cargo build -p healthprobe-shell --bin healthprobe` (the default features, as
//! users build it: `postgres` and `redis` included) with the target
//! directory and profile of the running test executable
//! (`<target>/<profile>/deps/<test>-<hash>`), then returns
//! `<target>/<profile>/healthprobe`. Cargo releases its build lock before it
//! runs tests, so this works under `cargo test -p healthprobe-tests` and
//! `cargo test --workspace`, and the binary is never stale. The first CLI
//! test of a cold target directory waits for that build (about 50 s on two
//! busy cores when the workspace test build unified features differently);
//! later ones find it up to date in a fraction of a second. Set
//! `HEALTHPROBE_BIN` to use a prebuilt binary instead (cross targets,
//! installed builds).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The path of an up-to-date `healthprobe` binary. Panics with the reason
/// if it cannot be built.
pub fn healthprobe_binary() -> &'static Path {
    match try_healthprobe_binary() {
        Ok(path) => path,
        Err(reason) => panic!("cannot provide the healthprobe binary: {reason}"),
    }
}

/// [`healthprobe_binary`], or why it cannot be built (for benches that
/// skip what they cannot run). Built once per process.
pub fn try_healthprobe_binary() -> Result<&'static Path, &'static str> {
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BINARY.get_or_init(locate) {
        Ok(path) => Ok(path),
        Err(reason) => Err(reason),
    }
}

fn locate() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("HEALTHPROBE_BIN") {
        return Ok(PathBuf::from(path));
    }
    let test_exe = std::env::current_exe().map_err(|err| format!("current_exe: {err}"))?;
    // <target>/<profile>/deps/<test>-<hash>
    let profile_dir = test_exe
        .parent()
        .filter(|deps| deps.file_name().is_some_and(|name| name == "deps"))
        .and_then(Path::parent)
        .ok_or_else(|| format!("{} is not in <target>/<profile>/deps", test_exe.display()))?;
    let target_dir = profile_dir
        .parent()
        .ok_or_else(|| format!("{} has no parent", profile_dir.display()))?;
    let profile = profile_dir
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| format!("{} has no profile name", profile_dir.display()))?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("the tests crate has no parent directory")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args([
            "build",
            "--quiet",
            "-p",
            "healthprobe-shell",
            "--bin",
            "healthprobe",
        ])
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    // What cargo sets for this test process, not for a build: a build script
    // that watches one (ring's, through cc, watches CARGO_MANIFEST_DIR) would
    // otherwise run again, and rebuild ring, rustls and the shell, each time
    // this build and a plain `cargo build` take turns.
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if name.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
            ]
            .contains(&name)
        {
            command.env_remove(name);
        }
    }
    // `debug` is the dev profile's directory; any other is named after its profile.
    if profile != "debug" {
        command.args(["--profile", profile]);
    }
    let output = command
        .output()
        .map_err(|err| format!("cannot run cargo: {err}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo build -p healthprobe-shell failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let binary = profile_dir.join(format!("healthprobe{}", std::env::consts::EXE_SUFFIX));
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!("{} was not built", binary.display()))
    }
}
