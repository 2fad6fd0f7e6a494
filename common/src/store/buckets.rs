//! A stage's key space spread over N buckets (containers): `buckets: N`.
//!
//! [`bucket_targets`] makes the N targets from the stage's one: the bucket
//! part of the target (for `az://account/container/prefix` the container)
//! has `{n}` replaced by 1..=N, or, without `{n}`, `-1` … `-N` appended.
//! [`BucketSet`] is a store over one store per bucket: an op on a key goes
//! to bucket `fnv1a(base key) % N`, where the base key is the key without
//! a side-object suffix (`.copy`, `.append`: [`super::api::base_key`]), so
//! an object and its side objects share a bucket and a server-side copy to
//! a side object stays in one bucket. A copy whose destination routes to
//! another bucket is `not_supported` (no backend copies across buckets in
//! one request here).
//!
//! Listing walks the buckets in turn: a page comes from one bucket, in key
//! order within that bucket only (not across the set), and its
//! continuation names the bucket and the bucket's own token. With a
//! delimiter, a common prefix shows once per bucket that has keys under it.
//! Batch deletes are grouped by bucket, one request per bucket, results in
//! the caller's order.
//!
//! [`super::open`] builds a `BucketSet` when [`super::OpenOptions::buckets`]
//! is above 1, so a multi-endpoint stage (which opens one store per
//! endpoint) gets one `BucketSet` per endpoint.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};

use super::api::{base_key, not_supported};
use super::{
    BucketSetup, ByteRange, ChunkSink, CopyPlan, ErrorClass, GetOptions, GetOutcome, ListOptions,
    ListPage, ObjectMeta, ObjectStore, PartPlan, PartSource, StoreError, StoreResult, Tags,
    VersionPage,
};

/// Most buckets one stage may spread over.
pub const MAX_BUCKETS: u32 = 1000;

/// Buckets readied (HEAD, CREATE) at once by `ensure_ready`.
const READY_AT_ONCE: usize = 16;

/// What `{n}` in a bucket name stands for: the bucket's number, 1..=N.
pub const BUCKET_NUMBER: &str = "{n}";

/// Schemes whose targets name a bucket (or container): the ones
/// `buckets` applies to (`mem://` so the engine's tests can use it).
pub const BUCKET_SCHEMES: [&str; 4] = ["s3", "az", "gs", "mem"];

/// Where the bucket part of `target` is: (start, end) byte offsets, for a
/// target of a scheme in [`BUCKET_SCHEMES`].
fn bucket_span(target: &str) -> Result<(usize, usize), String> {
    let Some((scheme, rest)) = target.split_once("://") else {
        return Err(format!("`{target}` is not a target URI"));
    };
    if !BUCKET_SCHEMES.contains(&scheme) {
        return Err(format!(
            "`buckets` applies to s3://, az:// and gs:// targets, not `{scheme}://` (`{target}`)"
        ));
    }
    let base = scheme.len() + 3;
    // az://account/container/prefix: the container is the second part.
    let mut start = base;
    if scheme == "az" {
        match rest.find('/') {
            Some(i) => start = base + i + 1,
            None => return Err(format!("`{target}` names no container")),
        }
    }
    let end = target[start..]
        .find('/')
        .map_or(target.len(), |i| start + i);
    if end == start {
        return Err(format!("`{target}` names no bucket"));
    }
    Ok((start, end))
}

