//! Maps `azure_core` errors into [`StoreError`]s.
//!
//! Class by HTTP status (404 not found; 401/403 access denied; 429/503
//! throttled; 408 timeout) or, for requests that got no answer, by the I/O
//! error underneath (network). The message says what was attempted, the
//! status and the service's error code (`AuthenticationFailed`,
//! `BlobNotFound`, …), and the first line of the service's text. It never
//! holds a URL's query string (where SAS tokens travel) and the store scrubs
//! its own secrets from it once more before handing it out.

use azure_core::error::ErrorKind;

use crate::store::http::{class_of_status, first_line, redact};
use crate::store::{ErrorClass, StoreError};

/// The HTTP status of `e`, when the service answered.
pub(crate) fn status_of(e: &azure_core::Error) -> Option<azure_core::StatusCode> {
    match e.kind() {
        ErrorKind::HttpResponse { status, .. } => Some(*status),
        _ => None,
    }
}

/// The service's error code (`BlobNotFound`, `ContainerNotFound`, …) of
/// `e`, when it answered with one: what tells a missing blob from a
/// missing container, both 404.
pub(crate) fn code_of(e: &azure_core::Error) -> Option<&str> {
    match e.kind() {
        ErrorKind::HttpResponse { error_code, .. } => error_code.as_deref(),
        _ => None,
    }
}

/// Turns `e`, from doing `what` against `endpoint`, into a [`StoreError`].
pub(crate) fn map(e: &azure_core::Error, endpoint: &str, what: &str) -> StoreError {
    match e.kind() {
        ErrorKind::HttpResponse { status, error_code } => {
            let status = *status as u16;
            let code = error_code.as_deref().unwrap_or("no error code");
            let detail = e
                .as_http_error()
                .and_then(|h| h.error_message())
                .map(first_line)
                .filter(|m| !m.is_empty())
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            StoreError::new(
                class_of_status(status),
                endpoint,
                redact(&format!("{what}: HTTP {status} {code}{detail}")),
            )
        }
        ErrorKind::Io => StoreError::new(
            ErrorClass::Network,
            endpoint,
            redact(&format!("{what}: {}", root_cause(e))),
        ),
        ErrorKind::Credential => StoreError::new(
            ErrorClass::AccessDenied,
            endpoint,
            redact(&format!("{what}: credential error: {}", root_cause(e))),
        ),
        _ => StoreError::new(
            ErrorClass::Other,
            endpoint,
            redact(&format!("{what}: {}", root_cause(e))),
        ),
    }
}

/// The innermost error's text (e.g. "Connection refused (os error 111)"),
/// which names the real cause; outer layers only repeat "request failed"
/// and reqwest's layer adds the full URL, query string included.
fn root_cause(e: &azure_core::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let text = cause.to_string();
    if text.is_empty() { e.to_string() } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_errors_name_status_and_code() {
        let e = azure_core::Error::new(
            ErrorKind::http_response(
                azure_core::StatusCode::Forbidden,
                Some("AuthenticationFailed".into()),
            ),
            std::io::Error::other("x"),
        );
        let s = map(&e, "http://h/acct", "PUT `k`");
        assert_eq!(s.class, ErrorClass::AccessDenied);
        assert!(s.message.contains("403 AuthenticationFailed"), "{s}");
    }
}
