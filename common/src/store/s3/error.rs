//! Maps aws-sdk-s3 errors into the store's [`StoreError`] taxonomy.
//!
//! The class comes from the S3 error code where the server sent one (it is
//! the most specific signal), else from the HTTP status, else from what kind
//! of failure the SDK saw (timeout, failed dispatch). The message names the
//! op, the object, the S3 code, the HTTP status and the request id, so a
//! failure can be matched with the server's own logs. It is built only from
//! those fields and from the SDK's error chain, never from the request (whose
//! `Authorization` header and `x-amz-security-token` hold credentials), and
//! every secret the store knows is scrubbed from it as a last guard.

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use crate::store::{ErrorClass, StoreError};

/// What replaces a secret found in an error message.
const REDACTED: &str = "<redacted>";

/// The shortest string treated as a secret when scrubbing: replacing very
/// short strings would mangle ordinary words and protect nothing.
const MIN_SECRET_LEN: usize = 8;

/// The class of a service error, from its S3 code or else its HTTP status.
pub(crate) fn classify(code: Option<&str>, status: Option<u16>) -> ErrorClass {
    let by_code = match code {
        Some("NoSuchKey" | "NotFound" | "NoSuchBucket" | "NoSuchUpload") => {
            Some(ErrorClass::NotFound)
        }
        Some(
            "AccessDenied"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "InvalidToken"
            | "TokenRefreshRequired"
            | "AllAccessDisabled"
            | "AccountProblem"
            | "InvalidSecurity",
        ) => Some(ErrorClass::AccessDenied),
        Some(
            "SlowDown"
            | "Throttling"
            | "ThrottlingException"
            | "TooManyRequests"
            | "TooManyRequestsException"
            | "RequestLimitExceeded"
            | "ServiceUnavailable"
            | "Busy",
        ) => Some(ErrorClass::Throttled),
        // S3 closed a connection on which the request body did not arrive
        // in time: a timeout, though the server noticed it.
        Some("RequestTimeout") => Some(ErrorClass::Timeout),
        // The server lacks the op (or a header of it): not a failure a
        // retry could mend.
        Some("NotImplemented") => Some(ErrorClass::NotSupported),
        _ => None,
    };
    by_code.unwrap_or(match status {
        Some(404) => ErrorClass::NotFound,
        Some(401 | 403) => ErrorClass::AccessDenied,
        Some(429 | 503) => ErrorClass::Throttled,
        Some(408) => ErrorClass::Timeout,
        Some(501) => ErrorClass::NotSupported,
        _ => ErrorClass::Other,
    })
}

/// Turns SDK errors into [`StoreError`]s for one store: knows its endpoint
/// and the secrets to keep out of messages.
#[derive(Clone)]
pub(crate) struct ErrorMapper {
    pub endpoint: String,
    /// Secret access key and session token, where the store was given them.
    secrets: Vec<String>,
}

impl ErrorMapper {
    pub fn new(endpoint: String, secrets: Vec<String>) -> ErrorMapper {
        let secrets = secrets
            .into_iter()
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .collect();
        ErrorMapper { endpoint, secrets }
    }

    /// An error of `class` with `message`, scrubbed.
    pub fn error(&self, class: ErrorClass, message: impl Into<String>) -> StoreError {
        StoreError::new(class, &self.endpoint, self.scrub(message.into()))
    }

    /// Replaces every known secret in `text`.
    pub fn scrub(&self, mut text: String) -> String {
        for s in &self.secrets {
            if text.contains(s.as_str()) {
                text = text.replace(s.as_str(), REDACTED);
            }
        }
        text
    }