/// The targets of the `n` buckets of `target` (see the module docs); just
/// `target` when `n` is 1. An error when `n` is out of 1..=[`MAX_BUCKETS`],
/// the scheme has no buckets, `{n}` is used with `n` = 1 or outside the
/// bucket part, or the bucket part has another `{…}`.
pub fn bucket_targets(target: &str, n: u32) -> Result<Vec<String>, String> {
    if n == 0 || n > MAX_BUCKETS {
        return Err(format!("`buckets` must be 1 to {MAX_BUCKETS}, got {n}"));
    }
    let templated = target.contains(BUCKET_NUMBER);
    if n == 1 {
        if templated {
            return Err(format!(
                "`{target}` has `{BUCKET_NUMBER}`, which numbers the buckets of `buckets: N`; \
                 set `buckets` above 1, or name one bucket"
            ));
        }
        return Ok(vec![target.to_string()]);
    }
    let (start, end) = bucket_span(target)?;
    let bucket = &target[start..end];
    if target[end..].contains(BUCKET_NUMBER) || target[..start].contains(BUCKET_NUMBER) {
        return Err(format!(
            "`{BUCKET_NUMBER}` in `{target}` is outside its bucket name; only the bucket \
             is numbered"
        ));
    }
    let name = |i: u32| {
        if templated {
            bucket.replace(BUCKET_NUMBER, &i.to_string())
        } else {
            format!("{bucket}-{i}")
        }
    };
    if name(1).contains(['{', '}']) {
        return Err(format!(
            "bucket `{bucket}` of `{target}` has a `{{…}}` that is not `{BUCKET_NUMBER}`"
        ));
    }
    Ok((1..=n)
        .map(|i| format!("{}{}{}", &target[..start], name(i), &target[end..]))
        .collect())
}

/// 64-bit FNV-1a: a stable hash (the same in every agent and every
/// release), so a key's bucket never changes between stages or runs.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Which of `n` buckets `key` goes to.
pub fn bucket_index(key: &str, n: usize) -> usize {
    (fnv1a(base_key(key).as_bytes()) % n.max(1) as u64) as usize
}

/// A store over N buckets; see the module docs.
#[derive(Debug)]
pub struct BucketSet {
    stores: Vec<Arc<dyn ObjectStore>>,
    /// The stage's target (the template), for `Display`.
    template: String,
}

impl BucketSet {
    /// A set over `stores`, one per bucket target of `template`, in order.
    pub fn new(template: &str, stores: Vec<Arc<dyn ObjectStore>>) -> StoreResult<BucketSet> {
        if stores.is_empty() || stores.len() > MAX_BUCKETS as usize {
            return Err(StoreError::new(
                ErrorClass::Other,
                template,
                format!(
                    "a bucket set needs 1 to {MAX_BUCKETS} buckets, got {}",
                    stores.len()
                ),
            ));
        }
        Ok(BucketSet {
            stores,
            template: template.to_string(),
        })
    }

    /// Number of buckets.
    pub fn len(&self) -> usize {
        self.stores.len()
    }

    /// Always false: a set has at least one bucket.
    pub fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }

    /// The store of bucket `i` (0-based).
    pub fn bucket(&self, i: usize) -> Option<&Arc<dyn ObjectStore>> {
        self.stores.get(i)
    }

    /// The store `key` goes to.
    fn route(&self, key: &str) -> &Arc<dyn ObjectStore> {
        &self.stores[bucket_index(key, self.stores.len())]
    }

    /// The bucket and inner continuation a list token names (`None`: the
    /// first page of the first bucket).
    fn parse_token(&self, token: Option<&str>) -> StoreResult<(usize, Option<String>)> {
        let Some(t) = token else {
            return Ok((0, None));
        };
        let bad = || {
            StoreError::new(
                ErrorClass::Other,
                self.endpoint(),
                format!("`{t}` is not a continuation of {self}"),
            )
        };
        let (i, inner) = t.split_once(':').ok_or_else(bad)?;
        let i: usize = i.parse().map_err(|_| bad())?;
        if i >= self.stores.len() {
            return Err(bad());
        }
        Ok((i, (!inner.is_empty()).then(|| inner.to_string())))
    }

    /// The token of bucket `i`'s page after `inner` (`None`: its first).
    fn token(i: usize, inner: Option<&str>) -> String {
        format!("{i}:{}", inner.unwrap_or(""))
    }

    /// Where the walk goes after a page of bucket `i` whose own next is
    /// `inner`: on in that bucket, to the next bucket, or nowhere.
    fn next_token(&self, i: usize, inner: Option<&str>) -> Option<String> {
        match inner {
            Some(t) => Some(Self::token(i, Some(t))),
            None if i + 1 < self.stores.len() => Some(Self::token(i + 1, None)),
            None => None,
        }
    }
}

