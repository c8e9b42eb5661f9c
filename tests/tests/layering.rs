//! The shell's layering (ARCHITECTURE.md, "Layering"), checked on its
//! source: which of its modules each folder's non-test code may name.
//!
//! `core` is a crate of its own and cannot name the shell at all; inside the
//! shell the compiler allows any import, so this test is what keeps the
//! dependencies pointing one way.

use std::fs;
use std::path::{Path, PathBuf};

/// A folder (or file) of `shell/src` and the `crate::` modules its non-test
/// code must not name.
const RULES: &[(&str, &[&str])] = &[
    // Formats and line files: below everything.
    (
        "codec",
        &[
            "adapters",
            "durability",
            "driver::worker",
            "driver::coordinator",
            "probing",
            "run",
            "metrics",
            "status",
            "tls",
        ],
    ),
    // The ports name no implementation of themselves.
    (
        "driver/ports.rs",
        &[
            "adapters",
            "durability",
            "probing",
            "run",
            "metrics",
            "status",
            "tls",
        ],
    ),
    // The driver performs actions through ports, never through an adapter.
    ("driver", &["adapters", "durability", "run", "metrics"]),
    // Implementations of ports know the ports and shared helpers, not each
    // other, and not the composition root.
    (
        "durability",
        &["adapters", "probing", "run", "metrics", "driver::worker"],
    ),
    (
        "adapters",
        &["durability", "probing", "run", "metrics", "driver::worker"],
    ),
    (
        "probing",
        &["adapters", "durability", "run", "metrics", "driver::worker"],
    ),
    (
        "tls.rs",
        &[
            "adapters",
            "durability",
            "probing",
            "driver",
            "run",
            "metrics",
        ],
    ),
];

fn shell_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shell/src")
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_file() {
        out.push(path.to_owned());
        return;
    }
    for entry in fs::read_dir(path).expect("read a source folder") {
        rust_files(&entry.expect("a directory entry").path(), out);
    }
}

/// The lines of `file` before its first `#[cfg(test)]`.
fn non_test_lines(file: &Path) -> Vec<String> {
    fs::read_to_string(file)
        .expect("read a source file")
        .lines()
        .take_while(|line| !line.contains("#[cfg(test)]"))
        .map(str::to_owned)
        .collect()
}

/// Every line of `file`'s non-test code that names one of `banned`.
fn violations(file: &Path, place: &str, banned: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for (index, line) in non_test_lines(file).iter().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        for module in banned {
            let names = [format!("crate::{module}"), format!("crate::{{{module}")];
            let named = names.iter().any(|name| {
                code.match_indices(name.as_str()).any(|(at, _)| {
                    // `crate::driver` names `crate::driver::x`, not `crate::driverx`.
                    code[at + name.len()..]
                        .chars()
                        .next()
                        .is_none_or(|next| !next.is_alphanumeric() && next != '_')
                })
            });
            if named {
                found.push(format!(
                    "{}:{}: names crate::{module} ({place} must not): {}",
                    file.display(),
                    index + 1,
                    line.trim()
                ));
            }
        }
    }
    found
}

#[test]
fn layering_each_folder_names_only_the_layers_below_it() {
    let mut broken = Vec::new();
    for (place, banned) in RULES {
        let mut files = Vec::new();
        rust_files(&shell_src().join(place), &mut files);
        assert!(
            !files.is_empty(),
            "{place}: no source file (a rule for a folder that moved?)"
        );
        for file in files {
            broken.extend(violations(&file, place, banned));
        }
    }
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

#[test]
fn layering_the_check_catches_a_banned_import_and_skips_test_code() {
    let dir = std::env::temp_dir().join(format!("layering-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("a temporary folder");
    let file = dir.join("probe.rs");
    let source = "use crate::config::Runtime;\nuse crate::{adapters::JsonlPublisher, tls};\n\
                  fn f() { crate::durability_x(); } // crate::durability\n\
                  #[cfg(test)]\nuse crate::durability;\n";
    fs::write(&file, source).expect("write");
    let found = violations(&file, "probing", &["adapters", "durability"]);
    fs::remove_dir_all(&dir).expect("clean up");
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains(":2: names crate::adapters"), "{found:?}");
}
