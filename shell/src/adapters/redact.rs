//! Passwords out of every message: [`redact_url`] and [`Redactor`].
//!
//! Used on the text of `--records` / `--events` (PostgreSQL URLs and
//! key=value connection strings, Redis URLs) before any of it is shown, and
//! on the reasons the clients give. It is deliberately conservative: it
//! works on text no parser accepted, and when in doubt it hides more than
//! the password (a whole `user:…@` run, a port that is not a number) rather
//! than less. What counts as a secret:
//!
//! - the password of a userinfo, `scheme://user:PASSWORD@host`, up to the
//!   **last** `@` of the text (a client may split at the first one; a
//!   password may hold `@`, `/`, `?` or `#`);
//! - without any `@`: what follows a `:` in the authority when it is not a
//!   port number (`scheme://user:PASSWORD/db`, a forgotten `@host`);
//! - the value of every `password=` parameter (`?password=…`, `&password=…`,
//!   the key percent-decoded and in any case);
//! - in a key=value connection string (`host=h password='…'`), the value of
//!   `password`, quoted or not, with or without the `=`;
//! - each of these percent-decoded as well, wherever it appears again.

use std::ops::Range;

/// `text` with every secret it holds (see the [module docs](self)) as `***`.
pub fn redact_url(text: &str) -> String {
    Redactor::from_url(text).redact_url(text)
}

/// Hides a set of secrets wherever they appear in a text.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

impl Redactor {
    /// A redactor for the secrets of `url` (raw and percent-decoded).
    pub fn from_url(url: &str) -> Self {
        let mut redactor = Self::default();
        for span in secret_spans(url) {
            let secret = &url[span];
            redactor.add(secret);
            // A parser that splits at the first `@`, `/`, `?`, `#` or `:`
            // takes the rest as a host, port or path, and may quote it:
            // hide each piece too (but not one or two characters, which
            // would mangle every message).
            const DELIMITERS: [char; 5] = ['@', '/', '?', '#', ':'];
            if secret.contains(DELIMITERS) {
                for piece in secret.split(DELIMITERS).filter(|piece| piece.len() >= 3) {
                    redactor.add(piece);
                }
            }
        }
        redactor
    }

    /// Hide `secret` too (and its percent-decoded form); an empty one is ignored.
    pub fn add(&mut self, secret: &str) {
        for candidate in [secret.to_owned(), percent_decoded(secret)] {
            if !candidate.is_empty() && !self.secrets.contains(&candidate) {
                self.secrets.push(candidate);
            }
        }
        // Longest first, so a secret holding another is replaced whole.
        self.secrets
            .sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    }

    /// Whether there is nothing to hide.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// `text` with every secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "***");
            }
        }
        text
    }

    /// `url` with its secret spans replaced by `***`, then [`Self::redact`].
    pub fn redact_url(&self, url: &str) -> String {
        let mut out = String::with_capacity(url.len());
        let mut last = 0;
        for span in secret_spans(url) {
            out.push_str(&url[last..span.start]);
            out.push_str("***");
            last = span.end;
        }
        out.push_str(&url[last..]);
        self.redact(&out)
    }
}

/// The byte ranges of the secrets in `text`, sorted and not overlapping.
fn secret_spans(text: &str) -> Vec<Range<usize>> {
    let mut spans = match text.find("://") {
        Some(scheme_end) => url_spans(text, scheme_end + 3),
        None => conninfo_spans(text),
    };
    spans.retain(|span| !span.is_empty());
    spans.sort_by_key(|span| span.start);
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(spans.len());
    for span in spans {
        match merged.last_mut() {
            Some(last) if span.start <= last.end => last.end = last.end.max(span.end),
            _ => merged.push(span),
        }
    }
    merged
}

fn url_spans(text: &str, after_scheme: usize) -> Vec<Range<usize>> {
    let rest = &text[after_scheme..];
    let mut spans = Vec::new();
    if let Some(at) = rest.rfind('@') {
        if let Some(colon) = rest[..at].find(':') {
            spans.push(after_scheme + colon + 1..after_scheme + at);
        }
    } else {
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let mut offset = 0;
        for chunk in rest[..authority_end].split(',') {
            // `[v6]:PORT`: the colons inside the brackets are the address.
            let host_end = match chunk.strip_prefix('[') {
                Some(_) => chunk.find(']').map_or(chunk.len(), |close| close + 1),
                None => 0,
            };
            if let Some(colon) = chunk[host_end..].find(':') {
                let port = &chunk[host_end + colon + 1..];
                if !port.is_empty() && !port.bytes().all(|byte| byte.is_ascii_digit()) {
                    let start = after_scheme + offset + host_end + colon + 1;
                    spans.push(start..start + port.len());
                }
            }
            offset += chunk.len() + 1;
        }
    }
    // `password=` parameters: every `?`/`&`-separated piece is looked at,
    // so a `?` inside a password does not hide a later parameter.
    let mut start = after_scheme;
    for piece in text[start..].split(['?', '&', '#']) {
        if let Some((key, value)) = piece.split_once('=') {
            if is_password_key(key) {
                let value_start = start + key.len() + 1;
                spans.push(value_start..value_start + value.len());
            }
        }
        start += piece.len() + 1;
    }
    spans
}