impl fmt::Display for BucketSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} buckets)", self.template, self.stores.len())
    }
}

/// Groups the positions of `items` by the bucket `key_of` routes each to:
/// one list of positions per bucket, in the caller's order.
fn group<T>(items: &[T], n: usize, key_of: impl Fn(&T) -> &str) -> Vec<Vec<usize>> {
    let mut groups = vec![Vec::new(); n];
    for (pos, item) in items.iter().enumerate() {
        groups[bucket_index(key_of(item), n)].push(pos);
    }
    groups
}

/// Puts each group's results back at its items' positions; a group whose
/// whole call failed gives each of its items that error.
fn scatter(
    len: usize,
    groups: &[Vec<usize>],
    answers: Vec<StoreResult<Vec<StoreResult<()>>>>,
) -> Vec<StoreResult<()>> {
    let mut out: Vec<Option<StoreResult<()>>> = (0..len).map(|_| None).collect();
    for (positions, answer) in groups.iter().filter(|g| !g.is_empty()).zip(answers) {
        match answer {
            Ok(each) => {
                for (&pos, r) in positions.iter().zip(each) {
                    out[pos] = Some(r);
                }
            }
            Err(e) => {
                for &pos in positions {
                    out[pos] = Some(Err(e.clone()));
                }
            }
        }
    }
    out.into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(StoreError::new(
                    ErrorClass::Other,
                    "",
                    "the bucket's batch answered fewer results than keys",
                ))
            })
        })
        .collect()
}

#[async_trait]
impl ObjectStore for BucketSet {
    fn endpoint(&self) -> &str {
        self.stores[0].endpoint()
    }

    async fn put(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.route(key).put(key, data).await
    }

    async fn get(&self, key: &str, opts: &GetOptions) -> StoreResult<GetOutcome> {
        self.route(key).get(key, opts).await
    }

    async fn stat(&self, key: &str) -> StoreResult<ObjectMeta> {
        self.route(key).stat(key).await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.route(key).delete(key).await
    }

    /// One bucket's page (a bucket with nothing under `prefix` is passed
    /// over in the same call); see the module docs for the order.
    async fn list(&self, prefix: &str, opts: &ListOptions) -> StoreResult<ListPage> {
        let (mut i, mut inner) = self.parse_token(opts.continuation.as_deref())?;
        loop {
            let one = ListOptions {
                continuation: inner.take(),
                ..opts.clone()
            };
            let mut page = self.stores[i].list(prefix, &one).await?;
            let empty = page.entries.is_empty() && page.prefixes.is_empty();
            if empty && page.next.is_none() && i + 1 < self.stores.len() {
                i += 1;
                continue;
            }
            page.next = self.next_token(i, page.next.as_deref());
            return Ok(page);
        }
    }

    async fn get_chunks(
        &self,
        key: &str,
        range: Option<ByteRange>,
        sink: ChunkSink<'_>,
    ) -> StoreResult<GetOutcome> {
        self.route(key).get_chunks(key, range, sink).await
    }

    async fn put_multipart(
        &self,
        key: &str,
        plan: PartPlan<'_>,
        part: PartSource<'_>,
    ) -> StoreResult<u64> {
        self.route(key).put_multipart(key, plan, part).await
    }

    /// One batch per bucket holding some of `keys`, sent at once.
    async fn delete_many(&self, keys: &[String]) -> StoreResult<Vec<StoreResult<()>>> {
        let groups = group(keys, self.stores.len(), |k| k.as_str());
        let calls = groups
            .iter()
            .enumerate()
            .filter(|(_, g)| !g.is_empty())
            .map(|(b, g)| {
                let mine: Vec<String> = g.iter().map(|&p| keys[p].clone()).collect();
                let store = &self.stores[b];
                async move { store.delete_many(&mine).await }
            });
        let answers = futures::future::join_all(calls).await;
        Ok(scatter(keys.len(), &groups, answers))
    }

