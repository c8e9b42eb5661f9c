//! Arbitrary bytes as one journal line (D6): `parse_line` returns a value or
//! an error, never panics; a parsed line re-serializes to a line that parses
//! to the same input; and `observed_at` is the instant jiff's general RFC 3339
//! parser reads from the same text (the core may take a faster path).
#![no_main]

use healthprobe_core::{Input, Timestamp};
use healthprobe_shell::codec::journal::parse_line;
use libfuzzer_sys::fuzz_target;

#[derive(serde::Deserialize)]
struct ObservedAt {
    observed_at: String,
}

fuzz_target!(|line: &[u8]| {
    let input = match parse_line(line) {
        Ok(input) => input,
        Err((_column, message)) => {
            assert!(!message.is_empty(), "an error says what is wrong");
            return;
        }
    };

    if let Input::Outcome(outcome) = &input {
        // Only `observed_at` is read back, every other field is skipped as
        // the core skips it: a `serde_json::Value` would refuse numbers such
        // as `1e999` in an ignored field, which Go's decoder (and the core)
        // accept.
        let ObservedAt { observed_at: text } =
            serde_json::from_slice(line).expect("a parsed outcome has an observed_at string");
        assert_eq!(
            text.parse::<Timestamp>().ok(),
            Some(outcome.observed_at),
            "observed_at {text:?}"
        );
    }

    let again = serde_json::to_vec(&input).expect("an input serializes");
    match parse_line(&again) {
        Ok(back) => assert_eq!(back, input, "{}", String::from_utf8_lossy(&again)),
        Err((column, message)) => panic!(
            "re-serialized line does not parse at column {column}: {message}: {}",
            String::from_utf8_lossy(&again)
        ),
    }
});
