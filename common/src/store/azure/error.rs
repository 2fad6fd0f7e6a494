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

use crate::store::{ErrorClass, StoreError};

/// Longest service message kept: enough for the first sentence, bounded so
/// an HTML error page cannot flood the op-log.
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
pub(crate) fn status_of(e: &azure_core::Error) -> Option<azure_core::StatusCode> {
    match e.kind() {
        ErrorKind::HttpResponse { status, .. } => Some(*status),
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

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(MAX_SERVICE_MESSAGE_CHARS)
        .collect()
}

/// Cuts the query string off every URL in `text`: SAS tokens are query
/// strings, and some layers print the URL they failed on.
pub(crate) fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("http") {
        let (head, tail) = rest.split_at(i);
        out.push_str(head);
        if !(tail.starts_with("http://") || tail.starts_with("https://")) {
            out.push_str("http");
            rest = &tail[4..];
            continue;
        }
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | '"' | '\'' | '>'))
            .unwrap_or(tail.len());
        let url = &tail[..end];
        match url.split_once('?') {
            Some((base, _)) => {
                out.push_str(base);
                out.push_str("?<redacted>");
            }
            None => out.push_str(url),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_classes() {
        assert_eq!(class_of_status(404), ErrorClass::NotFound);
        assert_eq!(class_of_status(403), ErrorClass::AccessDenied);
        assert_eq!(class_of_status(401), ErrorClass::AccessDenied);
        assert_eq!(class_of_status(429), ErrorClass::Throttled);
        assert_eq!(class_of_status(503), ErrorClass::Throttled);
        assert_eq!(class_of_status(500), ErrorClass::Other);
        assert_eq!(class_of_status(416), ErrorClass::Other);
    }

    #[test]
    fn urls_lose_their_query() {
        let t = redact("failed for url (https://a.blob.core.windows.net/c/k?sv=1&sig=SECRET) now");
        assert_eq!(
            t,
            "failed for url (https://a.blob.core.windows.net/c/k?<redacted>) now"
        );
        assert_eq!(redact("no url, httpish"), "no url, httpish");
        assert_eq!(redact("http://h/p"), "http://h/p");
    }

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