    fn batch_limit(&self) -> usize {
        self.stores
            .iter()
            .map(|s| s.batch_limit())
            .min()
            .unwrap_or(1)
    }

    async fn copy(&self, src: &str, dst: &str, plan: CopyPlan) -> StoreResult<u64> {
        let n = self.stores.len();
        let (from, to) = (bucket_index(src, n), bucket_index(dst, n));
        if from != to {
            let mut e = not_supported(self.endpoint(), "COPY", src);
            e.message = format!(
                "COPY `{src}` -> `{dst}`: the keys are in different buckets of {self} \
                 (buckets {} and {}); a copy stays in one bucket",
                from + 1,
                to + 1
            );
            return Err(e);
        }
        self.stores[from].copy(src, dst, plan).await
    }

    async fn append(&self, key: &str, data: Bytes) -> StoreResult<()> {
        self.route(key).append(key, data).await
    }

    async fn put_tags(&self, key: &str, tags: &[(String, String)]) -> StoreResult<()> {
        self.route(key).put_tags(key, tags).await
    }

    async fn get_tags(&self, key: &str) -> StoreResult<Tags> {
        self.route(key).get_tags(key).await
    }

    async fn put_retention(&self, key: &str, until: std::time::SystemTime) -> StoreResult<()> {
        self.route(key).put_retention(key, until).await
    }