/// `password` values of a libpq key=value string (`host=h password='p w'`).
fn conninfo_spans(text: &str) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    let skip_space = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    while i < bytes.len() {
        i = skip_space(i);
        let key_start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &text[key_start..i];
        i = skip_space(i);
        let had_equals = i < bytes.len() && bytes[i] == b'=';
        if had_equals {
            i = skip_space(i + 1);
        } else if !is_password_key(key) {
            // Not `key=`: move on to the next word.
            continue;
        }
        // The value: quoted with `'` (backslash escapes) or up to a space.
        let (value_start, value_end);
        if i < bytes.len() && bytes[i] == b'\'' {
            value_start = i + 1;
            let mut j = value_start;
            while j < bytes.len() && bytes[j] != b'\'' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            value_end = j.min(bytes.len());
            i = (j + 1).min(bytes.len());
        } else {
            value_start = i;
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i = i.min(bytes.len());
            value_end = i;
        }
        if is_password_key(key) && text.is_char_boundary(value_end) {
            spans.push(value_start..value_end);
        }
    }
    spans
}

fn is_password_key(key: &str) -> bool {
    percent_decoded(key.trim()).eq_ignore_ascii_case("password")
}

/// `%XX` sequences decoded (invalid ones and non-UTF-8 results kept as given).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(byte) = u8::from_str_radix(hex, 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hostile shapes: every one holds `s3cret` (or its encoding) somewhere.
    const HOSTILE: &[&str] = &[
        "postgres://alice:s3cret@h:5432/db",
        "postgres://alice:s3cret@h:not-a-port/db",
        "postgresql://alice:p@s3cret@h/db",
        "postgres://alice:s3cret@@h/db",
        "postgres://alice:s3cret/with/slashes@h/db",
        "postgres://alice:s3cret?x@h/db",
        "postgres://alice:s3cret#frag@h/db",
        "postgres://alice:s3cret@h/db?x=a@b",
        "postgres://alice:s3cret/db",
        "postgres://alice:s3cret",
        "postgres://h1:5432,alice:s3cret/db",
        "postgres://h/db?password=s3cret",
        "postgres://h:x/db?password=s3cret",
        "postgres://h/db?sslmode=disable&password=s3cret&port=x",
        "postgres://h/db?PASSWORD=s3cret",
        "postgres://h/db?pass%77ord=s3cret",
        "postgres://h/db?password=s3cret#x",
        "postgres://h/db?x?password=s3cret",
        "postgres://h/db?password=s3cret&x=a@b",
        "postgres://[::1]:s3cret/db",
        "postgres://alice:%73%33cret@h:x/db",
        "postgres://s3cret:s3cret@h:x/db",
        "postgres://@s3cret:s3cret@",
        "host=h password=s3cret port=x",
        "host=h password = s3cret",
        "host=h password='s3cret with spaces' port=x",
        "host=h password='s3cret \\' quoted'",
        "host=h password s3cret",
        "password=s3cret",
        "host=h PASSWORD=s3cret",
        "redis://:s3cret@h:x/s",
        "redis://u:s3cret@h/s?db=1",
        "redis://u:s3cret/stream",
        "redis://:s3cret/with@h/s",
        "redis://u:s3cret@h/stream@name",
        "redis://:s3cret",
    ];

    #[test]
    fn no_hostile_shape_shows_the_secret() {
        for url in HOSTILE {
            let shown = redact_url(url);
            assert!(!shown.contains("s3cret"), "{url} → {shown}");
            assert!(shown.contains("***"), "{url} → {shown}");
            // The reason a client gives, which may quote the decoded secret
            // or the part of it a parser took for a host, port or path (a
            // quoted conninfo value is parsed whole: it is quoted whole).
            let quoted = if url.contains('\'') {
                format!("bad value {}", &url[url.find('\'').unwrap_or(0)..])
            } else {
                "bad value s3cret (%73%33cret)".to_owned()
            };
            let reason = Redactor::from_url(url).redact(&quoted);
            assert!(!reason.contains("s3cret"), "{url} → {reason}");
        }
    }

    #[test]
    fn well_formed_urls_keep_everything_but_the_password() {
        let cases = [
            (
                "postgres://alice:s3cret@h:5432/db",
                "postgres://alice:***@h:5432/db",
            ),
            ("postgres://alice@h/db", "postgres://alice@h/db"),
            ("postgres://h:5432/db", "postgres://h:5432/db"),
            ("postgres://h/db?x=a@b", "postgres://h/db?x=a@b"),
            ("postgres://[::1]:5432/db", "postgres://[::1]:5432/db"),
            (
                "postgres://h1:5432,h2:5433/db",
                "postgres://h1:5432,h2:5433/db",
            ),
            (
                "postgres://h/db?sslmode=disable&password=s3cret&port=1",
                "postgres://h/db?sslmode=disable&password=***&port=1",
            ),
            (
                "host=h password='s w' port=1",
                "host=h password='***' port=1",
            ),
            ("redis://:pw@h:6379/s", "redis://:***@h:6379/s"),
            ("redis://h:6379/s", "redis://h:6379/s"),
            ("records.json", "records.json"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn added_secrets_are_hidden_raw_and_decoded() {
        let mut redactor = Redactor::default();
        assert!(redactor.is_empty());
        redactor.add("p%40ss");
        redactor.add("");
        assert_eq!(redactor.redact("a p@ss b p%40ss"), "a *** b ***");
        assert!(!format!("{redactor:?}").contains("ss"));
    }
}