    /// Maps a failed SDK call; `what` names the op and object
    /// (e.g. "GET `bucket/key`").
    pub fn sdk<E>(&self, what: &str, err: &SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let (class, message) = match err {
            SdkError::ServiceError(s) => {
                let status = s.raw().status().as_u16();
                let code = s.err().code();
                let mut m = format!(
                    "{what}: {} (HTTP {status})",
                    code.unwrap_or("no S3 error code")
                );
                if let Some(text) = s.err().message().filter(|t| !t.is_empty()) {
                    m.push_str(": ");
                    m.push_str(text);
                }
                if let Some(id) = s.raw().headers().get("x-amz-request-id") {
                    m.push_str(&format!(" [request id {id}]"));
                }
                (classify(code, Some(status)), m)
            }
            // The client sets no operation timeout (the engine's op timer
            // is the one), so only an SDK default could send this.
            SdkError::TimeoutError(_) => (
                ErrorClass::Timeout,
                format!("{what}: timed out in the SDK: {}", DisplayErrorContext(err)),
            ),
            SdkError::DispatchFailure(d) => {
                // Connect timeouts arrive here, not as TimeoutError.
                let class = if d.is_timeout() {
                    ErrorClass::Timeout
                } else if d.is_user() {
                    ErrorClass::Other
                } else {
                    ErrorClass::Network
                };
                (
                    class,
                    format!("{what}: request not sent: {}", DisplayErrorContext(err)),
                )
            }
            SdkError::ResponseError(r) => (
                ErrorClass::Other,
                format!(
                    "{what}: unreadable response (HTTP {}): {}",
                    r.raw().status().as_u16(),
                    DisplayErrorContext(err)
                ),
            ),
            // Construction failures (no credentials found, a bad input) and
            // variants added to the SDK later.
            _ => (
                ErrorClass::Other,
                format!("{what}: {}", DisplayErrorContext(err)),
            ),
        };
        self.error(class, message)
    }

    /// Maps a failure while reading a response body (after the headers).
    pub fn body(&self, what: &str, err: &dyn std::error::Error) -> StoreError {
        self.error(
            ErrorClass::Network,
            format!("{what}: response body failed: {}", DisplayErrorContext(err)),
        )
    }
}

impl std::fmt::Debug for ErrorMapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets themselves.
        f.debug_struct("ErrorMapper")
            .field("endpoint", &self.endpoint)
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_win_over_status() {
        assert_eq!(classify(Some("NoSuchKey"), Some(404)), ErrorClass::NotFound);
        assert_eq!(classify(Some("NotFound"), Some(404)), ErrorClass::NotFound);
        assert_eq!(
            classify(Some("SignatureDoesNotMatch"), Some(403)),
            ErrorClass::AccessDenied
        );
        assert_eq!(
            classify(Some("InvalidAccessKeyId"), Some(403)),
            ErrorClass::AccessDenied
        );
        assert_eq!(classify(Some("SlowDown"), Some(503)), ErrorClass::Throttled);
        assert_eq!(
            classify(Some("RequestTimeout"), Some(400)),
            ErrorClass::Timeout
        );
        assert_eq!(classify(Some("InvalidRange"), Some(416)), ErrorClass::Other);
    }

    #[test]
    fn status_when_no_known_code() {
        assert_eq!(classify(None, Some(404)), ErrorClass::NotFound);
        assert_eq!(classify(None, Some(403)), ErrorClass::AccessDenied);
        assert_eq!(classify(Some("Whatever"), Some(429)), ErrorClass::Throttled);
        assert_eq!(classify(None, Some(503)), ErrorClass::Throttled);
        assert_eq!(classify(None, Some(500)), ErrorClass::Other);
        assert_eq!(classify(None, Some(501)), ErrorClass::NotSupported);
        assert_eq!(
            classify(Some("NotImplemented"), Some(501)),
            ErrorClass::NotSupported
        );
        assert_eq!(classify(None, None), ErrorClass::Other);
    }

    #[test]
    fn scrubs_secrets_but_not_short_strings() {
        let m = ErrorMapper::new(
            "http://h:1".into(),
            vec!["SECRETSECRET".into(), "tok".into()],
        );
        let e = m.error(ErrorClass::Other, "saw SECRETSECRET and tok");
        assert_eq!(e.message, "saw <redacted> and tok");
        assert_eq!(e.endpoint, "http://h:1");
        assert!(!format!("{m:?}").contains("SECRETSECRET"));
    }
}
