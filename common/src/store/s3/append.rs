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
//!
//! The position comes from a HEAD just before, so two appends to one
//! object at once would both aim at the same end and one be refused. A
//! process's appends to one object therefore take turns ([`Turn`]): an
//! agent's workers (and its endpoints' stores) never refuse each other,
//! and the wait for a turn is part of the op's latency. Writers in other
//! processes (other agents, with `partition: shared`) still can: the
//! server's refusal is then the op's error.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

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

/// The objects this process is appending to, by `bucket/key`: the lock
/// their appends take turns on and how many appends hold or wait for it.
/// An entry per object with an append in flight or waiting (so at most one
/// per worker), removed by the last.
type Turns = HashMap<String, (Arc<tokio::sync::Mutex<()>>, usize)>;
static TURNS: LazyLock<Mutex<Turns>> = LazyLock::new(Default::default);

/// One append's turn at an object: held from before its HEAD to after its
/// answer; dropped (done, failed, or cut short by the op's timeout while it
/// waited or ran), the next append to the object goes.
struct Turn {
    object: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Turn {
    async fn take(object: String) -> Turn {
        let lock = {
            let mut turns = TURNS.lock().unwrap_or_else(|e| e.into_inner());
            let entry = turns.entry(object.clone()).or_default();
            entry.1 += 1;
            entry.0.clone()
        };
        // Counted before the wait, so a wait cut short is uncounted by
        // the drop.
        let mut turn = Turn {
            object,
            guard: None,
        };
        turn.guard = Some(lock.lock_owned().await);
        turn
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.guard.take();
        let mut turns = TURNS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = turns.get_mut(&self.object) {
            entry.1 -= 1;
            if entry.1 == 0 {
                turns.remove(&self.object);
            }
        }
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
    /// missing, which creates it), then the append at that position, in
    /// this process's turn at the object ([`Turn`]). A writer elsewhere
    /// that appended in between makes the server refuse it
    /// (`PositionNotEqualToLength`, class `other`, which the engine does
    /// not retry).
    pub(super) async fn append_at_end(&self, key: &str, data: Bytes) -> StoreResult<()> {
        let full = self.full_key(key);
        let what = self.what("APPEND", &full);
        let _turn = Turn::take(format!("{}/{full}", self.bucket)).await;
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_to_one_object_take_turns_and_leave_no_entry() {
        let inside = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut tasks = Vec::new();
        for i in 0..8 {
            let inside = inside.clone();
            // Two objects: turns are per object.
            let object = format!("turns-test/{}", i % 2);
            tasks.push(tokio::spawn(async move {
                let _turn = Turn::take(object).await;
                let n = inside.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                inside.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                n
            }));
        }
        let mut most = 0;
        for t in tasks {
            most = most.max(t.await.unwrap());
        }
        assert!(most <= 1, "{} appenders inside at once", most + 1);
        // A wait cut short (its op timed out) leaves nothing behind, and
        // the next goes.
        let object = || "turns-test/cut".to_string();
        let held = Turn::take(object()).await;
        let short = std::time::Duration::from_millis(5);
        assert!(
            tokio::time::timeout(short, Turn::take(object()))
                .await
                .is_err()
        );
        let waiting = tokio::spawn(Turn::take(object()));
        tokio::time::sleep(short).await;
        drop(held);
        drop(waiting.await.unwrap());
        let turns = TURNS.lock().unwrap();
        assert!(
            !turns.keys().any(|k| k.starts_with("turns-test/")),
            "{:?}",
            turns.keys().collect::<Vec<_>>()
        );
    }

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
