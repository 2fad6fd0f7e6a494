//! Maps `gcloud-storage` errors into [`StoreError`]s.
//!
//! Class by HTTP status (404 not found; 401/403 access denied; 429/503
//! throttled; 408 timeout), by the HTTP client's own verdict for requests
//! that got no answer (timeout, or network for connect/DNS/I/O failures),
//! and access denied when no token could be had. The message says what was
//! attempted, the status, the service's reason code (`notFound`,
//! `forbidden`, …) and its message. Tokens travel in headers, never in
//! messages; URL query strings are cut anyway (signed URLs carry
//! signatures there).

use gcloud_storage::http::Error;

use crate::store::{ErrorClass, StoreError};

/// Longest service message kept, so an HTML error page cannot flood the
/// op-log.
const MAX_SERVICE_MESSAGE_CHARS: usize = 200;

/// The class of an HTTP status.
pub(crate) fn class_of_status(status: u16) -> ErrorClass {
    match status {
        404 => ErrorClass::NotFound,
        401 | 403 => ErrorClass::AccessDenied,
        429 | 503 => ErrorClass::Throttled,
        408 => ErrorClass::Timeout,
        _ => ErrorClass::Other,
    }
}

/// The HTTP status of `e`, when the service answered.
pub(crate) fn status_of(e: &Error) -> Option<u16> {
    match e {
        Error::Response(r) => Some(r.code),
        Error::HttpClient(r) | Error::RawResponse(r, _) => r.status().map(|s| s.as_u16()),
        _ => None,
    }
}

/// Turns `e`, from doing `what` against `endpoint`, into a [`StoreError`].
pub(crate) fn map(e: &Error, endpoint: &str, what: &str) -> StoreError {
    let (class, text) = match e {
        Error::Response(r) => {
            let reason = r
                .errors
                .first()
                .map(|i| i.reason.as_str())
                .unwrap_or("no reason");
            (
                class_of_status(r.code),
                format!("HTTP {} {reason}: {}", r.code, clip(&r.message)),
            )
        }
        Error::HttpClient(r) | Error::RawResponse(r, _) => match r.status() {
            Some(s) => (
                class_of_status(s.as_u16()),
                format!(
                    "HTTP {} {}",
                    s.as_u16(),
                    s.canonical_reason().unwrap_or("no reason")
                ),
            ),
            None if r.is_timeout() => (ErrorClass::Timeout, root_cause(r)),
            None if r.is_connect() || r.is_request() || r.is_body() => {
                (ErrorClass::Network, root_cause(r))
            }
            None => (ErrorClass::Other, root_cause(r)),
        },
        Error::TokenSource(t) => (
            ErrorClass::AccessDenied,
            format!("cannot get an access token: {}", clip(&t.to_string())),
        ),
        other => (ErrorClass::Other, clip(&other.to_string())),
    };
    StoreError::new(class, endpoint, redact(&format!("{what}: {text}")))
}

/// The innermost error's text ("Connection refused (os error 111)"): the
/// outer layers say only "error sending request".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let mut text = cause.to_string();
    if text.is_empty() {
        text = e.to_string();
    }
    clip(&text)
}

fn clip(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(MAX_SERVICE_MESSAGE_CHARS)
        .collect()
}

/// Cuts the query string off every URL in `text`.
fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        match word.find("://").and(word.split_once('?')) {
            Some((base, _)) => {
                out.push_str(base);
                out.push_str("?<redacted>");
            }
            None => out.push_str(word),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_classes() {
        assert_eq!(class_of_status(404), ErrorClass::NotFound);
        assert_eq!(class_of_status(401), ErrorClass::AccessDenied);
        assert_eq!(class_of_status(403), ErrorClass::AccessDenied);
        assert_eq!(class_of_status(429), ErrorClass::Throttled);
        assert_eq!(class_of_status(503), ErrorClass::Throttled);
        assert_eq!(class_of_status(500), ErrorClass::Other);
    }

    #[test]
    fn urls_lose_their_query() {
        assert_eq!(
            redact("for url (https://h/o?X-Goog-Signature=abc)"),
            "for url (https://h/o?<redacted>"
        );
        assert_eq!(redact("what? plain"), "what? plain");
    }

    #[test]
    fn token_errors_are_access_denied() {
        let e = Error::TokenSource("no credentials".into());
        let s = map(&e, "https://storage.googleapis.com", "PUT `k`");
        assert_eq!(s.class, ErrorClass::AccessDenied);
        assert!(s.message.contains("no credentials"), "{s}");
    }
}
