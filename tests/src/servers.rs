//! Where the real servers of the adapter tests are: PostgreSQL's `initdb`
//! and `postgres`, and `redis-server`; and the status page's browser,
//! `chromium`.
//!
//! std only, and free of this crate's other modules: `cargo xtask test`
//! compiles this very file (`#[path]` in `xtask/src/main.rs`) to find the
//! servers, or install them, before it runs the suite, so the xtask and
//! the tests (`TestPostgres`, `TestRedis`) can never
//! disagree about where they look.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

/// Where Debian's `postgresql` package puts each version's binaries
/// (`/usr/lib/postgresql/<version>/bin`).
pub const DEBIAN_POSTGRES_ROOT: &str = "/usr/lib/postgresql";

/// The directory holding both `initdb` and `postgres`: the first such
/// directory on `PATH`, else the newest version under
/// [`DEBIAN_POSTGRES_ROOT`]; `None` if neither has them.
pub fn postgres_bin_dir() -> Option<PathBuf> {
    postgres_bin_dir_in(std::env::var_os("PATH"), Path::new(DEBIAN_POSTGRES_ROOT))
}

/// [`postgres_bin_dir`] for a given `PATH` value and versions root.
pub fn postgres_bin_dir_in(path: Option<OsString>, versions_root: &Path) -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(path) = path {
        if let Some(dir) = std::env::split_paths(&path).find(|dir| has_both(dir)) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(versions_root)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_both(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

/// The `redis-server` program the tests run: `REDIS_SERVER` if set,
/// else `redis-server` (looked up on `PATH` when it is started).
pub fn redis_server_program() -> PathBuf {
    std::env::var_os("REDIS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("redis-server"))
}

/// The file [`redis_server_program`] would run, if it exists: the
/// program itself when it names a path, else its first match on `PATH`.
pub fn redis_server_path() -> Option<PathBuf> {
    resolve_program(&redis_server_program(), std::env::var_os("PATH"))
}

/// The headless browser the status page's test runs: `CHROMIUM` if set,
/// else `chromium` (Debian's `chromium` package), looked up on `PATH`.
pub fn chromium_program() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("chromium"))
}

/// The file [`chromium_program`] would run, if it exists.
pub fn chromium_path() -> Option<PathBuf> {
    resolve_program(&chromium_program(), std::env::var_os("PATH"))
}

/// `program` as a command would find it: itself if it has a directory
/// part (and is a file), else the first file of that name on `path`.
pub fn resolve_program(program: &Path, path: Option<OsString>) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    std::env::split_paths(&path?)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The uid and gid of `name` in /etc/passwd.
pub fn system_user(name: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd_entry(&passwd, name)
}

/// The uid and gid of `name` in the text of a passwd file.
pub fn passwd_entry(passwd: &str, name: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() != Some(&name) || fields.len() < 4 {
            return None;
        }
        Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
    })
}
