//! A pipeline policy that makes the SDK's GETs plain GETs.
//!
//! `azure_storage_blobs` 0.21 always sends `x-ms-range` on GET (its reads
//! are chunked) and, for ranges under 4 MiB, `x-ms-range-get-content-crc64:
//! true`, which asks the service to checksum the range. For a benchmark both
//! are wrong: the checksum is server work no plain reader causes (Azurite in
//! strict mode even refuses it), and a whole-object GET should carry no
//! range at all (an empty blob cannot satisfy any range). This policy runs
//! before signing, so the signature covers the request actually sent. The
//! crate's `Headers` has no remove, hence the request is rebuilt.

use std::sync::Arc;

use async_trait::async_trait;
use azure_core::headers::{HeaderName, MS_RANGE, RANGE_GET_CONTENT_CRC64};
use azure_core::prelude::Range;
use azure_core::{Context, Method, Policy, PolicyResult, Request};

/// Drops the checksum request on every GET, and the range header when it is
/// `whole_range` (the marker for "the whole object").
#[derive(Debug)]
pub(crate) struct PlainGet {
    whole_range: String,
}

impl PlainGet {
    /// `whole_bytes` is the chunk size GETs of whole objects ask for.
    pub(crate) fn new(whole_bytes: u64) -> PlainGet {
        PlainGet {
            whole_range: Range::new(0, whole_bytes).to_string(),
        }
    }

    fn drop_header(&self, name: &HeaderName, value: &str) -> bool {
        *name == RANGE_GET_CONTENT_CRC64 || (*name == MS_RANGE && value == self.whole_range)
    }
}

#[async_trait]
impl Policy for PlainGet {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        let rebuild = *request.method() == Method::Get
            && request
                .headers()
                .iter()
                .any(|(n, v)| self.drop_header(n, v.as_str()));
        if rebuild {
            let mut plain = Request::new(request.url().clone(), *request.method());
            for (name, value) in request.headers().iter() {
                if !self.drop_header(name, value.as_str()) {
                    plain.insert_header(name.clone(), value.clone());
                }
            }
            plain.set_body(request.body().clone());
            *request = plain;
        }
        next[0].send(ctx, request, &next[1..]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_the_whole_object_marker() {
        let p = PlainGet::new(1 << 50);
        assert!(p.drop_header(&MS_RANGE, &format!("bytes=0-{}", (1u64 << 50) - 1)));
        assert!(!p.drop_header(&MS_RANGE, "bytes=0-9"));
        assert!(p.drop_header(&RANGE_GET_CONTENT_CRC64, "true"));
    }
}
