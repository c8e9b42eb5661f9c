//! Passwords out of every message, by policy rather than by search:
//!
//! - a URL that does not parse is never shown: an error names only its
//!   scheme (`postgres://…`) and what the `url` crate found wrong with it;
//! - a parsed URL is shown with its password, and the value of any
//!   `password` query parameter, as `***` (`without_password`);
//! - what a database client says is shown with the password it was given
//!   as `***` (`hide`).

use url::Url;

/// A URL that cannot be used, named without its password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} URL {url}: {reason}")]
#[non_exhaustive]
pub struct InvalidUrl {
    /// `PostgreSQL` or `Redis`.
    pub kind: &'static str,
    /// The URL without its password (`***`), or only its scheme
    /// when it does not parse.
    pub url: String,
    /// What is wrong with it, without the password.
    pub reason: String,
}

impl InvalidUrl {
    /// `url` cannot be used because of `reason`; `password` is hidden
    /// wherever it appears in either.
    pub(crate) fn new(kind: &'static str, url: &Url, reason: &str, password: Option<&str>) -> Self {
        Self {
            kind,
            url: hide(&without_password(url), password),
            reason: hide(reason, password),
        }
    }
}

/// `text` parsed as a URL; an error names only its scheme.
pub(crate) fn parse(kind: &'static str, text: &str) -> Result<Url, InvalidUrl> {
    Url::parse(text).map_err(|err| InvalidUrl {
        kind,
        url: scheme_only(text),
        reason: err.to_string(),
    })
}

/// `url` with its password and every `password` query parameter as `***`.
pub(crate) fn without_password(url: &Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        // Only a URL without a host refuses a password, and it has none.
        let _ = url.set_password(Some("***"));
    }
    let is_password = |key: &str| key.eq_ignore_ascii_case("password");
    if url.query_pairs().any(|(key, _)| is_password(&key)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(key, value)| {
                let value = if is_password(&key) {
                    "***".into()
                } else {
                    value
                };
                (key.into_owned(), value.into_owned())
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.into()
}

/// `text` with `password` (if any) as `***` wherever it appears.
pub(crate) fn hide(text: &str, password: Option<&str>) -> String {
    match password {
        Some(password) if !password.is_empty() => text.replace(password, "***"),
        _ => text.to_owned(),
    }
}

/// `scheme://…`, or `(not a URL)` when `text` does not start with a scheme.
fn scheme_only(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, _))
            if scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            format!("{scheme}://…")
        }
        _ => "(not a URL)".to_owned(),
    }
}

#[cfg(test)]
#[cfg(all(feature = "postgres", feature = "redis"))]
mod tests {
    use super::*;

    /// `text` as messages show it: without its password, or only its
    /// scheme when it does not parse.
    fn shown(text: &str) -> String {
        match parse("any", text) {
            Ok(url) => without_password(&url),
            Err(err) => err.url,
        }
    }

    #[test]
    fn a_parsed_url_keeps_everything_but_the_password() {
        let cases = [
            (
                "postgres://alice:s3cret@h:5432/db",
                "postgres://alice:***@h:5432/db",
            ),
            ("postgres://alice:p@ss@h/db", "postgres://alice:***@h/db"),
            ("postgres://alice@h/db", "postgres://alice@h/db"),
            ("postgres://[::1]:5432/db", "postgres://[::1]:5432/db"),
            ("postgres://h/db?x=a@b", "postgres://h/db?x=a@b"),
            (
                "postgres://h/db?sslmode=disable&Password=s3cret&port=1",
                "postgres://h/db?sslmode=disable&Password=***&port=1",
            ),
            ("redis://:s3cret@h:6379/s", "redis://:***@h:6379/s"),
            ("rediss://u:%73%33cret@h/s", "rediss://u:***@h/s"),
            ("redis://h:6379/s", "redis://h:6379/s"),
        ];
        for (text, expected) in cases {
            assert_eq!(shown(text), expected, "{text}");
        }
    }

    #[test]
    fn a_url_that_does_not_parse_is_named_by_its_scheme_only() {
        for text in [
            "postgres://alice:s3cret@h:not-a-port/db",
            "postgres://alice:s3cret/db",
            "postgres://alice:s3cret@[::1/db",
            "redis://:s3cret@h:99999/s",
        ] {
            let scheme = &text[..text.find("://").expect("a scheme")];
            assert_eq!(shown(text), format!("{scheme}://…"), "{text}");
            let err = parse("PostgreSQL", text).expect_err(text);
            assert!(!err.to_string().contains("s3cret"), "{err}");
            assert!(
                err.to_string()
                    .starts_with(&format!("invalid PostgreSQL URL {scheme}://…: ")),
                "{err}"
            );
        }
        assert_eq!(shown("s3cret"), "(not a URL)");
        assert_eq!(shown("a b://s3cret"), "(not a URL)");
    }

    #[test]
    fn a_clients_words_hide_the_password_it_was_given() {
        assert_eq!(
            hide("auth for s3cret failed", Some("s3cret")),
            "auth for *** failed"
        );
        assert_eq!(hide("nothing", None), "nothing");
        assert_eq!(hide("nothing", Some("")), "nothing");
        let url = Url::parse("postgres://h/db?sslmode=s3cret&password=s3cret").expect("parses");
        let err = InvalidUrl::new(
            "PostgreSQL",
            &url,
            "sslmode `s3cret` is not supported",
            Some("s3cret"),
        );
        assert_eq!(
            err.to_string(),
            "invalid PostgreSQL URL postgres://h/db?sslmode=***&password=***: \
             sslmode `***` is not supported"
        );
    }
}
