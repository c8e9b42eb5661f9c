//! Event lines on the wire, byte-identical to the reference's `encoding/json`.
//!
//! Go's `json.Marshal` escapes `<`, `>`, `&`, U+2028 and U+2029 inside
//! strings (`\u003c`, `\u003e`, `\u0026`, `\u2028`, `\u2029`); serde_json
//! does not. Both are valid JSON, but writing the same bytes lets a consumer
//! of the reference switch to healthprobe and diff the two streams directly,
//! and keeps JSONL safe for readers that split lines on U+2028.

use std::io::{self, Write};

use healthprobe_core::HealthEvent;
use serde::Serialize;
use serde_json::ser::{Formatter, Serializer};

/// Write `event` as one JSON line (`…}\n`) with Go's escaping.
pub fn write_event_line(out: &mut impl Write, event: &HealthEvent) -> io::Result<()> {
    to_writer_go(&mut *out, event)?;
    out.write_all(b"\n")
}

/// Serialize any value compactly with Go's string escaping.
pub(crate) fn to_writer_go(out: impl Write, value: &impl Serialize) -> io::Result<()> {
    let mut serializer = Serializer::with_formatter(out, GoFormatter);
    value.serialize(&mut serializer).map_err(io::Error::from)
}

/// serde_json's compact formatter plus Go's HTML and line-separator escapes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct GoFormatter;

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let bytes = fragment.as_bytes();
        let mut start = 0;
        let mut i = 0;
        while i < bytes.len() {
            let escape: Option<&[u8]> = match bytes[i] {
                b'<' => Some(b"\\u003c"),
                b'>' => Some(b"\\u003e"),
                b'&' => Some(b"\\u0026"),
                0xE2 if bytes.get(i + 1) == Some(&0x80) && bytes.get(i + 2) == Some(&0xA8) => {
                    Some(b"\\u2028")
                }
                0xE2 if bytes.get(i + 1) == Some(&0x80) && bytes.get(i + 2) == Some(&0xA9) => {
                    Some(b"\\u2029")
                }
                _ => None,
            };
            match escape {
                Some(escaped) => {
                    writer.write_all(&bytes[start..i])?;
                    writer.write_all(escaped)?;
                    i += if bytes[i] == 0xE2 { 3 } else { 1 };
                    start = i;
                }
                None => i += 1,
            }
        }
        writer.write_all(&bytes[start..])
    }
}

#[cfg(test)]
mod tests {
    use healthprobe_core::{EventDetails, HealthEvent, Timestamp};

    use super::write_event_line;

    #[test]
    fn r12_escapes_like_go_encoding_json() {
        let event = HealthEvent {
            game_id: "g<&>".into(),
            container_id: "c1".into(),
            occurred_at: "2026-11-28T05:00:10.5Z".parse::<Timestamp>().unwrap(),
            details: EventDetails::ProbeFailed {
                consecutive_failures: 1,
                last_status: 0,
                last_error: "<a>&\u{2028} \u{2029} é \u{7f} \u{1} tab\t \"q\" \\".into(),
            },
        };
        let mut line = Vec::new();
        write_event_line(&mut line, &event).unwrap();
        // Produced by the reference worker's encoding/json for the same event.
        let go = r#"{"game_id":"g\u003c\u0026\u003e","container_id":"c1","event_type":"probe_failed","occurred_at":"2026-11-28T05:00:10.5Z","details":{"consecutive_failures":1,"last_status":0,"last_error":"\u003ca\u003e\u0026\u2028 \u2029 é {DEL} \u0001 tab\t \"q\" \\"}}"#;
        let go = go.replace("{DEL}", "\u{7f}"); // DEL is not escaped by either
        assert_eq!(String::from_utf8(line).unwrap(), format!("{go}\n"));
    }
}
