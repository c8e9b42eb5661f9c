//! A test that needs something this machine lacks (a program, a privilege)
//! fails, saying what to install or enable, instead of passing by skipping.
//! `HEALTHPROBE_TEST_ALLOW_SKIP=1` lets such a test skip (saying so) on a
//! machine that cannot have it; CI never sets it.

use std::ffi::OsStr;

/// The environment variable that lets a test skip what this machine cannot run.
pub const ALLOW_SKIP_ENV: &str = "HEALTHPROBE_TEST_ALLOW_SKIP";

/// Call where a test cannot go on because `missing` is missing here;
/// `remedy` says what to install or enable.
///
/// # Panics
/// With both, unless `HEALTHPROBE_TEST_ALLOW_SKIP=1`: then it prints that
/// the test skipped and returns, and the caller returns too
/// (`return missing_capability(..)`).
pub fn missing_capability(missing: &str, remedy: &str) {
    let text = message(missing, remedy);
    if skip_allowed(std::env::var_os(ALLOW_SKIP_ENV).as_deref()) {
        eprintln!("skipped ({ALLOW_SKIP_ENV}=1): {text}");
    } else {
        panic!("{text}; or set {ALLOW_SKIP_ENV}=1 to skip this test on this machine");
    }
}

fn message(missing: &str, remedy: &str) -> String {
    let missing = missing.trim_end().trim_end_matches('.');
    format!("this test cannot run here: {missing}. {remedy}")
}

/// Only the exact value `1` allows a skip.
fn skip_allowed(value: Option<&OsStr>) -> bool {
    value == Some(OsStr::new("1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allow_skip_1_lets_a_test_skip() {
        assert!(skip_allowed(Some(OsStr::new("1"))));
        for refused in [None, Some(""), Some("0"), Some("yes"), Some("1 ")] {
            assert!(!skip_allowed(refused.map(OsStr::new)), "{refused:?}");
        }
    }

    #[test]
    fn the_failure_names_what_is_missing_and_the_remedy() {
        let text = message(
            "systemd-analyze is not installed.\n",
            "Install Debian's `systemd` package",
        );
        assert_eq!(
            text,
            "this test cannot run here: systemd-analyze is not installed. \
             Install Debian's `systemd` package"
        );
    }
}
