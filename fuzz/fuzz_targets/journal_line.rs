//! Arbitrary bytes as one journal line (D6): `parse_line` returns a value or
//! an error, never panics; a parsed line re-serializes to a line that parses
//! to the same input.
#![no_main]

use healthprobe_shell::journal::parse_line;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    match parse_line(line) {
        Ok(input) => {
            let again = serde_json::to_vec(&input).expect("an input serializes");
            match parse_line(&again) {
                Ok(back) => assert_eq!(back, input, "{}", String::from_utf8_lossy(&again)),
                Err((column, message)) => panic!(
                    "re-serialized line does not parse at column {column}: {message}: {}",
                    String::from_utf8_lossy(&again)
                ),
            }
        }
        Err((_column, message)) => assert!(!message.is_empty(), "an error says what is wrong"),
    }
});
