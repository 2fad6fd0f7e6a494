//! Appends on S3, where the protocol has no general one: Ceph RGW's
//! appendable objects (`PUT /bucket/key?append&position=N`, `N` the
//! object's current length), with S3 Express's `x-amz-write-offset-bytes`
//! sent alongside for servers that know that form instead.
//!
//! Tried on RGW (Ceph 16.2, Pacific): an append at the current length
//! answers 200 with `x-rgw-next-append-position`; at any other position 409
//! `PositionNotEqualToLength` (nothing written); onto an object a plain PUT
//! wrote 409 `ObjectNotAppendable`; in a versioned bucket 409
//! `InvalidBucketState`. RGW ignores `x-amz-write-offset-bytes` (a PUT
//! with it alone replaces the object), and a server that knows neither
//! form would treat the request as a plain PUT and replace the object. So
//! an append is never trusted blindly: an answer without RGW's next
//! position is checked with a HEAD, and a size other than old + appended
//! is an error (`not_supported`), never a silent overwrite.

use std::sync::{Arc, Mutex};

use aws_sdk_s3::config::interceptors::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextMut,
};
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_runtime_api::box_error::BoxError;
use bytes::Bytes;

use super::S3Store;
use crate::store::{ErrorClass, ObjectStore, StoreResult};

/// The header RGW answers an append with: the object's new length.
const NEXT_POSITION: &str = "x-rgw-next-append-position";

/// Adds RGW's `append&position=N` to one PutObject before it is signed
/// (the signature covers the query), and keeps what the answer says in
/// [`NEXT_POSITION`].
#[derive(Debug)]
struct RgwAppend {
    position: u64,
    next: Arc<Mutex<Option<String>>>,
}

impl Intercept for RgwAppend {
    fn name(&self) -> &'static str {
        "ChorusRgwAppend"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request_mut();
        let uri = request.uri().to_string();
        let sep = if uri.contains('?') { '&' } else { '?' };
        request.set_uri(format!("{uri}{sep}append&position={}", self.position))?;
        Ok(())
    }

    fn read_before_deserialization(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let said = context.response().headers().get(NEXT_POSITION);
        if let Ok(mut next) = self.next.lock() {
            *next = said.map(String::from);
        }
        Ok(())
    }
}

/// Whether an append's failure means the server cannot append here: no
/// appends at all (501 `NotImplemented`, as AWS answers the write-offset
/// header on a general-purpose bucket), an object a plain PUT made, or a
/// versioned bucket (RGW).
fn refuses_appends(code: Option<&str>, status: Option<u16>) -> bool {
    matches!(
        code,
        Some("NotImplemented" | "ObjectNotAppendable" | "InvalidBucketState")
    ) || status == Some(501)
}

impl S3Store {
    /// Appends `data` at the object's end: its length from a HEAD (0 when
    /// missing, which creates it), then the append at that position. A
    /// writer that appended in between makes the server refuse it
    /// (`PositionNotEqualToLength`, class `other`); the engine's retry
    /// reads the new length.
    pub(super) async fn append_at_end(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let full = self.full_key(key);
        let what = self.what("APPEND", &full);
        let position = match self.stat(key).await {
            Ok(meta) => meta.size,
            Err(e) if e.class == ErrorClass::NotFound => 0,
            Err(e) => return Err(e),
        };
        let len = data.len() as u64;
        let next = Arc::new(Mutex::new(None));
        let sent = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&full)
            .content_length(len as i64)
            .write_offset_bytes(position as i64)
            .body(ByteStream::from(data))
            .customize()
            .interceptor(RgwAppend {
                position,
                next: next.clone(),
            })
            .send()
            .await;
        if let Err(e) = sent {
            let mut err = self.errors.sdk(&format!("{what} at {position}"), &e);
            let status = e.raw_response().map(|r| r.status().as_u16());
            if refuses_appends(e.code(), status) {
                err.class = ErrorClass::NotSupported;
                err.message
                    .push_str(": this server or object does not take appends");
            }
            return Err(err);
        }
        let said = next.lock().ok().and_then(|n| n.clone());
        let want = position + len;
        let now = match said.as_deref().map(str::parse::<u64>) {
            Some(Ok(n)) => n,
            // No RGW answer: a server that took the write offset, or one
            // that ignored both forms and replaced the object. The size
            // tells which.
            _ => self.stat(key).await?.size,
        };
        if now == want {
            return Ok(());
        }
        let class = if said.is_some() {
            // RGW appended, and someone else too, at the same moment.
            ErrorClass::Other
        } else {
            ErrorClass::NotSupported
        };
        Err(self.errors.error(
            class,
            format!(
                "{what} at {position} of {len} bytes: the object is {now} bytes after it, not \
                 {want}{}",
                if said.is_some() {
                    ""
                } else {
                    " (the server answered as to a plain PUT: it has no appends, and may \
                     have replaced the object)"
                }
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_of_appends_are_told_apart() {
        assert!(refuses_appends(Some("NotImplemented"), Some(501)));
        assert!(refuses_appends(Some("ObjectNotAppendable"), Some(409)));
        assert!(refuses_appends(Some("InvalidBucketState"), Some(409)));
        assert!(refuses_appends(None, Some(501)));
        // A concurrent appender moved the end: retryable, not a lack.
        assert!(!refuses_appends(
            Some("PositionNotEqualToLength"),
            Some(409)
        ));
        assert!(!refuses_appends(Some("AccessDenied"), Some(403)));
    }
}
