//! A real browser for the status page: headless Chromium from Debian's
//! `chromium` package, its DOM as parsed (`--dump-dom`) or a screenshot.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{ScratchDir, missing_capability, servers, wait_until};

/// The DOM headless Chromium builds from `url`, serialized; `None` when
/// Chromium is missing and `HEALTHPROBE_TEST_ALLOW_SKIP=1` lets the caller
/// skip (without it, a missing Chromium fails naming the package).
///
/// # Panics
/// When Chromium fails or takes more than a minute.
pub fn dump_dom(url: &str) -> Option<String> {
    let Some(chromium) = servers::chromium_path() else {
        missing_capability(
            "headless Chromium is not installed (`chromium` not on PATH, nor CHROMIUM)",
            "Install Debian's `chromium` package (`apt-get install chromium`), or run `cargo xtask test`, which does",
        );
        return None;
    };
    let profile = ScratchDir::new("chromium").expect("a profile directory");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            // As root Chromium refuses to start with its sandbox.
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || std::io::read_to_string(stdout));
    let stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || std::io::read_to_string(stderr));
    let mut status = None;
    let exited = wait_until(Duration::from_secs(60), || {
        status = child.try_wait().expect("wait for chromium");
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
        panic!("chromium --dump-dom {url} took more than a minute");
    }
    let status = status.expect("exited");
    let dom = reader.join().expect("reader").expect("chromium's output");
    let errors = errors.join().expect("reader").unwrap_or_default();
    assert!(
        status.success() && !dom.is_empty(),
        "chromium --dump-dom {url}: {status}\n{errors}"
    );
    Some(dom)
}
