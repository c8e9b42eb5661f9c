//! The input journal (D6): one JSON [`Input`] per line.
//!
//! Parsing is strict about each line (a clear error naming the line, the
//! column and what was wrong) and lenient about the file: blank lines are
//! skipped and unknown fields are ignored.

use std::io::{self, BufRead, Write};

use healthprobe_core::Input;

use crate::codec::strip_position;

/// A journal line that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JournalError {
    /// The line is not a valid journal input.
    #[error("{source_name}:{line}:{column}: {message}")]
    Malformed {
        /// The file name, or `<stdin>`.
        source_name: String,
        /// 1-based line number.
        line: u64,
        /// 1-based column within the line, 0 when unknown.
        column: usize,
        /// What was wrong, for example ``missing field `observed_at` ``.
        message: String,
    },
    /// The last line has no newline and does not parse: the writer was cut
    /// off mid-line (a kill, a full disk). The inputs before it are whole.
    #[error(
        "{source_name}:{line}: torn final line (no newline; the writer was cut off mid-line): {message}"
    )]
    TornFinalLine {
        /// The file name, or `<stdin>`.
        source_name: String,
        /// 1-based line number.
        line: u64,
        /// Why it does not parse, with the column (``column 41: EOF while parsing a string``).
        message: String,
    },
    /// Reading the journal failed.
    #[error("{source_name}: cannot read journal: {source}")]
    Read {
        /// The file name, or `<stdin>`.
        source_name: String,
        /// The underlying error.
        source: io::Error,
    },
}

/// Parse one journal line (without its newline) into an [`Input`].
///
/// The error is serde_json's message without its position, and the column.
pub fn parse_line(line: &[u8]) -> Result<Input, (usize, String)> {
    // JSON text is UTF-8 (RFC 8259), even in a field the journal ignores;
    // one check of the whole line spares serde_json one per string.
    let line = std::str::from_utf8(line).map_err(|err| {
        (
            err.valid_up_to() + 1,
            format!("invalid UTF-8 at byte {}", err.valid_up_to() + 1),
        )
    })?;
    serde_json::from_str(line).map_err(|err| (err.column(), strip_position(&err)))
}

/// Streams the inputs of a journal, one line at a time, reusing one buffer.
#[derive(Debug)]
pub(crate) struct JournalReader<R> {
    reader: R,
    source_name: String,
    line: u64,
    buffer: Vec<u8>,
}

impl<R: BufRead> JournalReader<R> {
    /// Read `reader`; `source_name` names it in errors (a path, or `<stdin>`).
    pub(crate) fn new(reader: R, source_name: impl Into<String>) -> Self {
        Self {
            reader,
            source_name: source_name.into(),
            line: 0,
            buffer: Vec::with_capacity(512),
        }
    }

    /// The next input, `None` at the end; blank lines are skipped.
    pub(crate) fn next_input(&mut self) -> Option<Result<Input, JournalError>> {
        loop {
            self.buffer.clear();
            match self.reader.read_until(b'\n', &mut self.buffer) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(source) => {
                    return Some(Err(JournalError::Read {
                        source_name: self.source_name.clone(),
                        source,
                    }));
                }
            }
            self.line += 1;
            let line = self.buffer.trim_ascii();
            if line.is_empty() {
                continue;
            }
            let torn = self.buffer.last() != Some(&b'\n');
            return Some(parse_line(line).map_err(|(column, message)| {
                if torn {
                    JournalError::TornFinalLine {
                        source_name: self.source_name.clone(),
                        line: self.line,
                        message: format!("column {column}: {message}"),
                    }
                } else {
                    JournalError::Malformed {
                        source_name: self.source_name.clone(),
                        line: self.line,
                        column,
                        message,
                    }
                }
            }));
        }
    }
}

impl<R: BufRead> Iterator for JournalReader<R> {
    type Item = Result<Input, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_input()
    }
}

/// Append one input as a journal line.
pub fn write_input(out: &mut impl Write, input: &Input) -> io::Result<()> {
    serde_json::to_writer(&mut *out, input)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::{JournalReader, parse_line};

    fn errors(text: &str) -> Vec<String> {
        JournalReader::new(text.as_bytes(), "journal.jsonl")
            .filter_map(|input| input.err().map(|err| err.to_string()))
            .collect()
    }

    #[test]
    fn d6_a_torn_final_line_is_named_as_such() {
        let whole = r#"{"type":"prune","running":[]}"#;
        assert_eq!(
            errors(&format!("{whole}\n{{\"type\":\"pru")),
            [
                "journal.jsonl:2: torn final line (no newline; the writer was cut off mid-line): column 12: EOF while parsing a string"
            ]
        );
        // A whole but malformed line keeps the generic message, even last.
        assert_eq!(
            errors(&format!("{whole}\n{{\"type\":\"pru\n")),
            ["journal.jsonl:2:12: EOF while parsing a string"]
        );
        // A final line without a newline that parses is a whole input.
        assert!(errors(whole).is_empty());
    }

    #[test]
    fn d6_a_line_that_is_not_utf8_is_malformed_even_in_an_ignored_field() {
        let mut line = br#"{"type":"prune","running":[],"extra":{"a"#.to_vec();
        line.extend_from_slice(&[0x99, 0x99]);
        line.extend_from_slice(br#"":null}}"#);
        let (column, message) = parse_line(&line).unwrap_err();
        assert_eq!((column, message.as_str()), (41, "invalid UTF-8 at byte 41"));
        assert!(parse_line(r#"{"type":"prune","running":["é"]}"#.as_bytes()).is_ok());
    }
}
