//! A small etcd client over etcd's v3 JSON gateway, and the agent registry
//! kept in it.
//!
//! Why the gateway and not the gRPC `etcd-client` crate: that crate
//! compiles etcd's protos in its own build script and so needs a system
//! `protoc` and `libprotobuf-dev`, while Chorus builds with Rust alone. The
//! gateway (etcd 3.4 and later, on the client URL) speaks the same v3 API
//! as JSON over HTTP: keys and values are base64, 64-bit integers are
//! strings.
//!
//! Registry layout: agent `id` writes `/chorus/agents/<id>` =
//! [`Registration`] as JSON, attached to a lease it keeps alive while it
//! runs. When the agent stops cleanly it revokes the lease and the key goes
//! at once; when it dies, etcd deletes the key once the lease's TTL runs
//! out. So listing the prefix gives exactly the live agents.
//!
//! Every request has a timeout, every reply a size cap, and a call tries
//! each endpoint of the list at most once.

use std::error::Error as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

use super::{AGENTS_PREFIX, MAX_AGENTS, Registration, agent_key};

/// Longest wait for one request: etcd answers in milliseconds, so a slow
/// one is a dead or partitioned member, better left for the next endpoint.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a TCP (and TLS) connection to one endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest reply read: a range of [`MAX_AGENTS`] registrations is well
/// under 1 MiB; a bigger reply is not one we asked for.
pub const MAX_REPLY_BYTES: usize = 16 << 20;
/// Most endpoints in one `--etcd` list (an etcd cluster has 3 to 7).
pub const MAX_ENDPOINTS: usize = 16;
/// etcd's gRPC status for "not found" (here: an expired or revoked lease).
const CODE_NOT_FOUND: i64 = 5;

/// What went wrong talking to etcd. Messages name the endpoint(s).
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("bad etcd URL `{url}`: {why}")]
    BadUrl { url: String, why: String },
    #[error("cannot reach etcd at {endpoints}: {detail}")]
    Unreachable { endpoints: String, detail: String },
    #[error("etcd at {endpoint} refused {call}: {message}")]
    Refused {
        endpoint: String,
        call: &'static str,
        code: i64,
        message: String,
    },
    #[error("etcd at {endpoint}: unexpected reply to {call}: {why}")]
    BadReply {
        endpoint: String,
        call: &'static str,
        why: String,
    },
    #[error(
        "agent id `{id}` is already registered in etcd by the agent at {address}; \
         give each agent its own --id (if that agent is gone, its registration \
         expires within its lease TTL)"
    )]
    IdTaken { id: String, address: String },
}

impl EtcdError {
    /// Whether etcd said the lease does not exist (expired or revoked).
    pub fn is_lease_not_found(&self) -> bool {
        matches!(self, EtcdError::Refused { code, .. } if *code == CODE_NOT_FOUND)
    }
}

/// A lease etcd granted: its id and the TTL it really gave (etcd raises
/// TTLs below its minimum, about 2 s with default settings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    pub ttl_s: i64,
}

/// One key and its value, from a range read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
}

/// Registered agents as read from etcd.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    /// Valid registrations, in key (id) order.
    pub agents: Vec<Registration>,
    /// Keys under the prefix whose value is not a registration, each with
    /// why (another tool's key, or a newer format).
    pub skipped: Vec<String>,
}

/// A client of one etcd cluster (one or more endpoints of it).
pub struct Etcd {
    endpoints: Vec<String>,
    /// The endpoint that answered last; calls start there.
    current: AtomicUsize,
    http: reqwest::Client,
}