    /// True when every bucket keeps versions.
    async fn versioning_enabled(&self) -> StoreResult<bool> {
        for s in &self.stores {
            if !s.versioning_enabled().await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn put_versioned(&self, key: &str, data: Bytes) -> StoreResult<Option<String>> {
        self.route(key).put_versioned(key, data).await
    }

    async fn get_version(
        &self,
        key: &str,
        version: &str,
        opts: &GetOptions,
    ) -> StoreResult<GetOutcome> {
        self.route(key).get_version(key, version, opts).await
    }

    async fn delete_version(&self, key: &str, version: &str) -> StoreResult<()> {
        self.route(key).delete_version(key, version).await
    }

    /// Bucket by bucket, as [`Self::list`].
    async fn list_versions(&self, prefix: &str, opts: &ListOptions) -> StoreResult<VersionPage> {
        let (mut i, mut inner) = self.parse_token(opts.continuation.as_deref())?;
        loop {
            let one = ListOptions {
                continuation: inner.take(),
                ..opts.clone()
            };
            let mut page = self.stores[i].list_versions(prefix, &one).await?;
            if page.entries.is_empty() && page.next.is_none() && i + 1 < self.stores.len() {
                i += 1;
                continue;
            }
            page.next = self.next_token(i, page.next.as_deref());
            return Ok(page);
        }
    }

    /// Grouped by bucket like [`Self::delete_many`].
    async fn delete_versions(
        &self,
        items: &[(String, String)],
    ) -> StoreResult<Vec<StoreResult<()>>> {
        let groups = group(items, self.stores.len(), |(k, _)| k.as_str());
        let calls = groups
            .iter()
            .enumerate()
            .filter(|(_, g)| !g.is_empty())
            .map(|(b, g)| {
                let mine: Vec<(String, String)> = g.iter().map(|&p| items[p].clone()).collect();
                let store = &self.stores[b];
                async move { store.delete_versions(&mine).await }
            });
        let answers = futures::future::join_all(calls).await;
        Ok(scatter(items.len(), &groups, answers))
    }

    async fn mkdir(&self, path: &str) -> StoreResult<()> {
        self.route(path).mkdir(path).await
    }

    async fn rmdir(&self, path: &str) -> StoreResult<()> {
        self.route(path).rmdir(path).await
    }

    /// Readies every bucket, [`READY_AT_ONCE`] at a time (a thousand
    /// buckets one after the other would outlast the op timer).
    async fn ensure_ready(&self) -> StoreResult<()> {
        let each: Vec<_> = self.stores.iter().map(|s| s.ensure_ready()).collect();
        stream::iter(each)
            .buffer_unordered(READY_AT_ONCE)
            .try_collect::<()>()
            .await
    }

    async fn ensure_ready_with(&self, setup: BucketSetup) -> StoreResult<()> {
        let each: Vec<_> = self
            .stores
            .iter()
            .map(|s| s.ensure_ready_with(setup))
            .collect();
        stream::iter(each)
            .buffer_unordered(READY_AT_ONCE)
            .try_collect::<()>()
            .await
    }

    fn stage_begins(&self, removes_objects: bool) {
        for s in &self.stores {
            s.stage_begins(removes_objects);
        }
    }

    fn buckets_made(&self) -> Vec<String> {
        self.stores.iter().flat_map(|s| s.buckets_made()).collect()
    }

    /// Asks every bucket; the first error after all were asked.
    async fn remove_buckets(&self, names: &[String]) -> StoreResult<u32> {
        let (mut removed, mut first) = (0, None);
        for s in &self.stores {
            match s.remove_buckets(names).await {
                Ok(n) => removed += n,
                Err(e) => drop(first.get_or_insert(e)),
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(removed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use crate::store::{ListOptions, list_all};

    #[test]
    fn names_expand_from_the_bucket_part() {
        assert_eq!(
            bucket_targets("s3://bkt-{n}/run", 3).unwrap(),
            ["s3://bkt-1/run", "s3://bkt-2/run", "s3://bkt-3/run"]
        );
        assert_eq!(
            bucket_targets("s3://bkt/run/x", 2).unwrap(),
            ["s3://bkt-1/run/x", "s3://bkt-2/run/x"]
        );
        assert_eq!(
            bucket_targets("gs://b{n}x", 2).unwrap(),
            ["gs://b1x", "gs://b2x"]
        );
        // Azure's bucket is the container, after the account.
        assert_eq!(
            bucket_targets("az://acct/c/p", 2).unwrap(),
            ["az://acct/c-1/p", "az://acct/c-2/p"]
        );
        assert_eq!(
            bucket_targets("az://acct/c{n}", 2).unwrap(),
            ["az://acct/c1", "az://acct/c2"]
        );
        assert_eq!(
            bucket_targets("mem://t", 2).unwrap(),
            ["mem://t-1", "mem://t-2"]
        );
        assert_eq!(bucket_targets("s3://b/p", 1).unwrap(), ["s3://b/p"]);
        assert_eq!(bucket_targets("s3://b-{n}", 1000).unwrap().len(), 1000);
    }

    #[test]
    fn bad_names_and_counts_say_why() {
        let e = bucket_targets("s3://b-{n}/p", 1).unwrap_err();
        assert!(e.contains("set `buckets` above 1"), "{e}");
        let e = bucket_targets("s3://b/p-{n}", 2).unwrap_err();
        assert!(e.contains("outside its bucket name"), "{e}");
        let e = bucket_targets("file:///tmp/x", 2).unwrap_err();
        assert!(e.contains("not `file://`"), "{e}");
        let e = bucket_targets("s3://b-{i}", 2).unwrap_err();
        assert!(e.contains("not `{n}`"), "{e}");
        assert!(bucket_targets("s3://b", 0).is_err());
        assert!(bucket_targets("s3://b", MAX_BUCKETS + 1).is_err());
        assert!(bucket_targets("az://acct", 2).is_err());
    }

    fn set(n: usize, name: &str) -> (Vec<Arc<MemoryStore>>, BucketSet) {
        let mems: Vec<Arc<MemoryStore>> = (1..=n)
            .map(|i| Arc::new(MemoryStore::new(&format!("{name}-{i}"))))
            .collect();
        let stores = mems
            .iter()
            .map(|m| m.clone() as Arc<dyn ObjectStore>)
            .collect();
        (
            mems,
            BucketSet::new(&format!("mem://{name}"), stores).unwrap(),
        )
    }

    async fn count(m: &MemoryStore) -> usize {
        list_all(m, "", usize::MAX).await.unwrap().len()
    }

    #[tokio::test]
    async fn keys_and_their_side_objects_route_to_one_bucket_each() {
        let (mems, b) = set(4, "route");
        assert_eq!(b.to_string(), "mem://route (4 buckets)");
        assert_eq!(b.endpoint(), "mem://route-1");
        for i in 0..400 {
            let k = format!("obj/{i:08}");
            b.put(&k, Bytes::from_static(b"x")).await.unwrap();
            let plan = CopyPlan {
                size: 1,
                part_size: 1 << 20,
            };
            b.copy(&k, &format!("{k}.copy"), plan).await.unwrap();
            b.append(&format!("{k}.append"), Bytes::from_static(b"y"))
                .await
                .unwrap();
            let home = &mems[bucket_index(&k, 4)];
            for key in [k.clone(), format!("{k}.copy"), format!("{k}.append")] {
                assert!(home.stat(&key).await.is_ok(), "{key} beside its key");
                assert!(b.stat(&key).await.is_ok());
            }
        }
        // Spread: 400 keys, 3 objects each, over 4 buckets.
        for m in &mems {
            let n = count(m).await;
            assert!((200..=400).contains(&n), "{m}: {n} objects");
        }
        // A copy whose destination routes elsewhere is refused.
        let (a, other) = (0..)
            .map(|i| format!("k{i}"))
            .map(|k| (k, "k0".to_string()))
            .find(|(k, z)| bucket_index(k, 4) != bucket_index(z, 4))
            .unwrap();
        b.put(&other, Bytes::from_static(b"z")).await.unwrap();
        let plan = CopyPlan {
            size: 1,
            part_size: 1,
        };
        let e = b.copy(&other, &a, plan).await.unwrap_err();
        assert_eq!(e.class, ErrorClass::NotSupported);
        assert!(e.message.contains("different buckets"), "{}", e.message);
    }

    #[tokio::test]
    async fn listing_walks_every_bucket_page_by_page() {
        let (mems, b) = set(3, "list");
        // Bucket 2 of 3 stays empty under `p/`: it is passed over.
        let mut want = Vec::new();
        for i in 0..50 {
            let k = format!("p/{i:03}");
            if bucket_index(&k, 3) != 1 {
                b.put(&k, Bytes::from_static(b"x")).await.unwrap();
                want.push(k);
            }
        }
        mems[1].put("q/elsewhere", Bytes::new()).await.unwrap();
        let mut got = Vec::new();
        let mut opts = ListOptions {
            limit: 7,
            ..ListOptions::default()
        };
        let mut pages = 0;
        loop {
            let page = b.list("p/", &opts).await.unwrap();
            assert!(page.entries.len() <= 7);
            assert!(!page.entries.is_empty(), "no empty page mid-walk");
            // In key order within the page (one bucket's).
            assert!(page.entries.windows(2).all(|w| w[0].key < w[1].key));
            got.extend(page.entries.into_iter().map(|m| m.key));
            pages += 1;
            match page.next {
                Some(t) => opts.continuation = Some(t),
                None => break,
            }
        }
        got.sort();
        want.sort();
        assert_eq!(got, want);
        assert!(pages >= want.len().div_ceil(7));
        let bad = ListOptions {
            continuation: Some("9:x".into()),
            ..ListOptions::default()
        };
        assert!(b.list("p/", &bad).await.is_err());
    }

    #[tokio::test]
    async fn batch_deletes_go_per_bucket_and_answer_in_order() {
        let (mems, b) = set(3, "del");
        let keys: Vec<String> = (0..30).map(|i| format!("d/{i}")).collect();
        for k in &keys[..20] {
            b.put(k, Bytes::from_static(b"x")).await.unwrap();
        }
        let r = b.delete_many(&keys).await.unwrap();
        assert_eq!(r.len(), 30);
        for m in &mems {
            assert_eq!(count(m).await, 0, "{m} emptied");
        }
        // mem:// says NotFound for a missing key: the last ten, in place.
        assert!(r[..20].iter().all(|x| x.is_ok()));
        assert!(r[20..].iter().all(|x| x.is_err()));
        assert_eq!(b.batch_limit(), 1);
    }
}
