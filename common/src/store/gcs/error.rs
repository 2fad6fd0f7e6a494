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

use crate::store::http::{class_of_status, first_line, redact};
use crate::store::{ErrorClass, StoreError};

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
                format!("HTTP {} {reason}: {}", r.code, first_line(&r.message)),
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
            format!("cannot get an access token: {}", first_line(&t.to_string())),
        ),
        other => (ErrorClass::Other, first_line(&other.to_string())),
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
    first_line(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_errors_are_access_denied() {
        let e = Error::TokenSource("no credentials".into());
        let s = map(&e, "https://storage.googleapis.com", "PUT `k`");
        assert_eq!(s.class, ErrorClass::AccessDenied);
        assert!(s.message.contains("no credentials"), "{s}");
    }
}