impl Etcd {
    /// A client for `urls`: comma-separated endpoints (`http://h:2379`;
    /// `h:2379` means `http://h:2379`). Nothing is contacted yet.
    pub fn new(urls: &str) -> Result<Etcd, EtcdError> {
        let endpoints = parse_endpoints(urls)?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| EtcdError::BadUrl {
                url: urls.to_string(),
                why: format!("cannot set up an HTTP client: {}", chain(&e)),
            })?;
        Ok(Etcd {
            endpoints,
            current: AtomicUsize::new(0),
            http,
        })
    }

    /// The endpoints, comma-separated, for messages.
    pub fn endpoints(&self) -> String {
        self.endpoints.join(",")
    }

    /// Grants a lease of `ttl_s` seconds.
    pub async fn grant(&self, ttl_s: u64) -> Result<Lease, EtcdError> {
        let (endpoint, v) = self
            .call("lease grant", "/v3/lease/grant", json!({ "TTL": ttl_s }))
            .await?;
        let id = int(&v, "ID").filter(|&id| id != 0);
        let Some(id) = id else {
            return Err(bad_reply(endpoint, "lease grant", "no lease ID"));
        };
        Ok(Lease {
            id,
            ttl_s: int(&v, "TTL").unwrap_or(ttl_s as i64),
        })
    }

    /// Renews lease `id` once; returns its TTL, 0 when it has expired.
    pub async fn keep_alive(&self, id: i64) -> Result<i64, EtcdError> {
        let (_, v) = self
            .call(
                "lease keep-alive",
                "/v3/lease/keepalive",
                json!({ "ID": id.to_string() }),
            )
            .await?;
        // proto3 JSON leaves out zero fields: no TTL means expired.
        Ok(int(&v, "TTL").unwrap_or(0))
    }

    /// Revokes lease `id`: every key attached to it is deleted at once.
    pub async fn revoke(&self, id: i64) -> Result<(), EtcdError> {
        self.call(
            "lease revoke",
            "/v3/lease/revoke",
            json!({ "ID": id.to_string() }),
        )
        .await
        .map(drop)
    }

    /// Writes `key` = `value`, attached to `lease` (0: no lease).
    pub async fn put(&self, key: &str, value: &[u8], lease: i64) -> Result<(), EtcdError> {
        let mut body = json!({ "key": B64.encode(key), "value": B64.encode(value) });
        if lease != 0 {
            body["lease"] = json!(lease.to_string());
        }
        self.call("put", "/v3/kv/put", body).await.map(drop)
    }

    /// The value of `key`, if it exists.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EtcdError> {
        let (kvs, _) = self.range("get", key.as_bytes(), None, 1).await?;
        Ok(kvs.into_iter().next().map(|kv| kv.value))
    }

    /// Keys starting with `prefix`, in key order, at most `limit` of them;
    /// the flag says whether more exist.
    pub async fn get_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> Result<(Vec<KeyValue>, bool), EtcdError> {
        let end = prefix_end(prefix.as_bytes());
        self.range("range", prefix.as_bytes(), Some(&end), limit)
            .await
    }

    /// Registers an agent: checks that no other agent holds its id, grants
    /// a lease of `ttl_s` and writes the registration attached to it. An
    /// old key of the same id and address (this agent before a restart, or
    /// before etcd came back) is overwritten.
    pub async fn register(&self, reg: &Registration, ttl_s: u64) -> Result<Lease, EtcdError> {
        let key = agent_key(&reg.id);
        if let Some(old) = self.get(&key).await?
            && let Ok(old) = serde_json::from_slice::<Registration>(&old)
            && old.address != reg.address
        {
            return Err(EtcdError::IdTaken {
                id: reg.id.clone(),
                address: old.address,
            });
        }
        let value = serde_json::to_vec(reg).map_err(|e| EtcdError::BadReply {
            endpoint: self.endpoints(),
            call: "put",
            why: format!("cannot encode the registration: {e}"),
        })?;
        let lease = self.grant(ttl_s).await?;
        if let Err(e) = self.put(&key, &value, lease.id).await {
            // Best effort: an unused lease would expire on its own anyway.
            let _ = self.revoke(lease.id).await;
            return Err(e);
        }
        Ok(lease)
    }

    /// Every live agent registration, in id order. More than
    /// [`MAX_AGENTS`] is an error rather than a silent cut.
    pub async fn list_agents(&self) -> Result<Listing, EtcdError> {
        let (kvs, more) = self.get_prefix(AGENTS_PREFIX, MAX_AGENTS).await?;
        if more {
            return Err(EtcdError::BadReply {
                endpoint: self.endpoints(),
                call: "range",
                why: format!(
                    "more than {MAX_AGENTS} agents registered under {AGENTS_PREFIX}, \
                     more than one controller drives"
                ),
            });
        }
        let mut listing = Listing::default();
        for kv in kvs {
            match serde_json::from_slice::<Registration>(&kv.value) {
                Ok(r) if r.address.is_empty() => {
                    listing.skipped.push(format!("{}: empty address", kv.key));
                }
                Ok(r) => listing.agents.push(r),
                Err(e) => listing
                    .skipped
                    .push(format!("{}: not an agent registration: {e}", kv.key)),
            }
        }
        Ok(listing)
    }

    async fn range(
        &self,
        call: &'static str,
        key: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<KeyValue>, bool), EtcdError> {
        let mut body = json!({ "key": B64.encode(key), "limit": limit.to_string() });
        if let Some(end) = end {
            body["range_end"] = json!(B64.encode(end));
        }
        let (endpoint, v) = self.call(call, "/v3/kv/range", body).await?;
        let mut out = Vec::new();
        if let Some(kvs) = v.get("kvs").and_then(Value::as_array) {
            for kv in kvs {
                let field = |name: &str| -> Result<Vec<u8>, EtcdError> {
                    let text = kv.get(name).and_then(Value::as_str).unwrap_or("");
                    B64.decode(text)
                        .map_err(|e| bad_reply(endpoint.clone(), call, &format!("{name}: {e}")))
                };
                let key = String::from_utf8_lossy(&field("key")?).into_owned();
                out.push(KeyValue {
                    key,
                    value: field("value")?,
                });
            }
        }
        let more = v.get("more").and_then(Value::as_bool).unwrap_or(false);
        Ok((out, more))
    }

    /// POSTs `body` to `path`, trying each endpoint once from the last good
    /// one. Returns the endpoint that answered and the reply (the `result`
    /// of a streaming call's first message).
    async fn call(
        &self,
        call: &'static str,
        path: &str,
        body: Value,
    ) -> Result<(String, Value), EtcdError> {
        let n = self.endpoints.len();
        let first = self.current.load(Ordering::Relaxed) % n;
        let body = body.to_string();
        let mut failures = Vec::new();
        for k in 0..n {
            let i = (first + k) % n;
            let endpoint = &self.endpoints[i];
            match self.post(endpoint, path, body.clone()).await {
                Ok((status, bytes)) => {
                    self.current.store(i, Ordering::Relaxed);
                    return decode(endpoint, call, status, &bytes);
                }
                // The endpoint is named only when there are several.
                Err(detail) if n == 1 => failures.push(detail),
                Err(detail) => failures.push(format!("{endpoint}: {detail}")),
            }
        }
        Err(EtcdError::Unreachable {
            endpoints: self.endpoints(),
            detail: failures.join("; "),
        })
    }

    /// One POST; `Err` only when no complete reply came back.
    async fn post(
        &self,
        endpoint: &str,
        path: &str,
        body: String,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), String> {
        let mut resp = self
            .http
            .post(format!("{endpoint}{path}"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| chain(&e))?;
        let status = resp.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| chain(&e))? {
            if bytes.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(format!("reply larger than {MAX_REPLY_BYTES} bytes"));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok((status, bytes))
    }
}

