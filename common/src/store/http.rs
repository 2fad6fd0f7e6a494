//! What the HTTP-based object stores (Azure, GCS) share in mapping their
//! errors: the error class of an HTTP status, clipping a service's message,
//! and cutting query strings (where SAS tokens and URL signatures travel)
//! out of any URL in an error text.

use super::ErrorClass;

/// Longest service message kept: enough for the first sentence, bounded so
/// an HTML error page cannot flood the op-log.
pub(crate) const MAX_SERVICE_MESSAGE_CHARS: usize = 200;

/// The class of an HTTP status: 404 not found; 401/403 access denied;
/// 429/503 throttled; 408 timeout; anything else other.
pub(crate) fn class_of_status(status: u16) -> ErrorClass {
    match status {
        404 => ErrorClass::NotFound,
        401 | 403 => ErrorClass::AccessDenied,
        429 | 503 => ErrorClass::Throttled,
        408 => ErrorClass::Timeout,
        _ => ErrorClass::Other,
    }
}

/// The first line of a service's message, clipped to
/// [`MAX_SERVICE_MESSAGE_CHARS`].
pub(crate) fn first_line(text: &str) -> String {
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
        assert_eq!(class_of_status(408), ErrorClass::Timeout);
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
        assert_eq!(
            redact("for url (https://h/o?X-Goog-Signature=abc)"),
            "for url (https://h/o?<redacted>)"
        );
        assert_eq!(redact("no url, httpish"), "no url, httpish");
        assert_eq!(redact("what? plain"), "what? plain");
        assert_eq!(redact("http://h/p"), "http://h/p");
    }

    #[test]
    fn first_lines_are_clipped() {
        assert_eq!(first_line("one\ntwo"), "one");
        assert_eq!(
            first_line(&"x".repeat(500)).len(),
            MAX_SERVICE_MESSAGE_CHARS
        );
    }
}
