//! What backends share to answer the trait's reads and listings: a
//! listing followed page by page (bounded), a page cut from keys in order
//! (stores that walk their keys themselves), a GET of any size as ranged
//! reads (local stores), and a range cut at an object's end.

use super::{
    ByteRange, ChunkSink, ErrorClass, GET_CHUNK_BYTES, GetOptions, GetOutcome, ListOptions,
    ListPage, ObjectMeta, ObjectStore, StoreError, StoreResult,
};
use crate::clock::Mono;

/// Lists every object under `prefix` page by page, at most `max` of them
/// (a bound, so a huge bucket cannot exhaust memory).
pub async fn list_all(
    store: &dyn ObjectStore,
    prefix: &str,
    max: usize,
) -> StoreResult<Vec<ObjectMeta>> {
    list_pages(max, |opts| async move { store.list(prefix, &opts).await }).await
}

/// Gathers the entries of the pages `page` returns, following each page's
/// continuation, at most `max` entries; `page` makes one listing request
/// (so a caller can time each, as an op).
pub async fn list_pages<F, Fut>(max: usize, mut page: F) -> StoreResult<Vec<ObjectMeta>>
where
    F: FnMut(ListOptions) -> Fut,
    Fut: std::future::Future<Output = StoreResult<ListPage>>,
{
    let mut all = Vec::new();
    let mut opts = ListOptions::default();
    loop {
        let next = page(opts.clone()).await?;
        all.extend(next.entries);
        if all.len() >= max {
            all.truncate(max);
            return Ok(all);
        }
        match next.next {
            Some(token) => opts.continuation = Some(token),
            None => return Ok(all),
        }
    }
}

/// Builds one page from `(key, size)` pairs in key order that start with
/// `prefix`, beginning after `opts.continuation`: rolls keys up into common
/// prefixes when a delimiter is given, stops at `opts.limit` entries and
/// sets `next` to the last key returned. For stores that can walk keys in
/// order themselves (memory, file).
pub fn page_from_sorted<'a>(
    keys: impl Iterator<Item = (&'a str, u64)>,
    prefix: &str,
    opts: &ListOptions,
) -> ListPage {
    let mut page = ListPage::default();
    let after = opts.continuation.as_deref().unwrap_or("");
    let mut last = String::new();
    for (key, size) in keys {
        if key <= after || !key.starts_with(prefix) {
            continue;
        }
        let rolled = opts.delimiter.and_then(|d| {
            key[prefix.len()..]
                .find(d)
                .map(|i| &key[..prefix.len() + i + d.len_utf8()])
        });
        if let Some(p) = rolled {
            // Every key below a prefix sorts right after it: skip them all.
            if page.prefixes.last().is_some_and(|l| l == p) || p <= after {
                continue;
            }
        }
        if page.entries.len() + page.prefixes.len() == opts.limit {
            page.next = Some(last);
            return page;
        }
        match rolled {
            Some(p) => {
                page.prefixes.push(p.to_string());
                // Continue after everything under this prefix.
                last = format!("{p}\u{10FFFF}");
            }
            None => {
                page.entries.push(ObjectMeta {
                    key: key.to_string(),
                    size,
                });
                last = key.to_string();
            }
        }
    }
    page
}

/// [`ObjectStore::get_chunks`] for a store whose ranged reads are cheap
/// local calls (`file://`, `direct://`): the object's size from `stat`,
/// then ranged GETs of at most [`GET_CHUNK_BYTES`], each handed to `sink`
/// and dropped. The first byte is the first read's.
pub async fn get_in_ranges(
    store: &dyn ObjectStore,
    key: &str,
    range: Option<ByteRange>,
    sink: ChunkSink<'_>,
) -> StoreResult<GetOutcome> {
    let size = store.stat(key).await?.size;
    let (start, len) = match range {
        Some(r) => clamp_range(r, size, store.endpoint(), key)?,
        None => (0, size),
    };
    let (mut bytes, mut first_byte) = (0u64, None);
    while bytes < len {
        let want = GET_CHUNK_BYTES.min(len - bytes);
        let opts = GetOptions {
            range: Some(ByteRange {
                offset: start + bytes,
                length: want,
            }),
            keep_data: true,
        };
        let got = store.get(key, &opts).await?;
        first_byte = first_byte.or(got.first_byte);
        let data = got.data.unwrap_or_default();
        if data.is_empty() {
            // Cut short under us (truncated meanwhile): what was read is
            // what the GET got; verification names the shortfall.
            break;
        }
        sink(start + bytes, &data)?;
        bytes += data.len() as u64;
        // Local reads run inline on the runtime thread: between chunks,
        // its other workers get their turn (see `FileStore::put_multipart`).
        if bytes < len {
            tokio::task::yield_now().await;
        }
    }
    Ok(GetOutcome {
        bytes,
        first_byte: first_byte.or_else(|| Some(Mono::now())),
        data: None,
    })
}

/// The part of `[0, size)` a range covers, or the "not satisfiable" error.
pub fn clamp_range(
    range: ByteRange,
    size: u64,
    endpoint: &str,
    key: &str,
) -> StoreResult<(u64, u64)> {
    if range.offset >= size && !(size == 0 && range.offset == 0) {
        return Err(StoreError::new(
            ErrorClass::Other,
            endpoint,
            format!(
                "`{key}`: range {}+{} not satisfiable for size {size}",
                range.offset, range.length
            ),
        ));
    }
    let end = range.offset.saturating_add(range.length).min(size);
    Ok((range.offset, end - range.offset))
}