/// Turns a reply into its JSON, or the error etcd sent.
fn decode(
    endpoint: &str,
    call: &'static str,
    status: reqwest::StatusCode,
    bytes: &[u8],
) -> Result<(String, Value), EtcdError> {
    // A streaming call's reply is a sequence of JSON objects; we sent one
    // request, so the first one is ours.
    let v = serde_json::Deserializer::from_slice(bytes)
        .into_iter::<Value>()
        .next();
    let v = match v {
        Some(Ok(v)) => v,
        _ if !status.is_success() => {
            return Err(EtcdError::Refused {
                endpoint: endpoint.to_string(),
                call,
                code: 0,
                message: format!("HTTP {status}: {}", snippet(bytes)),
            });
        }
        Some(Err(e)) => return Err(bad_reply(endpoint.to_string(), call, &e.to_string())),
        None => return Err(bad_reply(endpoint.to_string(), call, "empty reply")),
    };
    // Unary errors: {"error": "...", "code": N}; streaming ones:
    // {"error": {"grpc_code": N, "message": "..."}}.
    let error = match v.get("error") {
        Some(Value::Object(e)) => Some((
            int(&Value::Object(e.clone()), "grpc_code").unwrap_or(0),
            e.get("message").and_then(Value::as_str).unwrap_or(""),
        )),
        Some(Value::String(s)) => Some((int(&v, "code").unwrap_or(0), s.as_str())),
        _ => None,
    };
    if let Some((code, message)) = error {
        return Err(EtcdError::Refused {
            endpoint: endpoint.to_string(),
            call,
            code,
            message: message.to_string(),
        });
    }
    if !status.is_success() {
        return Err(EtcdError::Refused {
            endpoint: endpoint.to_string(),
            call,
            code: 0,
            message: format!("HTTP {status}: {}", snippet(bytes)),
        });
    }
    let v = match v {
        Value::Object(mut m) if m.contains_key("result") => m.remove("result").unwrap_or_default(),
        v => v,
    };
    Ok((endpoint.to_string(), v))
}

fn bad_reply(endpoint: String, call: &'static str, why: &str) -> EtcdError {
    EtcdError::BadReply {
        endpoint,
        call,
        why: why.to_string(),
    }
}

/// The start of a reply, for error messages.
fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]);
    text.trim().to_string()
}

