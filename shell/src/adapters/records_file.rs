//! The records JSON file: the embedded [`RuntimeRecordStore`].

use std::path::PathBuf;

use crate::codec::strip_position;
use crate::driver::ports::{ListError, RuntimeRecord, RuntimeRecordStore};

/// A records file (`[{"game_id",...,"status":"running"}]`), re-read on every tick.
///
/// Rows whose status is not `running` are ignored; unknown fields are
/// ignored. A missing or malformed file is a listing error naming the file,
/// the line and the column (and the row and field when known).
#[derive(Debug, Clone)]
pub struct RecordsFile {
    path: PathBuf,
    name: String,
}

impl RecordsFile {
    /// The records file at `path`; nothing is read until listed.
    pub(crate) fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let name = path.display().to_string();
        Self { path, name }
    }
}

impl RuntimeRecordStore for RecordsFile {
    fn list_running(&mut self) -> Result<Vec<RuntimeRecord>, ListError> {
        let bytes = std::fs::read(&self.path).map_err(|source| ListError::Read {
            path: self.name.clone(),
            source,
        })?;
        let mut records = parse_records(&bytes, &self.name)?;
        records.retain(RuntimeRecord::is_running);
        Ok(records)
    }
}

/// Parse a records file's bytes; `name` names the file in errors.
///
/// Returns every row, `running` or not.
pub fn parse_records(bytes: &[u8], name: &str) -> Result<Vec<RuntimeRecord>, ListError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let records: Vec<RuntimeRecord> =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|err| malformed(name, &err))?;
    deserializer.end().map_err(|err| ListError::Malformed {
        path: name.to_owned(),
        line: err.line(),
        column: err.column(),
        message: strip_position(&err),
    })?;
    Ok(records)
}

fn malformed(name: &str, err: &serde_path_to_error::Error<serde_json::Error>) -> ListError {
    let inner = err.inner();
    let path = err.path().to_string();
    let reason = strip_position(inner);
    // The row and field only mean something for a well-formed but wrong value.
    let message = if !inner.is_data() || path == "." || path.is_empty() {
        reason
    } else {
        format!("{path}: {reason}")
    };
    ListError::Malformed {
        path: name.to_owned(),
        line: inner.line(),
        column: inner.column(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_error(text: &str, expected: &str) {
        match parse_records(text.as_bytes(), "records.json") {
            Err(err) => assert_eq!(err.to_string(), expected, "{text}"),
            Ok(records) => panic!("{text}: parsed {records:?}"),
        }
    }

    #[test]
    fn rows_parse_with_unknown_fields_ignored() {
        let text = r#"[
            {"game_id":"g1","current_container_id":"c1","engine_endpoint":"http://127.0.0.1:8080/","status":"running"},
            {"game_id":"g2","current_container_id":"c2","engine_endpoint":"http://127.0.0.1:8081","status":"stopped","extra":1}
        ]"#;
        let records = parse_records(text.as_bytes(), "records.json").expect("valid");
        assert_eq!(
            records,
            vec![
                RuntimeRecord::running("g1", "c1", "http://127.0.0.1:8080/"),
                RuntimeRecord {
                    status: "stopped".into(),
                    ..RuntimeRecord::running("g2", "c2", "http://127.0.0.1:8081")
                },
            ]
        );
        assert_eq!(parse_records(b" [ ] ", "r").expect("empty list"), vec![]);
    }

    #[test]
    fn malformed_files_name_file_line_column_and_field() {
        check_error(
            "[\n  {\"game_id\":\"g1\",\"current_container_id\":\"c1\",\"status\":\"running\"}\n]",
            "records.json:2:65: [0]: missing field `engine_endpoint`",
        );
        check_error(
            "[{\"game_id\":\"g1\",\"current_container_id\":\"c1\",\"engine_endpoint\":\"e\",\"status\":\"running\"},\n {\"game_id\":7}]",
            "records.json:2:13: [1].game_id: invalid type: integer `7`, expected a string",
        );
        check_error(
            "[\n{\"game_id\":\"g1\",",
            "records.json:2:16: EOF while parsing a value",
        );
        check_error("", "records.json:1:0: EOF while parsing a value");
        check_error(
            "{\"game_id\":\"g1\"}",
            "records.json:1:0: invalid type: map, expected a sequence",
        );
        check_error("[] []", "records.json:1:4: trailing characters");
    }

    #[test]
    fn the_file_store_keeps_running_rows_and_names_missing_files() {
        let dir = std::env::temp_dir().join(format!("healthprobe-records-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("records.json");
        let mut store = RecordsFile::new(&path);
        match store.list_running() {
            Err(ListError::Read { path: named, .. }) => {
                assert_eq!(named, path.display().to_string())
            }
            other => panic!("{other:?}"),
        }
        std::fs::write(
            &path,
            r#"[{"game_id":"g1","current_container_id":"c1","engine_endpoint":"e1","status":"running"},
                {"game_id":"g2","current_container_id":"c2","engine_endpoint":"e2","status":"starting"}]"#,
        )
        .expect("write records");
        let records = store.list_running().expect("valid file");
        assert_eq!(records, vec![RuntimeRecord::running("g1", "c1", "e1")]);
        std::fs::write(&path, "[").expect("write records");
        let err = store.list_running().expect_err("malformed");
        assert!(
            err.to_string()
                .starts_with(&format!("{}:1:1: ", path.display())),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