/// An int64 field, which the gateway writes as a string (or a number).
fn int(v: &Value, key: &str) -> Option<i64> {
    match v.get(key)? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// An error and its causes on one line (reqwest's own message is only
/// "error sending request").
fn chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The endpoints of a `--etcd` value, each as `scheme://host:port`.
fn parse_endpoints(urls: &str) -> Result<Vec<String>, EtcdError> {
    let bad = |url: &str, why: &str| EtcdError::BadUrl {
        url: url.to_string(),
        why: why.to_string(),
    };
    let mut out = Vec::new();
    for u in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let full = if u.contains("://") {
            u.to_string()
        } else {
            format!("http://{u}")
        };
        let parsed = reqwest::Url::parse(&full).map_err(|e| bad(u, &e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad(u, "the scheme must be http or https"));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(bad(u, "no host"));
        }
        if parsed.path() != "/" || parsed.query().is_some() {
            return Err(bad(u, "give only scheme://host:port, without a path"));
        }
        out.push(full.trim_end_matches('/').to_string());
    }
    if out.is_empty() {
        return Err(bad(urls, "no endpoint given"));
    }
    if out.len() > MAX_ENDPOINTS {
        return Err(bad(
            urls,
            &format!("more than {MAX_ENDPOINTS} endpoints; an etcd cluster has 3 to 7"),
        ));
    }
    Ok(out)
}

/// The end of the range of keys starting with `prefix`: the prefix with its
/// last byte below 0xff raised by one (etcd's `WithPrefix`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only 0xff bytes (or empty): every key from `prefix` on.
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_parsed_and_checked() {
        let e = Etcd::new("http://a:2379, b:2379 ,https://c:1/").unwrap();
        assert_eq!(e.endpoints(), "http://a:2379,http://b:2379,https://c:1");
        for bad in [
            "",
            " , ",
            "ftp://a:1",
            "http://",
            "http://a:1/v3",
            "http://a:x",
        ] {
            let err = Etcd::new(bad).err().unwrap_or_else(|| panic!("{bad}"));
            assert!(err.to_string().contains("bad etcd URL"), "{bad}: {err}");
        }
        let many = vec!["h:1"; MAX_ENDPOINTS + 1].join(",");
        assert!(
            Etcd::new(&many)
                .err()
                .unwrap()
                .to_string()
                .contains("more than")
        );
    }

    #[test]
    fn prefix_range_end() {
        assert_eq!(prefix_end(b"/chorus/agents/"), b"/chorus/agents0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }

    #[test]
    fn replies_and_errors_decode() {
        let ok = reqwest::StatusCode::OK;
        let (_, v) = decode("e", "x", ok, br#"{"ID":"7","TTL":"10"}"#).unwrap();
        assert_eq!((int(&v, "ID"), int(&v, "TTL")), (Some(7), Some(10)));
        // Streaming: the first message's result, trailing bytes ignored.
        let (_, v) = decode("e", "x", ok, b"{\"result\":{\"ID\":\"7\"}}\n{\"x\":1}").unwrap();
        assert_eq!((int(&v, "ID"), int(&v, "TTL")), (Some(7), None));
        let e = decode(
            "e",
            "lease revoke",
            reqwest::StatusCode::NOT_FOUND,
            br#"{"error":"etcdserver: requested lease not found","code":5}"#,
        )
        .unwrap_err();
        assert!(e.is_lease_not_found(), "{e}");
        assert!(e.to_string().contains("lease revoke") && e.to_string().contains("at e"));
        let e = decode(
            "e",
            "ka",
            ok,
            br#"{"error":{"grpc_code":5,"message":"lease not found"}}"#,
        )
        .unwrap_err();
        assert!(e.is_lease_not_found(), "{e}");
        let e = decode("e", "x", reqwest::StatusCode::BAD_GATEWAY, b"<html>").unwrap_err();
        assert!(e.to_string().contains("502"), "{e}");
        assert!(!e.is_lease_not_found());
        assert!(decode("e", "x", ok, b"").is_err());
        assert!(decode("e", "x", ok, b"{not json").is_err());
    }

    #[tokio::test]
    async fn unreachable_names_every_endpoint() {
        // Port 1 on loopback: nothing listens there, the refusal is quick.
        let e = Etcd::new("http://127.0.0.1:1,127.0.0.2:1").unwrap();
        let err = e.grant(5).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, EtcdError::Unreachable { .. }), "{text}");
        assert!(
            text.contains("http://127.0.0.1:1") && text.contains("http://127.0.0.2:1"),
            "{text}"
        );
    }
}
